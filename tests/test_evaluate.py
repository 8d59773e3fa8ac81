"""`usclean evaluate --quick` end to end on a tiny real ensemble and small synthetic test sets,
with two of its rows recomputed directly, plus the evaluation's helper statistics."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from engine import classical, evaluate, metrics
from engine.testing import tiny_ensemble

PROBES = ("L11-5v", "C5-2v")
SIZE = 32


def _synthetic_set(kind: str, probe: str, n: int = 2) -> dict:
    """Log-compressed Rayleigh speckle over a smooth echo map with a hypoechoic disc (image 0 only)."""
    seed = (0 if kind == "fast" else 100) + PROBES.index(probe) * 10
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    out: dict[str, list] = {k: [] for k in ("bmode", "clean", "mask", "lesion_mask", "background_mask")}
    for i in range(n):
        clean = 0.6 + 0.15 * np.sin(xx / 5.0 + i) * np.cos(yy / 7.0)
        disc = (yy - 16) ** 2 + (xx - 14 - i) ** 2 < 6 ** 2
        lesion = disc if i == 0 else np.zeros_like(disc)
        clean = np.where(lesion, 0.35, clean)
        ring = ((yy - 16) ** 2 + (xx - 14 - i) ** 2 > 8 ** 2) & ((yy - 16) ** 2 + (xx - 14 - i) ** 2 < 12 ** 2)
        env = classical.display_to_envelope(clean) * rng.rayleigh(1.0 / np.sqrt(2), clean.shape)
        mask = np.ones_like(disc) if probe == "L11-5v" else (np.abs(xx - 16) <= yy * 0.6 + 2)
        bmode = classical.envelope_to_display(env) * mask
        out["bmode"].append(bmode.astype(np.float32))
        out["clean"].append((clean * mask).astype(np.float32))
        out["mask"].append(mask)
        out["lesion_mask"].append(lesion)
        out["background_mask"].append(ring if i == 0 else np.zeros_like(ring))
    d = {k: np.stack(v) for k, v in out.items()}
    d["dynamic_range_db"] = np.full(n, 50.0)
    if kind == "full":  # the speckle-free B-mode: the echogenicity less the log-Rayleigh bias
        d["bmode_target"] = np.clip(d["clean"] - 2.51 / 50, 0, 1) * d["mask"]
    return d


def _foreign_folder(root: Path, probe: str = "L11-5v", n: int = 2) -> Path:
    """A small foreign-set folder in the committed format (9 speckle draws of a smooth map per image)."""
    import json

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    (root / probe).mkdir(parents=True)
    for i in range(n):
        clean = 0.55 + 0.2 * np.sin(xx / 6.0 + i)
        draws = [classical.envelope_to_display(classical.display_to_envelope(clean) *
                                               rng.rayleigh(1 / np.sqrt(2), clean.shape)) for _ in range(9)]
        np.savez(root / probe / ("%03d.npz" % i), draws=np.round(np.stack(draws) * 255).astype(np.uint8),
                 echo_db=((clean - 1) * 50).astype(np.float16), mask=np.ones((SIZE, SIZE), bool),
                 lesion_mask=np.zeros((SIZE, SIZE), bool), background_mask=np.zeros((SIZE, SIZE), bool),
                 spacing_mm=np.array([0.1, 0.1]), dynamic_range_db=np.float64(50.0),
                 acquisition=np.str_(json.dumps({"probe": probe})))
    return root


def _val_pairs(probe: str, n: int) -> list[tuple]:
    d = _synthetic_set("fast", probe, n=max(n, 1))
    return [(d["bmode"][i], d["clean"][i], d["mask"][i], 50.0) for i in range(n)]


MODEL_SEEDS = {"multiprobe": 0, "l11-5v": 1, "baseline": 2}


def _models(name: str):
    if name not in MODEL_SEEDS:
        raise FileNotFoundError("no shipped model called %r in this test" % name)
    return tiny_ensemble(seed=MODEL_SEEDS[name])


def _config() -> evaluate.EvalConfig:
    cfg = evaluate.EvalConfig.quick_config()
    cfg.probes = PROBES
    cfg.nfe_grid = (1, 2)
    cfg.ref_steps = 10
    return cfg


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``usclean evaluate --quick`` through the CLI, with the tiny models, synthetic test sets and
    synthetic validation pairs in place of the shipped ones."""
    import torch

    import simulator.datasets
    from usclean_gui import cli

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("eval") / "docs" / "RESULTS.md"
    captured: dict = {}
    real_run = evaluate.run_evaluation

    def run_and_capture(*args, **kw):
        captured["results"] = real_run(*args, **kw)
        return captured["results"]

    from engine.generalization import RealClip, run_generalization
    from usclean_gui.commands import evaluate as evaluate_cmd

    foreign = _foreign_folder(tmp_path_factory.mktemp("foreign"))
    clip = RealClip("speckle", _synthetic_set("fast", "L11-5v")["bmode"], np.ones((SIZE, SIZE), bool),
                    {"target": [10, 10, 18, 20], "background": [20, 0, 30, 10]})

    def generalization(quick, fig_dir, report_dir):
        assert quick
        return lambda models: run_generalization(models, ["L11-5v"], [clip], root=foreign, fig_dir=fig_dir,
                                                 fig_link=lambda p: str(Path(p).relative_to(report_dir)))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluate_cmd, "_generalization", generalization)
        mp.setattr(evaluate, "default_model_loader", _models)
        mp.setattr(evaluate, "default_val_pairs", _val_pairs)
        mp.setattr(simulator.datasets, "load_test_set", lambda kind, probe: _synthetic_set(kind, probe))
        mp.setattr(evaluate, "run_evaluation", run_and_capture)
        # a learned baseline the catalog names but no folder holds
        mp.setitem(evaluate.LEARNED_BASELINES, "dncnn", "DnCNN-style residual net")
        assert cli.main(["evaluate", "--quick", "-o", str(out), "--probes", *PROBES]) == 0
    return captured["results"], out


def test_quick_report_and_figures_are_written(quick_run):
    res, out = quick_run
    text = out.read_text()
    assert "# USClean evaluation results" in text and "Run time:" in text and "usclean evaluate --quick" in text
    assert "model dncnn" in text  # the missing learned baseline is reported, not a crash
    assert set(res["sets"]) == {"L11-5v fast", "C5-2v fast", "L11-5v full", "C5-2v full"}
    for key in ("examples", "steps", "reliability", "domain_fast", "domain_full"):
        png = Path(res["figures"][key])
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "](figures/%s)" % png.name in text
    for name in classical.FILTERS:
        assert "grid search for %s" % name in text
    assert "| em |" in text and "Pearson r (std, \\|err\\|)" in text
    assert res["runtime_s"] > 0


def test_speckle_free_target_and_generalization_sections(quick_run):
    res, out = quick_run
    text = out.read_text()
    rows = res["sets"]["L11-5v full"]["bmode_rows"]
    d = _synthetic_set("full", "L11-5v")
    assert rows["input"]["psnr"] == pytest.approx(np.mean([metrics.psnr(d["bmode"][i], d["bmode_target"][i],
                                                                        d["mask"][i]) for i in range(2)]), abs=1e-9)
    assert "BM3D (sigma tuned on this target)" in rows and "bmode_rows" not in res["sets"]["L11-5v fast"]
    assert "## 1b. Quality against the speckle-free B-mode" in text
    g = res["generalization"]
    entry = g["foreign"]["sets"]["L11-5v"]
    assert entry["n_images"] == 2 and set(entry["rows"]) >= {"input", "BM3D (tuned on this set)", "multiprobe"}
    assert "## Generalization: foreign full-physics sets" in text and "## Real clips" in text
    assert ("speckle" in g["clips"]["clips"]
            and abs(g["clips"]["clips"]["speckle"]["rows"]["input"]["tissue_shift"]) < 1e-9)
    assert "](figures/real_speckle.png)" in text and Path(out.parent / "figures" / "real_speckle.png").is_file()


def test_input_and_median_rows_match_direct_recomputation(quick_run):
    res, out = quick_run
    d = _synthetic_set("full", "C5-2v")
    rows = res["sets"]["C5-2v full"]["rows"]
    ps = [metrics.psnr(d["bmode"][i], d["clean"][i], mask=d["mask"][i]) for i in range(2)]
    assert rows["input"]["psnr"] == pytest.approx(np.mean(ps), abs=1e-9)
    params = res["tuning"]["median"]["params"]
    med = [classical.FILTERS["median"](d["bmode"][i], **params) for i in range(2)]
    ss = [metrics.ssim(med[i], d["clean"][i], mask=d["mask"][i]) for i in range(2)]
    g = metrics.gcnr(med[0][d["lesion_mask"][0] & d["mask"][0]], med[0][d["background_mask"][0] & d["mask"][0]])
    # image 1 has no lesion: CNR/gCNR average over image 0 only
    assert rows["median"]["ssim"] == pytest.approx(np.mean(ss), abs=1e-9)
    assert rows["median"]["gcnr"] == pytest.approx(g, abs=1e-9)
    assert rows["median"]["n_lesion"] == 1
    assert "%.4f" % rows["median"]["ssim"] in out.read_text()


def test_irsde_row_matches_a_direct_model_call(quick_run):
    res, _ = quick_run
    d = _synthetic_set("fast", "L11-5v")
    mean = tiny_ensemble(seed=MODEL_SEEDS["multiprobe"]).despeckle(d["bmode"], seed=0).mean
    row = res["sets"]["L11-5v fast"]["rows"]["multiprobe"]
    assert row["psnr"] == pytest.approx(np.mean([metrics.psnr(mean[i], d["clean"][i]) for i in range(2)]), abs=1e-6)
    assert row["cnr"] == pytest.approx(metrics.cnr(mean[0][d["lesion_mask"][0]], mean[0][d["background_mask"][0]]),
                                       abs=1e-6)


def test_sections_are_filled(quick_run):
    res, _ = quick_run
    u = res["uncertainty"]
    assert u["sets"] == ["L11-5v full", "C5-2v full"] and u["n_images"] == 4
    assert -1 <= u["pixel"]["pearson_std"] <= 1 and 0 <= u["top10_overlap"] <= 1
    assert [r["members"] for r in u["members"]] == [1, 2]
    assert isinstance(u["one_member_samples"], dict)
    st = res["steps"]
    assert set(st["curves"]) == {"posterior", "ddim"} and sorted(st["curves"]["ddim"]) == [1, 5, 100]
    assert set(res["refs"]) == {"L11-5v full"}
    assert set(res["refs"]["L11-5v full"]["rows"]) == {"default", "posterior 100", "em 100"}
    # the 100-step posterior reference is the steps curve's 100-NFE point (same images, same seed)
    assert res["refs"]["L11-5v full"]["rows"]["posterior 100"]["psnr"] == st["curves"]["posterior"][100]["psnr"]
    ds = res["domain_shift"]
    assert ds["best_classical"] in classical.FILTERS
    assert ds["table"]["fast"]["l11-5v"]["L11-5v"]["drop_psnr"] == 0.0
    cmp = res["sets"]["L11-5v fast"]["irsde_vs_best_other"]
    assert set(cmp) == {"l11-5v", "multiprobe"} and cmp["multiprobe"]["rival"] in list(classical.FILTERS) + ["baseline"]


def test_missing_test_set_is_reported(tmp_path):
    def loader(kind, probe):
        if kind == "full":
            raise FileNotFoundError("no full test set for %s" % probe)
        return _synthetic_set(kind, probe)

    cfg = _config()
    cfg.probes = ("L11-5v",)
    cfg.filters = ("median", "lee")
    cfg.nfe_grid = (1,)
    cfg.workers = 2  # the process-pool path gives the same numbers as in-process filtering
    cfg.ref_sets = (("fast", "L11-5v"),)
    cfg.ref_images = 2
    cfg.budget_min = 1e-3  # nothing fits: the subsets shrink to one image and the report says so
    res = evaluate.run_evaluation(tmp_path / "R.md", config=cfg, model_loader=_models, testset_loader=loader,
                                  val_loader=_val_pairs, log=lambda s: None)
    text = (tmp_path / "R.md").read_text()
    assert any("L11-5v full" in m for m in res["missing"]) and "no full test set for L11-5v" in text
    assert set(res["sets"]) == {"L11-5v fast"}
    assert res["refs"]["L11-5v fast"]["indices"] == [0] and "budget" in text and "first 1 (not 2)" in text
    d = _synthetic_set("fast", "L11-5v")
    lee = [classical.FILTERS["lee"](d["bmode"][i], **res["tuning"]["lee"]["params"]) for i in range(2)]
    assert res["sets"]["L11-5v fast"]["rows"]["lee"]["psnr"] == pytest.approx(
        np.mean([metrics.psnr(lee[i], d["clean"][i]) for i in range(2)]), abs=1e-9)


def test_cli_rejects_bad_arguments(capsys):
    from usclean_gui import cli

    assert cli.main(["evaluate", "--max-images", "0"]) == 2
    assert "--max-images must be at least 1" in capsys.readouterr().err
    assert cli.main(["evaluate", "--probes", "X9-1"]) == 2
    assert "unknown probe" in capsys.readouterr().err


def test_statistics_helpers():
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert evaluate.top_fraction_overlap(s, s, 0.2) == 1.0
    assert evaluate.top_fraction_overlap(s, -s, 0.2) == 0.0
    rel = evaluate.reliability(s, 2 * s, bins=5)
    assert (rel["count"] == [2] * 5 and rel["std_mean"][0] == pytest.approx(0.15)
            and rel["err_mean"][-1] == pytest.approx(1.9))
    pd = evaluate.paired_diff([3.0, 4.0, 5.0], [1.0, 1.0, 1.0])
    half = 2.0 * 4.302652729911275 / math.sqrt(3) * 0.5  # t(0.975, 2) * sd (=1) / sqrt(3)
    assert pd["diff"] == pytest.approx(3.0) and pd["hi"] - pd["diff"] == pytest.approx(half)
    c = evaluate.correlations(s, s ** 2)
    assert c["spearman_std"] == pytest.approx(1.0) and c["pearson_var"] == pytest.approx(1.0)
    assert math.isnan(evaluate.correlations(np.zeros(10), s)["pearson_std"])


def test_foreign_images_are_despeckled_each_on_its_own(tmp_path):
    """The images of a foreign set are unrelated acquisitions: a method sees one image per call (a model fits
    its normalisation on that image alone), and the rows score what it returned for each."""
    from engine.generalization import evaluate_foreign

    calls = []

    def spy(frames):
        calls.append(frames.shape)
        return frames[:, ::-1] * 0.5, np.full(frames.shape, 0.1, np.float32)

    root = _foreign_folder(tmp_path, n=3)
    res = evaluate_foreign({"spy": spy}, ["L11-5v"], inputs=2, root=root, log=lambda s: None, bm3d_grid=(0.3,))
    assert calls == [(1, SIZE, SIZE)] * 6
    entry = res["sets"]["L11-5v"]
    assert entry["n_inputs"] == 6 and len(entry["rows"]["spy"]["psnr"]) == 6
    assert "spy" in entry["uncertainty"]
    # two draws per image: the structure the spy removes (it flips the image) is measured, per image
    from engine.generalization import render_markdown

    st = entry["structure"]
    assert len(st["spy"]["structure"]) == 3 and min(st["spy"]["structure"]) > 2 * max(
        st["BM3D (tuned on this set)"]["structure"])
    assert "Structure removed / speckle left" in render_markdown(res)
    one = evaluate_foreign({"spy": spy}, ["L11-5v"], inputs=1, root=root, log=lambda s: None, bm3d_grid=(0.3,))
    assert "structure" not in one["sets"]["L11-5v"] and "Structure removed" not in render_markdown(one)


def test_clip_measures_read_the_method_output_in_every_roi():
    """The gCNR pair of a real clip may lie outside its tissue boxes (the demo clip's cyst does): the
    measure must read what the method returned there, not the input."""
    from engine.generalization import RealClip, evaluate_clips

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:48, :48]
    level = np.where(xx < 24, 0.35, 0.6)
    frames = np.stack([classical.envelope_to_display(classical.display_to_envelope(level) *
                                                     rng.rayleigh(1 / np.sqrt(2), level.shape))
                       for _ in range(2)]).astype(np.float32)
    tissue = np.zeros((48, 48), bool)
    tissue[30:46, 2:46] = True  # the ROIs below lie above this box
    clip = RealClip(name="two-level", frames=frames, tissue=tissue,
                    rois={"target": [2, 2, 20, 20], "background": [28, 2, 46, 20]})

    def oracle(f):
        return np.broadcast_to(level, f.shape).astype(np.float32), None

    res = evaluate_clips({"oracle": oracle}, [clip], bm3d_sigma=0.4, log=lambda s: None)
    rows = res["clips"]["two-level"]["rows"]
    assert rows["input"]["gcnr"] < 0.9
    assert rows["oracle"]["gcnr"] == pytest.approx(1.0)
    assert rows["BM3D"]["gcnr"] > rows["input"]["gcnr"]
    want = np.mean([(level[tissue] - f[tissue]).mean() for f in frames]) * 255
    assert rows["oracle"]["tissue_shift"] == pytest.approx(want, abs=1e-3)
