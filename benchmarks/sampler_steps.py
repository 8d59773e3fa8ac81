"""Quality and cost of each sampler and step count for a trained ensemble (choose the default by this).

PSNR / SSIM of the ensemble mean and of a single member, the mean member std and its correlation with
the absolute error, and seconds per frame, on the first ``--n`` images of the committed fast test set
(and the full-physics set when present) of ``--probe``.

    python benchmarks/sampler_steps.py --model l11-5v --probe L11-5v --n 8 [--refs]

``--refs`` adds the 100-step posterior and Euler–Maruyama references (slow: 100 evaluations each).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from engine import load_ensemble
from engine.metrics import pearson, psnr, ssim
from simulator.datasets import load_test_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="l11-5v")
    ap.add_argument("--probe", default="L11-5v")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--refs", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ens = load_ensemble(a.model, device="cpu")
    settings = [("posterior", 1), ("posterior", 2), ("posterior", 4), ("posterior", 8), ("ddim", 2), ("ddim", 4),
                ("ddim", 8)]
    if a.refs:
        settings += [("posterior", 100), ("em", 100)]
    for kind in ("fast", "full"):
        try:
            data = load_test_set(kind, a.probe)
        except (FileNotFoundError, ValueError, OSError):
            continue
        noisy, clean = data["bmode"][: a.n], data["clean"][: a.n]
        if len(noisy) == 0:
            continue
        print("%s test set, %s, %d images, input PSNR %.2f dB" % (
            kind, a.probe, len(noisy), np.mean([psnr(x, c) for x, c in zip(noisy, clean)])))
        print("%-14s %9s %8s %11s %9s %8s %8s"
              % ("setting", "PSNR", "SSIM", "1-member", "std", "r(std,err)", "s/frame"))
        for sampler, steps in settings:
            t0 = time.perf_counter()
            res = ens.despeckle(noisy, steps=steps, sampler=sampler, seed=0)
            dt = (time.perf_counter() - t0) / len(noisy)
            one = ens.despeckle(noisy, steps=steps, sampler=sampler, seed=0, members=1)
            err = np.abs(res.mean - clean)
            print("%-14s %9.2f %8.4f %11.2f %9.4f %8.3f %8.2f" % (
                "%s-%d" % (sampler, steps), np.mean([psnr(m, c) for m, c in zip(res.mean, clean)]),
                np.mean([ssim(m, c) for m, c in zip(res.mean, clean)]),
                np.mean([psnr(m, c) for m, c in zip(one.mean, clean)]), res.std.mean(),
                pearson(res.std.ravel(), err.ravel()), dt), flush=True)


if __name__ == "__main__":
    main()
