"""Train the shipped models from their declarative recipes, ``resources/weights/<name>/train.json``.

A recipe holds everything that defines a model: the training-data set (``dataset``: the arguments of
``simulator.randomized.generate_pairs``), the training configuration shared by every member (``config``:
``engine.train.TrainConfig`` fields), the member seeds (``members``) and the card's text.  This script

1. builds the recipe's data set under ``--data`` (a folder named by the hash of its parameters, so two
   recipes with the same data share it; resumable),
2. trains each member as its own single-member run under ``--runs/<name>/seed<k>`` until the recipe's
   ``max_steps`` (resumable: re-running the command continues where it stopped; finished runs are skipped),
3. where the recipe has a ``finetune`` stage (a model trained on, warm-started from its first stage):
   stacks the first-stage members into ``--runs/<name>/stage1`` and trains each member ``k`` again from
   member ``k`` of it, under ``--runs/<name>/ft-seed<j>`` with the stage's own seeds, learning rate and
   ``max_steps`` (``--stage1 FOLDER`` takes an exported model as the first stage instead of training it),
4. where the recipe has a ``preview`` stage (a smaller network for the app's live preview, trained with the
   same data and configuration but its own ``base`` / ``levels`` / ``seed`` / ``max_steps``): trains it under
   ``--runs/<name>/preview-seed<k>`` (first: it is cheap),
5. with ``--export``, stacks the (last-stage) members into ``resources/weights/<name>`` (fp16
   safetensors, model card with the recipe, the uncertainty calibration and the validation metrics) and
   the preview into ``resources/weights/<name>/preview`` (a one-member model folder with its own recipe).

    python benchmarks/train_shipped.py --runs runs --data data                  # everything, in order
    python benchmarks/train_shipped.py --runs runs --data data --only baseline  # one model
    python benchmarks/train_shipped.py --runs runs --data data --export         # write resources/weights
    python benchmarks/train_shipped.py --runs runs --data data --only multiprobe --member 2   # one member
    python benchmarks/train_shipped.py --runs runs --data data --only multiprobe \
        --stage1 resources/weights/multiprobe    # fine-tune stage only, from the shipped first stage

``--device cuda`` runs the optimiser steps on a GPU (the simulator stays on the CPU).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ORDER = ("multiprobe", "baseline", "l11-5v")
#: what a fine-tune stage may set for itself (a head-only stage: train_only, its own likelihood and precision)
FINETUNE_KEYS = ("lr", "warmup", "train_only", "head", "nll_beta", "precision", "uncertainty_weight")


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


def finetune_config(rec: dict, k: int, seed: int, stage1: Path, data: Path, threads: int, device: str):
    """Member ``k`` of the recipe's fine-tune stage: the first stage's configuration with the stage's
    overrides (``max_steps`` and any of ``FINETUNE_KEYS``), its own ``seed``, warm-started from member ``k``
    of ``stage1``."""
    from dataclasses import replace

    ft = rec["finetune"]
    cfg = member_config(rec, seed, data, threads, device)
    return replace(cfg, **{key: ft[key] for key in FINETUNE_KEYS if key in ft}, max_steps=int(ft["max_steps"]),
                   init=str(stage1), init_member=int(k), name=f"{rec['name']}-ft-seed{seed}")


def preview_recipe(rec: dict) -> dict:
    """The preview network's own declarative recipe: the model's data and configuration with the preview
    stage's overrides (``base``, ``levels``, ``unshuffle``, ``max_steps``, ``lr``, ``warmup``, ``precision``,
    ``nll_beta``), one member (its ``seed``)."""
    pv = rec["preview"]
    cfg = dict(rec["config"])
    keys = ("base", "levels", "unshuffle", "max_steps", "lr", "warmup", "precision", "nll_beta")
    cfg.update({k: pv[k] for k in keys if k in pv})
    return {"name": "%s-preview" % rec["name"], "preview_of": rec["name"], "description": pv.get("description", ""),
            "dataset": rec["dataset"],
            "config": cfg, "members": [int(pv["seed"])], "card": {"notes": [pv["why"]]} if "why" in pv else {}}


def preview_stage(rec: dict, data: Path, a, log) -> None:
    """Train (and with ``--export`` write) the recipe's preview network."""
    from engine.train import export_members, run_steps

    prec = preview_recipe(rec)
    seed = prec["members"][0]
    run = a.runs / rec["name"] / f"preview-seed{seed}"
    train_members([(0, run, partial(member_config, prec, seed, data, a.threads, a.device))], None,
                  f"{rec['name']} preview", log)
    if a.export and run_steps(run) >= prec["config"]["max_steps"]:
        export_members([run], ROOT / "resources" / "weights" / rec["name"] / "preview", prec["name"],
                       description=prec["description"], recipe=prec, log=log)


def seed_stage1(src: Path, dest: Path, log) -> None:
    """Copy an exported model (``--stage1``) as a recipe's first stage (the files a warm start reads)."""
    import shutil

    if (dest / "model.json").is_file():
        return
    if not (src / "model.json").is_file():
        raise SystemExit(f"--stage1 {src}: not an exported model folder (no model.json)")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in ("model.json", "model.safetensors", "MODEL_CARD.md"):
        if (src / f).is_file():
            shutil.copy2(src / f, tmp / f)
    tmp.rename(dest)
    log(f"first stage taken from {src}")


def train_members(jobs, only, label: str, log) -> list[Path]:
    """Train every ``(k, run, make_config)`` of ``jobs`` that has not reached its ``max_steps`` (only the
    members ``only`` when given); returns all the runs."""
    from engine.train import run_steps, train

    def quiet(msg: str) -> None:
        if "checkpoint" in msg or "resuming" in msg or "initialised" in msg:
            print(msg, flush=True)

    for k, run, make in jobs:
        if only and k not in only:
            continue
        cfg = make()
        if run_steps(run) >= cfg.max_steps:
            continue
        log(f"{label} {k} (seed {cfg.seed}): training to {cfg.max_steps} steps in {run}")
        train(cfg, run, log=quiet)
    return [run for _, run, _ in jobs]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="run folders go here (resumable)")
    ap.add_argument("--data", type=Path, required=True, help="training-data sets go here (resumable)")
    ap.add_argument("--only", nargs="+", choices=ORDER, help="these models only (default: all, in order)")
    ap.add_argument("--member", type=int, action="append", help="only member(s) with these indices (0-based)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--export", action="store_true", help="stack finished members into resources/weights/<name>")
    ap.add_argument("--stage1", type=Path, help="an exported model to use as the first stage of a recipe with a "
                    "finetune stage (with --only NAME)")
    a = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(time.strftime("%H:%M:%S"), msg, flush=True)

    from engine.train import export_members, run_steps

    if a.stage1 and (not a.only or len(a.only) != 1):
        ap.error("--stage1 needs --only with one model")
    for name in a.only or ORDER:
        rec = recipe(name)
        data = build_data(a.data, rec["dataset"], log)
        if "preview" in rec and not a.member:
            preview_stage(rec, data, a, log)
        stage1 = a.runs / name / "stage1"
        if a.stage1:
            if "finetune" not in rec:
                ap.error(f"--stage1: the {name} recipe has no finetune stage")
            seed_stage1(a.stage1, stage1, log)
        if not ("finetune" in rec and (stage1 / "model.json").is_file()):
            jobs = [(k, a.runs / name / f"seed{seed}", partial(member_config, rec, seed, data, a.threads, a.device))
                    for k, seed in enumerate(rec["members"])]
            runs = train_members(jobs, a.member, f"{name} member", log)
            if not all(run_steps(r) >= rec["config"]["max_steps"] for r in runs):
                log(f"{name}: not every member has finished" + ("; not exported" if a.export else ""))
                continue
            if "finetune" in rec:
                export_members(runs, stage1, f"{name}-stage1", description=rec.get("description", ""),
                               recipe={k: v for k, v in rec.items() if k != "finetune"}, log=log)
        if "finetune" in rec:
            jobs = [(k, a.runs / name / f"ft-seed{seed}",
                     partial(finetune_config, rec, k, seed, stage1, data, a.threads, a.device))
                    for k, seed in enumerate(rec["finetune"]["members"])]
            runs = train_members(jobs, a.member, f"{name} fine-tune (from {stage1.name}) member", log)
            if not all(run_steps(r) >= rec["finetune"]["max_steps"] for r in runs):
                log(f"{name}: not every fine-tune member has finished" + ("; not exported" if a.export else ""))
                continue
        if a.export:
            export_members(runs, ROOT / "resources" / "weights" / name, name, description=rec.get("description", ""),
                           recipe=rec, log=log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
