"""How much does the number of distinct training pairs matter?  The ``baseline`` member on 750, 3000 (the
recipe's) and 6000 pairs, scored on its own validation and on the foreign sets.

The recipe trains 9000 steps of 16 crops from a replay pool fed by its 3000 pairs, so it goes through them
about three times.  Training longer lowers the foreign scores (``capacity_length``), which fewer distinct
pairs than the network can use would explain.  Each variant is the recipe with only the data's size
changed, same seed, same steps: ``n750`` reads the first 750 of the recipe's pairs, ``n6000`` the recipe's 3000
and 3000 more from the same generator and seed (indices 3000-5999, made here).  The shipped ``baseline`` is the
3000-pair point; ``n3000-seed302`` is the recipe itself with another seed, for the spread between runs (a
data set of another size also visits its pairs in another order).  The two new data sets are folders of
links to the recipe's pairs, beside it under ``--data``.

    python benchmarks/data_scaling.py --runs runs_scaling --data data [--only n750 n6000 n3000-seed302] [--build-only]

``--build-only`` makes the 6000-pair set and stops (one worker: it can run beside a training on the other
core).  Scores: PSNR on the recipe's 64 validation pairs against their exact target, and affine-fitted PSNR
on the foreign sets (mean of 4 leave-one-out inputs per image); paired differences against the shipped member
over the 64 frames and over the 32 foreign images, with 95 % t intervals.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SIZES = {"n750": 750, "n6000": 6000, "n3000-seed302": 3000}
#: variants that change the seed too (initialisation and data order): the run-to-run spread at 3000 pairs
SEEDS = {"n3000-seed302": 302}


def linked_set(recipe_data: Path, out: Path, n_train: int, spec: dict) -> Path:
    """A data folder holding links to the first ``min(n_train, 3000)`` training pairs and every validation pair
    of the recipe's set, with the recipe's manifest (``n_train`` pairs); pairs beyond the recipe's are made by
    :func:`simulator.randomized.generate_pairs` with the recipe's generator and seed."""
    from simulator.randomized import generate_pairs

    for split in ("train", "val"):
        (out / split).mkdir(parents=True, exist_ok=True)
        files = sorted((recipe_data / split).glob("*.npz"))
        for f in files[:n_train] if split == "train" else files:
            link = out / split / f.name
            if not link.exists():
                os.symlink(f.resolve(), link)
    have = len(list((out / "train").glob("*.npz")))
    if have < n_train:
        t = time.time()
        s = generate_pairs(out, n_train=n_train, n_val=int(spec.get("n_val", 256)), size=spec["size"],
                           seed=spec["seed"], workers=1, progress=False)
        print(f"{out.name}: {s['written']} pairs made in {(time.time() - t) / 60:.1f} min", flush=True)
    else:
        man = json.loads((recipe_data / "manifest.json").read_text())
        man["n"]["train"] = int(n_train)
        (out / "manifest.json").write_text(json.dumps(man, indent=1))
    return out


def own_val_psnr(model, cfg, n: int = 64) -> np.ndarray:
    """PSNR per frame on the recipe's first ``n`` validation pairs (exact target, normalisation off)."""
    import engine.train as tr
    from engine import load_ensemble, metrics

    noisy, clean = tr.val_set(cfg, n)
    ens = load_ensemble(model)
    return np.array([metrics.psnr(ens.despeckle(x, normalize="off").mean, c) for x, c in zip(noisy, clean)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="run folders and exported variants go here")
    ap.add_argument("--data", type=Path, required=True, help="the recipe's training-data set lives here")
    ap.add_argument("--only", nargs="+", choices=sorted(SIZES), help="these variants only (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--build-only", action="store_true", help="make the 6000-pair set and stop")
    a = ap.parse_args(argv)
    import train_shipped as ts
    from capacity_length import foreign_image_psnr, train_variant

    from engine.evalstats import paired_diff
    from simulator.foreign import PROBES

    rec = ts.recipe("baseline")
    spec = dict(rec["dataset"])
    recipe_data = ts.build_data(a.data, spec, print)
    names = a.only or list(SIZES)
    sets = {name: (recipe_data if SIZES[name] == int(spec["n_train"]) else
                   linked_set(recipe_data, a.data / f"{recipe_data.name}_{name}", SIZES[name], spec))
            for name in (["n6000"] if a.build_only else names)}
    if a.build_only:
        return 0
    cfg0 = ts.member_config(rec, rec["members"][0], recipe_data, a.threads, "cpu")
    models = {"shipped (3000 pairs)": "baseline"}
    for name in names:
        cfg = replace(cfg0, data_dir=str(sets[name]), seed=SEEDS.get(name, cfg0.seed), name="scaling-" + name)
        models[name] = train_variant(cfg, a.runs / name, a.runs / (name + "-model"), name, rec)
    own = {k: own_val_psnr(m, cfg0) for k, m in models.items()}
    foreign = {k: foreign_image_psnr(m, inputs=4) for k, m in models.items()}
    ref = "shipped (3000 pairs)"
    print("\n| pairs | own validation (64) | − shipped | foreign " + " / ".join(PROBES) + " | − shipped, 32 images |")
    print("| --- | --- | --- | --- | --- |")
    f0 = np.concatenate([foreign[ref][p] for p in PROBES])
    for k in models:
        d_own = paired_diff(own[k], own[ref])
        d_for = paired_diff(np.concatenate([foreign[k][p] for p in PROBES]), f0)
        print(f"| {k} | {own[k].mean():.2f} | {d_own['diff']:+.3f} ({d_own['lo']:+.3f} … {d_own['hi']:+.3f}) | "
              + " / ".join(f"{foreign[k][p].mean():.2f}" for p in PROBES)
              + f" | {d_for['diff']:+.3f} ({d_for['lo']:+.3f} … {d_for['hi']:+.3f}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
