"""Datasets: deterministic pairs and streams, the Dask job (determinism, resume, atomic writes),
the committed test sets (bit-identical regeneration)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from simulator import datasets, fullset, mri
from simulator.datasets import (PairStream, atomic_savez, generate_dataset, load_dataset, load_test_set,
                                sample_pair, sample_seed)
from simulator.probes import PROBE_NAMES


def _slab_of(res):
    return tuple(res.meta["phantom"]["slab"])


def test_sample_pair_is_deterministic_and_respects_the_split():
    a = sample_pair("L11-5v", size=32, seed=11, split="val")
    b = sample_pair("L11-5v", size=32, seed=11, split="val")
    c = sample_pair("L11-5v", size=32, seed=12, split="val")
    for k in ("bmode", "clean", "envelope", "lesion_mask"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.bmode, c.bmode)
    assert a.bmode.shape == a.clean.shape == (32, 32) and a.seed == 11
    assert 0 <= a.bmode.min() and a.bmode.max() <= 1 and 0 <= a.clean.min() and a.clean.max() <= 1
    assert a.meta["split"] == "val" and _slab_of(a) in mri.split_slabs("val")


def test_pair_stream_is_deterministic_and_resumable():
    s1 = PairStream(["L11-5v", "C5-2v"], size=32, split="train", seed=4)
    first = s1.take(4)
    assert [r.probe for r in first] == ["L11-5v", "C5-2v", "L11-5v", "C5-2v"]
    again = PairStream(["L11-5v", "C5-2v"], size=32, split="train", seed=4, start=2).take(2)
    for x, y in zip(first[2:], again):
        np.testing.assert_array_equal(x.bmode, y.bmode)
    assert len({r.seed for r in first}) == 4
    shard = PairStream(["L11-5v", "C5-2v"], size=32, split="train", seed=4, start=1, step=2).take(2)
    assert [r.seed for r in shard] == [first[1].seed, first[3].seed]
    assert all(_slab_of(r) in mri.split_slabs("train") for r in first)
    with pytest.raises(ValueError, match="valid probes"):
        PairStream(["X1"])


def test_split_assignment_follows_fractions():
    splits = [datasets._split_of(i, datasets.SPLIT_FRACTIONS) for i in range(1000)]
    counts = {s: splits.count(s) for s in mri.SPLITS}
    assert counts["train"] == pytest.approx(800, abs=5) and counts["val"] == pytest.approx(100, abs=5)


def test_atomic_write_failure_leaves_no_file(tmp_path):
    class Boom:
        def __array__(self, *a, **k):
            raise RuntimeError("disk on fire")

    target = tmp_path / "s" / "x.npz"
    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_savez(target, good=np.zeros((64, 64)), bad=Boom())
    assert list(target.parent.iterdir()) == []


def _arrays(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_generate_dataset_on_a_two_worker_cluster_is_deterministic_and_resumes(tmp_path):
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "ds"
    probes = ["L11-5v", "P4-2v"]
    kw = dict(n=3, size=32, path="fast", out_dir=out, seed=5, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        s1 = generate_dataset(probes, scheduler=cluster.scheduler_address, **kw)
        assert s1["written"] == 6 and s1["skipped"] == 0 and not s1["failed"]
        files = sorted(out.glob("*/*/*.npz"))
        assert len(files) == 6
        first = {f: _arrays(f) for f in files}
        # the same samples computed in this process are bit-identical
        f0 = files[0]
        a0 = first[f0]
        res = sample_pair(str(a0["probe"]), 32, int(a0["seed"]), str(a0["split"]), "fast")
        np.testing.assert_array_equal(res.bmode, a0["bmode"])
        assert int(a0["seed"]) == sample_seed(5, str(a0["probe"]), int(f0.stem))
        # an interrupted run: one sample lost, a stale temporary file left behind
        files[3].unlink()
        (files[0].parent / "000009.npz.abc.tmp").write_bytes(b"partial")
        s2 = generate_dataset(probes, scheduler=cluster.scheduler_address, **kw)
        assert s2["written"] == 1 and s2["skipped"] == 5
    assert sorted(out.glob("*/*/*.tmp")) == []
    for f in files:
        b = _arrays(f)
        for k in ("bmode", "clean", "lesion_mask", "seed"):
            np.testing.assert_array_equal(first[f][k], b[k])
    man = json.loads((out / "manifest.json").read_text())
    assert man["probes"] == probes and man["n_per_probe"] == 3 and man["complete"]
    assert {s for s in mri.SPLITS if man["counts"][s]} <= set(mri.SPLITS)
    for split in {f.parts[-3] for f in files}:
        stacked = load_dataset(out, split)
        assert stacked["bmode"].shape[1:] == (32, 32)
        for r in stacked["seed"]:
            assert r in {int(first[f]["seed"]) for f in files}
    with pytest.raises(ValueError, match="different dataset"):
        generate_dataset(probes, n=4, size=32, path="fast", out_dir=out, seed=5, progress=False)


def test_generate_dataset_bad_input(tmp_path):
    with pytest.raises(ValueError, match="valid probes"):
        generate_dataset(["nope"], 2, out_dir=tmp_path)
    with pytest.raises(ValueError, match="positive integer"):
        generate_dataset(["L11-5v"], 0, out_dir=tmp_path)
    with pytest.raises(ValueError, match=">= 16"):
        generate_dataset(["L11-5v"], 2, size=8, out_dir=tmp_path)
    with pytest.raises(ValueError, match="valid paths"):
        generate_dataset(["L11-5v"], 2, path="slow", out_dir=tmp_path)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("probe", PROBE_NAMES)
def test_committed_fast_test_set(probe):
    ts = load_test_set("fast", probe)
    assert ts["bmode"].shape == (64, 128, 128) and ts["clean"].shape == (64, 128, 128)
    assert ts["lesion_mask"].any(axis=(1, 2)).sum() >= 10  # plenty of images with lesions
    params = json.loads((datasets.TESTSET_DIR / "fast" / "params.json").read_text())
    assert params["split"] == "test" and params["seeds"][probe] == [int(s) for s in ts["seed"]]


@pytest.mark.parametrize("probe,index", [("L11-5v", 7), ("C5-2v", 42)])
def test_fast_test_set_regenerates_bit_identically(probe, index):
    params = json.loads((datasets.TESTSET_DIR / "fast" / "params.json").read_text())
    res = sample_pair(probe, 128, fullset.image_seed("fast", probe, index), "test", "fast")
    expected = params["checksums"][probe][str(index)]
    assert fullset.sha256(res.bmode) == expected["bmode"]
    assert fullset.sha256(res.clean) == expected["clean"]
    stored = load_test_set("fast", probe)
    np.testing.assert_allclose(stored["bmode"][index], res.bmode, atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(stored["clean"][index], res.clean, atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize("probe", PROBE_NAMES)
def test_committed_full_test_set(probe):
    ts = load_test_set("full", probe)
    params = json.loads((datasets.TESTSET_DIR / "full" / "params.json").read_text())
    n = ts["bmode"].shape[0]
    assert n >= 24 and ts["bmode"].shape[1:] == (128, 128) and params["path"] == "full"
    assert [int(s) for s in ts["seed"]] == params["seeds"][probe][:n]
    assert ts["lesion_mask"].any(axis=(1, 2)).sum() >= 4
    assert np.isfinite(ts["envelope"]).all() and (ts["envelope"] >= 0).all()
    assert ts["bmode"].std() > 0.05 and ts["clean"].std() > 0.01


def test_load_test_set_bad_input():
    with pytest.raises(ValueError, match="valid kinds"):
        load_test_set("medium", "L11-5v")
    with pytest.raises(ValueError, match="valid probes"):
        load_test_set("fast", "Z9")


@pytest.mark.parametrize("compact", [False, True])
def test_test_set_storage_round_trip(tmp_path, compact):
    res = sample_pair("C5-2v", size=32, seed=3, split="test", lesions=1)
    kind = "fast" if compact else "full"
    atomic_savez(tmp_path / kind / "C5-2v" / "000.npz", **datasets.testset_arrays(res, compact=compact))
    ts = load_test_set(kind, "c5-2v", root=tmp_path)
    tol = 0.5 / 255 if compact else 0.5 / 65535
    np.testing.assert_allclose(ts["bmode"][0], res.bmode, atol=tol + 1e-7)
    np.testing.assert_allclose(ts["clean"][0], res.clean, atol=tol + 1e-7)
    np.testing.assert_array_equal(ts["lesion_mask"][0], res.lesion_mask)
    assert ts["lesion_mask"][0].any() and ts["labels"][0].max() == 1
    if compact:
        assert "envelope" not in ts
    else:
        np.testing.assert_allclose(ts["envelope"][0], res.envelope, rtol=1e-3, atol=1e-3 * res.envelope.max())
