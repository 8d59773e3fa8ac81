"""Full-physics training pairs whose target needs no model of the physics: Noise2Noise draws.

The fast path's pairs have a closed-form target, but their speckle comes from measured PSFs on the
probe axis; full MUST physics differs from them in ways no closed form captures (off-axis widening,
finite scatterer density, the beamformer's own side lobes).  A full-physics target — the mean of the
displayed images over scatterer draws — would need many 10–60 s draws per image.  Two draws suffice
for training: the displayed draw B of the same medium has, pixel for pixel, the speckle-free B-mode
as its expectation, so a network trained with an L2 loss to map draw A to draw B learns that same
expectation (Noise2Noise, Lehtinen et al. 2018), without bias, at the cost of noisier gradients.

Phantom ``i`` (``python -m simulator.fullpairs --out DIR --n N``): probe ``PROBE_NAMES[i % 4]``, an
echogenicity map from :func:`simulator.sources.draw_source` (MRI train slabs, scikit-image training
pictures, procedural shapes; never the foreign sets' anatomy), ``DRAWS`` independent full-path
acquisitions (:func:`simulator.physics.simulate`, the training pipeline's full path), each displayed
with the shared mapping and stored as the 8-bit image a scanner would give.  Written atomically to
``DIR/<index:06d>.npz`` as it is done; a re-run skips what exists (resumable), on Dask like the other
dataset jobs.  :func:`n2n_pairs` turns the pool into (input, target) pairs, both orders, under a
grey map drawn per phantom like the fast-path pairs'.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .probes import PROBE_NAMES, get_probe

DRAWS = 2
SIZE = 128
SEED = 20261207


def phantom_seed(seed: int, index: int) -> int:
    """Seed of phantom ``index`` of a pool made with ``seed``."""
    return int(np.random.SeedSequence([int(seed), 0xF011, int(index)]).generate_state(1)[0])


def source_phantom(probe, size: int, rng: np.random.Generator, split: str = "train"):
    """A :class:`~simulator.types.Phantom` on ``probe``'s ``size`` x ``size`` window whose echogenicity is
    drawn from the domain-randomised sources (returns the phantom and the source's name)."""
    from . import sources
    from .types import Phantom

    x0, z0, spacing = probe.image_window(size)
    echo, name = sources.draw_source((size, size), rng, split=split)
    none = np.zeros((size, size), bool)
    ph = Phantom(echo=np.clip(echo, 0, 1).astype(np.float32), spacing_mm=(float(spacing[0]), float(spacing[1])),
                 x0_mm=float(x0), z0_mm=float(z0), lesion_mask=none, background_mask=~none, name="source-" + name,
                 meta={"source": name})
    return ph, name


def pool_file(out_dir, index: int) -> Path:
    """Where phantom ``index`` of a pool lies."""
    return Path(out_dir) / f"{index:06d}.npz"


def pool_seed(out_dir) -> int:
    """The seed a pool was made with (its manifest)."""
    return int(json.loads((Path(out_dir) / "manifest.json").read_text())["seed"])


def make_phantom_pool_item(out_path: str, index: int, seed: int, size: int, draws: int) -> tuple[str, float]:
    """Dask task: simulate ``draws`` full-physics acquisitions of phantom ``index`` and write them atomically."""
    from .datasets import atomic_savez
    from .physics import simulate

    t0 = time.perf_counter()
    if os.path.exists(out_path):
        return out_path, 0.0
    s = phantom_seed(seed, index)
    probe = get_probe(PROBE_NAMES[index % len(PROBE_NAMES)])
    ph, src = source_phantom(probe, size, np.random.default_rng(s))
    res = [simulate(ph, probe, path="full", seed=int(np.random.SeedSequence([s, k]).generate_state(1)[0]))
           for k in range(draws)]
    atomic_savez(out_path, bmode_u8=np.stack([np.round(r.bmode * 255).astype(np.uint8) for r in res]),
                 echo_u16=np.round(np.clip(res[0].clean, 0, 1) * 65535).astype(np.uint16), mask=res[0].mask,
                 probe=np.array(probe.name), source=np.array(src),
                 seconds=np.array([r.meta["seconds"] for r in res], np.float32))
    return out_path, time.perf_counter() - t0


def generate(out_dir, n: int, seed: int = SEED, size: int = SIZE, draws: int = DRAWS, workers: int | None = None,
             progress: bool = True) -> dict:
    """Simulate phantoms ``0 … n-1`` into ``out_dir`` (resumable; a different pool in the folder is refused)."""
    from .datasets import run_jobs

    if draws < 2:
        raise ValueError(f"a Noise2Noise pool needs at least 2 draws per phantom, got {draws}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = {"generator": "simulator.fullpairs.generate", "seed": int(seed), "size": int(size),
              "draws": int(draws), "probes": list(PROBE_NAMES), "path": "full"}
    man = out / "manifest.json"
    if man.exists():
        old = json.loads(man.read_text())
        if {k: old.get(k) for k in params} != params:
            raise ValueError(f"{out} already holds a different full-physics pool; use another folder")
    man.write_text(json.dumps(params, indent=1))
    for tmp in out.glob("*.tmp"):
        tmp.unlink()
    jobs = [(str(pool_file(out, i)), i, int(seed), int(size), int(draws)) for i in range(int(n))
            if not pool_file(out, i).exists()]
    summary: dict[str, Any] = {"written": 0, "failed": [], "skipped": int(n) - len(jobs)}
    if jobs:
        run_jobs(make_phantom_pool_item, jobs, key=lambda j: f"fullpairs-{j[1]:06d}", workers=workers,
                 progress=progress, summary=summary, desc="full-physics phantoms")
    return summary


def load_pool(out_dir, n: int | None = None) -> dict[str, np.ndarray]:
    """The pool's phantoms (the first ``n``: all of them must exist): ``draws`` (N, D, H, W) float32 in [0, 1],
    ``echo``, ``mask``, ``probe``, ``source``."""
    if n is None:
        files = sorted(Path(out_dir).glob("[0-9]*.npz"))
    else:
        files = [pool_file(out_dir, i) for i in range(int(n))]
        missing = [i for i, f in enumerate(files) if not f.exists()]
        if missing:
            raise ValueError(f"{out_dir} lacks {len(missing)} of the first {n} phantoms (first: {missing[0]}); "
                             f"run python -m simulator.fullpairs --out {out_dir} --n {n}")
    if not files:
        raise ValueError(f"no full-physics phantoms in {out_dir}")
    cols: dict[str, list] = {"draws": [], "echo": [], "mask": [], "probe": [], "source": []}
    for f in files:
        with np.load(f) as z:
            cols["draws"].append(z["bmode_u8"].astype(np.float32) / 255)
            cols["echo"].append(z["echo_u16"].astype(np.float32) / 65535)
            cols["mask"].append(z["mask"])
            cols["probe"].append(str(z["probe"]))
            cols["source"].append(str(z["source"]))
    return {k: np.stack(v) if k in ("draws", "echo", "mask") else np.array(v) for k, v in cols.items()}


def n2n_pairs(pool: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """Every ordered pair of distinct draws of every phantom as (``bmode``, ``target``), both under one grey
    map per phantom (drawn as the fast-path pairs draw theirs), plus ``echo`` and ``mask`` (N·D·(D−1) rows)."""
    from .randomized import grey_map

    out: dict[str, list] = {"bmode": [], "target": [], "echo": [], "mask": []}
    for i, (d, e, m) in enumerate(zip(pool["draws"], pool["echo"], pool["mask"])):
        g, _ = grey_map(np.random.default_rng(np.random.SeedSequence([int(seed), i])))
        shown = [np.where(m, np.round(g(x) * 255) / 255, 0).astype(np.float32) for x in d]
        for a in range(len(d)):
            for b in range(len(d)):
                if a != b:
                    out["bmode"].append(shown[a])
                    out["target"].append(shown[b])
                    out["echo"].append(np.where(m, g(e), 0).astype(np.float32))
                    out["mask"].append(m)
    return {k: np.stack(v) for k, v in out.items()}


def mixed_dataset(base, pairs: dict[str, np.ndarray], share: float, out) -> Path:
    """A :func:`simulator.randomized.load_pairs` folder: ``base``'s pairs (links) plus the Noise2Noise
    ``pairs``, each repeated so that they make about ``share`` of the training stream; ``base``'s
    validation split unchanged.  Idempotent: a re-run with the same arguments writes nothing new."""
    from .datasets import atomic_savez

    if not 0 <= share < 1:
        raise ValueError(f"the full-physics share must be in [0, 1), got {share}")
    base, out = Path(base), Path(out)
    train = out / "train"
    train.mkdir(parents=True, exist_ok=True)
    if not (out / "val").exists():
        os.symlink((base / "val").resolve(), out / "val")
    fast = sorted((base / "train").glob("*.npz"))
    for f in fast:
        if not (train / f.name).exists():
            os.symlink(f.resolve(), train / f.name)
    n = len(pairs["bmode"])
    reps = max(1, int(round(share * len(fast) / ((1 - share) * n)))) if share > 0 and n else 0
    for i in range(n if reps else 0):
        first = train / f"n2n{i:05d}_r000.npz"
        if not first.exists():
            atomic_savez(first, bmode_u8=np.round(pairs["bmode"][i] * 255).astype(np.uint8),
                         target_u16=np.round(np.clip(pairs["target"][i], 0, 1) * 65535).astype(np.uint16),
                         echo_u16=np.round(np.clip(pairs["echo"][i], 0, 1) * 65535).astype(np.uint16),
                         mask=pairs["mask"][i])
        for r in range(1, reps):
            link = train / f"n2n{i:05d}_r{r:03d}.npz"
            if not link.exists():
                os.symlink(first.name, link)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Full-physics Noise2Noise phantoms (resumable).")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, required=True, help="phantoms (probes interleaved)")
    ap.add_argument("--draws", type=int, default=DRAWS)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--workers", type=int, default=None, help="Dask worker processes (default: all cores)")
    a = ap.parse_args(argv)
    t = time.time()
    s = generate(a.out, a.n, seed=a.seed, draws=a.draws, workers=a.workers)
    print(json.dumps(dict(s, minutes=round((time.time() - t) / 60, 1)), default=str))
    return 1 if s["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
