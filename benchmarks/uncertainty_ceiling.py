"""How well can any uncertainty map track the error on the foreign sets?  An oracle against the model's own.

The foreign-set criterion asks the predicted std to correlate with |error| (Pearson r per pixel, per 8×8
patch and per image; ``engine.scoring.uncertainty_agreement``).  Part of every error is chance: the speckle
draw of the input and the truth's own residual speckle.  No map computed from the input can predict that
part, so r has a ceiling below 1.  This script measures it.

Every foreign image has 9 independent scatterer draws.  Each draw in turn is the input, scored against
the mean of the other 8 (the evaluation's leave-one-out truth).  The **oracle** for input ``i`` knows the
model's expected error at each pixel, estimated from the other 8 inputs of the same image: the RMS of
their errors.  That is what a perfect uncertainty head would predict: the error the model makes there on
average over speckle draws, its bias included.  Its r against input ``i``'s own |error| is what chance
leaves.  Estimating the expectation from 8 draws adds noise, which lowers r; the split-half reliability of
the oracle (two oracles from 4 draws each) corrects for it (Spearman–Brown): ``r / sqrt(reliability)``.

The calibration (the largest deviation of the RMS error from the prediction over the deciles of the
prediction, the truth's residual speckle subtracted) is printed on all 9 inputs too, with its spread over
bootstrap resamplings of the images: how precisely a set of 8 images measures it.

    python benchmarks/uncertainty_ceiling.py [--model multiprobe] [--probe L11-5v ...] [--root FOLDER] [-o FILE.md]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ceiling(err: np.ndarray, std: np.ndarray, mask: np.ndarray, image: np.ndarray) -> dict:
    """The model's r (its own std) next to the oracle's and the ceiling (engine.scoring.uncertainty_ceiling)."""
    from engine.scoring import AGREEMENT_LEVELS, uncertainty_agreement, uncertainty_ceiling

    model = uncertainty_agreement(std, err, mask)
    out = uncertainty_ceiling(err, mask, image) | {"model": {k: model[k] for k in AGREEMENT_LEVELS}}
    out["n_inputs"], out["n_images"] = int(len(err)), int(len(np.unique(image)))
    return out


def calibration_spread(std, err, mask, floor, image, n_boot: int = 200, seed: int = 0) -> dict:
    """The calibration statistic (largest decile deviation, the truth's residual speckle subtracted) on all
    inputs, and its 5th–95th percentile over ``n_boot`` resamplings of the images (how precisely a set of
    this size measures it)."""
    from engine.scoring import calibration

    rng = np.random.default_rng(seed)
    imgs = np.unique(image)
    boot = []
    for _ in range(n_boot):
        idx = np.concatenate([np.nonzero(image == i)[0] for i in rng.choice(imgs, len(imgs))])
        boot.append(calibration(std[idx], err[idx], mask[idx], floor[idx])["max_rel_dev"])
    return {"max_rel_dev": calibration(std, err, mask, floor)["max_rel_dev"],
            "interval": [float(v) for v in np.percentile(boot, [5, 95])]}


def main(argv=None) -> int:
    from simulator.foreign import PROBES

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="multiprobe")
    ap.add_argument("--probe", action="append", choices=PROBES)
    ap.add_argument("-o", "--output", type=Path, help="also write the table as Markdown here")
    ap.add_argument("--root", type=Path, help="another foreign set's folder (default: the committed sets)")
    a = ap.parse_args(argv)
    from engine import load_ensemble
    from engine.generalization import load_foreign
    from engine.scoring import AGREEMENT_LEVELS

    ens = load_ensemble(a.model)
    rows = []
    for probe in a.probe or PROBES:
        t = time.time()
        fs = load_foreign(probe, inputs=9, root=a.root)
        res = ens.despeckle(fs.bmode, seed=0)
        c = ceiling(res.mean - fs.clean, res.std, fs.mask, fs.image)
        c["calibration"] = calibration_spread(res.std, res.mean - fs.clean, fs.mask, fs.floor_var, fs.image)
        rows.append((probe, c))
        print("%s (%d images x 9 inputs, %.0f s): " % (probe, c["n_images"], time.time() - t)
              + "; ".join("%s r model %.2f, oracle %.2f, ceiling %.2f" % (k, c["model"][k], c["oracle"][k],
                                                                          c["ceiling"][k]) for k in AGREEMENT_LEVELS),
              flush=True)
    lines = ["| set | images × inputs | r pixel: model / oracle / ceiling | r patch | r image "
             "| calibration (5–95 % over images) |", "| --- | --- | --- | --- | --- | --- |"]
    for probe, c in rows:
        cells = ["%.2f / %.2f / %.2f" % (c["model"][k], c["oracle"][k], c["ceiling"][k]) for k in AGREEMENT_LEVELS]
        cal = c["calibration"]
        cells.append("%.0f %% (%.0f–%.0f %%)" % (100 * cal["max_rel_dev"], *(100 * v for v in cal["interval"])))
        lines.append("| %s | %d × 9 | %s |" % (probe, c["n_images"], " | ".join(cells)))
    table = "\n".join(lines) + "\n"
    print(table)
    if a.output:
        a.output.write_text("Model `%s`; oracle = RMS error of the other 8 inputs of the same image; ceiling = "
                            "oracle / sqrt(split-half reliability).\n\n%s" % (a.model, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
