"""Do two ensembles trained on different data know more together? The union of two shipped models.

``multiprobe`` learns from the PSF banks of four probes and ``l11-5v`` from one probe's only; everything
else in their recipes (network, objective, steps) is the same. If the training data's variety made their
members err differently off-domain, their union would score higher and its spread would say more about
where it errs. The union's mean is the mean of the two means; its variance is the mean of the two
variances plus the square of half the difference of the means (the spread between the two). Each model
and the union are scored on the foreign sets as ``usclean evaluate`` scores them (each image despeckled on
its own, one input per image): affine-fitted PSNR against the speckle-free B-mode and Pearson r of the std
against |error| per pixel, 8×8 patch and image.

    python benchmarks/recipe_union.py [--models multiprobe l11-5v]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def union(mean_a, std_a, mean_b, std_b):
    """Mean and std of two equally weighted ensembles taken as one."""
    mean = 0.5 * (mean_a + mean_b)
    var = 0.5 * (std_a ** 2 + std_b ** 2) + (0.5 * (mean_a - mean_b)) ** 2
    return mean, np.sqrt(var)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs=2, default=["multiprobe", "l11-5v"], metavar=("A", "B"))
    a = ap.parse_args(argv)
    from engine import load_ensemble, scoring
    from engine.generalization import each_image, load_foreign, model_method
    from simulator.foreign import PROBES

    methods = [model_method(load_ensemble(m)) for m in a.models]
    print("| set | model | PSNR (dB) | r pixel | r patch | r image |\n| --- | --- | --- | --- | --- | --- |")
    for probe in PROBES:
        fs = load_foreign(probe, inputs=1)
        runs = [each_image(fn, fs.bmode) for fn in methods]
        rows = dict(zip(a.models, runs)) | {"union": union(*runs[0], *runs[1])}
        for name, (mean, std) in rows.items():
            psnr = np.mean([scoring.psnr_affine(o, c, m) for o, c, m in zip(mean, fs.clean, fs.mask)])
            r = scoring.uncertainty_agreement(std, mean - fs.clean, fs.mask)
            print("| %s | %s | %.2f | %s |" % (probe, name, psnr,
                                               " | ".join("%.3f" % r[k] for k in scoring.AGREEMENT_LEVELS)),
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
