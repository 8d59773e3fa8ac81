"""Does the IR-SDE objective itself cost PSNR at one network evaluation?  A from-scratch, equal-step ablation.

The shipped ``l11-5v`` members trail the same-step direct-regression ``baseline`` on L11-5v (README).  This
trains one-member models from scratch with identical seeds, data, crops, learning-rate schedule and step
count, differing only in the objective, and scores each on the committed L11-5v test sets:

  R     direct regression (the baseline's objective: the UNet fed (0, μ) at t = 0)
  D0    IR-SDE, t uniform over 1..T (the reference objective)
  D5    IR-SDE, half of each batch at the last 20 steps (the shipped ensembles' recipe)
  D10   IR-SDE, all of t from the last 20 steps (what the one-NFE default sampler uses)
  D5n   as D5 without the Wiener input preconditioning (the raw x_t − μ input of stages 1-3)
  R4    direct regression trained as four grouped members in one optimiser (member 0 scored): whether
        joint training (one loss, one global gradient clip) costs a member anything

IR-SDE variants are scored at the default one-NFE ``posterior`` sampler and with 10 posterior steps;
every variant gets a paired 95 % confidence interval against ``R`` on the same images.  Each run folder
under ``--runs`` is reused when it already holds the same configuration at ``--steps`` steps.

    python benchmarks/objective_ablation.py --steps 3000 --variants R@1,2 D5@1,2 D10 D0 D5n \\
        [-o docs/experiments/objective_ablation.md]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from engine.evaluate import atomic_write_text, paired_diff
from engine.metrics import per_image, psnr, ssim
from engine.train import (STATE, TrainConfig, _load_checkpoint, ensemble_for, load_config, make_network, run_steps,
                          train)
from simulator.datasets import load_test_set

VARIANTS = {
    "R": ("direct regression", dict(arch="regression", precond="none")),
    "D0": ("IR-SDE, t uniform", dict(t_focus=0.0)),
    "D5": ("IR-SDE, half at the last 20 t", dict(t_focus=0.5)),
    "D10": ("IR-SDE, all at the last 20 t", dict(t_focus=1.0)),
    "D5n": ("IR-SDE as D5, raw input", dict(t_focus=0.5, precond="none")),
    "R4": ("regression, 4 grouped members", dict(arch="regression", precond="none", members=4)),
}
DEFAULT_VARIANTS = ["R", "D5", "D10", "D0", "D5n"]


def config(name: str, seed: int, threads: int) -> TrainConfig:
    kw = dict(probes=["L11-5v"], members=1, minutes=10000, arch="irsde", seed=seed, lam=30 / 255, patch=64,
              batch=8, base=16, checkpoint_minutes=1000, threads=threads, name=name, precond="wiener", lr=1e-3)
    kw.update(VARIANTS[name][1])
    return TrainConfig(**kw)


def trained(cfg: TrainConfig, run: Path, steps: int) -> tuple[torch.nn.Module, bool]:
    """Train ``cfg`` for ``steps`` steps in ``run`` (reused when it already holds that run) → (EMA network,
    whether the run was reused)."""
    step = run_steps(run)
    if (run / STATE).is_file():
        same = {k: v for k, v in asdict(load_config(run)).items() if k != "threads"} == \
            {k: v for k, v in asdict(cfg).items() if k != "threads"}
        if not same or step > steps:
            raise SystemExit("%s holds another run (settings differ or more steps); use another --runs" % run)
    done = step == steps
    if not done:  # a run stopped part-way resumes to the same total (its learning rate decays over ``steps``)
        train(cfg, run, log=lambda m: None, max_steps=steps - step)
    net = make_network(cfg)
    _, ema = _load_checkpoint(run, net, None)
    net.load_state_dict(ema)
    return net.eval(), done


def scores(out: np.ndarray, ts: dict) -> tuple[np.ndarray, np.ndarray]:
    m = ts["mask"].astype(bool)
    return per_image(psnr, out, ts["clean"], m), per_image(ssim, out, ts["clean"], m)


def parse_variants(specs: list[str], seeds: list[int]) -> dict[str, list[int]]:
    """``NAME`` (the ``--seeds``) or ``NAME@1,2`` (its own seeds) → {name: seeds}; ``R`` gets every seed used."""
    out: dict[str, list[int]] = {}
    for spec in specs:
        name, _, own = spec.partition("@")
        if name not in VARIANTS:
            raise SystemExit("unknown variant %r (choose from %s)" % (name, ", ".join(VARIANTS)))
        out[name] = [int(x) for x in own.split(",")] if own else list(seeds)
    every = sorted({s for v in out.values() for s in v})
    out["R"] = sorted(set(out.get("R", [])) | set(every))
    return {"R": out.pop("R"), **out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS,
                    help="NAME or NAME@SEED,SEED (own seeds); R is always run, with every seed used")
    ap.add_argument("--runs", default="/tmp/usclean_objective_ablation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", help="also write the table to this markdown file")
    a = ap.parse_args()
    variants = parse_variants(a.variants, a.seeds)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    sets = {k: load_test_set(kind=k, probe="L11-5v") for k in ("fast", "full")}
    res: dict[tuple, np.ndarray] = {}  # (variant, seed, setting, kind) → (2, images): PSNR, SSIM
    reused = []
    for seed in sorted({s for v in variants.values() for s in v}):
        for name, vseeds in variants.items():
            if seed not in vseeds:
                continue
            cfg = config(name, seed, a.threads)
            t1 = time.time()
            net, was_there = trained(cfg, Path(a.runs) / ("run_%s_%d_s%d" % (name, a.steps, seed)), a.steps)
            reused += ["%s seed %d" % (name, seed)] * was_there
            ens = ensemble_for(net, cfg)
            settings = [("1 NFE", 1)] + ([("10 steps", 10)] if cfg.arch == "irsde" else [])
            for label, steps in settings:
                for kind, ts in sets.items():
                    out = ens.despeckle(ts["bmode"].astype(np.float32), steps=steps, members=1, seed=0).mean
                    res[(name, seed, label, kind)] = np.stack(scores(out, ts))
            print("seed %d %s: %s (%.0f s)" % (seed, name, ", ".join(
                "%s %s %.2f dB" % (k, lab, res[(name, seed, lab, k)][0].mean()) for lab, _ in settings
                for k in sets), time.time() - t1), flush=True)

    lines = ["| variant | seeds | setting | L11-5v fast PSNR / SSIM | − R (95 % CI) | L11-5v full PSNR / SSIM "
             "| − R (95 % CI) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, vseeds in variants.items():
        for label in ("1 NFE", "10 steps"):
            if (name, vseeds[0], label, "fast") not in res:
                continue
            cells = ["%s (%s)" % (name, VARIANTS[name][0]), ", ".join(map(str, vseeds)), label]
            for kind in ("fast", "full"):  # pooled over the variant's seeds, paired with R on the same seeds
                v = np.concatenate([res[(name, s, label, kind)] for s in vseeds], axis=1)
                r = np.concatenate([res[("R", s, "1 NFE", kind)] for s in vseeds], axis=1)
                d = paired_diff(v[0], r[0])
                cells += ["%.2f / %.3f" % (v[0].mean(), v[1].mean()),
                          "—" if name == "R" else "%+.2f (%+.2f…%+.2f)" % (d["diff"], d["lo"], d["hi"])]
            lines.append("| " + " | ".join(cells) + " |")
    per_seed = ["%s seed %d: fast %.2f, full %.2f" % (n, s, res[(n, s, "1 NFE", "fast")][0].mean(),
                                                      res[(n, s, "1 NFE", "full")][0].mean())
                for n, vs in variants.items() for s in vs if len(variants["R"]) > 1]
    text = "\n".join([
        "One member per variant and seed, trained from scratch for %d optimiser steps (8 crops of 64² per step, "
        "base-16 UNet, peak lr 1e-3 with the step-based cosine decay, two CPU threads); scores pooled over a "
        "variant's seeds (%d fast + %d full-physics L11-5v test images per seed) and paired with R's on the same "
        "seeds and images; normalisation off, sample seed 0."
        % (a.steps, len(sets["fast"]["clean"]), len(sets["full"]["clean"])),
        "", *lines, ""] + (["Per seed (1 NFE): " + "; ".join(per_seed) + ".", ""] if per_seed else []) +
        ["Run time %.1f min%s." % ((time.time() - t0) / 60, "; reused from earlier runs of these settings in "
                                   "`--runs` (their training not counted): " + ", ".join(reused) if reused else "")])
    print(text)
    if a.out:
        atomic_write_text(a.out, "# Objective ablation: IR-SDE vs direct regression at equal steps\n\n"
                          "Written by `python benchmarks/objective_ablation.py --steps %d --variants %s -o %s`.\n\n%s\n"
                          % (a.steps, " ".join(a.variants), a.out, text))


if __name__ == "__main__":
    main()
