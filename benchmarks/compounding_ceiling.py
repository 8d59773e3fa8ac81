"""What PSNR would perfect speckle removal reach on the committed test sets?

Each committed test image stores its seed, so its phantom can be rebuilt and imaged again with
``--k`` independent scatterer realisations (fast path: same probe, PSFs and display mapping; only
the speckle changes).  Averaging the realisations' intensities is ideal incoherent compounding: as
``k`` grows it converges to the speckle-free B-mode, the echogenicity seen through the probe's
point-spread function.  Its PSNR against the clean target is what a despeckler that removed all
speckle but did not sharpen would score; what is left is the PSF's blur (and the clutter the
plane-wave kernels carry into dark tissue).  A learned model can exceed it only by deconvolving,
from the anatomy it has learned.  Printed per image set, with the models at their default setting
on the same images for reference:

- ``input``: one realisation (the committed B-mode);
- ``log-mean k``: the mean of k display (log) images (speckle averaged after log compression,
  biased low by the log of the Rayleigh envelope);
- ``intensity-mean k``: display of the mean intensity (the speckle-free B-mode estimate);
- ``intensity-mean ∞``: its limit, per image from the two k: the squared error of a k-average is
  B + V/k (a fixed blur term plus residual speckle variance), so B = (k·e_k − k'·e_k') / (k − k').

With ``--kind full`` the images, the input row and the models are the committed full-physics set, but
the realisations are still drawn with the fast path (a full ``simus`` realisation takes 10–50 s here):
an estimate of that set's speckle-free image through the fast path's PSFs, which match full physics
within the tolerances of ``docs/experiments/fast_vs_full.md``.

    python benchmarks/compounding_ceiling.py --probe L11-5v --kind fast full --n 64 --k 128
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from engine import load_ensemble
from engine.evaluate import atomic_write_text
from engine.metrics import per_image, psnr, ssim
from simulator.datasets import derive_seed, load_test_set
from simulator.phantoms import make_phantom
from simulator.physics import display, simulate
from simulator.probes import get_probe


def compounded(probe, seed: int, size: int, ks: tuple[int, ...]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{k: (log-mean, intensity-mean)}``: display images of the first k fresh realisations of test image
    ``seed``, for each k in ``ks`` (one pass over max(ks) realisations)."""
    phantom = make_phantom("mri", probe, size=size, seed=derive_seed(seed, 1), split="test")
    log_sum, int_sum, out = 0.0, 0.0, {}
    for j in range(max(ks)):
        res = simulate(phantom, probe, path="fast", seed=derive_seed(seed, 3, j))
        log_sum = log_sum + res.bmode.astype(np.float64)
        int_sum = int_sum + res.envelope.astype(np.float64) ** 2
        k = j + 1
        if k in ks:
            echo = np.asarray(res.clean, np.float64)
            ideal, _, _ = display(np.sqrt(int_sum / k), echo, res.mask, res.dynamic_range_db)
            out[k] = ((log_sum / k).astype(np.float32), ideal)
    return out


def table(probe, kind: str, n: int, k: int, models: dict) -> str:
    """The markdown table of one committed test set (first ``n`` images, ``k`` realisations each)."""
    d = load_test_set(kind, probe.name)
    n = min(n, len(d["bmode"]))
    bmode, clean, mask = np.asarray(d["bmode"][:n], np.float32), np.asarray(d["clean"][:n], np.float32), d["mask"][:n]
    few = max(1, k // 8)
    runs = [compounded(probe, int(d["seed"][i]), bmode.shape[-1], (few, k)) for i in range(n)]
    outs: dict[str, np.ndarray] = {"input": bmode}
    for j, name in enumerate(("log-mean", "intensity-mean")):
        for kk in (few, k):
            outs["%s %d" % (name, kk)] = np.stack([r[kk][j] for r in runs])
    for name, ens in models.items():
        outs[name] = ens.despeckle(bmode, seed=0).mean

    def mse(o: np.ndarray, i: int) -> float:
        return float(np.mean((o[i].astype(np.float64) - clean[i])[mask[i]] ** 2))

    lines = ["First %d committed **%s** %s test images (PSNR / SSIM against the clean target inside the imaging "
             "region); %d and %d fast-path realisations per image:" % (n, kind, probe.name, few, k), "",
             "| image | PSNR (dB) | SSIM |", "| --- | --- | --- |"]
    for name, o in outs.items():
        p = per_image(psnr, o, clean, mask).mean()
        q = per_image(ssim, o, clean, mask).mean()
        lines.append("| %s | %.2f | %.3f |" % (name, p, q))
        if name == "intensity-mean %d" % k and k > few:
            blur = [max((k * mse(o, i) - few * mse(outs["intensity-mean %d" % few], i)) / (k - few), 1e-12)
                    for i in range(n)]
            lines.append("| intensity-mean ∞ (extrapolated) | %.2f | – |" % np.mean(-10 * np.log10(blur)))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probe", default="L11-5v")
    ap.add_argument("--kind", nargs="+", choices=["fast", "full"], default=["fast"], help="committed test set(s)")
    ap.add_argument("--n", type=int, default=64, help="first N images of each committed test set")
    ap.add_argument("--k", type=int, default=128, help="realisations per image")
    ap.add_argument("--models", nargs="+", default=["l11-5v", "baseline"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", help="also write the tables to this markdown file")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    probe = get_probe(a.probe)
    models = {name: load_ensemble(name) for name in a.models}
    parts = []
    for kind in a.kind:
        parts.append(table(probe, kind, a.n, a.k, models))
        print(parts[-1] + "\n", flush=True)
    text = "\n\n".join(parts + ["Run time %.1f min." % ((time.time() - t0) / 60)])
    if a.out:
        atomic_write_text(a.out, "# Speckle-free ceiling\n\nWritten by "
                          "`python benchmarks/compounding_ceiling.py --probe %s --kind %s --n %d --k %d -o %s`.\n\n%s\n"
                          % (a.probe, " ".join(a.kind), a.n, a.k, a.out, text))


if __name__ == "__main__":
    main()
