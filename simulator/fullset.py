"""Build the committed test sets in ``resources/testsets/`` (resumable, saves as it goes).

Full-physics set (``python -m simulator.fullset``)::

    OMP_NUM_THREADS=1 nohup setsid .venv/bin/python -m simulator.fullset > /tmp/fullset.log 2>&1 &

simulates ``--n`` (default 24) split="test" MRI-phantom pairs per probe with the full MUST
path (128 x 128, ~1 CPU-minute each), interleaving the probes (image 0 of every probe, then
image 1, ...) so that a partial run covers all probes.  Each image is written atomically to
``resources/testsets/full/<probe>/<index:03d>.npz`` as soon as it is done; a re-run skips the
images that exist, so an interrupted run resumes where it stopped.

Fast-sim set (``python -m simulator.fullset --kind fast``): 64 images per probe with the fast
path, ``resources/testsets/fast/<probe>/<index:03d>.npz``, plus the SHA-256 of every image's
float32 B-mode and clean target in ``params.json`` so a test can regenerate samples and check
that they are bit-identical.

Image ``i`` of probe ``p`` is ``sample_pair(p, 128, seed=sample_seed(SEEDS[kind], p, i),
split="test", path=kind)``; ``params.json`` in each folder records every parameter and seed.
Storage format: :func:`simulator.datasets.testset_arrays` (read back with
:func:`simulator.datasets.load_test_set`).

Speckle-free B-mode targets (``python -m simulator.fullset --bmode-targets``): for every committed image,
the mean of the displayed images of ``--draws`` (default 32) fresh fast-path realisations of its phantom
(same probe, PSFs and display mapping, new scatterers) — the target of the models that learn the
speckle-free B-mode, next to the echogenicity (``clean``).  For the full-physics sets the realisations
are still fast-path ones (a full realisation takes 10–50 s here): an estimate through the fast path's
PSFs.  Stored as ``<kind>/<probe>/bmode_target.npz`` (uint8, (N, H, W)); its residual speckle is
about 0.11 / sqrt(draws) in display units.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from .datasets import TESTSET_DIR, atomic_savez, sample_pair, sample_seed, testset_arrays
from .probes import PROBE_NAMES

SIZE = 128
SEEDS = {"full": 20261125, "fast": 20261126}
DEFAULT_N = {"full": 24, "fast": 64}


def image_seed(kind: str, probe: str, index: int) -> int:
    """Seed of test image ``index`` of ``probe`` in test set ``kind``."""
    return sample_seed(SEEDS[kind], probe, index)


def sha256(a: np.ndarray) -> str:
    """SHA-256 of an array's float32 little-endian bytes."""
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<f4").tobytes()).hexdigest()


def _params(kind: str, n: int, probes: list[str]) -> dict:
    import pymust  # noqa: F401  (version recorded below)
    from importlib.metadata import version

    return {
        "kind": kind, "path": kind, "split": "test", "size": SIZE, "n_per_probe": n, "probes": probes,
        "base_seed": SEEDS[kind], "phantom": "mri (random augmentation, ~half with inserted lesions)",
        "seed_rule": "simulator.fullset.image_seed(kind, probe, i) = sample_seed(base_seed, probe, i)",
        "generator": f"python -m simulator.fullset --kind {kind}",
        "storage": ("simulator.datasets.testset_arrays: bmode/clean uint8 (/255), no envelope" if kind == "fast" else
                    "simulator.datasets.testset_arrays: bmode/clean uint16 (/65535), envelope float16 x scale"),
        "versions": {"numpy": np.__version__, "pymust": version("pymust")},
        "seeds": {p: [image_seed(kind, p, i) for i in range(n)] for p in probes},
    }


def build(kind: str = "full", n: int | None = None, probes: list[str] | None = None,
          root: Path = TESTSET_DIR, log=print) -> int:
    """Generate the missing images of test set ``kind``; returns how many were written."""
    n = int(n or DEFAULT_N[kind])
    probes = list(probes or PROBE_NAMES)
    out = Path(root) / kind
    out.mkdir(parents=True, exist_ok=True)
    params_path = out / "params.json"
    params = _params(kind, n, probes)
    old = json.loads(params_path.read_text()) if params_path.exists() else {}
    params["checksums"] = old.get("checksums", {})
    params["seconds"] = old.get("seconds", {})
    for tmp in out.glob("*/*.tmp"):
        tmp.unlink()
    written = 0
    for i in range(n):
        for p in probes:
            f = out / p / f"{i:03d}.npz"
            if f.exists():
                continue
            t0 = time.perf_counter()
            res = sample_pair(p, size=SIZE, seed=image_seed(kind, p, i), split="test", path=kind)
            atomic_savez(f, **testset_arrays(res, compact=kind == "fast"))
            dt = time.perf_counter() - t0
            params["checksums"].setdefault(p, {})[str(i)] = {"bmode": sha256(res.bmode), "clean": sha256(res.clean)}
            params["seconds"].setdefault(p, {})[str(i)] = round(dt, 2)
            _write_json(params_path, params)
            written += 1
            log(f"{time.strftime('%H:%M:%S')} {kind} {p} #{i:03d} seed={res.seed} lesions={int(res.lesion_mask.any())} "
                f"{dt:.1f} s -> {f}")
    _write_json(params_path, params)
    return written


def bmode_targets(kind: str, probe: str, draws: int = 32, root: Path = TESTSET_DIR, log=print) -> Path:
    """Write the speckle-free B-mode targets of one committed test set (see the module docstring)."""
    from .datasets import derive_seed, load_test_set
    from .phantoms import make_phantom
    from .physics import simulate
    from .probes import get_probe

    d = load_test_set(kind, probe, root=root)
    p = get_probe(probe)
    out = []
    t0 = time.perf_counter()
    for seed in d["seed"]:
        phantom = make_phantom("mri", p, size=SIZE, seed=derive_seed(int(seed), 1), split="test")
        acc = np.zeros((SIZE, SIZE))
        for j in range(draws):
            acc += simulate(phantom, p, path="fast", seed=derive_seed(int(seed), 5, j)).bmode
        out.append(np.round(acc / draws * 255).astype(np.uint8))
    path = Path(root) / kind / probe / "bmode_target.npz"
    atomic_savez(path, bmode_target_u8=np.stack(out), draws=np.int64(draws))
    log(f"{kind} {probe}: {len(out)} speckle-free B-mode targets ({draws} draws each) in "
        f"{time.perf_counter() - t0:.0f} s -> {path}")
    return path


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulator.fullset", description=__doc__.split("\n")[0])
    ap.add_argument("--kind", choices=("full", "fast"), default="full")
    ap.add_argument("--n", type=int, default=None, help="images per probe (default 24 full, 64 fast)")
    ap.add_argument("--probe", action="append", choices=PROBE_NAMES, help="only these probes (repeatable)")
    ap.add_argument("--root", type=Path, default=TESTSET_DIR, help="test-set folder (default resources/testsets)")
    ap.add_argument("--bmode-targets", action="store_true",
                    help="write the speckle-free B-mode targets of the committed sets instead")
    ap.add_argument("--draws", type=int, default=32, help="fast-path draws per B-mode target (default 32)")
    a = ap.parse_args(argv)
    if a.bmode_targets:
        for kind in ("fast", "full"):
            for p in a.probe or PROBE_NAMES:
                bmode_targets(kind, p, a.draws, a.root, log=lambda s: print(s, flush=True))
        return 0
    written = build(a.kind, a.n, a.probe, a.root, log=lambda s: print(s, flush=True))
    print(f"done: {written} new image(s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
