"""Small training sweep: which λ, loss and patch size give the best validation PSNR per CPU-minute.

Runs each variant as a 1-member model for ``--minutes`` of training (1 thread) and prints validation
PSNR of posterior sampling with 1, 2 and 4 steps (16 fast-simulated L11-5v validation frames).
Usage: python benchmarks/sweep_training.py [--minutes 3] [--out /tmp/sweep]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.train import TrainConfig, export, train

VARIANTS = {
    "x0_lam30_p64": dict(loss="x0", lam=30 / 255, patch=64, batch=8),
    "ml_lam30_p64": dict(loss="ml", lam=30 / 255, patch=64, batch=8),
    "x0_lam10_p64": dict(loss="x0", lam=10 / 255, patch=64, batch=8),
    "x0_lam30_p96": dict(loss="x0", lam=30 / 255, patch=96, batch=4),
    "x0_lam30_p64_b16": dict(loss="x0", lam=30 / 255, patch=64, batch=8, base=16),
    "x0_lam10_p64_b16": dict(loss="x0", lam=10 / 255, patch=64, batch=8, base=16),
    "x0_lam30_p48_b16": dict(loss="x0", lam=30 / 255, patch=48, batch=12, base=16),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--out", default="/tmp/usclean_sweep")
    ap.add_argument("--only", nargs="*", default=None)
    a = ap.parse_args()
    rows = {}
    for name, kw in VARIANTS.items():
        if a.only and name not in a.only:
            continue
        cfg = TrainConfig(probes=["L11-5v"], members=1, minutes=a.minutes, name=name, checkpoint_minutes=100, **kw)
        run = Path(a.out) / name
        train(cfg, run, log=lambda m: None)
        card = export(run, n_eval=16, log=lambda m: None)
        v = card["metrics"]["validation"]
        rows[name] = {k: round(d["psnr"], 2) for k, d in v.items()}
        rows[name]["steps"] = card["training"]["steps"]
        print(name, json.dumps(rows[name]), flush=True)
    Path(a.out, "summary.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
