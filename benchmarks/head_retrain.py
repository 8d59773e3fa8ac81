"""Train only the uncertainty head of a shipped model's members again, and score it on the foreign sets.

The members' image output stays bit for bit what it was (``TrainConfig.train_only = "uncertainty_head"``:
every weight that feeds the image is frozen, only the log-variance learns). Each member ``k`` is
warm-started from member ``k`` of the shipped model and trained ``--steps`` more steps on its recipe's own
training pairs, with the plain Gaussian likelihood (``--beta`` 0) or β-NLL, optionally with a head of its
own (``--head W``: two 3×3 convolutions of width W on the last features, whose output is added to the
log-variance; it starts at zero, so training starts from the shipped head). The stacked members are
exported with a freshly fitted calibration (``engine.train.export_members``) and scored by
``benchmarks/uncertainty_ceiling.py`` (model / oracle / ceiling r per pixel, 8×8 patch and image).

    python benchmarks/head_retrain.py --runs runs_head --data data [--model multiprobe] [--head 32]
        [--steps 3000] [--lr 3e-4] [--t-focus F] [--member 0 ...]

Resumable: a finished member is skipped when the command is run again. ``docs/experiments/
uncertainty_ceiling.md`` has the results.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="run folders and the exported model go here")
    ap.add_argument("--data", type=Path, required=True, help="the recipes' training-data sets (built if absent)")
    ap.add_argument("--model", default="multiprobe")
    ap.add_argument("--head", type=int, default=0, help="width of a head of its own (default 0: the last layer's)")
    ap.add_argument("--beta", type=float, default=0.0, help="beta-NLL exponent (default 0: the plain likelihood)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--t-focus", type=float, help="share of steps at the last sampler steps (default: the recipe's)")
    ap.add_argument("--member", type=int, action="append", help="only these members (0-based; default all)")
    ap.add_argument("--seed", type=int, default=311, help="member k draws its data order from seed + k")
    a = ap.parse_args(argv)

    import train_shipped as ts
    import uncertainty_ceiling

    from engine.train import export_members, run_steps, train
    from engine.weights import resolve

    def log(msg: str) -> None:
        print(time.strftime("%H:%M:%S"), msg, flush=True)

    rec = ts.recipe(a.model)
    n = len(rec["members"])
    rec["finetune"] = {"members": [a.seed + k for k in range(n)], "max_steps": a.steps, "lr": a.lr, "warmup": 50,
                       "train_only": "uncertainty_head", "nll_beta": a.beta, "head": a.head, "precision": "fp32"}
    data = ts.build_data(a.data, rec["dataset"], log)
    stage1 = a.runs / "stage1"
    ts.seed_stage1(resolve(a.model), stage1, log)
    runs = []
    for k in range(n):
        run = a.runs / ("member%d" % k)
        runs.append(run)
        if a.member and k not in a.member:
            continue
        cfg = ts.finetune_config(rec, k, a.seed + k, stage1, data, 1, "cpu")
        if a.t_focus is not None:
            cfg = replace(cfg, t_focus=a.t_focus)
        if run_steps(run) < a.steps:
            log("member %d: the uncertainty head only, %d steps, in %s" % (k, a.steps, run))
            train(cfg, run, log=lambda m: log(m) if "checkpoint" in m else None)
    done = [r for r in runs if run_steps(r) >= a.steps]
    model = a.runs / "model"
    export_members(done, model, "%s-head" % a.model, recipe=rec, log=log)
    return uncertainty_ceiling.main(["--model", str(model), "-o", str(a.runs / "ceiling.md")])


if __name__ == "__main__":
    sys.exit(main())
