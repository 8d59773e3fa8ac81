"""Simulated cine: the speckle moves with the tissue (coherent), it does not flicker."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.registration import phase_cross_correlation

from simulator.cine import simulate_cine, simulate_cine_results
from simulator.probes import get_probe


def _corr(a, b, m):
    return float(np.corrcoef(a[m], b[m])[0, 1])


@pytest.fixture(scope="module")
def fast_clip():
    return simulate_cine_results("homogeneous", get_probe("L11-5v"), 12, seed=4, path="fast", size=64)


def test_consecutive_frames_correlate_far_more_than_independent_realisations(fast_clip):
    other = simulate_cine_results("homogeneous", get_probe("L11-5v"), 2, seed=5, path="fast", size=64)
    m = fast_clip[0].mask
    consecutive = [_corr(a.bmode, b.bmode, m) for a, b in zip(fast_clip[:-1], fast_clip[1:])]
    independent = _corr(fast_clip[0].bmode, other[0].bmode, m)
    assert min(consecutive) > 0.6, consecutive
    assert abs(independent) < 0.15
    assert min(consecutive) > abs(independent) + 0.5
    # the motion is real: frames are not all the same image
    assert _corr(fast_clip[0].bmode, fast_clip[-1].bmode, m) < 0.5


def test_speckle_moves_with_the_tissue(fast_clip):
    """Speckle tracking between frame 0 and frame k recovers the tissue's lateral shift."""
    dz, dx = fast_clip[0].spacing_mm
    k = len(fast_clip) - 1
    expected = (fast_clip[k].meta["motion"][0] - fast_clip[0].meta["motion"][0]) / dx
    assert abs(expected) > 1.5  # the test needs a visible sweep
    shift, _, _ = phase_cross_correlation(fast_clip[k].bmode[8:-8, 8:-8], fast_clip[0].bmode[8:-8, 8:-8],
                                          upsample_factor=10)
    assert shift[1] == pytest.approx(expected, abs=0.75)


def test_uint8_frames_spacing_and_determinism():
    probe = get_probe("P4-2v")
    frames, spacing, ft = simulate_cine("cyst", probe, 3, seed=2, size=32, frame_time_ms=50.0)
    again, _, _ = simulate_cine("cyst", probe, 3, seed=2, size=32, frame_time_ms=50.0)
    assert frames.shape == (3, 32, 32) and frames.dtype == np.uint8 and ft == 50.0
    assert spacing == probe.image_window(32)[2]
    np.testing.assert_array_equal(frames, again)
    res = simulate_cine_results("cyst", probe, 1, seed=2, size=32)[0]
    assert res.bmode[res.lesion_mask].mean() < res.bmode[res.background_mask].mean() - 0.15


@pytest.mark.parametrize("kw,needle", [
    (dict(phantom_name="banana"), "valid phantoms"),
    (dict(n_frames=0), "frames"),
    (dict(path="slow"), "valid paths"),
    (dict(size=4), ">= 16"),
])
def test_bad_input(kw, needle):
    args = dict(phantom_name="cyst", probe=get_probe("L11-5v"), n_frames=2) | kw
    with pytest.raises(ValueError, match=needle):
        simulate_cine(**args)
