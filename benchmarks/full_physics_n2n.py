"""Does training on full physics close the foreign-set gap?  Noise2Noise fine-tunes of the baseline member.

0.2.9 and 0.2.10 ruled out width, length and probe variety: the lever left was training data whose errors
look like full physics.  Full-physics targets cost many 10–60 s draws per image, but two draws of one
medium make a pair whose target (the other draw) has the speckle-free B-mode as its expectation
(:mod:`simulator.fullpairs`).  Each variant starts from the shipped ``baseline`` member and trains
``--steps`` more at peak lr 3e-4 (as ``capacity_length``'s ``ft-4500``) on its recipe's fast-path pairs
with a share of full-physics Noise2Noise pairs mixed in:

* ``ft-fast`` — share 0: the control (the same extra steps on the fast-path pairs alone);
* ``ft-n2n30`` / ``ft-n2n60`` — about 30 % / 60 % of the pairs drawn are full-physics draws.

Every variant and the shipped ``baseline`` are then scored on each probe's foreign set (affine-fitted PSNR
against the speckle-free B-mode, with 1 and with 4 leave-one-out inputs per image), in one run, each with
its paired difference to the control over the 32 images.  The pool is made first with
``python -m simulator.fullpairs --out POOL --n N`` (resumable; 80 phantoms took 56 min on two cores).
Results: ``docs/experiments/full_physics_pairs.md`` (no gain).

    python benchmarks/full_physics_n2n.py --pool POOL --runs RUNS --data data [--only ft-fast ...]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SHARES = {"ft-fast": 0.0, "ft-n2n30": 0.3, "ft-n2n60": 0.6}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", type=Path, required=True, help="a simulator.fullpairs pool")
    ap.add_argument("--runs", type=Path, required=True, help="run folders, mixed data and exported variants go here")
    ap.add_argument("--data", type=Path, required=True, help="the recipes' training-data sets (built if absent)")
    ap.add_argument("--only", nargs="+", choices=sorted(SHARES), help="these variants only (default: all)")
    ap.add_argument("--phantoms", type=int, help="the pool's first N phantoms (default: all there are)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    import train_shipped as ts
    from capacity_length import foreign_image_psnr

    from engine.evalstats import paired_diff
    from engine.train import export_members, run_steps, train
    from simulator.foreign import PROBES
    from simulator.fullpairs import load_pool, mixed_dataset, n2n_pairs

    rec = ts.recipe("baseline")
    base = ts.build_data(a.data, rec["dataset"], print)
    pool = load_pool(a.pool, a.phantoms)
    pairs = n2n_pairs(pool, seed=rec["members"][0])
    print("pool: %d phantoms (%s), %d ordered Noise2Noise pairs" % (
        len(pool["draws"]), ", ".join("%s %d" % (p, int(np.sum(pool["probe"] == p))) for p in PROBES),
        len(pairs["bmode"])), flush=True)
    cfg0 = ts.member_config(rec, rec["members"][0], base, a.threads, "cpu")
    models = {"shipped baseline": "baseline"}
    for name in a.only or SHARES:
        run, out = a.runs / name, a.runs / (name + "-model")
        data = mixed_dataset(base, pairs, SHARES[name], a.runs / (name + "-data")) if SHARES[name] else base
        cfg = replace(cfg0, data_dir=str(data), max_steps=a.steps, lr=3e-4, name="n2n-" + name,
                      init=str(ROOT / "resources" / "weights" / "baseline"), init_member=0)
        if run_steps(run) < cfg.max_steps:
            t = time.time()
            train(cfg, run, log=lambda m: print(m, flush=True) if "checkpoint" in m else None)
            print("%s: trained in %.1f min (%d training pairs)" % (
                name, (time.time() - t) / 60, len(list((Path(data) / "train").glob("*.npz")))), flush=True)
        if not (out / "model.json").is_file():
            export_members([run], out, name, recipe={"card": rec["card"]}, n_eval=16, log=print)
        models[name] = str(out)
    for inputs in (1, 4):
        print("foreign sets, affine-fitted PSNR (dB), %s, %d input(s) per image:" % (" / ".join(PROBES), inputs))
        per = {name: foreign_image_psnr(model, inputs) for name, model in models.items()}
        ref = "ft-fast" if "ft-fast" in per else "shipped baseline"
        for name, sc in per.items():
            d = paired_diff(np.concatenate([sc[p] for p in PROBES]), np.concatenate([per[ref][p] for p in PROBES]))
            print("  %-18s %s   vs %s: %+.3f dB (95 %% CI %+.3f … %+.3f, %d images)" % (
                name, " / ".join("%.2f" % sc[p].mean() for p in PROBES), ref, d["diff"], d["lo"], d["hi"], d["n"]),
                flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
