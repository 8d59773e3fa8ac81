"""engine.metrics against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from engine import metrics


def test_psnr_known_offset_and_mask():
    ref = np.full((16, 16), 0.5, np.float32)
    x = ref + 0.1  # MSE = 0.01 -> 20 dB
    assert metrics.psnr(x, ref) == pytest.approx(20.0, abs=1e-4)
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    y = ref + 0.01  # 40 dB outside the mask
    y[mask] = ref[mask] + 0.1  # 20 dB inside
    assert metrics.psnr(y, ref, mask=mask) == pytest.approx(20.0, abs=1e-4)
    assert metrics.psnr(y, ref, mask=~mask) == pytest.approx(40.0, abs=1e-3)
    assert metrics.psnr(x, ref, data_range=2.0) == pytest.approx(20.0 + 20 * math.log10(2), abs=1e-4)
    assert metrics.psnr(ref, ref) == math.inf


def test_per_image_scores_each_image_in_its_own_mask():
    ref = np.full((3, 16, 16), 0.5, np.float32)
    out = ref + np.array([0.1, 0.01, 0.0], np.float32)[:, None, None]  # 20 dB, 40 dB, identical
    mask = np.zeros((3, 16, 16), bool)
    mask[:, 2:12, 2:12] = True
    out[1, ~mask[1]] = 0.0  # outside its mask: must not count
    got = metrics.per_image(metrics.psnr, out, ref, mask)
    assert got.shape == (3,) and got[:2] == pytest.approx([20.0, 40.0], abs=1e-3) and got[2] == math.inf
    assert metrics.per_image(metrics.psnr, out[:1], ref[:1]) == pytest.approx([20.0], abs=1e-4)
    want = [metrics.ssim(o, r, mask=m) for o, r, m in zip(out, ref, mask)]
    assert metrics.per_image(metrics.ssim, out, ref, mask).tolist() == want


def test_ssim_constant_images_match_formula():
    # For constant images the variance/covariance terms are 0/0 -> C2/C2 = 1 and only the
    # luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) remains, C1 = (0.01 L)^2.
    a, b = 0.3, 0.6
    x = np.full((32, 32), a)
    ref = np.full((32, 32), b)
    c1 = 0.01 ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert metrics.ssim(x, ref) == pytest.approx(expected, rel=1e-6)
    assert metrics.ssim(ref, ref) == pytest.approx(1.0)


def test_ssim_mask_averages_map():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    ref = rng.random((40, 40))
    x = np.clip(ref + 0.1 * rng.standard_normal(ref.shape), 0, 1)
    mask = np.zeros(ref.shape, bool)
    mask[10:30, 5:25] = True
    _, smap = structural_similarity(ref, x, data_range=1.0, full=True)
    assert metrics.ssim(x, ref, mask=mask) == pytest.approx(float(smap[mask].mean()))
    assert metrics.ssim(x, ref) == pytest.approx(float(smap[3:-3, 3:-3].mean()))
    assert metrics.ssim(x, ref, mask=np.ones(ref.shape, bool)) == pytest.approx(metrics.ssim(x, ref))


def test_cnr_on_constructed_regions():
    img = np.zeros((4, 6))
    img[:, :3] = np.array([1.0, 3.0] * 6).reshape(4, 3)  # target: mean 2, var 1
    img[:, 3:] = np.array([4.0, 6.0] * 6).reshape(4, 3)  # background: mean 5, var 1
    t = np.zeros(img.shape, bool)
    t[:, :3] = True
    assert metrics.cnr(img[t], img[~t]) == pytest.approx(3.0 / math.sqrt(2.0))
    assert metrics.cnr(np.ones(5), np.ones(7)) == 0.0
    assert metrics.cnr(np.ones(5), np.zeros(7)) == math.inf


def test_gcnr_bounds_and_hand_value():
    rng = np.random.default_rng(1)
    a = rng.rayleigh(1.0, 200_000)
    b = rng.rayleigh(1.0, 200_000)
    assert metrics.gcnr(a, b) < 0.05
    assert metrics.gcnr(rng.random(1000), rng.random(1000) + 2.0) == 1.0
    # two bins [0, .5), [.5, 1]: p_t = (.5, .5), p_b = (0, 1) -> overlap .5
    assert metrics.gcnr([0, 0, 1, 1], [1, 1, 1, 1], bins=2) == pytest.approx(0.5)
    assert metrics.gcnr([2, 2], [2, 2]) == 0.0


def test_gcnr_invariant_to_monotone_transform():
    rng = np.random.default_rng(2)
    t = rng.rayleigh(1.0, 100_000)
    b = rng.rayleigh(2.0, 100_000)
    g = metrics.gcnr(t, b)
    assert 0.2 < g < 0.8
    assert metrics.gcnr(np.sqrt(t), np.sqrt(b)) == pytest.approx(g, abs=0.02)
    assert metrics.gcnr(20 * np.log10(t + 1e-3), 20 * np.log10(b + 1e-3), bins=512) == pytest.approx(g, abs=0.03)
    assert metrics.gcnr(3 * t + 7, 3 * b + 7) == pytest.approx(g, abs=1e-9)


def test_roi_stats_and_correlations():
    img = np.arange(12, dtype=float).reshape(3, 4)
    m = img >= 8
    s = metrics.roi_stats(img, m)
    assert s == {"mean": 9.5, "std": pytest.approx(math.sqrt(1.25)), "min": 8.0, "max": 11.0, "n": 4}
    x = np.linspace(0.1, 3, 50)
    assert metrics.pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert metrics.spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert metrics.pearson(x, np.exp(x)) < 0.99
    assert metrics.pearson(x, -x) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: metrics.cnr([], [1.0, 2.0]),
        lambda: metrics.gcnr([np.nan, 1.0], [1.0, 2.0]),
        lambda: metrics.psnr(np.zeros((4, 4)), np.zeros((4, 5))),
        lambda: metrics.psnr(np.zeros((4, 4)), np.ones((4, 4)), mask=np.zeros((4, 4), bool)),
        lambda: metrics.ssim(np.zeros((4, 4)), np.ones((4, 4))),
        lambda: metrics.roi_stats(np.zeros((3, 3)), np.zeros((3, 3), bool)),
        lambda: metrics.pearson([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]),
        lambda: metrics.spearman([1.0, 2.0], [1.0, 2.0, 3.0]),
        lambda: metrics.psnr(np.zeros((4, 4)), np.ones((4, 4)), data_range=0),
    ],
)
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
