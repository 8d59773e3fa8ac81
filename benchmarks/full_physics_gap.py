"""Is there a gap between the fast path and the training pipeline's full physics?  The true error of a model
and of BM3D on the same phantoms, simulated both ways, measured without a ground truth.

For every phantom of a :mod:`simulator.fullpairs` pool (two full-physics draws A, B) the same phantom is
also simulated twice on the fast path.  With two independent draws of one medium, the error of a method
``f`` against the speckle-free B-mode (the draws' expectation) follows without knowing it:
``E|f(A) − B|² = true error + var(B)`` and ``var(B) = E|A − B|² / 2``, so
``true error = mean (fit(f(A)) − B)² − mean (A − B)² / 2`` (``fit``: the per-image affine fit to B, as
the foreign sets score).  BM3D's sigma is tuned per probe and path on these very images (oracle tuning).
Printed per probe and path: the true errors and the model's lead over BM3D in dB (BM3D's sigma best for
the set, and best for each image: the most BM3D can do).

``--own-val DIR`` adds the same comparison on a randomized dataset's validation pairs (the model's own
training distribution, with its exact closed-form target): the lead a model has where it has every
advantage, an upper reference for what it can lead by on foreign data.

``--foreign`` adds it on the foreign sets, where the truth is known (the error against it less its residual
speckle, ``floor_mse``).

    python benchmarks/full_physics_gap.py --pool POOL [--phantoms 40] [--model baseline] [--own-val DIR] [--foreign]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIGMAS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7)


def table(rows: dict, model: str) -> None:
    """Per set: the model's error, BM3D's at the sigma best for the set and at the sigma best for each image
    (the most BM3D can do), BM3D's over the model's and that ratio in dB."""
    print("| set | path | images | %s | BM3D, sigma per set | lead (dB) | BM3D, sigma per image | lead (dB) |" % model)
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (p, path), r in rows.items():
        r = np.array(r)
        mean = r.mean(axis=0)
        j = int(np.argmin(mean[1:]))
        each = float(r[:, 1:].min(axis=1).mean())
        print("| %s | %s | %d | %.3f | %.3f (%.2f) | %+.2f | %.3f | %+.2f |" % (
            p, path, len(r), 1e3 * mean[0], 1e3 * mean[1 + j], SIGMAS[j], 10 * np.log10(mean[1 + j] / mean[0]),
            1e3 * each, 10 * np.log10(each / mean[0])), flush=True)


def candidates(fn, x: np.ndarray) -> list[np.ndarray]:
    """The model's output for image ``x``, then BM3D's at every sigma of :data:`SIGMAS`."""
    from engine.classical import apply_job

    return [fn(x[None])[0][0]] + [apply_job(("bm3d", x, {"sigma": s})) for s in SIGMAS]


def own_val(fn, a) -> None:
    """The model against BM3D (tuned on these pairs) on its own validation pairs, exact target."""
    from engine.scoring import mse_affine
    from simulator.randomized import load_pairs

    v = load_pairs(a.own_val, "val")
    r = [[mse_affine(o, t, m) for o in candidates(fn, x)]
         for x, t, m in list(zip(v["bmode"], v["target"], v["mask"]))[:a.val_pairs]]
    print("squared error (x 1e-3) on %d validation pairs of %s (exact target), model vs BM3D tuned on them:" % (
        len(r), a.own_val.name))
    table({(a.own_val.name, "randomized"): r}, a.model)


def foreign(fn, model: str) -> None:
    """The model against BM3D on each probe's foreign set: the error against the truth less its residual speckle."""
    from engine.generalization import load_foreign
    from engine.scoring import mse_affine
    from simulator.foreign import PROBES

    rows = {}
    for probe in PROBES:
        fs = load_foreign(probe, inputs=1)
        rows[(probe, "foreign")] = [[mse_affine(o, t, m) - floor for o in candidates(fn, x)]
                                    for x, t, m, floor in zip(fs.bmode, fs.clean, fs.mask, fs.floor_mse)]
    print("true error (x 1e-3) on the foreign sets (residual speckle of the truth taken off), model vs BM3D:")
    table(rows, model)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", type=Path, required=True)
    ap.add_argument("--phantoms", type=int, default=40, help="the pool's first N phantoms")
    ap.add_argument("--model", default="baseline")
    ap.add_argument("--own-val", type=Path, help="a randomized dataset (simulator.randomized.generate_pairs)")
    ap.add_argument("--val-pairs", type=int, default=64)
    ap.add_argument("--foreign", action="store_true", help="the same comparison on the foreign sets")
    ap.add_argument("--skip-pool", action="store_true", help="only the --own-val / --foreign comparisons")
    a = ap.parse_args(argv)
    from engine import load_ensemble
    from engine.generalization import model_method
    from engine.scoring import paired_draw_error
    from simulator.fullpairs import load_pool, phantom_seed, pool_seed, source_phantom
    from simulator.physics import simulate
    from simulator.probes import PROBE_NAMES, get_probe

    fn = model_method(load_ensemble(a.model))
    if a.own_val:
        own_val(fn, a)
    if a.foreign:
        foreign(fn, a.model)
    if a.skip_pool:
        return 0
    pool, seed = load_pool(a.pool, a.phantoms), pool_seed(a.pool)
    rows: dict = {(p, k): [] for p in PROBE_NAMES for k in ("full", "fast")}
    for i in range(a.phantoms):
        probe = get_probe(str(pool["probe"][i]))
        ph, _ = source_phantom(probe, pool["draws"].shape[-1], np.random.default_rng(phantom_seed(seed, i)))
        fast = [np.round(simulate(ph, probe, path="fast", seed=10_000 + k).bmode * 255).astype(np.float32) / 255
                for k in range(2)]
        m = pool["mask"][i]
        for path, (x, y) in (("full", tuple(pool["draws"][i][:2])), ("fast", tuple(fast))):
            x, y = np.where(m, x, 0).astype(np.float32), np.where(m, y, 0).astype(np.float32)
            rows[(probe.name, path)].append([paired_draw_error(o, x, y, m) for o in candidates(fn, x)])
    print("true error (x 1e-3) on %d pool phantoms, %s vs BM3D tuned per probe and path:" % (a.phantoms, a.model))
    table(rows, a.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
