"""Training: a tiny model learns, runs resume, export writes a loadable model folder."""
import json

import numpy as np
import pytest
import torch

from engine import load_ensemble
from engine import train as tr
from engine.train import CKPT, STATE, Pool, TrainConfig, export, loss_fn, make_network, run_steps, train

torch.set_num_threads(1)  # 2 shared cores: oversubscribed threads slow tiny nets 10x


def _synthetic_source(cfg, split="train", start=0, seed=None):
    """Smooth random images times Rayleigh speckle in the log domain (display units, DR 50 dB)."""
    rng = np.random.default_rng([cfg.seed if seed is None else seed, start, hash(split) % 1000])
    yy, xx = np.mgrid[0:cfg.size, 0:cfg.size] / cfg.size
    while True:
        f = rng.uniform(1, 4, 4)
        clean = 0.5 + 0.25 * np.sin(f[0] * 6 * xx + f[1]) * np.cos(f[2] * 6 * yy + f[3])
        env = np.abs(rng.normal(size=clean.shape) + 1j * rng.normal(size=clean.shape)) / np.sqrt(2)
        bmode = np.clip(clean + 20 * np.log10(np.maximum(env, 1e-6)) / 50.0, 0, 1)
        yield bmode.astype(np.float32), clean.astype(np.float32)


@pytest.fixture()
def synthetic(monkeypatch):
    monkeypatch.setattr(tr, "pair_source", _synthetic_source)
    monkeypatch.setattr(tr.normalize, "measure_reference",
                        lambda frames, *a: {"grain_px": [1.0, 1.0], "speckle_std": 0.11})


def _cfg(**kw):
    base = dict(members=2, minutes=1.0, base=4, batch=8, patch=32, size=48, pool=6, val_frames=2, lr=3e-3,
                checkpoint_minutes=10, zoom=(0.8, 1.25))
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("arch", ["irsde", "regression", "dncnn"])
def test_tiny_model_loss_falls(synthetic, tmp_path, arch):
    cfg = _cfg(arch=arch, lr=1e-2)
    pool = Pool(cfg, _synthetic_source(cfg, seed=99), np.random.default_rng(0))
    pool.fill()
    mu, x0 = pool.batch([np.random.default_rng(1), np.random.default_rng(2)])

    def fixed_loss(net):
        with torch.no_grad():
            return float(loss_fn(net, cfg, mu, x0, torch.Generator().manual_seed(0)))
    before = fixed_loss(make_network(cfg))
    train(cfg, tmp_path / arch, log=lambda m: None, max_steps=60)
    net = make_network(cfg)
    tr._load_checkpoint(tmp_path / arch, net, None)
    assert fixed_loss(net) < 0.9 * before


def test_resume_and_export(synthetic, tmp_path):
    cfg = _cfg()
    run = tmp_path / "run"
    lines = []
    assert run_steps(run) == 0  # no run there yet
    s1 = train(cfg, run, log=lines.append, max_steps=10)
    assert s1.step == 10 and (run / CKPT).is_file() and (run / STATE).is_file() and run_steps(run) == 10
    assert any("loss" in m for m in lines)
    s2 = train(cfg, run, log=lines.append, max_steps=5)
    assert s2.step == 15 and s2.elapsed > s1.elapsed
    assert any("resuming" in m for m in lines)
    with pytest.raises(ValueError, match="different settings"):
        train(_cfg(lam=0.2), run, log=lambda m: None, max_steps=1)
    s3 = train(_cfg(t_focus=0.5), run, log=lines.append, max_steps=3)  # a resumable change, recorded
    assert s3.step == 18 and s3.stages == [{"step": 15, "prev_t_focus": 0.0, "t_focus": 0.5}]
    card = export(run, name="tiny-run", choose_steps=(1, 2), n_eval=2, log=lambda m: None, test_sets=False)
    assert card["training"]["steps"] == 18 and card["training"]["member_seeds"] == [0, 1]
    from simulator.psf import FORMAT_VERSION
    assert s1.psf_format == FORMAT_VERSION  # the fast path's kernels the run was trained with
    assert ("PSF banks format %d" % FORMAT_VERSION) in card["training"]["data"]
    md = (run / "MODEL_CARD.md").read_text()
    assert "steps 0-15: uniform in 1..T; from step 15: 50 % from the last 20 steps" in md
    assert card["default_steps"] in (1, 2) and "posterior-1" in card["metrics"]["validation"]
    ens = load_ensemble(run, device="cpu")
    assert ens.members == 2 and ens.name == "tiny-run"
    on_disk = json.loads((run / "model.json").read_text())
    assert on_disk["files"]["model.safetensors"]["sha256"] == card["files"]["model.safetensors"]["sha256"]


def test_warm_start_from_an_exported_model(synthetic, tmp_path):
    """--init copies the first members of an exported model, is recorded in the card, and refuses a
    model of another architecture or size."""
    src = tmp_path / "src"
    train(_cfg(members=3), src, log=lambda m: None, max_steps=4)
    export(src, name="src", n_eval=2, log=lambda m: None, test_sets=False)
    from engine.weights import read_model
    ref, _, _ = read_model(src)
    lines = []
    s = train(_cfg(members=2, init=str(src), precond="wiener"), tmp_path / "ft", log=lines.append, max_steps=0)
    assert s.init["steps"] == 4 and s.init["model"] == "src" and any("initialised" in m for m in lines)
    net = make_network(_cfg(members=2))
    tr._load_checkpoint(tmp_path / "ft", net, None)
    from engine.network import select_members
    want = select_members(ref.state_dict(), 3, [0, 1])
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, want[k], atol=1e-3, rtol=1e-3)  # fp16 on disk
    s2 = train(_cfg(members=2, precond="wiener"), tmp_path / "ft", log=lines.append, max_steps=1)  # resume
    assert s2.step == 1 and s2.config["init"] == str(src)  # init only matters for a new run
    card = export(tmp_path / "ft", name="ft", n_eval=2, log=lambda m: None, test_sets=False)
    assert card["training"]["init"]["model"] == "src" and card["schedule"]["input"] == "wiener"
    assert load_ensemble(tmp_path / "ft", device="cpu").schedule.precond == "wiener"
    assert "initialised from" in (tmp_path / "ft" / "MODEL_CARD.md").read_text()
    for kw, msg in (({"members": 4}, "members"), ({"base": 8}, "network"), ({"arch": "dncnn"}, "model")):
        with pytest.raises(ValueError, match=msg):
            train(_cfg(init=str(src), **kw), tmp_path / ("bad" + msg), log=lambda m: None, max_steps=0)


def test_single_member_runs_warm_start_from_their_own_member(synthetic, tmp_path):
    """A recipe's fine-tune stage trains member k again from member k of its first stage (init_member),
    and the stacked model's card says which members each started from."""
    src = tmp_path / "src"
    train(_cfg(members=3), src, log=lambda m: None, max_steps=2)
    export(src, name="src", n_eval=2, log=lambda m: None, test_sets=False)
    from engine.network import select_members
    from engine.weights import read_model
    ref, _, _ = read_model(src)
    runs = []
    for k in (2, 0):
        run = tmp_path / f"ft{k}"
        train(_cfg(members=1, seed=50 + k, init=str(src), init_member=k), run, log=lambda m: None, max_steps=0)
        net = make_network(_cfg(members=1))
        tr._load_checkpoint(run, net, None)
        want = select_members(ref.state_dict(), 3, [k])
        for name, v in net.state_dict().items():
            torch.testing.assert_close(v, want[name], atol=1e-3, rtol=1e-3)
        runs.append(run)
    card = tr.export_members(runs, tmp_path / "stacked", "stacked", n_eval=2, log=lambda m: None)
    assert card["training"]["init"]["model"] == "src" and card["training"]["init"]["members_from"] == [2, 0]
    with pytest.raises(ValueError, match="needs 1 from member 3"):
        train(_cfg(members=1, init=str(src), init_member=3), tmp_path / "bad", log=lambda m: None, max_steps=0)


def test_member_seeds_differ_in_init_and_data(tmp_path):
    cfg = _cfg(members=3)
    net = make_network(cfg)
    w = net.inc.weight.reshape(3, -1)
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])
    pool = Pool(cfg, _synthetic_source(cfg), np.random.default_rng(0))
    pool.fill()
    mu, _ = pool.batch([np.random.default_rng([s, 0]) for s in cfg.member_seeds()])
    assert not torch.equal(mu[:, 0], mu[:, 1])


def test_t_focus_draws_the_last_steps():
    """With t_focus = f, a share f of the batch (plus the uniform draws that land there) has t > T - 20."""
    seen = []
    net = lambda x, t: (seen.append(t.clone()), x[:, :, 1:])[1]  # noqa: E731
    mu = torch.rand(256, 2, 1, 8, 8)
    for f, lo, hi in ((0.0, 0.15, 0.25), (0.6, 0.62, 0.74), (1.0, 1.0, 1.0)):
        seen.clear()
        loss_fn(net, _cfg(t_focus=f), mu, mu.clone(), torch.Generator().manual_seed(3))
        t = seen[0]
        assert t.min() >= 1 and t.max() <= 100
        assert lo <= float((t > 80).float().mean()) <= hi


@pytest.mark.parametrize("arch", ["irsde", "regression", "dncnn"])
def test_norm_picks_absolute_or_squared_error(arch):
    """norm="l1" is the mean absolute error of the prediction, "l2" its mean square, for every architecture
    (the network here returns the mu channel, so the error is mu - x0 whatever t is drawn)."""
    mu = torch.rand(4, 2, 1, 8, 8)
    x0 = torch.rand(4, 2, 1, 8, 8)
    ident = lambda x, t=None: x if x.shape[2] == 1 else x[:, :, 1:]  # noqa: E731
    for norm, want in (("l1", (mu - x0).abs().mean()), ("l2", (mu - x0).square().mean())):
        got = loss_fn(ident, _cfg(arch=arch, norm=norm), mu, x0, torch.Generator().manual_seed(0))
        torch.testing.assert_close(got, want)
    assert tr.loss_text(_cfg(norm="l2")) == "L2 (squared error) on x0"
    assert tr.loss_text(_cfg(norm="l1", loss="ml")) == "IR-SDE maximum-likelihood L1"


def test_bad_config_is_refused():
    for kw in ({"arch": "gan"}, {"loss": "l2"}, {"norm": "huber"}, {"members": 0}, {"minutes": 0}, {"probes": []},
               {"patch": 200}, {"t_focus": 1.5}, {"precond": "edm"}, {"device": "tpu"}, {"device": "gpu0"}):
        with pytest.raises(ValueError):
            _cfg(**kw).validate()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where no GPU exists")
def test_cuda_training_without_a_gpu_is_refused_clearly():
    with pytest.raises(ValueError, match="no CUDA device"):
        _cfg(device="cuda").validate()


def test_hardware_is_recorded_per_stretch_of_steps(synthetic, tmp_path):
    """A run records where its steps ran; the card shows it beside the source model's hardware."""
    run = tmp_path / "run"
    s1 = train(_cfg(threads=1), run, log=lambda m: None, max_steps=3)
    assert s1.devices == [{"step": 0, "device": "cpu, 1 thread"}]
    s2 = train(_cfg(threads=2), run, log=lambda m: None, max_steps=2)  # threads may change on resume
    assert [d["step"] for d in s2.devices] == [0, 3]
    assert tr.hardware_text(s2.devices, 2) == "cpu, 1 thread (steps 0-3); cpu, 2 threads (from step 3)"
    assert tr.hardware_text([], 2) == "cpu, 2 threads"  # runs older than the record
    assert tr.hardware_text([], 1) == "cpu, 1 thread" and tr.hardware_text([], None) == "cpu"
    card = export(run, name="hw", n_eval=2, log=lambda m: None, test_sets=False)
    assert card["training"]["hardware"] == tr.hardware_text(s2.devices, 2)
    ft = tmp_path / "ft"
    train(_cfg(threads=2, init=str(run)), ft, log=lambda m: None, max_steps=1)
    export(ft, name="ft", n_eval=2, log=lambda m: None, test_sets=False)
    md = (ft / "MODEL_CARD.md").read_text()
    assert ("| hardware | cpu, 2 threads; before this run: cpu, 1 thread (steps 0-3); "
            "cpu, 2 threads (from step 3) |") in md


def test_usclean_train_cli_trains_and_writes_a_model(tmp_path, capsys):
    from usclean_gui.cli import main

    out = tmp_path / "cli_run"
    rc = main(["train", "--probe", "L11-5v", "--members", "2", "--minutes", "0.03", "--base", "4",
               "--patch", "32", "--batch", "2", "-o", str(out)])
    assert rc == 0
    card = json.loads((out / "model.json").read_text())
    assert card["members"] == 2 and card["training"]["probes"] == ["L11-5v"]
    assert card["metrics"]["test_sets"]["fast/L11-5v"]["images"] > 0
    assert "loss" in capsys.readouterr().err
    assert load_ensemble(out, device="cpu").members == 2
    assert main(["train", "--probe", "L99", "-o", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize("warmup", [100, 20])
def test_learning_rate_warms_up_over_the_configured_steps(synthetic, tmp_path, warmup):
    cfg = _cfg(members=1, lr=1e-3, warmup=warmup, max_steps=10, minutes=60.0)
    train(cfg, tmp_path / "run", log=lambda m: None)
    lr = json.loads((tmp_path / "run" / STATE).read_text())["param_groups"][0]["lr"]
    decay = 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 9 / 10))  # the cosine where step 10's update was made
    assert lr == pytest.approx(1e-3 * 10 / warmup * decay, rel=1e-3)


def test_uncertainty_likelihood_sees_the_configured_log_variance_floor():
    """A head predicting a log-variance below the floor is scored at the floor (e² e^-floor + floor)."""
    mu = torch.full((2, 1, 1, 8, 8), 0.4)
    x0 = torch.full((2, 1, 1, 8, 8), 0.5)

    def net(x, t):  # x̂0 off by 0.1 everywhere, a log-variance of -20 (far below any floor)
        return torch.cat([x0 + 0.1, torch.full_like(x0, -20.0)], dim=2)

    loss = {f: float(loss_fn(net, _cfg(arch="regression", uncertainty=True, logvar_floor=f), mu, x0,
                             torch.Generator().manual_seed(0))) for f in (-14.0, -9.0)}
    w = _cfg().uncertainty_weight
    want = w * 0.5 * (0.01 * (np.exp(9.0) - np.exp(14.0)) + 5.0)
    assert loss[-9.0] - loss[-14.0] == pytest.approx(want, rel=1e-3)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_beta_nll_weights_the_likelihood_by_the_detached_variance(beta):
    mu = torch.full((2, 1, 1, 8, 8), 0.4)
    x0 = torch.full((2, 1, 1, 8, 8), 0.5)
    logvar = torch.full_like(x0, -6.0, requires_grad=True)

    def net(x, t):  # x̂0 off by 0.1 everywhere, a log-variance of -6
        return torch.cat([x0 + 0.1, logvar], dim=2)

    gen = torch.Generator().manual_seed(0)
    plain = float(loss_fn(net, _cfg(arch="regression", uncertainty=False), mu, x0, gen).detach())
    loss = loss_fn(net, _cfg(arch="regression", uncertainty=True, nll_beta=beta), mu, x0, gen)
    w, nll = _cfg().uncertainty_weight, 0.5 * (0.01 * np.exp(6.0) - 6.0)
    assert float(loss.detach()) - plain == pytest.approx(w * nll * np.exp(-6.0 * beta), rel=1e-4)
    loss.backward()  # the weight is detached: the gradient is the plain one's, scaled by the weight
    grad = float(logvar.grad.sum())
    assert grad == pytest.approx(w * 0.5 * (1 - 0.01 * np.exp(6.0)) * np.exp(-6.0 * beta), rel=1e-4)


@pytest.mark.parametrize("head", [0, 4])
def test_head_only_training_keeps_the_image_output_bit_for_bit(synthetic, tmp_path, head):
    """train_only uncertainty_head (warm-started, optionally with a head of its own grown on the model):
    the log-variance learns, every weight that feeds the image output keeps its value exactly."""
    src = tmp_path / "src"
    unc = dict(uncertainty=True, unshuffle=2, arch="regression")
    train(_cfg(members=1, **unc), src, log=lambda m: None, max_steps=3)
    export(src, name="src", n_eval=2, log=lambda m: None, test_sets=False)
    from engine.weights import read_model
    ref, _, _ = read_model(src)
    cfg = _cfg(members=1, init=str(src), train_only="uncertainty_head", head=head, lr=1e-2, **unc)
    train(cfg, tmp_path / "head", log=lambda m: None, max_steps=8)
    net = make_network(cfg)
    _, ema = tr._load_checkpoint(tmp_path / "head", net, None)
    net.load_state_dict(ema)
    masks = tr.head_rows(net)
    want = ref.state_dict()
    for name, v in net.state_dict().items():
        if name not in masks:
            assert torch.equal(v, want[name]), name
        elif name in want:  # the last convolution: its image rows as they were, its log-variance rows trained
            assert torch.equal(v[~masks[name]], want[name][~masks[name]])
    moved = [name for name in masks if name not in want or not torch.equal(net.state_dict()[name], want[name])]
    assert moved
    x = torch.rand(1, 1, 2, 24, 32)
    t = torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        a, b = ref(x, t), net(x, t)
    assert torch.equal(a[:, :, 0], b[:, :, 0]) and not torch.equal(a[:, :, 1], b[:, :, 1])
    card = export(tmp_path / "head", name="head", n_eval=2, log=lambda m: None, test_sets=False)
    assert card["training"]["loss"].startswith("only the Gaussian NLL") and card["network"].get("head", 0) == head
    frame = np.random.default_rng(0).random((40, 56), dtype=np.float32)
    runs = {b: load_ensemble(tmp_path / "head", backend=b).despeckle(frame) for b in ("torch", "onnx")}
    for part in ("mean", "aleatoric"):  # the exported graph carries the head
        np.testing.assert_allclose(getattr(runs["onnx"], part), getattr(runs["torch"], part), atol=1e-5)
    with pytest.raises(ValueError, match="uncertainty head to start from"):
        _cfg(train_only="uncertainty_head").validate()
