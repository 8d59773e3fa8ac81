"""The Ensemble API: mean/std, determinism, progress/cancel, validation, tiling, normalisation."""
import re

import numpy as np
import pytest
import torch

from engine import Cancelled, Ensemble
from engine.network import UNet, build, select_members, stack_members
from engine.normalize import fit, grain_size, measure_reference
from engine.sde import make_schedule
from engine.testing import tiny_ensemble

torch.set_num_threads(1)  # 2 shared cores: oversubscribed threads slow tiny nets 10x


def _frames(n=2, h=48, w=40, seed=0):
    """Smooth image + log-Rayleigh speckle with a grain of a few pixels (display units, DR 50 dB)."""
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    clean = 0.5 + 0.2 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    field = rng.normal(size=(n, h, w)) + 1j * rng.normal(size=(n, h, w))
    field = gaussian_filter(field.real, (0, 1.5, 1.0)) + 1j * gaussian_filter(field.imag, (0, 1.5, 1.0))
    env = np.abs(field) / np.sqrt(np.mean(np.abs(field) ** 2))
    return np.clip(clean + 20 * np.log10(np.maximum(env, 1e-6)) / 50.0, 0, 1).astype(np.float32)


def test_mean_std_shapes_and_determinism():
    ens = tiny_ensemble(seed=0, members=3)
    x = _frames()
    a = ens.despeckle(x, steps=3, seed=4)
    b = ens.despeckle(x, steps=3, seed=4)
    c = ens.despeckle(x, steps=3, seed=5)
    assert a.mean.shape == x.shape and a.std.shape == x.shape and a.mean.dtype == np.float32
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)
    assert not np.array_equal(a.mean, c.mean)
    assert float(a.std.mean()) > 0
    single = ens.despeckle(x[0], steps=3, seed=4)
    assert single.mean.shape == x.shape[1:]
    np.testing.assert_allclose(single.mean, a.mean[0], atol=1e-6)


def test_identical_members_give_zero_std():
    tiny = tiny_ensemble(seed=1, members=1)
    state = stack_members([tiny.net.state_dict()] * 4)
    net = build(tiny.net.config(), 4)
    net.load_state_dict(state)
    ens = Ensemble(net, schedule=make_schedule(), device="cpu", normalize="off")
    for sampler in ("posterior", "ddim", "em"):
        res = ens.despeckle(_frames(1), steps=3, sampler=sampler)
        assert res.std.shape == (1, 48, 40)
        assert float(res.std.max()) < 1e-6  # members share all sampling noise: spread = model disagreement
        single = Ensemble(tiny.net, schedule=make_schedule(), device="cpu", normalize="off")
        np.testing.assert_allclose(res.mean, single.despeckle(_frames(1), steps=3, sampler=sampler).mean, atol=1e-5)


def test_member_subset():
    ens = tiny_ensemble(seed=2, members=3)
    x = _frames(1)
    one = ens.despeckle(x, members=1, steps=1)
    assert float(one.std.max()) == 0.0
    sub = UNet(1, base=4, emb=4)
    sub.load_state_dict(select_members(ens.net.state_dict(), 3, [0]))
    ref = Ensemble(sub, schedule=make_schedule(), device="cpu", normalize="off").despeckle(x, steps=1)
    np.testing.assert_allclose(one.mean, ref.mean, atol=1e-6)
    with pytest.raises(ValueError, match="members"):
        ens.despeckle(x, members=5)


def test_progress_counts_network_evaluations_and_cancel_stops():
    ens = tiny_ensemble()
    x = _frames(3)
    seen = []
    ens.despeckle(x, steps=4, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 12) for i in range(1, 13)]
    calls = []
    with pytest.raises(Cancelled):
        ens.despeckle(x, steps=4, cancel=lambda: calls.append(1) or len(calls) >= 3)
    assert len(calls) == 3  # stopped right after the evaluation that saw True


def test_iter_despeckle_streams_frames():
    ens = tiny_ensemble()
    x = _frames(3)
    full = ens.despeckle(x, steps=2)
    got = list(ens.iter_despeckle(x, steps=2))
    assert [g[0] for g in got] == [0, 1, 2]
    for i, m, s in got:
        np.testing.assert_array_equal(m, full.mean[i])
        np.testing.assert_array_equal(s, full.std[i])


def test_fit_frame_stands_for_a_first_frame():
    """``fit_frame`` fits the normalisation and brightness window as if it led the call, without despeckling it:
    a chunk fitted on the clip's first frame equals the same frames despeckled behind it."""
    import cv2
    x = _frames(4, 96, 96)
    ens = tiny_ensemble()
    ens.reference, ens.normalize = measure_reference(x), "auto"
    big = np.stack([np.clip(cv2.resize(f, (192, 192), interpolation=cv2.INTER_CUBIC), 0, 1) for f in x])
    big[0] = np.clip(big[0] * 0.6, 0, 1)  # a darker first frame: another fit than the others' own
    led = ens.despeckle(big[[0, 2, 3]], seed=5)  # frames 2 and 3 fitted on frame 0
    own = ens.despeckle(big[2:], seed=5)  # fitted on frame 2
    chunk = list(ens.iter_despeckle(big[2:], seed=5, fit_frame=big[0]))
    assert [k for k, _, _ in chunk] == [0, 1]
    assert not np.allclose(own.mean[0], led.mean[1], atol=1e-3)
    # naming the first frame as fit_frame is the default fit exactly
    fitted = list(ens.iter_despeckle(big[[0, 2, 3]], seed=5, fit_frame=big[0]))
    for k, m, sd in fitted:
        np.testing.assert_array_equal(m, led.mean[k])
        np.testing.assert_array_equal(sd, led.std[k])
    assert np.abs(chunk[0][1] - led.mean[1]).mean() < np.abs(chunk[0][1] - own.mean[0]).mean() + 1e-9
    with pytest.raises(ValueError, match="fit_frame has shape"):
        list(ens.iter_despeckle(big[2:], fit_frame=big[0, :100]))


def test_a_blank_anchor_is_not_the_clips_fit():
    """A first frame whose grain cannot be measured (a blank frame, as some cines start) is no fit for the clip:
    each frame is then fitted on its own, exactly as when despeckled alone; progress still counts every step."""
    import cv2
    x = _frames(3, 96, 96)
    ens = tiny_ensemble()
    ens.reference, ens.normalize, ens.keep_brightness = measure_reference(x), "auto", True
    big = np.stack([np.clip(cv2.resize(f, (192, 192), interpolation=cv2.INTER_CUBIC), 0, 1) for f in x])
    for blank in (np.zeros((192, 192), np.float32), np.full((192, 192), 0.4, np.float32)):
        for k in range(3):
            ((_, m, sd),) = ens.iter_despeckle(big[k:k + 1], seed=3, fit_frame=blank)
            ((_, alone_m, alone_sd),) = ens.iter_despeckle(big[k:k + 1], seed=3)
            np.testing.assert_array_equal(m, alone_m)
            np.testing.assert_array_equal(sd, alone_sd)
    seen: list[tuple[int, int]] = []
    frames = list(ens.iter_despeckle(big, fit_frame=np.zeros((192, 192), np.float32),
                                     progress=lambda d, t: seen.append((d, t))))
    assert len(frames) == 3 and seen[-1][0] == seen[-1][1] == len(seen)
    # a measurable anchor is still every frame's fit
    ((_, led, _),) = ens.iter_despeckle(big[1:2], seed=3, fit_frame=big[0])
    ((_, own, _),) = ens.iter_despeckle(big[1:2], seed=3)
    assert not np.allclose(led, own, atol=1e-4)


def test_a_fit_is_measured_once_per_anchor_frame(monkeypatch):
    """Calls that share an anchor (fit_frame, as the app and the CLI's chunks pass it) measure its grain once;
    the result is the same as a fresh fit's, and another anchor or another reference is fitted anew."""
    import engine.ensemble as em
    x = _frames(4, 96, 96)
    ens = tiny_ensemble()
    ens.reference, ens.normalize, ens.keep_brightness = measure_reference(x), "auto", True
    calls = []
    grain = em._norm.grain_size
    monkeypatch.setattr(em._norm, "grain_size", lambda f, *a, **k: calls.append(1) or grain(f, *a, **k))
    first = list(ens.iter_despeckle(x[1:3], seed=2, fit_frame=x[0]))
    again = list(ens.iter_despeckle(x[1:3], seed=2, fit_frame=x[0].copy()))
    assert len(calls) == 1
    for (_, m0, s0), (_, m1, s1) in zip(first, again):
        np.testing.assert_array_equal(m0, m1)
        np.testing.assert_array_equal(s0, s1)
    fresh = tiny_ensemble()
    fresh.reference, fresh.normalize, fresh.keep_brightness = ens.reference, "auto", True
    for (_, m0, _), (_, m2, _) in zip(first, fresh.iter_despeckle(x[1:3], seed=2, fit_frame=x[0])):
        np.testing.assert_array_equal(m0, m2)
    other = list(ens.iter_despeckle(x[1:3], seed=2, fit_frame=np.clip(x[0] * 0.6, 0, 1)))
    assert len(calls) == 3 and not np.array_equal(other[0][1], first[0][1])
    ens.reference = dict(ens.reference, speckle_std=ens.reference["speckle_std"] * 2)
    list(ens.iter_despeckle(x[1:2], seed=2, fit_frame=x[0]))
    assert len(calls) == 4


@pytest.mark.parametrize("bad, msg", [
    ("frames", "numpy array"),
    (np.zeros((0, 32, 32), np.float32), "empty"),
    (np.zeros((8, 40), np.float32), "too small"),
    (np.zeros((4097, 16), np.float32), "too large"),
    (np.zeros((32, 32), np.uint8), "floating point"),
    (np.full((32, 32), np.nan, np.float32), "NaN"),
    (np.full((32, 32), np.inf, np.float32), "NaN or infinite"),
    (np.zeros((32, 32, 3), np.float32), "colour"),
    (np.zeros((2, 32, 32, 4), np.float32), "colour"),
    (np.zeros((2, 2, 32, 32), np.float32), "dimensions"),
    (np.full((32, 32), 2.0, np.float32), r"\[0, 1\]"),
])
def test_bad_input_is_refused_clearly(bad, msg):
    with pytest.raises(ValueError, match=msg):
        tiny_ensemble().despeckle(bad)


def test_bad_settings_are_refused():
    ens = tiny_ensemble()
    for kw in ({"steps": 0}, {"steps": 101}, {"steps": 2.5}, {"sampler": "heun"}, {"normalize": "yes"}):
        with pytest.raises(ValueError):
            ens.despeckle(_frames(1), **kw)


def test_tiling_has_no_seams():
    ens = tiny_ensemble(seed=3)
    h, w = 150, 170
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = (0.5 + 0.3 * np.sin(xx / 40.0) * np.cos(yy / 50.0)).astype(np.float32)
    whole = ens.despeckle(smooth, steps=1).mean
    ens.untiled_max_pixels, ens.tile, ens.overlap = 64 * 64, 64, 24
    assert len(ens._tiles(h, w)) > 4
    tiled = ens.despeckle(smooth, steps=1).mean
    diff = np.abs(tiled - whole)
    assert float(diff.max()) < 0.02 and float(diff.mean()) < 0.002
    # no step at tile borders: the tiled image is as smooth across them as the untiled one
    jump_t = np.abs(np.diff(tiled, axis=1)).max()
    jump_w = np.abs(np.diff(whole, axis=1)).max()
    assert jump_t < jump_w + 0.01


def test_normalisation_is_identity_in_domain_and_corrects_grain_and_contrast():
    x = _frames(4, 96, 96)
    ref = measure_reference(x)
    plan = fit(x[0], ref)
    assert plan.identity
    import cv2
    big = np.clip(cv2.resize(x[1], (192, 192), interpolation=cv2.INTER_CUBIC), 0, 1)
    g0, g1 = grain_size(x[1]), grain_size(big)
    assert g1[0] > 1.5 * g0[0] and g1[1] > 1.5 * g0[1]
    plan = fit(big, ref)
    assert 75 <= plan.work_shape[0] <= 125 and 75 <= plan.work_shape[1] <= 125
    back = plan.inverse(plan.forward(big))
    assert back.shape == big.shape
    flat = np.clip(0.5 + 0.5 * (x[2] - 0.5), 0, 1)  # half the dynamic-range contrast
    plan = fit(flat, ref)
    assert 1.6 < plan.scale <= 2.0
    np.testing.assert_allclose(plan.inverse(plan.forward(flat)), flat, atol=1e-5)
    ens = tiny_ensemble()
    ens.reference, ens.normalize = ref, "auto"
    res = ens.despeckle(big[None])
    assert res.mean.shape == (1, 192, 192)


def test_bench_quick_prints_every_row(capsys):
    from usclean_gui.cli import main

    assert main(["bench", "--quick", "--sizes", "48x64", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for row in ("ensemble (4 members, mean+std)", "one member", "x BM3D", "BM3D (sigma 0.1)", "stages (",
                "network:", "GFLOP/s", "peak memory", "torch fp32", "per frame of demo_clip.dcm"):
        assert row in out, row
    assert "48x64" in out
    # the CLI's per-frame path on the demo clip, stage by stage: every stage measured, the total their sum
    line = out.split("per frame of demo_clip.dcm")[1].splitlines()[1]
    stages = dict((name, float(ms)) for name, ms in re.findall(r"(\w+) ([0-9.]+) ms", line))
    assert list(stages) == ["decode", "marks", "fill", "despeckle", "composite", "write"]
    assert all(v >= 0 for v in stages.values()) and stages["despeckle"] == max(stages.values()) > 0
    total = float(re.search(r"total ([0-9.]+) ms", out).group(1))
    assert total == pytest.approx(sum(stages.values()), abs=0.4)  # each printed to 0.1 ms


def test_bench_refuses_a_bad_clip_before_the_long_run(tmp_path, capsys):
    from usclean_gui.cli import main

    bad = tmp_path / "notes.dcm"
    bad.write_text("not an image")
    assert main(["bench", "--quick", "--clip", str(bad)]) == 2
    err = capsys.readouterr()
    assert "notes.dcm" in err.err and "not a DICOM file" in err.err and "BM3D" not in err.out


def test_stage_breakdown_splits_one_call_into_measured_parts():
    """The per-frame stages add up to the call and none is negative; the frame's fit is timed apart (a
    cached fit once made the remainder negative)."""
    from engine.bench import stage_breakdown
    from engine.normalize import measure_reference

    ens = tiny_ensemble()
    big = np.clip(np.random.default_rng(3).gamma(1.0, 0.25, (96, 160)), 0, 1).astype(np.float32)
    ens.reference, ens.normalize = measure_reference(big[None, :48, :48]), "auto"
    st = stage_breakdown(ens, big, repeat=2)
    assert st["fit"] > 0 and st["network"] > 0 and st["rest"] >= 0
    assert st["network"] + st["rest"] == pytest.approx(st["total"])
    assert not ens._fits  # the bench leaves no fit behind


def test_bad_device_is_a_clear_value_error():
    from engine import load_ensemble

    net = tiny_ensemble(seed=0, members=1).net
    with pytest.raises(ValueError, match="unknown --device"):
        Ensemble(net, schedule=make_schedule(), device="tpu")
    with pytest.raises(ValueError, match="unknown --device"):
        load_ensemble("multiprobe", device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            Ensemble(net, schedule=make_schedule(), device="cuda")


def test_preview_runs_the_preview_network_with_the_ensembles_settings():
    x = _frames()
    plain = tiny_ensemble(seed=0, members=3)
    np.testing.assert_array_equal(plain.despeckle(x, members="preview", seed=2).mean,
                                  plain.despeckle(x, members=1, seed=2).mean)  # no preview: the first member
    ens = tiny_ensemble(seed=0, members=3, preview=True)
    assert ens.has_preview and not plain.has_preview
    prev = ens.despeckle(x, members="preview", seed=2)
    solo = Ensemble(ens.preview_network, mode="irsde", schedule=ens.schedule, default_steps=1, normalize="off")
    np.testing.assert_allclose(prev.mean, solo.despeckle(x, seed=2).mean, atol=1e-6)
    assert np.abs(prev.mean - ens.despeckle(x, members=1, seed=2).mean).mean() > 1e-3
    for bad in ("fast", True, 0, 4):
        with pytest.raises(ValueError, match="members must be"):
            ens.despeckle(x, members=bad)
    with pytest.raises(ValueError, match="one member"):
        Ensemble(ens.network, mode="irsde", schedule=ens.schedule, preview=ens.network)
