"""Does a network of another shape, disagreeing with the ensemble, say where the ensemble errs off-domain?

The members of ``multiprobe`` share one architecture and one objective, so they agree on their shared
errors. Two other networks trained on the same pairs are at hand: the model's preview (half resolution,
base 16, three levels; it runs anyway while a cine plays) and ``baseline`` (direct regression). Their
squared difference from the ensemble mean is added to the ensemble's own parts as a further variance:

    total² = a · aleatoric² + e · epistemic² + p · (preview − mean)² + b · (baseline − mean)²

The weights come from a non-negative least-squares fit of the squared error on the recipe's 64 validation
frames (the fast path, as the shipped calibration is fitted), never from the foreign sets. Each
combination is then scored on the foreign sets (Pearson r of the std against |error| per pixel, 8×8 patch
and image, 9 inputs per image) next to the shipped std.

    python benchmarks/architecture_spread.py --data data [--model multiprobe] [--other baseline]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

COMBOS = {"aleatoric + epistemic": ("ale", "epi"),
          "+ preview": ("ale", "epi", "preview"),
          "+ other": ("ale", "epi", "other"),
          "+ preview + other": ("ale", "epi", "preview", "other"),
          "preview alone": ("preview",),
          "other alone": ("other",)}


def parts(ens, other, frames: np.ndarray):
    """The ensemble's result and its variance parts on ``frames``."""
    res = ens.despeckle(frames, seed=0)
    preview = ens.despeckle(frames, members="preview", seed=0).mean
    alt = other.despeckle(frames, seed=0).mean
    return res, {"ale": res.aleatoric ** 2, "epi": res.epistemic ** 2,
                 "preview": (preview - res.mean) ** 2, "other": (alt - res.mean) ** 2}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the recipes' training-data sets (built if absent)")
    ap.add_argument("--model", default="multiprobe")
    ap.add_argument("--other", default="baseline", help="a model of another shape or objective")
    a = ap.parse_args(argv)
    import train_shipped as ts

    from engine import load_ensemble
    from engine import train as tr
    from engine.generalization import load_foreign
    from engine.scoring import AGREEMENT_LEVELS, fit_variance_weights, uncertainty_agreement
    from simulator.foreign import PROBES

    ens, other = load_ensemble(a.model), load_ensemble(a.other)
    if not ens.has_preview or ens.mode != "irsde":
        raise SystemExit("%s: needs an IR-SDE ensemble with an uncertainty head and a preview" % a.model)
    rec = ts.recipe(a.model)
    cfg = ts.member_config(rec, rec["members"][0], ts.build_data(a.data, rec["dataset"], print), 1, "cpu")
    noisy, clean = tr.val_set(cfg, 64)
    res, var = parts(ens, other, noisy)
    weights = {name: fit_variance_weights([var[k] for k in keys], res.mean - clean) for name, keys in COMBOS.items()}
    for name, keys in COMBOS.items():
        print("weights, %s: %s" % (name, ", ".join("%s %.3g" % kw for kw in zip(keys, weights[name]))))
    print("r per pixel / 8x8 patch / image against |error|, 9 inputs per image:")
    for probe in PROBES:
        fs = load_foreign(probe, inputs=9)
        res, var = parts(ens, other, fs.bmode)
        err = res.mean - fs.clean
        rows = {"shipped": res.std} | {
            name: np.sqrt(sum(w * var[k] for w, k in zip(weights[name], keys)) + 1e-12)
            for name, keys in COMBOS.items()}
        for name, std in rows.items():
            r = uncertainty_agreement(std, err, fs.mask)
            print("  %s, %s: %s" % (probe, name, " / ".join("%.2f" % r[k] for k in AGREEMENT_LEVELS)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
