"""Phantoms: geometry, masks, contrasts, MRI slab separation, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from simulator import mri, phantoms
from simulator.phantoms import PHANTOM_NAMES, make_phantom
from simulator.probes import PROBE_NAMES, get_probe


@pytest.mark.parametrize("probe_name", PROBE_NAMES)
@pytest.mark.parametrize("name", PHANTOM_NAMES)
def test_every_phantom_covers_the_window_with_masks(probe_name, name):
    probe = get_probe(probe_name)
    ph = make_phantom(name, probe, size=48, seed=3, split="val")
    x0, z0, spacing = probe.image_window(48)
    assert ph.echo.shape == (48, 48) and ph.echo.dtype == np.float32
    assert (ph.x0_mm, ph.z0_mm, *ph.spacing_mm) == pytest.approx((x0, z0, *spacing))
    assert np.isfinite(ph.echo).all() and ph.echo.min() >= 0 and ph.echo.max() <= 1
    assert ph.lesion_mask.dtype == bool and ph.background_mask.dtype == bool
    assert not (ph.lesion_mask & ph.background_mask).any()
    field = probe.in_field(*np.meshgrid(x0 + spacing[1] * np.arange(48), z0 + spacing[0] * np.arange(48)))
    assert not (ph.background_mask & ~field).any()
    if name != "mri":  # analytic phantoms always have a target and a background
        if name != "homogeneous":
            assert ph.lesion_mask.sum() > 0
        assert ph.background_mask.sum() > 20


def test_analytic_contrasts_and_homogeneous_background():
    probe = get_probe("L11-5v")
    dr = probe.dynamic_range_db
    ph = make_phantom("lesions", probe, size=96, contrast_db=[-6.0, 6.0], level=0.6)
    labels = ph.meta["labels"]
    bg = ph.echo[ph.background_mask]
    assert np.ptp(bg) == 0 and bg[0] == pytest.approx(0.6)
    assert ph.echo[labels == 1].mean() == pytest.approx(0.6 - 6 / dr, abs=1e-6)
    assert ph.echo[labels == 2].mean() == pytest.approx(0.6 + 6 / dr, abs=1e-6)
    cyst = make_phantom("cyst", probe, size=96, radius_mm=2.0)
    assert cyst.echo[cyst.lesion_mask].max() == 0.0
    area = cyst.lesion_mask.sum() * np.prod(cyst.spacing_mm)
    assert area == pytest.approx(np.pi * 2.0 ** 2, rel=0.05)
    pts = make_phantom("points", probe, size=96)
    assert pts.meta["labels"].max() == 9 and pts.echo[pts.background_mask].max() == 0.0
    layers = make_phantom("layers", probe, size=96, seed=1)
    li = layers.meta["layer_index"]
    assert np.unique(layers.echo[layers.lesion_mask]).size == 1
    assert np.unique(layers.echo[layers.background_mask]).size == 1
    assert (li[layers.lesion_mask] == layers.meta["target_layer"]).all()


@pytest.mark.parametrize("split", mri.SPLITS)
def test_mri_slabs_are_separated_and_cover_the_head(split):
    slabs = {s: mri.split_slabs(s) for s in mri.SPLITS}
    mine = slabs[split]
    others = [ab for s, v in slabs.items() if s != split for ab in v]
    for lo, hi in mine:
        assert hi - lo >= 20
        for olo, ohi in others:
            gap = max(olo - hi, lo - ohi) - 1
            assert gap >= mri.SLAB_GAP_VOXELS


def test_mri_slices_stay_inside_their_slab(monkeypatch):
    """Poison every voxel outside the test slabs with NaN: no test phantom may touch one."""
    vol = mri.load_volume()
    poisoned = np.full(vol.shape, np.nan, np.float32)
    for lo, hi in mri.split_slabs("test"):
        poisoned[:, lo:hi + 1, :] = vol[:, lo:hi + 1, :]
    monkeypatch.setattr(mri, "load_volume", lambda: poisoned)
    phantoms._slab_coefficients.cache_clear()
    try:
        probe = get_probe("C5-2v")
        for seed in range(12):  # includes strong zoom-out / elastic cases
            ph = make_phantom("mri", probe, size=64, seed=seed, split="test", elastic_px=4.0,
                              fov_vox=(60.0, 120.0) if seed % 2 else (20.0, 40.0))
            assert np.isfinite(ph.echo).all(), seed
            lo, hi = ph.meta["slab"]
            assert (lo, hi) in mri.split_slabs("test")
            ylo, yhi = ph.meta["y_range_vox"]
            assert lo <= ylo <= yhi <= hi
    finally:
        phantoms._slab_coefficients.cache_clear()


def test_mri_is_deterministic_varied_and_has_random_mappings():
    probe = get_probe("L11-5v")
    a = make_phantom("mri", probe, size=64, seed=5)
    b = make_phantom("mri", probe, size=64, seed=5)
    c = make_phantom("mri", probe, size=64, seed=6)
    np.testing.assert_array_equal(a.echo, b.echo)
    assert not np.array_equal(a.echo, c.echo)
    normals = []
    curves_monotone = set()
    for s in range(20):
        ph = make_phantom("mri", probe, size=32, seed=s, lesions=0)
        assert ph.echo.std() > 0.005  # anatomy, not a blank field
        normals.append(np.cross(ph.meta["row_axis"], ph.meta["col_axis"]))
        e = np.diff(ph.meta["curve_e"])
        curves_monotone.add(bool((e >= 0).all() or (e <= 0).all()))
    normals = np.abs(np.array(normals))
    assert normals.std(axis=0).max() > 0.1  # orientations vary
    assert curves_monotone == {True, False}


def test_mri_inserted_lesions_have_masks_and_contrast():
    probe = get_probe("L12-3v")
    ph = make_phantom("mri", probe, size=96, seed=2, lesions=2, lesion_contrast_db=-12.0)
    assert len(ph.meta["lesions"]) == 2 and ph.meta["labels"].max() == 2
    assert ph.background_mask.sum() > 50
    for k, les in enumerate(ph.meta["lesions"], start=1):
        core = ph.meta["labels"] == k
        assert abs(np.median(ph.echo[core]) - les["level"]) < 1e-3
    none = make_phantom("mri", probe, size=32, seed=2, lesions=0)
    assert not none.lesion_mask.any() and not none.background_mask.any()


def test_bad_input_messages():
    probe = get_probe("L11-5v")
    with pytest.raises(ValueError, match="valid phantoms: mri, cyst"):
        make_phantom("banana", probe)
    with pytest.raises(ValueError, match=">= 16"):
        make_phantom("cyst", probe, size=8)
    with pytest.raises(ValueError, match="valid splits"):
        make_phantom("mri", probe, split="holdout")
    with pytest.raises(ValueError, match="no option"):
        make_phantom("cyst", probe, contrast_db=3)
    with pytest.raises(ValueError, match="radius"):
        make_phantom("lesions", probe, radius_mm=-1)
