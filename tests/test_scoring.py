"""Statistics for foreign sets and real clips."""
import numpy as np
import pytest

from engine import scoring
from engine.metrics import psnr


def test_affine_psnr_ignores_gain_and_offset():
    rng = np.random.default_rng(0)
    ref = rng.random((32, 32))
    out = ref + rng.normal(0, 0.02, ref.shape)
    assert abs(scoring.psnr_affine(0.5 * out + 0.2, ref) - scoring.psnr_affine(out, ref)) < 1e-6
    assert scoring.psnr_affine(0.5 * out + 0.2, ref) > psnr(0.5 * out + 0.2, ref) + 5


def test_uncertainty_agreement_and_calibration():
    rng = np.random.default_rng(1)
    sigma = np.repeat(np.linspace(0.01, 0.1, 16)[None, :, None], 4, 0) * np.ones((4, 16, 512))
    sigma = sigma * np.linspace(0.5, 1.5, 4)[:, None, None]
    err = rng.normal(0, 1, sigma.shape) * sigma
    mask = np.ones(sigma.shape, bool)
    a = scoring.uncertainty_agreement(sigma, err, mask)
    assert a["patch"] > 0.8 and a["image"] > 0.9 and 0.3 < a["pixel"] < 0.9
    cal = scoring.calibration(sigma, err, mask)
    assert cal["max_rel_dev"] < 0.1
    assert scoring.calibration(2 * sigma, err, mask)["max_rel_dev"] > 0.4
    floor = np.full(sigma.shape, 0.03 ** 2)
    noisy = err + rng.normal(0, 0.03, sigma.shape)
    assert scoring.calibration(sigma, noisy, mask, floor)["max_rel_dev"] < 0.15
    assert abs(scoring.fit_scale(0.5 * sigma, err, mask) - 2.0) < 0.1


def test_fit_uncertainty_scales_recovers_known_scales():
    rng = np.random.default_rng(2)
    ale = rng.uniform(0.01, 0.05, 20000)
    epi = rng.uniform(0.0, 0.04, 20000)
    err = rng.normal(0, 1, 20000) * np.sqrt((1.5 * ale) ** 2 + (0.7 * epi) ** 2)
    a, e = scoring.fit_uncertainty_scales(ale, epi, err)
    assert abs(a - 1.5) < 0.1 and abs(e - 0.7) < 0.15


def test_enl_and_ratio_image_of_speckle():
    rng = np.random.default_rng(3)
    inten = rng.exponential(1.0, (64, 64))
    assert abs(scoring.enl(inten) - 1.0) < 0.1
    dr = 50.0
    disp = np.clip((10 * np.log10(0.01 * inten) + dr) / dr, 0, 1)  # tissue at -20 dB: nothing clipped at 1
    clean = np.full(disp.shape, 0.6)
    r = scoring.ratio_image(disp, clean, dr)
    assert abs(scoring.enl(r) - 1.0) < 0.15


def test_m_index_prefers_the_ideal_despeckler():
    from simulator.randomized import random_pair

    p = random_pair(11, size=96, disable=("grain", "sector"), fc_factors=(1.0,))
    from scipy import ndimage
    blurred = ndimage.gaussian_filter(p.bmode, 4)  # removes structure with the speckle
    m_ideal = scoring.m_index(p.bmode, p.target, p.mask, p.meta["dr_db"])["M"]
    m_blur = scoring.m_index(p.bmode, blurred, p.mask, p.meta["dr_db"])["M"]
    assert m_ideal < m_blur
    # no despeckling at all: the ratio image holds none of the input's speckle spread
    assert scoring.m_index(p.bmode, p.target, p.mask)["r1"] < scoring.m_index(p.bmode, p.bmode, p.mask)["r1"]


def test_uncertainty_ceiling_matches_a_known_error_scale():
    """Errors drawn with a known expected RMS per 8×8 patch (a bias plus speckle-like noise): the ceiling
    estimated from the other draws matches the r that the true expected RMS itself reaches."""
    rng = np.random.default_rng(3)
    n_img, n_in, size = 10, 9, 64
    scale = np.kron(rng.lognormal(0, 0.5, (n_img, size // 8, size // 8)), np.ones((8, 8)))
    bias = 0.5 * scale * rng.standard_normal((n_img, size, size))
    image = np.repeat(np.arange(n_img), n_in)
    err = bias[image] + scale[image] * rng.standard_normal((n_img * n_in, size, size))
    mask = np.ones(err.shape, bool)
    truth = scoring.uncertainty_agreement(np.sqrt(bias ** 2 + scale ** 2)[image], err, mask)
    c = scoring.uncertainty_ceiling(err, mask, image)
    for level in ("pixel", "patch"):
        assert c["oracle"][level] <= c["ceiling"][level] + 1e-9
        assert abs(c["ceiling"][level] - truth[level]) < 0.05, (level, c, truth)
    assert c["ceiling"]["patch"] > c["ceiling"]["pixel"] + 0.2  # patches average the chance part away
    with pytest.raises(ValueError, match="no other input"):
        scoring.uncertainty_ceiling(err[:2], mask[:2], np.array([0, 1]))


def test_paired_draw_error_recovers_the_error_against_the_unseen_expectation():
    """Two speckle-like draws of one smooth medium: the estimate from the draws alone matches the error
    against the expectation, for a good and a poor despeckler, and ranks them as the truth does."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:256, :256]
    truth = 0.5 + 0.2 * np.sin(xx / 19.0) * np.cos(yy / 31.0)
    mask = np.ones(truth.shape, bool)
    mask[:, :20] = False

    def draw():  # spatially correlated, heavy noise (std ~0.1, as displayed speckle)
        n = ndimage.gaussian_filter(rng.standard_normal(truth.shape), (1.0, 2.0))
        return truth + 0.1 * n / n.std()

    est, true = {"good": [], "poor": []}, {"good": [], "poor": []}
    for _ in range(6):
        a, b = draw(), draw()
        for name, sig in (("good", 6.0), ("poor", 1.5)):
            out = 0.9 * ndimage.gaussian_filter(a, sig) + 0.03  # a gain and offset the fit removes
            est[name].append(scoring.paired_draw_error(out, a, b, mask))
            true[name].append(float(np.mean((scoring.affine_fit(out, truth, mask) - truth)[mask] ** 2)))
    for name in est:
        assert np.mean(est[name]) == pytest.approx(np.mean(true[name]), rel=0.15)
    assert np.mean(est["poor"]) > 2 * np.mean(est["good"])
    # without B's variance taken off, the raw error against the other draw is dominated by its speckle
    a, b = draw(), draw()
    raw = float(np.mean((scoring.affine_fit(ndimage.gaussian_filter(a, 6.0), b, mask) - b)[mask] ** 2))
    assert raw > 5 * np.mean(true["good"])


def _speckle_draws(rng, truth, k):
    """k independent draws of correlated, heavy (std 0.1) speckle-like noise on ``truth``."""
    from scipy import ndimage

    out = []
    for _ in range(k):
        n = ndimage.gaussian_filter(rng.standard_normal(truth.shape), (1.2, 2.0))
        out.append(truth + 0.1 * n / n.std())
    return np.stack(out)


def test_ratio_structure_separates_structure_removed_from_speckle_left():
    """Known truth, 16 draws: a blur of the truth removes exactly truth − blur (and leaves no speckle); a mix of
    draw and truth removes no structure and leaves half the speckle; the truth itself removes nothing."""
    from scipy import ndimage

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:128, :128]
    truth = 0.5 + 0.2 * np.sin(xx / 4.0) * np.cos(yy / 6.0) + 0.15 * (xx > 70)
    mask = np.ones(truth.shape, bool)
    mask[:, :10] = False
    d = _speckle_draws(rng, truth, 16)
    ideal = scoring.ratio_structure(d, np.repeat(truth[None], 16, 0), mask)
    assert ideal["structure"] < 0.003 and ideal["speckle_left"] < 1e-9
    blurred = ndimage.gaussian_filter(truth, 2.0)
    lost = (truth - blurred)[mask]
    known = float(np.sqrt(np.mean((lost - lost.mean()) ** 2)))
    got = scoring.ratio_structure(d, np.repeat(blurred[None], 16, 0) + 0.05, mask)  # a grey shift is not structure
    assert got["structure"] == pytest.approx(known, rel=0.15)  # unbiased; 6 % RMS spread over seeds
    half = scoring.ratio_structure(d, 0.5 * d + 0.5 * truth, mask)
    assert half["structure"] < 0.003 and half["speckle_left"] == pytest.approx(0.05, rel=0.1)
    # a blur of each draw removes the truth's fine structure and leaves the speckle's coarse part
    g = scoring.ratio_structure(d, np.stack([ndimage.gaussian_filter(x, 2.0) for x in d]), mask)
    assert g["structure"] == pytest.approx(known, rel=0.2) and 0.01 < g["speckle_left"] < 0.1
    with pytest.raises(ValueError, match="K >= 2 draws"):
        scoring.ratio_structure(d[:1], d[:1], mask)


def test_m_index_rewards_leaving_the_coarse_speckle():
    """The limit of the M index on correlated speckle, measured on the foreign sets (ratio_structure.md): an
    output that takes off only the finest speckle and keeps the coarse part scores better than the
    speckle-free image itself, although it removes no structure either (ratio_structure says so)."""
    from scipy import ndimage

    rng = np.random.default_rng(6)
    yy, xx = np.mgrid[:128, :128]
    truth = 0.5 + 0.15 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    mask = np.ones(truth.shape, bool)
    d = _speckle_draws(rng, truth, 6)
    fine_only = np.stack([truth + ndimage.gaussian_filter(x - truth, 2.0) for x in d])
    m_ideal = np.mean([scoring.m_index(x, truth, mask, size=9)["M"] for x in d])
    m_fine = np.mean([scoring.m_index(x, f, mask, size=9)["M"] for x, f in zip(d, fine_only)])
    assert m_fine < m_ideal
    s = scoring.ratio_structure(d, fine_only, mask)
    assert s["structure"] < 0.003 < 0.01 < s["speckle_left"]


def test_pooled_structure_splits_the_error_against_the_truth():
    """Over several images, the pooled structure removed and speckle left are RMS values whose squares add up
    to the mean squared error against the speckle-free image (its uniform part taken off), and the pooled
    structure of a fixed blur is the structure that blur takes off."""
    from scipy import ndimage

    from engine.generalization import pooled_structure

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:128, :128]
    mask = np.ones((128, 128), bool)
    blurs, fixed, mse, lost = [], [], [], []
    for i in range(6):
        truth = 0.5 + 0.2 * np.sin(xx / (3.0 + i)) * np.cos(yy / 6.0)
        d = _speckle_draws(rng, truth, 9)
        outs = np.stack([ndimage.gaussian_filter(x, 1.5) for x in d])
        e = outs - truth
        mse.append(np.mean((e - e.mean()) ** 2))
        b = ndimage.gaussian_filter(truth, 2.0)
        lost.append(np.mean((truth - b - (truth - b).mean()) ** 2))
        for out, acc in ((outs, blurs), (np.repeat(b[None], 9, 0), fixed)):
            r = scoring.ratio_structure(d, out, mask)
            acc.append({"structure": [r["structure"]], "structure_sq": [r["structure_sq"]],
                        "speckle_left": [r["speckle_left"]]})
    structure, speckle = pooled_structure(blurs)
    assert structure > 0.005 and speckle > 0.01
    assert structure ** 2 + speckle ** 2 == pytest.approx(float(np.mean(mse)), rel=0.1)
    assert pooled_structure(fixed)[0] == pytest.approx(float(np.sqrt(np.mean(lost))), rel=0.1)
    assert pooled_structure(fixed)[1] < 1e-9
