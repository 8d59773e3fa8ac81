"""Paired training data (speckled B-mode, clean target) from MRI phantoms, and the test sets.

* :func:`sample_pair` - one MRI-phantom pair; every random choice (slab, slice, zoom,
  deformation, echo curve, lesions, scatterers) comes from ``seed``.
* :class:`PairStream` - an endless, deterministic iterator of pairs for training.
* :func:`generate_dataset` - writes a dataset on Dask (a local cluster using all cores, or an
  existing cluster via ``scheduler=ADDRESS``), one ``.npz`` per sample, written atomically;
  resumable (existing samples are skipped), and a ``manifest.json`` with the parameters.
* :func:`load_dataset` - stacks a written dataset.
* :func:`load_test_set` - the committed test sets in ``resources/testsets/``.

Splits: every sample belongs to ``train``, ``val`` or ``test`` and its MRI slice comes only
from that split's slabs of the volume (``simulator.mri.split_slabs``), so no anatomy is shared
between splits.  In a generated dataset, sample ``i`` of each probe gets its split from a
low-discrepancy sequence with the requested fractions, and its seed from
``(seed, probe, i)`` through :class:`numpy.random.SeedSequence`.

Sample files (``DIR/<split>/<probe>/<i:06d>.npz``): ``bmode``, ``clean``, ``envelope``
(float32 (H, W)), ``mask``, ``lesion_mask``, ``background_mask`` (bool), ``labels`` (int16,
per-lesion labels), ``spacing_mm``, ``dynamic_range_db``, ``seed``, ``probe``, ``path``, ``split``.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
import zlib
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from . import mri
from .phantoms import make_phantom
from .probes import PROBE_NAMES, get_probe
from .types import SimResult

PATHS: tuple[str, ...] = ("fast", "full")
SPLIT_FRACTIONS: dict[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}
TESTSET_DIR = Path(__file__).resolve().parent.parent / "resources" / "testsets"
MANIFEST = "manifest.json"
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


# --------------------------------------------------------------------------- seeds and probes
def _probe_key(name: str) -> int:
    return zlib.crc32(name.encode("ascii"))


def derive_seed(*keys: int) -> int:
    """A 32-bit seed derived deterministically from integer keys (SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(1)[0])


def sample_seed(seed: int, probe_name: str, index: int) -> int:
    """Seed of sample ``index`` of ``probe_name`` in a dataset generated with ``seed``."""
    return derive_seed(seed, _probe_key(probe_name), index)


def _as_probe(probe):
    return get_probe(probe) if isinstance(probe, str) else probe


def _check_path(path: str) -> str:
    if path not in PATHS:
        raise ValueError(f"unknown simulation path {path!r}; valid paths: {', '.join(PATHS)}")
    return path


# --------------------------------------------------------------------------- one pair
def sample_pair(probe, size: int = 128, seed: int = 0, split: str = "train", path: str = "fast",
                **phantom_kw: Any) -> SimResult:
    """Simulate one (B-mode, clean) pair from a randomly augmented MRI phantom.

    ``probe`` is a :class:`~simulator.probes.Probe` or a probe name.  The phantom seed and the
    physics seed are both derived from ``seed``; ``result.seed`` is ``seed`` (so the pair can be
    regenerated) and ``result.meta`` holds the split, the phantom's parameters and the physics seed.
    About half of the phantoms carry 1-2 inserted lesions (masks in ``lesion_mask`` / ``labels``).
    """
    from .physics import simulate  # imported here: physics pulls in pymust

    probe = _as_probe(probe)
    _check_path(path)
    phantom_seed, physics_seed = derive_seed(seed, 1), derive_seed(seed, 2)
    phantom = make_phantom("mri", probe, size=size, seed=phantom_seed, split=split, **phantom_kw)
    res = simulate(phantom, probe, path=path, seed=physics_seed)
    res.seed = int(seed)
    labels = phantom.meta.get("labels")
    res.meta.update({
        "split": split,
        "physics_seed": physics_seed,
        "phantom_seed": phantom_seed,
        "phantom": {k: v for k, v in phantom.meta.items() if not isinstance(v, np.ndarray)},
        "labels": labels if labels is not None and labels.shape == res.bmode.shape else None,
    })
    return res


class PairStream:
    """Endless deterministic iterator of :class:`SimResult` pairs for training.

    Pair ``i`` uses probe ``probes[i % len(probes)]`` and seed ``sample_seed(seed, probe, i)``,
    so two streams with the same arguments yield identical pairs, and ``start=k`` resumes a
    stream at pair ``k``.  ``step=n`` yields every n-th pair (``start, start + n, ...``): n
    data-loader workers with ``start=j, step=n`` share one stream without overlap.
    """

    def __init__(self, probes: Sequence | str, size: int = 128, split: str = "train", seed: int = 0,
                 path: str = "fast", start: int = 0, step: int = 1, **phantom_kw: Any) -> None:
        if isinstance(probes, str) or not isinstance(probes, Iterable):
            probes = [probes]
        self.probes = [_as_probe(p) for p in probes]
        if not self.probes:
            raise ValueError("PairStream needs at least one probe")
        if split not in mri.SPLITS:
            raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(mri.SPLITS)}")
        self.size, self.split, self.seed, self.path = int(size), split, int(seed), _check_path(path)
        if int(step) != step or step < 1 or int(start) != start or start < 0:
            raise ValueError(f"PairStream needs start >= 0 and step >= 1, got start={start!r}, step={step!r}")
        self.index, self.step = int(start), int(step)
        self.phantom_kw = phantom_kw

    def __iter__(self) -> Iterator[SimResult]:
        return self

    def __next__(self) -> SimResult:
        probe = self.probes[self.index % len(self.probes)]
        s = sample_seed(self.seed, probe.name, self.index)
        self.index += self.step
        return sample_pair(probe, self.size, s, self.split, self.path, **self.phantom_kw)

    def take(self, n: int) -> list[SimResult]:
        """The next ``n`` pairs."""
        return [next(self) for _ in range(int(n))]


# --------------------------------------------------------------------------- files
def atomic_savez(file: str | os.PathLike, /, **arrays: Any) -> Path:
    """Write a compressed ``.npz`` atomically: a temporary file in the same folder, then
    :func:`os.replace`.  If anything fails midway no file (partial or temporary) is left."""
    path = Path(file)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _mask_arrays(res: SimResult) -> dict[str, np.ndarray]:
    """The masks, labels (``meta["labels"]``, else the lesion mask) and acquisition numbers of
    one sample, as stored by both the training shards and the test sets."""
    labels = res.meta.get("labels")
    if labels is None:
        labels = res.lesion_mask.astype(np.int16)
    return {
        "mask": np.asarray(res.mask, bool),
        "lesion_mask": np.asarray(res.lesion_mask, bool),
        "background_mask": np.asarray(res.background_mask, bool),
        "labels": np.asarray(labels, np.int16),
        "spacing_mm": np.asarray(res.spacing_mm, np.float64),
        "dynamic_range_db": np.float64(res.dynamic_range_db),
        "seed": np.int64(res.seed),
    }


def result_arrays(res: SimResult) -> dict[str, np.ndarray]:
    """The arrays stored for one sample."""
    return {
        "bmode": np.asarray(res.bmode, np.float32),
        "clean": np.asarray(res.clean, np.float32),
        "envelope": np.asarray(res.envelope, np.float32),
        **_mask_arrays(res),
        "probe": np.str_(res.probe),
        "path": np.str_(res.path),
        "split": np.str_(res.meta.get("split", "")),
    }


def _split_of(index: int, fractions: dict[str, float]) -> str:
    u = (index * _GOLDEN + 0.5) % 1.0
    acc = 0.0
    names = list(fractions)
    for name in names:
        acc += fractions[name]
        if u < acc:
            return name
    return names[-1]


def sample_file(out_dir: str | os.PathLike, split: str, probe_name: str, index: int) -> Path:
    return Path(out_dir) / split / probe_name / f"{index:06d}.npz"


def _make_sample(out_path: str, probe_name: str, seed: int, split: str, size: int, path: str) -> tuple[str, float]:
    """Dask task: simulate one pair and write it atomically (skips a file that exists)."""
    t0 = time.perf_counter()
    if os.path.exists(out_path):
        return out_path, 0.0
    res = sample_pair(probe_name, size=size, seed=seed, split=split, path=path)
    atomic_savez(out_path, **result_arrays(res))
    return out_path, time.perf_counter() - t0


def _check_fractions(fractions: dict[str, float]) -> dict[str, float]:
    bad = set(fractions) - set(mri.SPLITS)
    if bad or not fractions:
        raise ValueError(f"split fractions must use the splits {', '.join(mri.SPLITS)}, got {sorted(fractions)}")
    total = float(sum(fractions.values()))
    if any(v < 0 for v in fractions.values()) or not total > 0:
        raise ValueError(f"split fractions must be >= 0 with a positive sum, got {fractions}")
    return {k: float(v) / total for k, v in fractions.items()}


def generate_dataset(probes: Sequence[str] | str, n: int, size: int = 128, path: str = "fast",
                     out_dir: str | os.PathLike = "dataset", seed: int = 0, scheduler: Any = None,
                     progress: bool = True, split_fractions: dict[str, float] | None = None) -> dict[str, Any]:
    """Simulate ``n`` pairs per probe into ``out_dir`` on Dask; returns a summary dict.

    ``scheduler``: ``None`` starts a ``distributed.LocalCluster`` with one single-threaded worker
    process per core; an address string (``tcp://host:8786``), a ``Client`` or a cluster object
    sends the same job to that cluster (its workers must see ``out_dir``).
    Existing samples are skipped, so re-running the same command resumes an interrupted job;
    leftover temporary files of an interrupted write are removed.  ``manifest.json`` records the
    parameters; a different job in the same folder is refused.  Failed samples are reported in
    the summary (``failed``) and raise a RuntimeError after all other samples are written.
    """
    if isinstance(probes, str):
        probes = [probes]
    probe_names = [get_probe(p).name for p in probes]
    if not probe_names:
        raise ValueError("generate_dataset needs at least one probe")
    if int(n) != n or n < 1:
        raise ValueError(f"n (samples per probe) must be a positive integer, got {n!r}")
    _check_path(path)
    for name in probe_names:
        get_probe(name).image_window(size)  # validates size early (>= 16, fits the depth range)
    fractions = _check_fractions(split_fractions or SPLIT_FRACTIONS)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = {"probes": probe_names, "n_per_probe": int(n), "size": int(size), "path": path, "seed": int(seed),
              "split_fractions": fractions, "mri_slabs": {s: mri.split_slabs(s) for s in mri.SPLITS},
              "layout": "<split>/<probe>/<index:06d>.npz"}
    man_path = out / MANIFEST
    if man_path.exists():
        old = json.loads(man_path.read_text())
        old_params = {k: old.get(k) for k in ("probes", "n_per_probe", "size", "path", "seed")}
        new_params = {k: params[k] for k in old_params}
        if old_params != new_params:
            raise ValueError(f"{out} already holds a different dataset ({old_params}); use another folder")
    manifest = dict(params, format_version=1, generator="simulator.datasets.generate_dataset",
                    dynamic_range_db=get_probe(probe_names[0]).dynamic_range_db)
    _write_json(man_path, manifest)
    for tmp in out.glob("*/*/*.tmp"):
        tmp.unlink()

    jobs, skipped = [], 0
    for i in range(int(n)):
        for name in probe_names:
            split = _split_of(i, fractions)
            f = sample_file(out, split, name, i)
            if f.exists():
                skipped += 1
            else:
                jobs.append((str(f), name, sample_seed(seed, name, i), split, int(size), path))
    summary: dict[str, Any] = {"out_dir": str(out), "total": int(n) * len(probe_names), "skipped": skipped,
                               "written": 0, "failed": [], "seconds": 0.0}
    if jobs:
        t0 = time.perf_counter()
        run_jobs(_make_sample, jobs, key=lambda j: f"usclean-sample-{j[1]}-{j[3]}-{Path(j[0]).stem}",
                 scheduler=scheduler, progress=progress, summary=summary)
        summary["seconds"] = time.perf_counter() - t0
    counts = {s: len(list(out.glob(f"{s}/*/*.npz"))) for s in mri.SPLITS}
    _write_json(man_path, dict(manifest, counts=counts, complete=not summary["failed"] and
                               sum(counts.values()) >= summary["total"]))
    if summary["failed"]:
        raise RuntimeError(f"{len(summary['failed'])} sample(s) failed (first: {summary['failed'][0]}); "
                           "re-run the same command to retry them")
    return summary


def run_jobs(task, jobs: list[tuple], key, workers: int | None = None, scheduler: Any = None, progress: bool = True,
             summary: dict | None = None, desc: str = "simulating") -> dict:
    """Run ``task(*job)`` for every job on Dask and count the outcome in ``summary`` (``written``,
    ``failed``).  ``scheduler``: None starts a ``LocalCluster`` of ``workers`` (default: all cores)
    single-threaded processes; an address string, a ``Client`` or a cluster object uses that cluster.
    ``key(job)`` names each task (a fresh suffix per run, so no earlier result is ever reused).
    A failed job is recorded and the others go on."""
    from dask.distributed import Client, LocalCluster, as_completed

    summary = summary if summary is not None else {"written": 0, "failed": []}
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=int(workers or os.cpu_count() or 1), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    elif isinstance(scheduler, Client):
        client = scheduler
    else:
        client = Client(scheduler, timeout=20)
    try:
        run_id = uuid.uuid4().hex[:8]  # fresh keys: never reuse a result cached by an earlier run
        futures = [client.submit(task, *job, key=f"{key(job)}-{run_id}", pure=False, retries=0) for job in jobs]
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(futures), unit="img", desc=desc, dynamic_ncols=True)
        for fut in as_completed(futures):
            try:
                fut.result()
                summary["written"] += 1
            except Exception as exc:  # keep going; report at the end
                summary["failed"].append(f"{fut.key}: {type(exc).__name__}: {exc}")
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    finally:
        if client is not scheduler:
            client.close()
        if cluster is not None:
            cluster.close()
    return summary


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def load_dataset(out_dir: str | os.PathLike, split: str = "train", probe: str | None = None) -> dict[str, np.ndarray]:
    """Stack the samples of one split (optionally one probe) of a generated dataset.

    Returns arrays ``bmode``, ``clean``, ``envelope`` (N, H, W) float32, ``mask``, ``lesion_mask``,
    ``background_mask`` (N, H, W) bool, ``labels`` int16, ``seed`` (N,), ``probe`` (N,) str,
    ``spacing_mm`` (N, 2).
    """
    root = Path(out_dir)
    if not (root / MANIFEST).exists():
        raise FileNotFoundError(f"{root} is not a dataset folder (no {MANIFEST})")
    if split not in mri.SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(mri.SPLITS)}")
    pattern = f"{split}/{probe}/*.npz" if probe else f"{split}/*/*.npz"
    files = sorted(root.glob(pattern))
    if not files:
        raise ValueError(f"no {split} samples{' for ' + probe if probe else ''} in {root}")
    return _stack(files)


def _stack(files: list[Path]) -> dict[str, np.ndarray]:
    keys = ("bmode", "clean", "envelope", "mask", "lesion_mask", "background_mask", "labels", "seed", "probe",
            "spacing_mm")
    cols: dict[str, list] = {k: [] for k in keys}
    for f in files:
        with np.load(f) as z:
            for k in keys:
                cols[k].append(z[k])
    return {k: np.stack(v) for k, v in cols.items()}


# --------------------------------------------------------------------------- committed test sets
TESTSET_KINDS: tuple[str, ...] = ("fast", "full")


def testset_arrays(res: SimResult, compact: bool = False) -> dict[str, np.ndarray]:
    """Compact storage of one test image.

    Default (full-physics set): B-mode and clean as uint16 (step 1/65535), the envelope as
    float16 relative to its own maximum, masks as bool.  ``compact=True`` (fast set, which can
    be regenerated bit-identically from its seeds): B-mode and clean as uint8 (step 1/255, the
    8-bit display a scanner would deliver), no envelope.
    """
    out: dict[str, np.ndarray] = {}
    if compact:
        out["bmode_u8"] = np.round(np.clip(res.bmode, 0, 1) * 255).astype(np.uint8)
        out["clean_u8"] = np.round(np.clip(res.clean, 0, 1) * 255).astype(np.uint8)
    else:
        env = np.asarray(res.envelope, np.float64)
        scale = float(env.max()) if env.size and env.max() > 0 else 1.0
        out["bmode_u16"] = np.round(np.clip(res.bmode, 0, 1) * 65535).astype(np.uint16)
        out["clean_u16"] = np.round(np.clip(res.clean, 0, 1) * 65535).astype(np.uint16)
        out["envelope_f16"] = (env / scale).astype(np.float16)
        out["envelope_scale"] = np.float64(scale)
    out.update(_mask_arrays(res))
    return out


def _decode_testset(z: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name in ("bmode", "clean"):
        if f"{name}_u16" in z:
            out[name] = z[f"{name}_u16"].astype(np.float32) / np.float32(65535.0)
        else:
            out[name] = z[f"{name}_u8"].astype(np.float32) / np.float32(255.0)
    if "envelope_f16" in z:
        scale = np.asarray(z["envelope_scale"], np.float32).reshape(-1, 1, 1)
        out["envelope"] = z["envelope_f16"].astype(np.float32) * scale
    for k in ("mask", "lesion_mask", "background_mask", "labels", "seed", "spacing_mm", "dynamic_range_db"):
        out[k] = z[k]
    return out


def load_test_set(kind: str = "fast", probe: str = "L11-5v",
                  root: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The committed test set ``kind`` ("fast" | "full") of ``probe`` as a dict of arrays.

    ``bmode``, ``clean`` (N, H, W) float32 (uint16-exact for "full", 8-bit for "fast");
    ``envelope`` (N, H, W) float32 ("full" only, relative precision 1e-3); ``mask``,
    ``lesion_mask``, ``background_mask`` (N, H, W) bool; ``labels`` (N, H, W) int16 (0 = no
    lesion, k = lesion k); ``seed`` (N,); ``spacing_mm`` (N, 2); ``dynamic_range_db`` (N,); where written
    (``python -m simulator.fullset --bmode-targets``) ``bmode_target`` (N, H, W), the speckle-free B-mode.
    All images are split="test" MRI phantoms
    (128 x 128).  The parameters are in ``resources/testsets/<kind>/params.json``.
    """
    if kind not in TESTSET_KINDS:
        raise ValueError(f"unknown test set {kind!r}; valid kinds: {', '.join(TESTSET_KINDS)}")
    name = get_probe(probe).name
    base = Path(root) if root is not None else TESTSET_DIR
    files = sorted((base / kind / name).glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"no {kind} test set for {name} in {base / kind} "
                                f"(valid probes: {', '.join(PROBE_NAMES)})")
    cols: dict[str, list] = {}
    for f in files:
        if f.name == "bmode_target.npz":
            continue
        with np.load(f) as z:
            for k, v in z.items():
                cols.setdefault(k, []).append(v)
    out = _decode_testset({k: np.stack(v) for k, v in cols.items()})
    target = base / kind / name / "bmode_target.npz"
    if target.is_file():
        with np.load(target) as z:
            out["bmode_target"] = z["bmode_target_u8"].astype(np.float32) / np.float32(255.0)
    return out
