"""Real time on this CPU: the defaults against BM3D on a real frame, the CLI on a long clip, PSNR parity.

Measured in one run (timings vary between runs; the ratios are what to compare):

1. ``load_ensemble()`` + ``despeckle`` at its defaults on a real 480 × 640 frame (pydicom's bundled cardiac
   cine, 240 × 320, upsampled 2× with cubic interpolation): the 4-member ensemble (mean + uncertainty),
   one member and the preview network (where the model ships one), each as a fraction of BM3D's time on
   the same frame (sigma 0.3), for a frame of a new clip (its grain and normalisation measured in the
   call) and for a cine frame (the clip's fit, kept);
2. PSNR of the default backend against torch fp32 on the committed test sets (the first ``--images`` of
   each);
3. the floor this CPU sets: the ensemble's convolutions on the frame's work shape (GFLOP) against torch's
   matrix-multiply peak at the runtime's thread count (fp32, and bf16 where the CPU has it), the GFLOP/s the
   runtime reached, and the least time the ensemble could take at that peak, as a fraction of BM3D and for
   120 frames;
4. with ``--clip``: ``usclean despeckle`` on a 120-frame 480 × 640 clip written from that frame sliding a
   pixel per frame (tissue motion), wall time and peak memory, and a 300-frame clip's peak memory (flat
   with clip length).

    python benchmarks/realtime.py [--images 16] [--clip] [--model NAME_OR_FOLDER ...]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def real_frame() -> np.ndarray:
    import cv2
    from pydicom import examples

    from usclean_gui.dicomio import open_image

    f = open_image(examples.get_path("ybr_color")).gray_frame(0)
    return np.clip(cv2.resize(f, (640, 480), interpolation=cv2.INTER_CUBIC), 0, 1).astype(np.float32)


def best_ms(fn, n: int = 5) -> float:
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def frame_times(ens, label: str, frame: np.ndarray, t_bm3d: float) -> dict:
    """Print the ensemble's, one member's and the preview's time on ``frame`` (a new clip's frame and a cine
    frame) against BM3D's ``t_bm3d``; returns the cine-frame times by ``members``."""
    from engine.bench import preview_text

    def fresh(members=None):  # a frame of a new clip: its grain and normalisation are measured in the call
        ens.clear_fits()
        return ens.despeckle(frame, members=members)

    rows = [("ensemble  ", None), ("one member", 1)] + ([("preview   ", "preview")] if ens.has_preview else [])
    times = [(what, best_ms(partial(fresh, m)), m) for what, m in rows]
    print("%s, backend %s, %d members%s:" % (
        label, ens.backend, ens.members, "; preview network %s" % preview_text(ens) if ens.has_preview else ""))
    in_cine = {}
    for what, t, m in times:
        # a cine frame: the fit is the clip's (its anchor frame's, measured once), as in the app and the CLI
        tc = in_cine[m] = best_ms(partial(ens.despeckle, frame, members=m))
        print("  %s      %8.1f ms = %.4f x BM3D (%.1f frames/s); in a cine (fit shared): %.1f ms = %.4f x BM3D"
              % (what, t, t / t_bm3d, 1000 / t, tc, tc / t_bm3d))
    return in_cine


def parity(n_images: int, name: str) -> list[str]:
    from engine import load_ensemble
    from engine.metrics import psnr
    from simulator.datasets import load_test_set

    fast, ref = load_ensemble(name), load_ensemble(name, backend="torch")
    lines = ["PSNR (dB) against the echogenicity, %s vs torch fp32, first %d images:" % (fast.backend, n_images)]
    for kind in ("fast", "full"):
        for probe in ("L11-5v", "L12-3v", "C5-2v", "P4-2v"):
            d = load_test_set(kind, probe)
            x, c, m = d["bmode"][:n_images], d["clean"][:n_images], d["mask"][:n_images]
            a = np.mean([psnr(o, ci, mi) for o, ci, mi in zip(fast.despeckle(x).mean, c, m)])
            b = np.mean([psnr(o, ci, mi) for o, ci, mi in zip(ref.despeckle(x).mean, c, m)])
            lines.append("  %s %-6s: %.3f vs %.3f (Δ %+.3f)" % (kind, probe, a, b, a - b))
    return lines


def floor(ens, frame: np.ndarray, t_bm3d: float, ensemble_ms: float) -> list[str]:
    """The ensemble's least time on this CPU: its convolutions' FLOPs at the frame's work shape over the matrix-
    multiply peak measured now with as many threads as cores (the runtime's own setting)."""
    import os

    import torch

    from engine.bench import conv_flops, matmul_peaks

    plan, _ = ens._fitted(frame, ens.normalize)
    h, w = plan.work_shape if plan is not None else frame.shape
    gflop = ens.members * ens.default_steps * conv_flops(ens.name, h, w) / 1e9
    cores, before = os.cpu_count() or 1, torch.get_num_threads()
    torch.set_num_threads(cores)
    try:
        peaks = matmul_peaks()
    finally:
        torch.set_num_threads(before)
    lines = ["floor: the ensemble's convolutions on its %dx%d work shape: %.1f GFLOP a frame; %s reached %.0f GFLOP/s"
             % (h, w, gflop, ens.backend, gflop / (ensemble_ms / 1000))]
    for kind, peak in peaks.items():
        least = 1000 * gflop * 1e9 / peak
        lines.append("  at the %s matmul peak (%.0f GFLOP/s, %d threads): >= %.0f ms a frame = %.4f x BM3D; 120 frames "
                     ">= %.1f s of network" % (kind, peak / 1e9, cores, least, least / t_bm3d, 120 * least / 1000))
    return lines


def sliding_cine(frame: np.ndarray, frames: int) -> np.ndarray:
    """A ``frames``-frame uint8 cine of ``frame`` in tissue motion: the real frame (anatomy and speckle) slides a
    pixel per frame, back and forth, so every frame keeps the real frame's grain (white noise added per frame
    would shrink the measured grain and change the work: no lateral resampling, 1.7x the network pixels)."""
    cine = np.empty((frames,) + frame.shape, np.uint8)
    for i in range(frames):
        shift = i % 16 if (i // 16) % 2 == 0 else 16 - i % 16
        cine[i] = np.clip(np.roll(frame, (shift // 2, shift), axis=(0, 1)) * 255, 0, 255).astype(np.uint8)
    return cine


def clip_run(frames: int, frame: np.ndarray, folder: Path, model: str) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of ``usclean despeckle --model model`` on a ``frames``-frame clip made from
    ``frame``."""
    from usclean_gui.dicomio import write_cine

    src = folder / ("clip_%d.dcm" % frames)
    write_cine(sliding_cine(frame, frames), (0.2, 0.2), 33.3, src)
    out = folder / ("clean_%d.dcm" % frames)
    # the child's own peak (VmHWM): its ru_maxrss would include this large parent's memory, copied at fork
    code = ("import sys, time; from engine.bench import peak_memory_mb; from usclean_gui.cli import main; "
            "t = time.time(); rc = main(sys.argv[1:]); print('RESULT', time.time() - t, peak_memory_mb(), rc)")
    r = subprocess.run([sys.executable, "-c", code, "despeckle", str(src), "-o", str(out), "--model", model],
                       capture_output=True, text=True, cwd=ROOT)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")]
    if not line:
        raise RuntimeError(r.stdout + r.stderr)
    _, secs, rss, rc = line[-1].split()
    return float(secs), float(rss)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--clip", action="store_true", help="also time usclean despeckle on 120 / 300-frame clips")
    ap.add_argument("--model", action="append", help="a shipped name or a model folder; repeat to compare models "
                    "in one run (default: the app's default; parity, floor and clips use the first)")
    a = ap.parse_args(argv)
    from engine import load_ensemble
    from engine.classical import bm3d
    from engine.ensemble import DEFAULT_MODEL

    frame = real_frame()
    t_bm3d = best_ms(lambda: bm3d(frame, 0.3), 2)
    print("real 480x640 frame; BM3D %.1f ms" % t_bm3d)
    names = a.model or [DEFAULT_MODEL]
    ens = load_ensemble(names[0])
    first = frame_times(ens, names[0], frame, t_bm3d)
    for name in names[1:]:
        frame_times(load_ensemble(name), name, frame, t_bm3d)
    print("\n".join(floor(ens, frame, t_bm3d, first[None])))
    print("\n".join(parity(a.images, names[0])))
    if a.clip:
        with tempfile.TemporaryDirectory() as tmp:
            for n in (120, 300):
                secs, rss = clip_run(n, frame, Path(tmp), names[0])
                print("usclean despeckle, %d frames of 480x640: %.1f s wall, peak RSS %.0f MB" % (n, secs, rss))
    return 0


if __name__ == "__main__":
    sys.exit(main())
