"""Each classical filter on a known case, plus the registry and the grid search."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from engine import classical as C
from engine import metrics


def _rayleigh_display(shape=(128, 128), scale=0.1, seed=0):
    """Fully developed, uncorrelated speckle on a homogeneous region (envelope mean ≈ 0.125)."""
    env = np.random.default_rng(seed).rayleigh(scale, shape)
    return C.envelope_to_display(env).astype(np.float32)


def test_display_envelope_round_trip():
    d = np.linspace(0.01, 1.0, 50)
    assert np.allclose(C.envelope_to_display(C.display_to_envelope(d, 60.0), 60.0), d)
    assert C.display_to_envelope(np.array([1.0, 0.0]), 40.0) == pytest.approx([1.0, 0.01])


@pytest.mark.parametrize("name", list(C.FILTERS))
def test_constant_image_is_a_fixed_point(name):
    img = np.full((32, 40), 0.6, np.float32)
    out = C.FILTERS[name](img)
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.abs(out - 0.6).max() < 1e-3


def test_median_of_known_window():
    img = np.zeros((5, 5))
    img[1:4, 1:4] = np.array([[0.9, 0.1, 0.5], [0.3, 0.8, 0.2], [0.7, 0.4, 0.6]])
    out = C.median(img, size=3)
    assert out[2, 2] == pytest.approx(0.5)  # median of 0.1 .. 0.9
    assert out[0, 0] == pytest.approx(0.0)


def test_lee_reduces_homogeneous_speckle_to_local_mean_variance():
    d = _rayleigh_display()
    env = C.display_to_envelope(d)
    for size in (5, 7, 9):
        out = C.display_to_envelope(C.lee(d, size=size, cu=C.RAYLEIGH_CV))
        expected = env.var() / size ** 2  # variance of an N-pixel mean of iid speckle
        assert expected <= out.var() <= 2.0 * expected
        assert out.mean() == pytest.approx(env.mean(), rel=0.01)


def test_lee_gain_on_a_noise_free_edge():
    img = np.full((32, 32), 0.3, np.float32)
    img[:, 16:] = 0.9
    out = C.lee(img, size=7, cu=0.1)
    # flat areas: C_I = 0 -> W = 0 -> local mean = the value itself; at the 30 dB edge C_I >> C_u so
    # W -> 1/(1 + C_u²) ≈ 0.99 and the edge is kept (1 % of the bright mean leaks into the dark
    # side: < 2 dB there, invisible on the bright side)
    assert np.allclose(out, img, atol=0.04) and np.allclose(out[:, 16:], 0.9, atol=0.002)
    assert np.allclose(out[:, :12], 0.3, atol=1e-6) and np.allclose(out[:, 20:], 0.9, atol=1e-6)


def test_frost_without_damping_is_the_box_mean_and_smooths_speckle():
    d = _rayleigh_display(seed=1)
    env = C.display_to_envelope(d)
    box = C.envelope_to_display(ndimage.uniform_filter(env, 5, mode="reflect"))
    assert np.allclose(C.frost(d, size=5, damping=0.0), box, atol=1e-5)
    out = C.display_to_envelope(C.frost(d, size=7, damping=1.0))
    assert out.var() < 2.0 * env.var() / 49


def test_srad_coefficient_behaviour():
    q0_2 = 0.3 ** 2
    assert C.srad_coefficient(q0_2, q0_2) == pytest.approx(1.0)
    assert C.srad_coefficient(0.0, q0_2) == pytest.approx(1.0)  # clipped: full smoothing below q0
    half = q0_2 + q0_2 * (1 + q0_2)  # (q² − q0²) / (q0² (1 + q0²)) = 1  ->  c = 1/2
    assert C.srad_coefficient(half, q0_2) == pytest.approx(0.5)
    q2 = np.linspace(q0_2, 100.0, 200)
    c = C.srad_coefficient(q2, q0_2)
    assert np.all(np.diff(c) < 0) and c[-1] < 0.01


def test_srad_conserves_mean_smooths_speckle_and_keeps_edges():
    d = _rayleigh_display(seed=2)
    env = C.display_to_envelope(d)
    out = C.display_to_envelope(C.srad(d, n_iter=50, dt=0.5))
    assert out.mean() == pytest.approx(env.mean(), rel=1e-5)  # conservative flux scheme, Neumann borders
    assert out.var() < 0.1 * env.var()
    # a 20 dB step (q far above the decaying speckle scale q0(t)) stays within ~3 pixels
    step = np.full((32, 32), 0.4, np.float32)
    step[:, 16:] = 0.8
    kept = C.srad(step, n_iter=100, dt=0.5)
    assert kept[:, 13].max() < 0.41 and kept[:, 17].min() > 0.76
    assert np.allclose(kept[:, :8], 0.4, atol=0.005) and np.allclose(kept[:, 24:], 0.8, atol=0.015)


def test_obnlm_noise_free_straight_edge_is_a_fixed_point_and_denoises():
    img = np.full((48, 48), 0.3)
    img[:, 24:] = 0.8
    # blocks on the edge find identical blocks along it (d_P = 0), others get weight ~0
    assert np.allclose(C.obnlm(img, h=0.02), img, atol=1e-4)
    img[30:, :] = 0.55
    rng = np.random.default_rng(3)
    noisy = np.clip(img + 0.08 * np.sqrt(img) * rng.standard_normal(img.shape), 0, 1)  # u = v + v^0.5 η
    out = C.obnlm(noisy, h=0.25, block_radius=1)
    assert metrics.psnr(out, img) > metrics.psnr(noisy, img) + 5


def test_nlm_and_bm3d_reduce_additive_noise_in_the_log_domain():
    yy, xx = np.mgrid[:64, :64]
    clean = 0.4 + 0.3 * ((yy // 16 + xx // 16) % 2)
    noisy = np.clip(clean + 0.08 * np.random.default_rng(4).standard_normal(clean.shape), 0, 1)
    base = metrics.psnr(noisy, clean)
    assert metrics.psnr(C.nlm(noisy, h=0.08), clean) > base + 4
    assert metrics.psnr(C.bm3d(noisy, sigma=0.08), clean) > base + 6


def test_tune_picks_the_best_grid_point_and_prints_the_table():
    rng = np.random.default_rng(5)
    pairs = []
    for _ in range(2):
        clean = np.full((32, 32), 0.5)
        noisy = clean.copy()
        idx = rng.random(clean.shape) < 0.05
        noisy[idx] = rng.choice([0.0, 1.0], idx.sum())  # salt and pepper: a 3x3 median removes it
        pairs.append((noisy, clean))
    lines = []
    params, table = C.tune("median", pairs, grid={"size": [1, 3, 5]}, calibrate=False, print_fn=lines.append)
    assert params == {"size": 3} or params == {"size": 5}
    assert len(table) == 3 and table[0]["psnr"] < table[1]["psnr"]
    assert "grid search for median" in lines[0] and "*" in lines[0]


def test_tune_calibrates_a_global_offset():
    clean = np.full((32, 32), 0.5)
    mask = np.ones(clean.shape, bool)
    mask[:4] = False
    pairs = [(clean - 0.05, clean, mask)]
    params, table = C.tune("median", pairs, grid={"size": [3]}, print_fn=lambda s: None)
    assert params["offset"] == pytest.approx(0.05, abs=1e-6)
    assert table[0]["psnr"] > 80
    assert np.allclose(C.FILTERS["median"](pairs[0][0], **params), clean, atol=1e-6)


@pytest.mark.parametrize(
    "call",
    [
        lambda: C.median(np.full((8, 8), np.nan)),
        lambda: C.median(np.zeros((8, 8)), size=4),
        lambda: C.lee(np.zeros((8, 8, 3))),
        lambda: C.srad(np.zeros((8, 8)), dt=2.0),
        lambda: C.get_filter("gaussian"),
        lambda: C.tune("median", []),
    ],
)
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
