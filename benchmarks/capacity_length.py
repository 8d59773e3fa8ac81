"""Width and training length of the direct-regression member, scored on the foreign sets.

Is the foreign-set margin over BM3D held back by the network's width or by how long it trains?  Each
variant is the ``baseline`` recipe (half resolution, direct regression, the recipe's data and seed) with
one change, trained as a single member under ``--runs/<variant>`` (resumable) and exported beside it:

* ``b32-3k`` — base 32 (the recipe's), 3000 steps, peak lr 1e-3 (the recipe's);
* ``b48-3k-lr1e-3`` — base 48, 3000 steps, peak lr 1e-3 (collapsed to the identity in the 0.2.9 run);
* ``b32-3k-lr5e-4`` / ``b48-3k-lr5e-4`` — base 32 / 48, 3000 steps, peak lr 5e-4;
* ``ft-4500`` — the shipped ``baseline`` (9000 steps) trained 4500 steps more at peak lr 3e-4.

Then every exported variant and the shipped ``baseline`` are scored on each probe's foreign set (affine-fitted
PSNR against the speckle-free B-mode, the mean over the images, one input each), in one run.

    python benchmarks/capacity_length.py --runs runs_capacity --data data [--only b32-3k ft-4500 ...]
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

VARIANTS = {
    "b32-3k": {"max_steps": 3000},
    "b48-3k-lr1e-3": {"base": 48, "max_steps": 3000},
    "b32-3k-lr5e-4": {"max_steps": 3000, "lr": 5e-4},
    "b48-3k-lr5e-4": {"base": 48, "max_steps": 3000, "lr": 5e-4},
    "ft-4500": {"max_steps": 4500, "lr": 3e-4, "init": str(ROOT / "resources" / "weights" / "baseline"),
                "init_member": 0},
}


def foreign_image_psnr(model, inputs: int = 1) -> dict[str, np.ndarray]:
    """Affine-fitted PSNR per foreign image of a model (name or folder), per probe: with ``inputs`` > 1 the
    mean over that many leave-one-out inputs of each image (less speckle noise in a comparison)."""
    from engine import load_ensemble, scoring
    from engine.generalization import each_image, load_foreign, model_method
    from simulator.foreign import PROBES

    fn = model_method(load_ensemble(model))
    scores = {}
    for probe in PROBES:
        fs = load_foreign(probe, inputs=inputs)
        out, _ = each_image(fn, fs.bmode)
        v = np.array([scoring.psnr_affine(o, c, m) for o, c, m in zip(out, fs.clean, fs.mask)])
        scores[probe] = np.array([v[fs.image == i].mean() for i in np.unique(fs.image)])
    return scores


def foreign_psnr(model) -> list[float]:
    """Mean affine-fitted PSNR per probe of a model (name or folder) on the foreign sets, one input per image."""
    return [float(v.mean()) for v in foreign_image_psnr(model).values()]


def train_variant(cfg, run: Path, out: Path, name: str, rec: dict) -> str:
    """Train one variant's member in ``run`` until its ``max_steps`` (resumable) and export it to ``out``
    once; returns ``out`` as a model folder for :func:`engine.load_ensemble`."""
    from engine.train import export_members, run_steps, train

    if run_steps(run) < cfg.max_steps:
        t = time.time()
        train(cfg, run, log=lambda m: print(m, flush=True) if "checkpoint" in m else None)
        print("%s: trained in %.1f min" % (name, (time.time() - t) / 60), flush=True)
    if not (out / "model.json").is_file():
        export_members([run], out, name, recipe={"card": rec["card"]}, n_eval=16, log=print)
    return str(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="run folders and exported variants go here")
    ap.add_argument("--data", type=Path, required=True, help="the recipes' training-data sets (built if absent)")
    ap.add_argument("--only", nargs="+", choices=sorted(VARIANTS), help="these variants only (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    import train_shipped as ts

    from simulator.foreign import PROBES

    rec = ts.recipe("baseline")
    cfg0 = ts.member_config(rec, rec["members"][0], ts.build_data(a.data, rec["dataset"], print), a.threads, "cpu")
    models = {"shipped baseline": "baseline"}
    for name in a.only or VARIANTS:
        cfg = replace(cfg0, **VARIANTS[name], name="capacity-" + name)
        models[name] = train_variant(cfg, a.runs / name, a.runs / (name + "-model"), name, rec)
    print("foreign sets, affine-fitted PSNR (dB), %s:" % " / ".join(PROBES))
    for name, model in models.items():
        print("  %-18s %s" % (name, " / ".join("%.2f" % v for v in foreign_psnr(model))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
