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

    python benchmarks/uncertainty_ceiling.py [--model multiprobe] [--probe L11-5v ...] [-o FILE.md]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROBES = ("L11-5v", "L12-3v", "C5-2v", "P4-2v")
LEVELS = ("pixel", "patch", "image")


def oracle_std(err: np.ndarray, image: np.ndarray, pick=None) -> np.ndarray:
    """Per input, the RMS error of the other inputs of the same image (``pick(others)``: a subset of them)."""
    out = np.empty_like(err)
    for n in range(len(err)):
        others = [j for j in np.nonzero(image == image[n])[0] if j != n]
        if pick is not None:
            others = pick(others)
        out[n] = np.sqrt(np.mean(err[others] ** 2, axis=0))
    return out


def level_values(std: np.ndarray, mask: np.ndarray, patch: int = 8) -> dict[str, np.ndarray]:
    """A predicted std as the agreement measure reads it: per pixel, per ``patch``² patch inside the mask
    (mean) and per image (mean)."""
    px, ps, im = [], [], []
    for s, m in zip(std, mask):
        px.append(s[m])
        h, w = s.shape
        ps += [s[y:y + patch, x:x + patch].mean() for y in range(0, h - patch + 1, patch)
               for x in range(0, w - patch + 1, patch) if m[y:y + patch, x:x + patch].all()]
        im.append(s[m].mean())
    return {"pixel": np.concatenate(px), "patch": np.asarray(ps), "image": np.asarray(im)}


def ceiling(err: np.ndarray, std: np.ndarray, mask: np.ndarray, image: np.ndarray) -> dict:
    """r of the model's std and of the oracle with |error| at each level, the oracle's split-half reliability
    and its corrected ceiling."""
    from engine.scoring import uncertainty_agreement

    model = uncertainty_agreement(std, err, mask)
    oracle = uncertainty_agreement(oracle_std(err, image), err, mask)
    half_a = level_values(oracle_std(err, image, lambda o: o[0::2]), mask)
    half_b = level_values(oracle_std(err, image, lambda o: o[1::2]), mask)
    out = {"model": {k: model[k] for k in LEVELS}, "oracle": {k: oracle[k] for k in LEVELS}, "ceiling": {}}
    for k in LEVELS:
        r_half = max(float(np.corrcoef(half_a[k], half_b[k])[0, 1]), 1e-6)  # two oracles from 4 draws each
        rel = 2 * r_half / (1 + r_half)  # reliability of an oracle from twice as many draws (Spearman–Brown)
        out["ceiling"][k] = float(min(1.0, oracle[k] / np.sqrt(rel)))
    out["n_inputs"], out["n_images"] = int(len(err)), int(len(np.unique(image)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="multiprobe")
    ap.add_argument("--probe", action="append", choices=PROBES)
    ap.add_argument("-o", "--output", type=Path, help="also write the table as Markdown here")
    a = ap.parse_args(argv)
    from engine import load_ensemble
    from engine.generalization import load_foreign

    ens = load_ensemble(a.model)
    rows = []
    for probe in a.probe or PROBES:
        t = time.time()
        fs = load_foreign(probe, inputs=9)
        res = ens.despeckle(fs.bmode, seed=0)
        c = ceiling(res.mean - fs.clean, res.std, fs.mask, fs.image)
        rows.append((probe, c))
        print("%s (%d images x 9 inputs, %.0f s): " % (probe, c["n_images"], time.time() - t)
              + "; ".join("%s r model %.2f, oracle %.2f, ceiling %.2f" % (k, c["model"][k], c["oracle"][k],
                                                                          c["ceiling"][k]) for k in LEVELS),
              flush=True)
    lines = ["| set | images × inputs | r pixel: model / oracle / ceiling | r patch | r image |",
             "| --- | --- | --- | --- | --- |"]
    for probe, c in rows:
        cells = ["%.2f / %.2f / %.2f" % (c["model"][k], c["oracle"][k], c["ceiling"][k]) for k in LEVELS]
        lines.append("| %s | %d × 9 | %s |" % (probe, c["n_images"], " | ".join(cells)))
    table = "\n".join(lines) + "\n"
    print(table)
    if a.output:
        a.output.write_text("Model `%s`; oracle = RMS error of the other 8 inputs of the same image; ceiling = "
                            "oracle / sqrt(split-half reliability).\n\n%s" % (a.model, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
