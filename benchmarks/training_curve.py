"""How much training would the +1.5 dB over set-tuned BM3D take?  A learning curve on the foreign sets.

Reads the JSON of ``benchmarks/generalization.py`` (the same foreign sets for every model) and, for models
given as ``LABEL=STEPS`` (optimiser steps per member, the card's total), prints per set the *true* error:
the MSE against the truth minus the truth's own residual speckle (the floor), which is what training can
reduce.  A power law ``true = a · steps^b`` fitted per model family (``--family`` groups labels) then gives
the steps at which the family would reach BM3D + 1.5 dB, if the curve kept its slope.

    python benchmarks/generalization.py -o /tmp/g.md --json /tmp/g.json --model OLD_FOLDER --model multiprobe
    python benchmarks/training_curve.py /tmp/g.json --family multiprobe mp2000=2000 multiprobe=5000 \\
        --family l11-5v l11_1000=1000 l11-5v=4000
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

TARGET_DB = 1.5
BM3D = "BM3D (tuned on this set)"


def mse(psnr_db: float) -> float:
    return float(10 ** (-psnr_db / 10))


def true_error(psnr_db: float, floor_db: float) -> float:
    """MSE against the truth minus the truth's residual speckle (set means; data range 1)."""
    return mse(psnr_db) - mse(floor_db)


def fit_power(steps, errors) -> tuple[float, float]:
    """(a, b) of errors = a · steps^b by least squares in log–log."""
    b, log_a = np.polyfit(np.log(np.asarray(steps, float)), np.log(np.asarray(errors, float)), 1)
    return float(np.exp(log_a)), float(b)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", type=Path)
    ap.add_argument("--family", nargs="+", action="append", required=True, metavar="NAME LABEL=STEPS",
                    help="a family name, then its models as LABEL=STEPS")
    a = ap.parse_args(argv)
    sets = json.loads(a.json.read_text())["foreign"]["sets"]
    print("true error = MSE - floor (x 1e-3, data range 1); ratio = BM3D's true error / the model's")
    for fam in a.family:
        name, specs = fam[0], [s.partition("=") for s in fam[1:]]
        models = [(label, int(steps)) for label, _, steps in specs]
        print("\n%s:" % name)
        print("| set | BM3D | target (+%.1f dB) | %s | steps for the target |" % (
            TARGET_DB, " | ".join("%s (%d)" % m for m in models)))
        print("|" + " --- |" * (len(models) + 4))
        for probe, s in sets.items():
            floor = s["floor_psnr"]
            bm3d = float(np.mean(s["rows"][BM3D]["psnr_affine"]))
            target = true_error(bm3d + TARGET_DB, floor)
            errs = [true_error(float(np.mean(s["rows"][label]["psnr_affine"])), floor) for label, _ in models]
            cells = ["%.3f (%.2f×)" % (1e3 * e, true_error(bm3d, floor) / e) for e in errs]
            need = "–"
            if len(models) >= 2 and target > 0:
                ca, cb = fit_power([st for _, st in models], errs)
                need = "%.0f (slope %.2f)" % ((target / ca) ** (1 / cb), cb) if cb < 0 else "never (slope %.2f)" % cb
            print("| %s | %.3f | %s | %s | %s |" % (probe, 1e3 * true_error(bm3d, floor),
                                                   "%.3f" % (1e3 * target) if target > 0 else "below the floor",
                                                   " | ".join(cells), need))
    return 0


if __name__ == "__main__":
    sys.exit(main())
