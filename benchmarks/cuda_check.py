"""Check the CUDA path of the engine against the CPU path (run it on a machine with a GPU).

    python benchmarks/cuda_check.py [--device cuda] [--models multiprobe l11-5v baseline]

For each shipped model it despeckles the same frames on the CPU and on the device and prints the
largest differences of the mean and of the std, and the PSNR of both against the clean frames:
the committed L11-5v fast test frames (128 x 128), one 480 x 640 frame and one 1100 x 1300 frame
(which the ensemble processes in overlapping tiles).  Then, on the device: the same seed twice gives
the same result, a cancel after the first network evaluation raises ``Cancelled``, ``iter_despeckle``
streams every frame, the 100-step ``em`` and ``posterior`` references run (noise is drawn on the CPU
generator, so both devices see the same draws), and the first training losses of a small run agree
with the CPU's (same initialisation, data, timesteps and noise).  Exit status 1 if a check fails.

The tolerances are those of float32 arithmetic done in another order (cuDNN's convolution
algorithms, TF32 off): 2e-3 on [0, 1] images, 0.02 dB on the PSNR.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
import torch

from engine import load_ensemble
from engine.bench import speckle_frame
from engine.ensemble import Cancelled, checked_device
from engine.metrics import psnr
from engine.train import TrainConfig, train
from simulator.datasets import load_test_set

TOL_IMAGE = 2e-3
TOL_PSNR = 0.02


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", nargs="+", default=["multiprobe", "l11-5v", "baseline"])
    a = ap.parse_args()
    try:
        dev = checked_device(a.device)
    except ValueError as exc:
        print("%s: nothing to check" % exc)
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print("device: %s; torch %s" % (torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                                    torch.__version__))
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print("  %s %s" % ("ok  " if ok else "FAIL", what), flush=True)
        if not ok:
            failures.append(what)

    test = load_test_set("fast", "L11-5v")
    frames = {"test 128x128": (test["bmode"][:8], test["clean"][:8]),
              "480x640": (speckle_frame(480, 640, 1)[None], None),
              "1100x1300 (tiled)": (speckle_frame(1100, 1300, 2)[None], None)}
    for name in a.models:
        cpu, gpu = load_ensemble(name, device="cpu"), load_ensemble(name, device=dev)
        print("%s: %s vs %s" % (name, cpu, gpu))
        for label, (x, clean) in frames.items():
            t0 = time.perf_counter()
            rc = cpu.despeckle(x)
            t1 = time.perf_counter()
            rg = gpu.despeckle(x)
            t2 = time.perf_counter()
            dm = float(np.abs(rc.mean - rg.mean).max())
            ds = float(np.abs(rc.std - rg.std).max())
            text = "%s: max |mean diff| %.2e, max |std diff| %.2e (cpu %.2f s, %s %.2f s)" % (
                label, dm, ds, t1 - t0, dev.type, t2 - t1)
            if clean is not None:
                pc = np.mean([psnr(m, c) for m, c in zip(rc.mean, clean)])
                pg = np.mean([psnr(m, c) for m, c in zip(rg.mean, clean)])
                text += ", PSNR cpu %.3f / %s %.3f dB" % (pc, dev.type, pg)
                check(abs(pc - pg) < TOL_PSNR, text)
            else:
                check(dm < TOL_IMAGE and ds < TOL_IMAGE, text)
        x = frames["test 128x128"][0][:2]
        r1, r2 = gpu.despeckle(x, seed=3), gpu.despeckle(x, seed=3)
        check(float(np.abs(r1.mean - r2.mean).max()) < 1e-5, "same seed twice on %s gives the same mean" % dev.type)
        calls = []
        try:
            gpu.despeckle(x, cancel=lambda calls=calls: bool(calls.append(1)) or len(calls) > 1)
            check(False, "cancel after the first evaluation raises Cancelled")
        except Cancelled:
            check(len(calls) == 2, "cancel after the first evaluation raises Cancelled (polled %d times)" % len(calls))
        got = [i for i, _, _ in gpu.iter_despeckle(x)]
        check(got == [0, 1], "iter_despeckle streams frames %s" % got)
        if gpu.mode == "irsde":
            for sampler in ("em", "posterior"):
                t0 = time.perf_counter()
                rc = cpu.despeckle(x[:1], steps=100, sampler=sampler)
                t1 = time.perf_counter()
                rg = gpu.despeckle(x[:1], steps=100, sampler=sampler)
                t2 = time.perf_counter()
                pc, pg = psnr(rc.mean[0], test["clean"][0]), psnr(rg.mean[0], test["clean"][0])
                check(abs(pc - pg) < 0.1, "%s 100 steps: PSNR cpu %.3f / %s %.3f dB (cpu %.2f s, %s %.2f s)" % (
                    sampler, pc, dev.type, pg, t1 - t0, dev.type, t2 - t1))

    losses = {}
    for d in ("cpu", a.device):
        cfg = TrainConfig(members=2, minutes=5, base=8, batch=4, pool=4, val_frames=2, size=96, patch=48, seed=5,
                          device=d, threads=2, checkpoint_minutes=100, t_focus=0.5, precond="wiener")
        with tempfile.TemporaryDirectory() as tmp:
            out = []
            train(cfg, tmp, max_steps=5, log=out.append)
            losses[d] = [line.split("loss ")[1].split()[0] for line in out if " loss " in line]
    check(losses["cpu"][:1] == losses[a.device][:1],
          "first training loss cpu %s / %s %s" % (losses["cpu"][:1], a.device, losses[a.device][:1]))
    print("%d check(s) failed" % len(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
