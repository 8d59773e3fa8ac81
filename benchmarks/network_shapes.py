"""Network shapes against the CPU's matrix units: the same UNet at full and at half resolution, one run.

Each shape is exported to ONNX with random weights (speed does not depend on them) and timed in OpenVINO on
the network input a real 480 × 640 cardiac frame becomes after grain normalisation (480 × 376), in bf16
where the CPU has AVX512-BF16 or AMX and in fp32, on 1 thread (the app's engine on a 2-core machine) and on
all cores; every time is also given as a ratio to the ensemble member's (base 16, 2 levels) in the same
setting. ``unshuffle 2`` runs the whole UNet on 2 × 2 pixel blocks as channels: the same multiply-adds
at twice the base width, which fills AMX tiles (32 bf16 channels) where 16 channels leave them half empty.

    python benchmarks/network_shapes.py [--repeats 9]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = (  # (label, UNet keyword arguments)
    ("member: base 16, 2 levels", dict(base=16)),
    ("0.2.4 preview: base 8, 3 levels", dict(base=8, levels=3)),
    ("base 16, 3 levels", dict(base=16, levels=3)),
    ("1/2 res: base 16, 3 levels", dict(base=16, levels=3, unshuffle=2)),
    ("1/2 res: base 16, 2 levels", dict(base=16, unshuffle=2)),
    ("1/2 res: base 24, 2 levels", dict(base=24, unshuffle=2)),
    ("1/2 res: base 32, 2 levels", dict(base=32, unshuffle=2)),
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args(argv)
    import torch

    from engine import backends
    from engine.network import UNet, init_members, param_count

    precisions = (["bf16"] if backends.openvino_bf16() else []) + ["f32"]
    threads = sorted({1, os.cpu_count() or 1})
    x = np.random.default_rng(0).random((1, 1, 2, 480, 376), dtype=np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, kw in SHAPES:
            net = init_members(UNet(1, out_ch=2, **kw).config(), [7])
            with torch.no_grad():
                for p in net.parameters():
                    p.normal_(0, 0.05)  # a zero output layer could be folded away
            folder = Path(tmp) / label.replace(" ", "_").replace(":", "").replace("/", "")
            folder.mkdir()
            backends.export_onnx(net.eval(), folder, 2)
            times = {}
            for prec in precisions:
                for th in threads:
                    run = backends.OpenVinoNetwork([folder / "member0.onnx"], 2, threads=th, precision=prec,
                                                   pad=backends.pad_multiple(net.config()))
                    for _ in range(3):
                        run(x, 50)
                    ts = []
                    for _ in range(a.repeats):
                        t = time.perf_counter()
                        run(x, 50)
                        ts.append(time.perf_counter() - t)
                    times[prec, th] = 1000 * float(np.median(ts))
            rows.append((label, param_count(net), times))
    ref = rows[0][2]
    cols = [(p, t) for p in precisions for t in threads]
    print("OpenVINO on a 480x376 network input, ms (x the member's time in the same setting):")
    print("%-34s %8s  %s" % ("shape", "params", "  ".join("%-18s" % ("%s, %d thr" % c) for c in cols)))
    for label, n, times in rows:
        print("%-34s %6.0f k  %s" % (label, n / 1000, "  ".join(
            "%7.1f (%.2f x)     " % (times[c], times[c] / ref[c]) for c in cols)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
