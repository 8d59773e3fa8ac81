"""Domain-randomised training pairs: determinism, ranges, and the closed-form speckle-free target."""
import numpy as np
import pytest

from engine.metrics import psnr
from simulator import randomized, sources
from simulator.randomized import (FACTORS, expected_log_intensity, generate_pairs, kernel_grain, load_pairs,
                                  monte_carlo_target, random_pair)

FAST = {"fc_factors": (1.0,)}  # shipped PSF banks only: nothing is measured in the tests


def test_pair_is_deterministic_and_in_range():
    a = random_pair(3, size=64, **FAST)
    b = random_pair(3, size=64, **FAST)
    for k in ("bmode", "target", "echo"):
        v = getattr(a, k)
        assert v.shape == (64, 64) and v.dtype == np.float32
        assert np.array_equal(v, getattr(b, k))
        assert 0.0 <= v.min() and v.max() <= 1.0
    assert np.allclose(a.bmode * 255, np.round(a.bmode * 255), atol=1e-4)  # an 8-bit input
    assert not np.array_equal(a.bmode, random_pair(4, size=64, **FAST).bmode)
    assert a.mask.dtype == bool and (a.bmode[~a.mask] == 0).all() and (a.target[~a.mask] == 0).all()


def test_other_speckle_seed_redraws_only_the_speckle():
    a = random_pair(5, size=64, **FAST)
    b = random_pair(5, size=64, speckle_seed=9, **FAST)
    assert not np.array_equal(a.bmode, b.bmode)
    assert np.array_equal(a.echo, b.echo) and a.meta["grain_out_px"] == b.meta["grain_out_px"]


@pytest.mark.parametrize("alpha,c,n0", [(None, 0.0, 0.0), (None, 1.5, 0.05), (0.7, 0.0, 0.05), (3.0, 0.8, 0.0)])
def test_expected_log_intensity_matches_monte_carlo(alpha, c, n0):
    rng = np.random.default_rng(0)
    n = 400_000
    g = np.ones(n) if alpha is None else rng.gamma(alpha, 1 / alpha, n)
    d = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) * np.sqrt(0.5)
    noise = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) * np.sqrt(n0 / 2)
    mc = np.log(np.abs(np.sqrt(g) * d + c + noise) ** 2).mean()
    cf = expected_log_intensity(np.ones(1), np.full(1, c + 0j) if c else None, n0, alpha)[0]
    assert abs(mc - cf) < 0.02
    if alpha is None and c == 0 and n0 == 0:
        assert abs(cf + np.euler_gamma) < 1e-9  # the 2.51 dB log-Rayleigh bias


@pytest.mark.parametrize("seed", [0, 7])
def test_closed_form_target_is_the_mean_over_speckle_draws(seed):
    p = random_pair(seed, size=64, **FAST)
    mc = monte_carlo_target(seed, 24, size=64, **FAST)
    diff = (p.target - mc)[p.mask]
    assert abs(diff.mean()) < 0.004  # unbiased
    # the 24-draw mean still holds residual speckle: the closed form sits within it
    assert psnr(p.target, mc, p.mask) > psnr(p.bmode, mc, p.mask) + 8


def test_disabled_factors_hold_typical_values():
    p = random_pair(1, size=64, disable=FACTORS, **FAST)
    assert p.meta["angles_deg"] == [0.0] and p.meta["grey_map"]["kind"] == "identity"
    assert p.meta["source"] == "mri" and p.meta["k_shape"] is None and not p.meta["specular"]
    with pytest.raises(ValueError, match="unknown factor"):
        random_pair(1, disable=("colour",))


def test_grain_spans_the_requested_range():
    grains = np.array([random_pair(s, size=64, **FAST).meta["grain_out_px"] for s in range(12)])
    assert grains.min() >= 0.8 - 1e-6 and grains.max() <= 6.0 + 1e-6
    assert np.ptp(grains[:, 0]) > 1.5 and np.ptp(grains[:, 1]) > 1.5  # independent per axis, wide


def test_kernel_grain_of_a_gaussian_psf():
    k, _ = randomized._analytic_kernel(np.random.default_rng(0), (3.0, 2.0), 0.0,
                                       {"carrier": 0.0, "skew": 0.0, "sidelobe": 0.0, "chirp": 0.0})
    gz, gx = kernel_grain(k)
    assert abs(gz - 3.0) < 0.25 and abs(gx - 2.0) < 0.25


def test_sources_stay_in_range_and_training_images_are_not_foreign():
    from simulator.anatomy import NATURAL_IMAGES

    assert not set(sources.TRAIN_IMAGES) & set(NATURAL_IMAGES)
    rng = np.random.default_rng(1)
    for name in ("natural", "procedural", "mri"):
        img = getattr(sources, name)((40, 56), rng)
        assert img.shape == (40, 56) and 0 <= img.min() and img.max() <= 1


def test_dataset_round_trip(tmp_path):
    generate_pairs(tmp_path, n_train=2, n_val=1, size=48, seed=3, workers=1, progress=False, probes=["L11-5v"],
                   disable=("psf",))
    data = load_pairs(tmp_path, "train")
    direct = random_pair(randomized.pair_seed(3, "train", 1), size=48, probes=["L11-5v"], disable=("psf",))
    assert data["bmode"].shape == (2, 48, 48)
    assert np.allclose(data["bmode"][1], direct.bmode, atol=1 / 510)
    assert np.allclose(data["target"][1], direct.target, atol=1e-4)
    raw = load_pairs(tmp_path, "val", raw=True)
    assert raw["bmode"].dtype == np.uint8 and raw["target"].dtype == np.uint16
    with pytest.raises(ValueError, match="different randomized dataset"):
        generate_pairs(tmp_path, n_train=2, n_val=1, size=48, seed=4, workers=1, progress=False)
