"""Early loss spikes of the wide half-resolution member: which setting makes them (docs/experiments/half_resolution.md).

Trains ``multiprobe``'s recipe with the wide member's network (base 32 at half resolution, bf16, 9000-step
cosine from a peak learning rate of 1e-3) for the first ``--steps`` steps only, one run per seed, and prints
the largest running loss after step 100 (a stable run stays below 0.2; a spike goes to 1–3000). The
learning-rate schedule is the full run's: stopping early does not shorten its decay.

    python benchmarks/training_spikes.py --data data --runs runs/spikes --seed 302 --seed 305 \
        [--floor -9] [--precision fp32] [--beta 0.5] [--no-uncertainty] [--steps 1500]
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


class _Stop(Exception):
    pass


def first_steps(cfg, run: Path, steps: int) -> list[tuple[int, float]]:
    """(step, running loss) every 10 steps of ``cfg``'s run until ``steps``."""
    from engine.train import train

    losses: list[tuple[int, float]] = []

    def log(msg: str) -> None:
        m = re.match(r"\S+ step (\d+)  loss (\S+)", msg)
        if m:
            losses.append((int(m.group(1)), float(m.group(2))))
            if losses[-1][0] >= steps:
                raise _Stop

    try:
        train(cfg, run, log=log)
    except _Stop:
        pass
    return losses


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="training-data sets (as train_shipped.py --data)")
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--seed", type=int, action="append", required=True)
    ap.add_argument("--floor", type=float, default=-14.0, help="the uncertainty head's log-variance floor")
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    ap.add_argument("--beta", type=float, default=0.0, help="beta-NLL exponent (0: the plain likelihood)")
    ap.add_argument("--no-uncertainty", action="store_true")
    ap.add_argument("--steps", type=int, default=1500)
    a = ap.parse_args(argv)
    from train_shipped import build_data, member_config, recipe

    rec = recipe("multiprobe")
    rec["config"].update(base=32, unshuffle=2, precision="bf16", max_steps=9000, lr=1e-3)
    data = build_data(a.data, rec["dataset"], print)
    for seed in a.seed:
        cfg = replace(member_config(rec, seed, data, 1, "cpu"), logvar_floor=a.floor, nll_beta=a.beta,
                      precision=a.precision, uncertainty=not a.no_uncertainty, checkpoint_minutes=1e6,
                      name="spikes")
        tag = "seed%d-floor%g-%s%s%s" % (seed, a.floor, a.precision, "-beta%g" % a.beta if a.beta else "",
                                           "-nounc" if a.no_uncertainty else "")
        t = time.time()
        losses = [x for x in first_steps(cfg, a.runs / tag, a.steps) if x[0] > 100]
        step, top = max(losses, key=lambda x: x[1])
        print("%s: largest running loss after step 100: %.3f at step %d; at step %d: %.4f (%.1f min)" % (
            tag, top, step, losses[-1][0], losses[-1][1], (time.time() - t) / 60), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
