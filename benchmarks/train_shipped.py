"""Train the shipped models from their declarative recipes, ``resources/weights/<name>/train.json``.

A recipe holds everything that defines a model: the training-data set (``dataset``: the arguments of
``simulator.randomized.generate_pairs``), the training configuration shared by every member (``config``:
``engine.train.TrainConfig`` fields), the member seeds (``members``) and the card's text.  This script

1. builds the recipe's data set under ``--data`` (a folder named by the hash of its parameters, so two
   recipes with the same data share it; resumable),
2. trains each member as its own single-member run under ``--runs/<name>/seed<k>`` until the recipe's
   ``max_steps`` (resumable: re-running the command continues where it stopped; finished runs are skipped),
3. with ``--export``, stacks the members into ``resources/weights/<name>`` (fp16 safetensors, model card
   with the recipe, the uncertainty calibration and the validation metrics).

    python benchmarks/train_shipped.py --runs runs --data data                  # everything, in order
    python benchmarks/train_shipped.py --runs runs --data data --only baseline  # one model
    python benchmarks/train_shipped.py --runs runs --data data --export         # write resources/weights
    python benchmarks/train_shipped.py --runs runs --data data --only multiprobe --member 2   # one member

``--device cuda`` runs the optimiser steps on a GPU (the simulator stays on the CPU).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ORDER = ("multiprobe", "baseline", "l11-5v")


def recipe(name: str) -> dict:
    return json.loads((ROOT / "resources" / "weights" / name / "train.json").read_text())


def dataset_dir(data_root: Path, spec: dict) -> Path:
    key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return data_root / f"randomized_{key}"


def build_data(data_root: Path, spec: dict, log) -> Path:
    from simulator.randomized import generate_pairs

    out = dataset_dir(data_root, spec)
    t = time.time()
    s = generate_pairs(out, workers=1, progress=False, **spec)
    if s["written"]:
        log(f"data {out.name}: {s['written']} pairs written in {(time.time() - t) / 60:.1f} min")
    return out


def member_config(rec: dict, seed: int, data: Path, threads: int, device: str):
    from engine.train import TrainConfig

    cfg = dict(rec["config"])
    for key in ("zoom", "dr_ratio"):
        if key in cfg:
            cfg[key] = tuple(cfg[key])
    cfg["disable"] = tuple(cfg.get("disable", ()))
    return TrainConfig(**cfg, seed=int(seed), members=1, data_dir=str(data), threads=threads, device=device,
                       name=f"{rec['name']}-seed{seed}", minutes=1e6)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="run folders go here (resumable)")
    ap.add_argument("--data", type=Path, required=True, help="training-data sets go here (resumable)")
    ap.add_argument("--only", nargs="+", choices=ORDER, help="these models only (default: all, in order)")
    ap.add_argument("--member", type=int, action="append", help="only member(s) with these indices (0-based)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--export", action="store_true", help="stack finished members into resources/weights/<name>")
    a = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(time.strftime("%H:%M:%S"), msg, flush=True)

    from engine.train import export_members, run_steps, train

    for name in a.only or ORDER:
        rec = recipe(name)
        data = build_data(a.data, rec["dataset"], log)
        runs = []
        for k, seed in enumerate(rec["members"]):
            run = a.runs / name / f"seed{seed}"
            runs.append(run)
            if a.member and k not in a.member:
                continue
            cfg = member_config(rec, seed, data, a.threads, a.device)
            if run_steps(run) >= cfg.max_steps:
                continue
            log(f"{name} member {k} (seed {seed}): training to {cfg.max_steps} steps in {run}")
            train(cfg, run, log=lambda m: print(m, flush=True) if "checkpoint" in m or "resuming" in m else None)
        if a.export:
            if not all(run_steps(r) >= rec["config"]["max_steps"] for r in runs):
                log(f"{name}: not every member has finished; not exported")
                continue
            export_members(runs, ROOT / "resources" / "weights" / name, name, description=rec.get("description", ""),
                           recipe=rec, log=log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
