"""Judging models off their training pipeline: the foreign full-physics sets and real clips.

:func:`evaluate_foreign` scores every method on every foreign set (:mod:`simulator.foreign`: anatomy,
acquisition, beamforming and resampling the training data never see) against the speckle-free B-mode
(the mean of the other draws) and against the echogenicity; BM3D gets its sigma tuned **on that set
itself** (an oracle a real user does not have).  Inputs are the first ``inputs`` draws of every image,
each against the mean of all the other draws (leave-one-out), so every image counts ``inputs`` times with
independent speckle.  Every input is despeckled **on its own** (a call of its own: a model measures the
image's grain and brightness window on that image alone), as a user opening one image would: the images
of a set come from different acquisitions, so a fit shared across them would be knowledge no single image
carries.

:func:`evaluate_clips` runs the methods on real clips without ground truth and reports, per clip and
method: the mean tissue grey level minus the input's (grey levels of 255), the ENL of the output in the
input's most homogeneous windows, gCNR between ROIs declared in ``resources/realclips/rois.json`` before
any model was run on them, and the M index of the ratio image (:mod:`engine.scoring`).

``render_markdown`` turns both into the report section.  Methods are callables ``f(frames) ->
(mean, std or None)`` so the runner holds no model code of its own.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import classical, metrics, scoring

BM3D_GRID = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)
Method = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


@dataclass
class ForeignSet:
    """Inputs (draws), truths (mean of the other draws), floors and masks of one probe's foreign set."""

    probe: str
    bmode: np.ndarray      # (N, H, W): N = images x inputs
    clean: np.ndarray
    echo: np.ndarray
    mask: np.ndarray
    floor_mse: np.ndarray  # (N,)
    floor_var: np.ndarray  # (N, H, W): per-pixel variance of the truth (var across draws / their number)
    image: np.ndarray      # (N,) image index


def load_foreign(probe: str, inputs: int = 1, root=None) -> ForeignSet:
    """One probe's foreign set with ``inputs`` leave-one-out inputs per image."""
    from pathlib import Path

    from simulator.foreign import FOREIGN_DIR

    base = Path(root) if root is not None else FOREIGN_DIR
    files = sorted((base / probe).glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"no foreign set for {probe} in {base}")
    cols: dict[str, list] = {k: [] for k in ("bmode", "clean", "echo", "mask", "floor_mse", "floor_var", "image")}
    for i, f in enumerate(files):
        with np.load(f) as z:
            d = z["draws"].astype(np.float32) / np.float32(255.0)
            mask = z["mask"]
            dr = float(z["dynamic_range_db"])
            echo = np.where(mask, np.clip((z["echo_db"].astype(np.float32) + dr) / dr, 0, 1), 0).astype(np.float32)
        for k in range(min(inputs, len(d))):
            rest = np.delete(d, k, axis=0)
            var = rest.var(axis=0, ddof=1) / len(rest)
            cols["bmode"].append(d[k])
            cols["clean"].append(rest.mean(axis=0))
            cols["echo"].append(echo)
            cols["mask"].append(mask)
            cols["floor_mse"].append(float(var[mask].mean()))
            cols["floor_var"].append(var.astype(np.float32))
            cols["image"].append(i)
    return ForeignSet(probe, *(np.stack(cols[k]) for k in ("bmode", "clean", "echo", "mask", "floor_mse",
                                                              "floor_var", "image")))


def tune_bm3d(fs: ForeignSet, grid: Sequence[float] = BM3D_GRID, map_fn=map) -> tuple[float, list[dict]]:
    """BM3D's sigma maximising the mean affine-fitted PSNR on this very set (oracle tuning)."""
    table: list[dict[str, Any]] = []
    for sig in grid:
        outs = list(map_fn(classical.apply_job, [("bm3d", b, {"sigma": sig}) for b in fs.bmode]))
        table.append({"sigma": sig, "psnr": float(np.mean([scoring.psnr_affine(o, c, m) for o, c, m in
                                                          zip(outs, fs.clean, fs.mask)])), "outputs": outs})
    best = max(table, key=lambda r: r["psnr"])
    return float(best["sigma"]), table


def _rows(out: np.ndarray, fs: ForeignSet) -> dict:
    """Per-image metrics of outputs on a foreign set."""
    per = {
        "psnr": [metrics.psnr(o, c, m) for o, c, m in zip(out, fs.clean, fs.mask)],
        "psnr_affine": [scoring.psnr_affine(o, c, m) for o, c, m in zip(out, fs.clean, fs.mask)],
        "ssim": [metrics.ssim(o, c, m) for o, c, m in zip(out, fs.clean, fs.mask)],
        "psnr_echo": [scoring.psnr_affine(o, e, m) for o, e, m in zip(out, fs.echo, fs.mask)],
    }
    return {k: np.asarray(v, float) for k, v in per.items()}


def image_structure(out: np.ndarray, fs: ForeignSet) -> dict[str, list[float]] | None:
    """Per image, the structure a method removed and the speckle it left (:func:`scoring.ratio_structure`,
    grey levels of 255) from its outputs of the image's input draws, and ``structure_sq``, the unbiased
    square that :func:`pooled_structure` averages; None with one input per image."""
    images = np.unique(fs.image)
    if np.sum(fs.image == images[0]) < 2:
        return None
    per = [scoring.ratio_structure(fs.bmode[fs.image == i], out[fs.image == i], fs.mask[fs.image == i][0])
           for i in images]
    return {"structure": [255 * v["structure"] for v in per],
            "structure_sq": [255 ** 2 * v["structure_sq"] for v in per],
            "speckle_left": [255 * v["speckle_left"] for v in per]}


def pooled_structure(per_image: Sequence[dict]) -> tuple[float, float]:
    """(structure removed, speckle left) over several images' :func:`image_structure` results, each the RMS
    over all their pixels: the square root of the mean of the unbiased squares, so that the two squares add
    up to the set's mean squared error against the speckle-free image (less each image's uniform part), as they
    do for one image; a mean of per-image RMS values does not."""
    sq = np.concatenate([np.asarray(p["structure_sq"], float) for p in per_image])
    sp = np.concatenate([np.asarray(p["speckle_left"], float) for p in per_image])
    return float(np.sqrt(max(float(sq.mean()), 0.0))), float(np.sqrt(np.mean(sp ** 2)))


def each_image(fn: Method, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``fn`` on every image by itself (unrelated images: nothing is shared between them)."""
    outs = [fn(img[None]) for img in images]
    mean = np.concatenate([m for m, _ in outs])
    stds = [s for _, s in outs if s is not None]
    return mean, (np.concatenate(stds) if len(stds) == len(outs) else None)


def evaluate_foreign(methods: dict[str, Method], probes: Sequence[str], inputs: int = 1, root=None,
                     map_fn=map, log=print, bm3d_grid: Sequence[float] = BM3D_GRID) -> dict:
    """Score ``methods`` (plus the input and set-tuned BM3D) on each probe's foreign set."""
    res: dict = {"inputs_per_image": inputs, "sets": {}}
    for probe in probes:
        try:
            fs = load_foreign(probe, inputs, root)
        except FileNotFoundError as exc:
            res.setdefault("missing", []).append(str(exc))
            continue
        t = time.time()
        sig, table = tune_bm3d(fs, bm3d_grid, map_fn)
        entry: dict[str, Any] = {"n_images": int(len(np.unique(fs.image))), "n_inputs": int(len(fs.bmode)),
                                 "floor_psnr": float(np.mean([scoring.psnr_floor(f) for f in fs.floor_mse])),
                                 "bm3d_sigma": sig,
                                 "bm3d_grid": [{"sigma": r["sigma"], "psnr": r["psnr"]} for r in table],
                                 "rows": {}, "uncertainty": {}}
        entry["rows"]["input"] = _rows(fs.bmode, fs)
        bm3d = np.stack(next(r for r in table if r["sigma"] == sig)["outputs"])
        entry["rows"]["BM3D (tuned on this set)"] = _rows(bm3d, fs)
        structure = {"BM3D (tuned on this set)": image_structure(bm3d, fs)}
        log(f"[foreign] {probe}: BM3D sigma {sig} ({time.time() - t:.0f} s)")
        for name, fn in methods.items():
            t = time.time()
            mean, std = each_image(fn, fs.bmode)
            entry["rows"][name] = _rows(mean, fs)
            structure[name] = image_structure(mean, fs)
            if std is not None and float(np.max(std)) > 0:
                err = mean - fs.clean
                entry["uncertainty"][name] = {
                    "agreement": scoring.uncertainty_agreement(std, err, fs.mask),
                    "calibration": scoring.calibration(std, err, fs.mask, fs.floor_var),
                    "calibration_raw": scoring.calibration(std, err, fs.mask)}
            log(f"[foreign] {probe}: {name} {np.mean(entry['rows'][name]['psnr_affine']):.2f} dB "
                f"({time.time() - t:.0f} s)")
        if all(v is not None for v in structure.values()):
            entry["structure"] = structure
        entry["below_input"] = {m: int(np.sum(r["psnr_affine"] < entry["rows"]["input"]["psnr_affine"]))
                                for m, r in entry["rows"].items() if m != "input"}
        res["sets"][probe] = entry
    return res


# --------------------------------------------------------------------------- real clips
@dataclass
class RealClip:
    """Frames of a real clip (display values in [0, 1]) with the region analysed and the declared ROIs."""

    name: str
    frames: np.ndarray           # (F, H, W)
    tissue: np.ndarray           # (H, W) bool: B-mode tissue pixels (marks and background excluded)
    rois: dict = field(default_factory=dict)  # {"target": [x0, y0, x1, y1], "background": [...]}
    dr_db: float = 50.0


def _box(b):
    x0, y0, x1, y1 = (int(v) for v in b)
    return slice(y0, y1), slice(x0, x1)


def clip_measures(clip: RealClip, out: np.ndarray) -> dict:
    """The no-reference measures of outputs (F, H, W) on one clip (averaged over frames): the tissue shift,
    ENL and M index inside the tissue boxes, gCNR between the declared ROIs wherever they lie in the crop
    (all of them read the method's own output)."""
    inp = clip.frames
    tissue = clip.tissue
    shift = float(np.mean([(o[tissue] - i[tissue]).mean() for o, i in zip(out, inp)]) * 255)
    rows = {"tissue_shift": shift}
    wins = scoring.homogeneous_windows(inp[0], tissue, clip.dr_db, size=11, n=8)
    rows["enl"] = float(np.median([scoring.enl(scoring.to_intensity(o[y:y + 11, x:x + 11], clip.dr_db))
                                   for o in out for y, x in wins])) if wins else float("nan")
    if "target" in clip.rois and "background" in clip.rois:
        t, b = _box(clip.rois["target"]), _box(clip.rois["background"])
        rows["gcnr"] = float(np.mean([metrics.gcnr(o[t].ravel(), o[b].ravel()) for o in out]))
    if out is not inp:  # the M index of the input itself (no filtering) is meaningless
        m = [scoring.m_index(i, o, tissue, clip.dr_db, size=9) for i, o in zip(inp[:3], out[:3])]
        rows["m_index"] = float(np.mean([v["M"] for v in m]))
        rows["m_first_order"] = float(np.mean([v["r1"] for v in m]))
        rows["m_glcm"] = float(np.mean([v["delta_h"] for v in m]))
    return rows


def evaluate_clips(methods: dict[str, Method], clips: Sequence[RealClip], bm3d_sigma: float, map_fn=map,
                   log=print) -> dict:
    """Every method (plus the input and BM3D at ``bm3d_sigma``) on every real clip."""
    res: dict = {"bm3d_sigma": bm3d_sigma, "clips": {}}
    for clip in clips:
        entry: dict[str, Any] = {"frames": int(len(clip.frames)), "shape": list(clip.frames.shape[1:]),
                                 "rois": clip.rois, "dr_db": clip.dr_db, "rows": {}}
        entry["rows"]["input"] = clip_measures(clip, clip.frames)
        bm = np.stack(list(map_fn(classical.apply_job, [("bm3d", f, {"sigma": bm3d_sigma}) for f in clip.frames])))
        entry["rows"]["BM3D"] = clip_measures(clip, bm)
        for name, fn in methods.items():
            mean, _ = fn(clip.frames)
            entry["rows"][name] = clip_measures(clip, np.asarray(mean, np.float32))
            log(f"[clips] {clip.name}: {name} shift {entry['rows'][name]['tissue_shift']:+.1f}")
        res["clips"][clip.name] = entry
    return res


# --------------------------------------------------------------------------- report
def _f(v, fmt="%.2f"):
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt % v


def render_markdown(foreign: dict, clips: dict | None = None) -> str:
    lines = ["## Generalization: foreign full-physics sets", "",
             "Full MUST physics made outside the training pipeline (`simulator.foreign`: procedural anatomy and "
             "held-out natural images, Poisson scatterers of random density, other transmit frequency, pulse, "
             "attenuation and TGC, 1–3 compounding angles, fixed-f-number DAS on a finer or polar grid, area "
             "resampling to an anisotropic output pitch).  Truth: the speckle-free B-mode, the mean of the "
             "displayed images of the other draws (leave-one-out, %d input draw(s) per image).  PSNR in dB after a "
             "per-image affine fit (raw PSNR in brackets); *floor*: what a perfect despeckler would score against "
             "that truth (its residual speckle).  BM3D's sigma is tuned on each set itself." %
             foreign.get("inputs_per_image", 1), ""]
    sets = foreign.get("sets", {})
    if not sets:
        return "\n".join(lines + ["(no foreign set found)", ""])
    methods = list(next(iter(sets.values()))["rows"])
    head = ["method"] + [f"{p} ({e['n_images']} img, floor {e['floor_psnr']:.1f})" for p, e in sets.items()]
    lines += ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for m in methods:
        cells = [m]
        for e in sets.values():
            r = e["rows"].get(m)
            if r is None:
                cells.append("–")
                continue
            extra = "" if m == "input" else f", {e['below_input'].get(m, 0)} below input"
            cells.append(f"{np.mean(r['psnr_affine']):.2f} ({np.mean(r['psnr']):.2f}){extra}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "BM3D sigma tuned per set: " + ", ".join(f"{p} {e['bm3d_sigma']}" for p, e in sets.items()) + ".", ""]
    lines += ["SSIM against the speckle-free B-mode / PSNR against the echogenicity (affine-fitted):", "",
              "| method | " + " | ".join(sets) + " |", "| --- | " + " | ".join("---" for _ in sets) + " |"]
    for m in methods:
        cells = [m] + [(f"{np.mean(e['rows'][m]['ssim']):.3f} / {np.mean(e['rows'][m]['psnr_echo']):.2f}"
                        if m in e["rows"] else "–") for e in sets.values()]
        lines.append("| " + " | ".join(cells) + " |")
    if all("structure" in e for e in sets.values()):
        lines += ["", "Structure removed / speckle left, in grey levels of 255 (`engine.scoring.ratio_structure`: the "
                  "RMS of the ratio image's mean over an image's %d input draws, a uniform grey shift taken off, and "
                  "the RMS spread of the outputs across those draws; both pooled over the set's pixels, as RMS):"
                  % foreign["inputs_per_image"], "",
                  "| method | " + " | ".join(sets) + " |", "| --- | " + " | ".join("---" for _ in sets) + " |"]
        for m in next(iter(sets.values()))["structure"]:
            cells = [m] + [("%.2f / %.2f" % pooled_structure([e["structure"][m]]) if m in e["structure"] else "–")
                           for e in sets.values()]
            lines.append("| " + " | ".join(cells) + " |")
    unc = [(p, m, u) for p, e in sets.items() for m, u in e["uncertainty"].items()]
    if unc:
        lines += ["", "Uncertainty against the error (Pearson r per pixel / 8×8 patch / image) and calibration "
                  "(largest deviation of the RMS error from the predicted std over the ten deciles of the prediction, "
                  "the truth's residual speckle subtracted; raw in brackets):", "",
                  "| set | model | r pixel | r patch | r image | calibration |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for p, m, u in unc:
            a = u["agreement"]
            lines.append(f"| {p} | {m} | {_f(a['pixel'])} | {_f(a['patch'])} | {_f(a['image'])} | "
                         f"{_f(100 * u['calibration']['max_rel_dev'], '%.0f')} % "
                         f"({_f(100 * u['calibration_raw']['max_rel_dev'], '%.0f')} %) |")
    if clips and clips.get("clips"):
        lines += ["", "## Real clips (no ground truth)", "",
                  "Per clip and method: tissue mean grey level minus the input's (grey levels of 255), ENL in the "
                  "input's most homogeneous 11×11 windows, gCNR between the ROIs declared in "
                  "`resources/realclips/rois.json`, "
                  "and the M index of the ratio image (0 = ideal; first-order part and GLCM part in brackets).  On "
                  "ultrasound's correlated speckle M mostly reads how much of the coarse speckle a method removed, "
                  "not structure: the speckle-free image scores worse than BM3D on the foreign sets "
                  "(`docs/experiments/ratio_structure.md`, which also measures the structure removed exactly).  "
                  "BM3D sigma %.2f (the median of the per-set tunings above)." % clips["bm3d_sigma"], "",
                  "| clip | method | tissue shift | ENL | gCNR | M index |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for name, e in clips["clips"].items():
            for m, r in e["rows"].items():
                mi = "–" if "m_index" not in r else "%s (%s, %s)" % (_f(r["m_index"], "%.1f"), _f(r["m_first_order"]),
                                                                     _f(r["m_glcm"], "%.1f"))
                lines.append(f"| {name} | {m} | {r['tissue_shift']:+.1f} | {_f(r['enl'], '%.1f')} | "
                             f"{_f(r.get('gcnr'), '%.3f')} | {mi} |")
    return "\n".join(lines) + "\n"


def model_method(ens, **kw) -> Method:
    """A method callable for a loaded :class:`engine.Ensemble` (default setting unless ``kw`` says otherwise)."""
    def run(frames: np.ndarray):
        res = ens.despeckle(np.asarray(frames, np.float32), seed=0, **kw)
        return res.mean, res.std
    return run


UNCERTAINTY_MAX_GREY = 16.0  # the figures' fixed uncertainty scale: 0 .. 16 grey levels (of 255)


def clip_figure(clip: RealClip, ens, path) -> str:
    """input | despeckled | uncertainty of the first frame of a real clip, each at full size (1 image pixel =
    1 figure pixel), the same grey map for the first two, the uncertainty in 'magma' on a fixed 0–16 grey-level
    scale; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colormaps

    from pathlib import Path

    frame = clip.frames[0]
    res = ens.despeckle(frame, seed=0)
    grey = lambda a: np.repeat(np.clip(a, 0, 1)[..., None], 3, axis=2)  # noqa: E731
    unc = colormaps["magma"](np.clip(res.std * 255 / UNCERTAINTY_MAX_GREY, 0, 1))[..., :3]
    gap = np.ones((frame.shape[0], 4, 3))
    img = np.concatenate([grey(frame), gap, grey(res.mean), gap, unc], axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, (img * 255).astype(np.uint8))
    return str(path)


def run_generalization(models: dict, probes: Sequence[str], clips: Sequence[RealClip] = (), inputs: int = 1,
                       root=None, map_fn=map, log=print, fig_dir=None, figure_model: str | None = None,
                       fig_link=None) -> tuple[dict, str]:
    """Foreign sets and real clips for ``models`` ({label: Ensemble}); returns (results, Markdown).  With
    ``fig_dir`` a full-size figure of each clip for ``figure_model`` (default: the first model) is written and
    linked (``fig_link(path)`` gives the link text, default the path)."""
    methods = {label: model_method(ens) for label, ens in models.items()}
    foreign = evaluate_foreign(methods, probes, inputs=inputs, root=root, map_fn=map_fn, log=log)
    sigmas = [e["bm3d_sigma"] for e in foreign["sets"].values()]
    clip_res = evaluate_clips(methods, clips, float(np.median(sigmas)) if sigmas else 0.3, map_fn=map_fn,
                              log=log) if clips else None
    md = render_markdown(foreign, clip_res)
    if fig_dir is not None and clips and models:
        from pathlib import Path

        name = figure_model or next(iter(models))
        figs = [clip_figure(c, models[name], Path(fig_dir) / ("real_%s.png" % c.name)) for c in clips]
        md += ("\nReal clips through `%s` (first frame, full size): input | despeckled | uncertainty "
               "(magma, 0–%g grey levels).\n\n" % (name, UNCERTAINTY_MAX_GREY))
        md += "".join("![%s](%s)\n\n" % (c.name, fig_link(f) if fig_link else f) for c, f in zip(clips, figs))
        if clip_res:
            clip_res["figures"] = figs
    return {"foreign": foreign, "clips": clip_res}, md
