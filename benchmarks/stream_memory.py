"""Peak memory of ``usclean despeckle`` against clip length (the streaming check of issue 16).

Writes synthetic 480 x 640 cines of N frames (moving speckle with burned-in text, via the
project's own ``write_cine``), despeckles each with a tiny random ensemble (the network's cost
is not what is measured; the shipped models have the same I/O path) in a fresh process, and
prints that process's peak resident memory (its VmHWM, ``engine.bench.peak_memory_mb``).

    python benchmarks/stream_memory.py            # N = 30 and 300
    python benchmarks/stream_memory.py --frames 30 100 300
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def synthetic_cine(n: int, shape=(480, 640), seed: int = 0) -> np.ndarray:
    """(n, H, W) uint8: speckle that shifts one pixel per frame, with a static text line."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = shape
    base = np.abs(rng.standard_normal((h, w + n)) + 1j * rng.standard_normal((h, w + n)))
    base = cv2.GaussianBlur(base.astype(np.float32), (3, 3), 0.8)
    disp = np.clip((20 * np.log10(np.maximum(base, 1e-6)) + 40) / 50, 0, 1)
    out = np.empty((n, h, w), np.uint8)
    for i in range(n):
        out[i] = np.rint(disp[:, i:i + w] * 230).astype(np.uint8)
        cv2.putText(out[i], "MI 0.9  TIS 0.7", (20, 30), cv2.FONT_HERSHEY_PLAIN, 1.2, 255, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, nargs="+", default=[30, 300])
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from engine.testing import tiny_ensemble
    from engine.weights import save_model
    from usclean_gui.dicomio import write_cine

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny = tiny_ensemble(seed=0)
        save_model(tmp / "tiny", tiny.net, {"name": "tiny-bench", "mode": "irsde", "schedule": tiny.schedule.as_dict(),
                                            "default_sampler": "posterior", "default_steps": 1})
        for n in args.frames:
            src = tmp / ("clip_%d.dcm" % n)
            write_cine(synthetic_cine(n), (0.2, 0.2), 33.3, src)
            cmd = [sys.executable, "-c",
                   "import sys; from engine.bench import peak_memory_mb; from usclean_gui.cli import main; "
                   "rc = main(sys.argv[1:]); print('peak_rss_mb', peak_memory_mb()); sys.exit(rc)",
                   "despeckle", str(src), "-o", str(tmp / "out.dcm"), "--uncertainty", str(tmp / "std.dcm"),
                   "--model", str(tmp / "tiny"), "--quiet", "--device", "cpu"]
            t0 = time.perf_counter()
            run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                                 env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
            if run.returncode != 0:
                print(run.stderr)
                return 1
            peak = float(run.stdout.split("peak_rss_mb")[1].split()[0])
            print("%4d frames of 480x640 (%.0f MB of pixels): peak RSS %.0f MB, %.1f s (%s)"
                  % (n, n * 480 * 640 / 1e6, peak, time.perf_counter() - t0,
                     (tmp / "out.dcm").stat().st_size // 1_000_000
                     and "%d MB written" % ((tmp / "out.dcm").stat().st_size // 1_000_000)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
