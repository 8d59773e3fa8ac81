"""The foreign full-physics sets: acquisition draws, geometry, anatomy, one real (tiny) simulation, the committed
files."""
import dataclasses
import json

import numpy as np
import pytest

from simulator import anatomy, foreign


@pytest.mark.parametrize("probe", foreign.PROBES)
def test_acquisitions_are_deterministic_and_foreign(probe):
    import pymust

    a = foreign.draw_acquisition(probe, 3)
    assert a == foreign.draw_acquisition(probe, 3) and a != foreign.draw_acquisition(probe, 4)
    pre = pymust.getparam(probe)
    assert 0.85 * pre.fc <= a.fc_hz <= 1.12 * pre.fc
    lam = a.wavelength_mm
    assert 0.28 * lam <= a.spacing_mm[0] <= 0.7 * lam and 0.3 * lam <= a.spacing_mm[1] <= 0.95 * lam
    assert 1 <= len(a.angles_deg) <= 3 and 0.4 <= a.density <= 1.6 and 45 <= a.dr_db <= 65
    kinds = [foreign.draw_acquisition(probe, i).scene for i in range(8)]
    assert sum(k.startswith("natural:") for k in kinds) == 4


@pytest.mark.parametrize("probe", ["L11-5v", "C5-2v"])
def test_geometry_supersamples_the_output_grid(probe):
    acq = foreign.draw_acquisition(probe, 0)
    geo = foreign.geometry(acq)
    h, w = acq.shape
    assert geo.mask.shape == (h, w) and geo.mask.mean() > 0.5
    assert geo.xs.shape == (h * geo.sub[0], w * geo.sub[1])
    if acq.kind == "linear":
        assert geo.polar is None and geo.das_x.shape == geo.xs.shape
    else:
        assert geo.polar is not None and geo.das_x.shape == tuple(geo.polar["shape"])
    env = np.ones(geo.das_x.shape)
    assert np.allclose(foreign._to_output(env, geo), 1.0)  # area averaging keeps a constant


@pytest.mark.parametrize("kind", anatomy.SCENES)
def test_tissue_scenes(kind):
    xx, zz = np.meshgrid(np.arange(0, 20, 0.1), np.arange(10, 26, 0.1))
    sc = anatomy.tissue_scene(kind, xx, zz, np.random.default_rng(2))
    assert sc.db.shape == xx.shape and sc.db.min() >= anatomy.FLOOR_DB and sc.db.max() <= 0
    assert np.ptp(sc.db) > 15  # real contrast, not a flat map
    assert not (sc.lesion_mask & sc.background_mask).any()


def test_natural_scene_uses_held_out_pictures():
    xx, zz = np.meshgrid(np.arange(0, 10, 0.1), np.arange(0, 8, 0.1))
    for name in anatomy.NATURAL_IMAGES:
        sc = anatomy.natural_scene(name, xx, zz, np.random.default_rng(0))
        assert sc.db.shape == xx.shape and -40.01 <= sc.db.min() and sc.db.max() <= 0
    with pytest.raises(ValueError):
        anatomy.natural_scene("camera", xx, zz, np.random.default_rng(0))


def test_one_small_full_physics_draw():
    acq = dataclasses.replace(foreign.draw_acquisition("P4-2v", 1), shape=(20, 20), angles_deg=(0.0,), density=0.4)
    geo = foreign.geometry(acq)
    med = foreign.medium(acq, geo, seed=5)
    bf = foreign._Beamformer(acq, geo)
    env1 = foreign.simulate_draw(acq, geo, med, 1, bf)
    env2 = foreign.simulate_draw(acq, geo, med, 2, bf)
    assert env1.shape == (20, 20) and np.isfinite(env1).all() and env1[geo.mask].min() > 0
    assert not np.allclose(env1, env2)  # independent scatterers
    d = foreign.display(np.stack([env1, env2]), geo.mask, acq)
    assert d.dtype == np.uint8 and d.shape == (2, 20, 20)
    med_level = np.median(d[:, geo.mask]) / 255
    assert abs(med_level - acq.display_level) < 0.05


def test_committed_sets_load():
    probes = foreign.available()
    if not probes:
        pytest.skip("no foreign set generated yet")
    data = foreign.load(probes[0])
    n = len(data["bmode"])
    assert data["bmode"].shape == data["clean"].shape == (n, 128, 128)
    assert (data["n_draws"] >= 9).all() and (data["floor_mse"] > 0).all()
    # the truth (a mean of 8 draws) is far closer to itself than the input is
    from engine.metrics import psnr
    assert all(psnr(b, c, m) < 10 * np.log10(1 / f) - 3
               for b, c, m, f in zip(data["bmode"], data["clean"], data["mask"], data["floor_mse"]))


def test_another_base_seed_makes_another_set(tmp_path):
    a, b = foreign.draw_acquisition("L11-5v", 3), foreign.draw_acquisition("L11-5v", 3, base_seed=foreign.BASE_SEED + 6)
    assert a != b and a.probe == b.probe
    assert foreign.draw_acquisition("L11-5v", 3, base_seed=foreign.BASE_SEED + 6) == b  # still deterministic
    # the CLI carries the seed into the folder's manifest (no image asked for: nothing is simulated) ...
    assert foreign.main(["--root", str(tmp_path), "--n", "0", "--base-seed", "7"]) == 0
    assert json.loads((tmp_path / "params.json").read_text())["base_seed"] == 7
    # ... and a folder never mixes two seeds' images
    with pytest.raises(ValueError, match="other settings"):
        foreign.generate(tmp_path, n=0)
