"""Does the M index of the ratio image measure the structure a despeckler removes, on ultrasound speckle?
And what does measure it.

Three parts, one run:

1. **The M index with a known answer** (the foreign full-physics sets: one input per image, the truth the
   mean of the other 8 draws).  Beside BM3D (sigma tuned on the set) and the shipped models, controls whose
   answer is known: the speckle-free image itself (removes exactly the speckle), blurs of it (remove
   structure and no more speckle), a mix of input and truth (removes half the speckle and no structure) and
   an output that removes only the speckle's fine part (the truth plus the input's speckle low-passed at
   2 px: no structure removed, the coarse speckle kept).
2. **The structure removed, measured exactly** (:func:`engine.scoring.ratio_structure`): every method on all
   9 draws of each foreign image; the mean of the ratio image over the draws is what the method takes from
   the medium besides speckle, and the outputs' spread across draws the speckle it leaves.  Paired
   differences model − BM3D over the 32 images with 95 % t intervals.
3. **The real clips**: the M index and ENL of BM3D, the models and plain Gaussian blurs of the input.

    python benchmarks/ratio_structure.py [--models multiprobe l11-5v baseline] [--normalize-off multiprobe]

``--normalize-off MODEL`` adds MODEL with the grain normalisation turned off to parts 1 and 2 (what the
resampling to the training grain costs in structure and gains in speckle).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _ci(a, b) -> str:
    """a − b over paired images, with its 95 % t interval."""
    from engine.evalstats import paired_diff

    d = paired_diff(a, b)
    return f"{d['diff']:+.2f} ({d['lo']:+.2f} … {d['hi']:+.2f})"


def m_index_table(methods: dict, sigmas: dict) -> None:
    from scipy import ndimage

    from engine import scoring
    from engine.generalization import each_image, load_foreign, tune_bm3d
    from simulator.foreign import PROBES

    rows: dict[str, list] = {}
    for probe in PROBES:
        fs = load_foreign(probe, 1)
        sig, table = tune_bm3d(fs)
        sigmas[probe] = sig
        cl = fs.clean
        outs = {"speckle-free image (the truth)": cl}
        for s in (2, 4):
            outs[f"truth blurred, {s} px"] = np.stack([ndimage.gaussian_filter(c, s) for c in cl])
        outs["half input, half truth"] = 0.5 * fs.bmode + 0.5 * cl
        outs["truth + the input's speckle low-passed (2 px)"] = cl + np.stack(
            [ndimage.gaussian_filter(b - c, 2) for b, c in zip(fs.bmode, cl)])
        outs["BM3D (sigma tuned on the set)"] = np.stack(next(r for r in table if r["sigma"] == sig)["outputs"])
        for name, fn in methods.items():
            outs[name] = each_image(fn, fs.bmode)[0]
        for k, o in outs.items():
            for a, b, c, m in zip(fs.bmode, o, cl, fs.mask):
                mi = scoring.m_index(a, b, m, size=9)
                rows.setdefault(k, []).append((mi["M"], mi["r1"], mi["delta_h"], scoring.psnr_affine(b, c, m)))
        print(f"[m-index] {probe}: BM3D sigma {sig}", flush=True)
    print("\n| output (32 foreign images) | M index | first order | GLCM part | PSNR vs truth (dB) |")
    print("| --- | --- | --- | --- | --- |")
    for k, v in rows.items():
        v = np.array(v)
        ps = "–" if k.startswith("speckle-free") else f"{v[:, 3].mean():.2f}"
        print(f"| {k} | {v[:, 0].mean():.2f} | {v[:, 1].mean():.3f} | {v[:, 2].mean():.2f} | {ps} |")


def structure_table(methods: dict, sigmas: dict) -> None:
    from scipy import ndimage

    from engine import classical
    from engine.generalization import each_image, image_structure, load_foreign, pooled_structure
    from simulator.foreign import DEFAULT_DRAWS, PROBES

    rows: dict[str, dict[str, dict]] = {}
    for probe in PROBES:
        t = time.time()
        fs = load_foreign(probe, inputs=DEFAULT_DRAWS)  # every draw of every image as an input
        outs = {f"input blurred, {s} px": np.stack([ndimage.gaussian_filter(x, s) for x in fs.bmode]) for s in (1, 2)}
        outs["BM3D"] = np.stack([classical.apply_job(("bm3d", x, {"sigma": sigmas[probe]})) for x in fs.bmode])
        for name, fn in methods.items():
            outs[name] = each_image(fn, fs.bmode)[0]
        for k, o in outs.items():
            rows.setdefault(k, {})[probe] = image_structure(o, fs)
        print(f"[structure] {probe}: {time.time() - t:.0f} s", flush=True)
    print("\nStructure removed (RMS of the ratio image's mean over 9 draws) / speckle left (RMS spread of the "
          "outputs across draws), grey levels of 255, pooled over the set's pixels as RMS (pooled_structure):\n")
    print("| method | " + " | ".join(PROBES) + " | all |")
    print("| --- | " + " | ".join("---" for _ in PROBES) + " | --- |")
    for k, per in rows.items():
        cells = ["%.2f / %.2f" % pooled_structure([per[p]]) for p in PROBES]
        print(f"| {k} | " + " | ".join(cells) + " | %.2f / %.2f |" % pooled_structure([per[p] for p in PROBES]))

    def each(name: str, key: str) -> np.ndarray:
        return np.array([x for p in PROBES for x in rows[name][p][key]])

    print("\nPaired over the 32 images, model − BM3D (95 % t interval) of the per-image values, grey levels:\n")
    print("| model | structure removed | speckle left |")
    print("| --- | --- | --- |")
    for name in methods:
        print(f"| {name} | {_ci(each(name, 'structure'), each('BM3D', 'structure'))} | "
              f"{_ci(each(name, 'speckle_left'), each('BM3D', 'speckle_left'))} |")


def clips_table(methods: dict) -> None:
    from dataclasses import replace

    from scipy import ndimage

    from engine import classical
    from engine.generalization import clip_measures
    from usclean_gui.realclips import load_real_clips

    print("\nReal clips (first 3 frames): M index (GLCM part) / ENL\n")
    names = [f"input blurred, {s} px" for s in (0.7, 1.0, 1.5)] + ["BM3D sigma 0.2", "BM3D sigma 0.43"] + list(methods)
    print("| clip | " + " | ".join(names) + " |")
    print("| --- | " + " | ".join("---" for _ in names) + " |")
    for clip in load_real_clips():
        clip = replace(clip, frames=clip.frames[:3])  # the frames the report's M index reads
        inp = clip.frames
        outs = [np.stack([ndimage.gaussian_filter(f, s) for f in inp]) for s in (0.7, 1.0, 1.5)]
        outs += [np.stack([classical.apply_job(("bm3d", f, {"sigma": s})) for f in inp]) for s in (0.2, 0.43)]
        outs += [np.asarray(fn(inp)[0], np.float32) for fn in methods.values()]
        rows = [clip_measures(clip, o) for o in outs]
        cells = [f"{r['m_index']:.1f} ({r['m_glcm']:.1f}) / {r['enl']:.1f}" for r in rows]
        print(f"| {clip.name} | " + " | ".join(cells) + " |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["multiprobe", "l11-5v", "baseline"])
    ap.add_argument("--normalize-off", nargs="*", default=[], metavar="MODEL",
                    help="also these models with the grain normalisation off")
    a = ap.parse_args(argv)
    from engine import load_ensemble
    from engine.generalization import model_method

    methods = {name: model_method(load_ensemble(name)) for name in a.models}
    for name in a.normalize_off:
        methods[f"{name}, normalisation off"] = model_method(load_ensemble(name), normalize="off")
    sigmas: dict[str, float] = {}
    m_index_table(methods, sigmas)
    structure_table(methods, sigmas)
    clips_table(methods)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
