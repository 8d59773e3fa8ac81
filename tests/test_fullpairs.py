"""Full-physics Noise2Noise pool (simulator.fullpairs): real full-path draws of a small P4-2v phantom."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from simulator import fullpairs

P4 = 3  # phantom index 3 is the P4-2v (the probes are interleaved); the cheapest full path


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    for i in (P4, P4 + 4):
        fullpairs.make_phantom_pool_item(str(fullpairs.pool_file(d, i)), i, fullpairs.SEED, 32, 3)
    return d


def test_pool_holds_independent_full_physics_draws_of_one_medium(pool_dir):
    pool = fullpairs.load_pool(pool_dir)
    assert pool["draws"].shape == (2, 3, 32, 32)
    assert list(pool["probe"]) == ["P4-2v", "P4-2v"]
    d, m = pool["draws"][0], pool["mask"][0]
    assert m.sum() > 0.5 * m.size
    # one medium: the draws share the echogenicity, so they correlate; new scatterers: they are not equal
    r = np.corrcoef(d[0][m], d[1][m])[0, 1]
    assert 0.1 < r < 0.95
    assert not np.array_equal(d[0], d[1])
    # the mean of the draws follows the echogenicity better than one draw does
    e = pool["echo"][0][m]
    assert np.corrcoef(d.mean(0)[m], e)[0, 1] > np.corrcoef(d[0][m], e)[0, 1]
    # another phantom is another medium
    assert not np.allclose(pool["echo"][0], pool["echo"][1])


def test_item_is_deterministic_and_skips_what_exists(pool_dir, tmp_path):
    f = fullpairs.pool_file(tmp_path, P4)
    fullpairs.make_phantom_pool_item(str(f), P4, fullpairs.SEED, 32, 3)
    with np.load(f) as a, np.load(fullpairs.pool_file(pool_dir, P4)) as b:
        assert np.array_equal(a["bmode_u8"], b["bmode_u8"])
    assert fullpairs.make_phantom_pool_item(str(f), P4, fullpairs.SEED, 32, 3)[1] == 0.0


def test_n2n_pairs_are_every_ordered_pair_under_one_grey_map(pool_dir):
    pool = fullpairs.load_pool(pool_dir)
    pr = fullpairs.n2n_pairs(pool, seed=5)
    assert pr["bmode"].shape == (2 * 3 * 2, 32, 32)
    # phantom 0's six pairs: each draw is an input twice and a target twice, never its own target
    ins, tgs = pr["bmode"][:6], pr["target"][:6]
    for a, b in zip(ins, tgs):
        assert not np.array_equal(a, b)
    assert len({x.tobytes() for x in ins}) == 3 and {x.tobytes() for x in ins} == {x.tobytes() for x in tgs}
    # one monotone grey map per phantom: the grey-mapped draws keep the raw draws' order of grey levels
    raw, m = pool["draws"][0][0], pool["mask"][0]
    assert stats.spearmanr(ins[0][m], raw[m]).statistic > 0.97  # pair 0's input is draw 0
    assert stats.spearmanr(tgs[0][m], pool["draws"][0][1][m]).statistic > 0.97  # its target draw 1
    assert np.all(pr["bmode"][:, ~m] == 0) and np.all(pr["target"][:, ~m] == 0)
    again = fullpairs.n2n_pairs(pool, seed=5)
    assert np.array_equal(again["bmode"], pr["bmode"])


def test_generate_refuses_another_pool_and_one_draw(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"generator": "simulator.fullpairs.generate", "seed": 1}))
    with pytest.raises(ValueError, match="different full-physics pool"):
        fullpairs.generate(tmp_path, 1)
    assert fullpairs.pool_seed(tmp_path) == 1
    with pytest.raises(ValueError, match="at least 2 draws"):
        fullpairs.generate(tmp_path / "x", 1, draws=1)
    with pytest.raises(ValueError, match="no full-physics phantoms"):
        fullpairs.load_pool(tmp_path)


def test_mixed_dataset_mixes_the_pairs_in_at_their_share(pool_dir, tmp_path):
    from simulator.randomized import load_pairs

    base = tmp_path / "base"
    for split, n in (("train", 6), ("val", 2)):
        (base / split).mkdir(parents=True)
        for i in range(n):
            np.savez(base / split / f"{i:06d}.npz", bmode_u8=np.full((32, 32), i, np.uint8),
                     target_u16=np.zeros((32, 32), np.uint16), echo_u16=np.zeros((32, 32), np.uint16),
                     mask=np.ones((32, 32), bool))
    pr = fullpairs.n2n_pairs(fullpairs.load_pool(pool_dir), seed=1)  # 12 pairs
    out = fullpairs.mixed_dataset(base, pr, 0.75, tmp_path / "mix")
    tr = load_pairs(out, "train")
    assert len(tr["bmode"]) == 6 + 12 * 2  # each pair twice: 24 of 30 ≈ the share asked
    assert len(load_pairs(out, "val")["bmode"]) == 2
    n2n = sorted((out / "train").glob("n2n*_r000.npz"))
    with np.load(n2n[0]) as z:
        assert np.array_equal(z["bmode_u8"], np.round(pr["bmode"][0] * 255).astype(np.uint8))
        assert np.abs(z["target_u16"] / 65535 - pr["target"][0]).max() < 1e-4
    fullpairs.mixed_dataset(base, pr, 0.75, tmp_path / "mix")  # idempotent
    assert len(list((out / "train").glob("*.npz"))) == 30
    with pytest.raises(ValueError, match="share"):
        fullpairs.mixed_dataset(base, pr, 1.0, tmp_path / "mix2")


def test_load_pool_names_missing_phantoms(pool_dir):
    with pytest.raises(ValueError, match="lacks 6 of the first 8 phantoms"):
        fullpairs.load_pool(pool_dir, 8)
    assert len(fullpairs.load_pool(pool_dir)["draws"]) == 2
