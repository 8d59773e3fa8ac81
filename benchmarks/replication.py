"""A replication of the foreign sets: fresh images from the same generator, scored as the committed ones are.

Every choice made since the foreign sets were committed (which models ship, the grain normalisation, the
brightness correction, the uncertainty scales) was made looking at their 32 images. A verdict read off the
same images can be optimistic. This script scores the shipped models on a replication set: the same
generator (``simulator.foreign``) with another seed, images that no decision has seen, next to the
committed sets, with the same inputs per image. BM3D's sigma is tuned on each set itself, as for the
committed sets. On the replication set it is also run at the sigma the committed set chose, as a user would
carry it over.

The committed replication set was made with (51 min on 2 cores, 8 images per probe):

    python -m simulator.foreign --root resources/testsets/foreign_replication --n 8 --workers 2 --base-seed 20261207
    python benchmarks/replication.py [--root resources/testsets/foreign_replication] [--inputs 3] [--model NAME ...]

Prints per probe and set: affine-fitted PSNR (dB) against the speckle-free B-mode (the mean over inputs),
each model's lead over the set-tuned BM3D with a paired 95 % interval over images, the inputs that score
below the input, and the uncertainty (r per pixel / 8 × 8 patch / image; calibration, the truth's
residual speckle subtracted). Then the lead pooled over all probes of each set.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REPLICATION_DIR = ROOT / "resources" / "testsets" / "foreign_replication"


def per_image(values: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Mean of per-input values over the inputs of each image."""
    return np.asarray([np.mean(values[image == i]) for i in np.unique(image)])


def score_set(fs, models: dict, map_fn, extra_sigma: float | None = None) -> dict:
    """BM3D tuned on ``fs`` (and at ``extra_sigma``), the input and each model on one foreign set."""
    from engine import classical, scoring
    from engine.evalstats import paired_diff
    from engine.generalization import each_image, model_method, tune_bm3d

    def psnr(out):
        return np.asarray([scoring.psnr_affine(o, c, m) for o, c, m in zip(out, fs.clean, fs.mask)])

    sigma, table = tune_bm3d(fs, map_fn=map_fn)
    bm3d = psnr(np.stack(next(r for r in table if r["sigma"] == sigma)["outputs"]))
    inp = psnr(fs.bmode)
    out: dict = {"n_images": int(len(np.unique(fs.image))), "sigma": sigma,
                 "input": float(inp.mean()), "bm3d": float(bm3d.mean()), "bm3d_per_image": per_image(bm3d, fs.image),
                 "models": {}}
    if extra_sigma is not None:
        carried = np.stack(list(map_fn(classical.apply_job, [("bm3d", b, {"sigma": extra_sigma}) for b in fs.bmode])))
        out["bm3d_carried"] = {"sigma": extra_sigma, "psnr": float(psnr(carried).mean())}
    for name, ens in models.items():
        mean, std = each_image(model_method(ens), fs.bmode)
        p = psnr(mean)
        err = mean - fs.clean
        out["models"][name] = {
            "psnr": float(p.mean()), "per_image": per_image(p, fs.image),
            "lead": paired_diff(per_image(p, fs.image), out["bm3d_per_image"]),
            "below_input": int(np.sum(p < inp)),
            "agreement": scoring.uncertainty_agreement(std, err, fs.mask),
            "calibration": scoring.calibration(std, err, fs.mask, fs.floor_var)["max_rel_dev"]}
    return out


def main(argv=None) -> int:
    from simulator.foreign import PROBES

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=REPLICATION_DIR, help="the replication set's folder")
    ap.add_argument("--inputs", type=int, default=3, help="leave-one-out inputs per image (default 3)")
    ap.add_argument("--model", action="append", help="shipped names or model folders (default multiprobe, l11-5v)")
    ap.add_argument("--probe", action="append", choices=PROBES)
    ap.add_argument("--workers", type=int, default=2, help="processes for BM3D (default 2)")
    a = ap.parse_args(argv)
    from engine import load_ensemble
    from engine.evalstats import paired_diff
    from engine.evaluate import filter_pool
    from engine.generalization import load_foreign

    pool = filter_pool(a.workers)  # before any torch work, so the workers fork without it
    map_fn = pool.map if pool is not None else map
    models = {Path(n).name: load_ensemble(n) for n in (a.model or ["multiprobe", "l11-5v"])}
    sets = {"committed": None, "replication": a.root}
    res: dict = {s: {} for s in sets}
    try:
        for probe in a.probe or list(PROBES):
            for label, root in sets.items():
                t = time.time()
                fs = load_foreign(probe, inputs=a.inputs, root=root)
                carry = res["committed"][probe]["sigma"] if label == "replication" else None
                res[label][probe] = score_set(fs, models, map_fn, carry)
                print("%s %s: %d images x %d inputs, %.0f s" % (probe, label, res[label][probe]["n_images"],
                                                                 a.inputs, time.time() - t), flush=True)
    finally:
        if pool is not None:
            pool.shutdown()

    names = list(models)
    print("\n| probe | set | images × inputs | input | BM3D tuned on the set (sigma) | %s | lead over BM3D, "
          "95 %% CI over images | below input | r pixel / patch / image | calibration |" % " | ".join(
              "`%s`" % n for n in names))
    print("| --- | --- | --- | --- | --- |%s --- | --- | --- | --- |" % (" --- |" * len(names)))
    for probe in res["committed"]:
        for label in sets:
            r = res[label][probe]
            bm = "%.2f (%.2g)" % (r["bm3d"], r["sigma"])
            if "bm3d_carried" in r:
                bm += "; at the committed %.2g: %.2f" % (r["bm3d_carried"]["sigma"], r["bm3d_carried"]["psnr"])
            m = [r["models"][n] for n in names]
            print("| %s | %s | %d × %d | %.2f | %s | %s | %s | %s | %s | %s |" % (
                probe, label, r["n_images"], a.inputs, r["input"], bm, " | ".join("%.2f" % v["psnr"] for v in m),
                " · ".join("%+.2f (%+.2f … %+.2f)" % (v["lead"]["diff"], v["lead"]["lo"], v["lead"]["hi"]) for v in m),
                " · ".join("%d" % v["below_input"] for v in m),
                " · ".join("%.2f / %.2f / %.2f" % (v["agreement"]["pixel"], v["agreement"]["patch"],
                                                   v["agreement"]["image"]) for v in m),
                " · ".join("%.0f %%" % (100 * v["calibration"]) for v in m)))
    print("\nLead over the set-tuned BM3D, all probes pooled (per image, 95 % CI):")
    for label in sets:
        for n in names:
            d = paired_diff(np.concatenate([res[label][p]["models"][n]["per_image"] for p in res[label]]),
                            np.concatenate([res[label][p]["bm3d_per_image"] for p in res[label]]))
            print("  %-11s %-12s %+.2f dB (%+.2f … %+.2f), %d images" % (label, n, d["diff"], d["lo"], d["hi"], d["n"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
