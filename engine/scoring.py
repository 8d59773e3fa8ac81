"""Statistics for judging despecklers off their training domain (pure numpy / scikit-image functions).

With a ground truth (the foreign sets):

* :func:`psnr_affine` — PSNR after a per-image least-squares affine fit ``a·out + b`` of the output to the
  truth inside the mask (removes a global gain/offset difference, as the acceptance set scores); plain
  PSNR is :func:`engine.metrics.psnr`.
* :func:`uncertainty_agreement` — Pearson r of predicted uncertainty against the absolute error per pixel,
  on 8 × 8 patches (mean predicted std against the patch RMS error) and per image.
* :func:`uncertainty_ceiling` — the r an oracle reaches that knows the model's expected error at every
  pixel (estimated from the other speckle draws of the same image): what the input's and the truth's speckle
  leave for any uncertainty map to track.
* :func:`calibration` — RMS error in each decile of predicted uncertainty, against the prediction; the
  truth's own residual speckle (``floor``, a per-pixel variance) can be subtracted from the squared error
  so that the RMS error is that against the speckle-free image itself.

From two independent speckle draws A, B of one medium, without its truth:

* :func:`paired_draw_error` — the squared error of an output of draw A against the draws' expectation (the
  speckle-free B-mode), ``mean (fit(out) − B)² − mean (A − B)² / 2`` (B's own speckle variance removed).
* :func:`ratio_structure` — from K draws: the structure a method removes or adds (the RMS of the ratio image's
  expectation over the draws) and the speckle it leaves (the outputs' spread across draws).

Without a ground truth (real clips):

* :func:`enl` — equivalent number of looks of a homogeneous patch in intensity (mean² / variance);
* :func:`ratio_image` — input / output in intensity;
* :func:`m_index` — Gomez, Ospina & Frery (2017)'s unassisted measure on the ratio image taken in the
  log (display) domain: a first-order residual (its mean and spread against the input's over the flattest
  areas) and a second-order one (GLCM homogeneity against shuffled copies); 0 is ideal, larger means
  structure was removed or added.  On ultrasound's correlated speckle it mostly reads which part of the
  speckle's spectrum was removed: the speckle-free image scores worse than BM3D, and a filter that takes off
  only the finest speckle best (``docs/experiments/ratio_structure.md``);

Display values map to intensity with the display dynamic range: I = 10^(DR (d − 1) / 10).
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage


def _masked(a: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    a = np.asarray(a, np.float64)
    return a.ravel() if mask is None else a[np.asarray(mask, bool)]


def affine_fit(out: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``a·out + b`` with (a, b) the least-squares fit to ``ref`` inside ``mask`` (the whole image mapped)."""
    x, y = _masked(out, mask), _masked(ref, mask)
    if x.size < 2 or np.ptp(x) == 0:
        return np.full(np.shape(out), float(y.mean()) if y.size else 0.0)
    a, b = np.polyfit(x, y, 1)
    return a * np.asarray(out, np.float64) + b


def mse_affine(out: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error inside ``mask`` after the per-image affine fit of ``out`` to ``ref``."""
    fit = affine_fit(out, ref, mask)
    return float(np.mean((_masked(fit, mask) - _masked(ref, mask)) ** 2))


def psnr_affine(out: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR (data range 1) after the per-image affine fit of ``out`` to ``ref``."""
    return float(10 * np.log10(1.0 / max(mse_affine(out, ref, mask), 1e-12)))


def paired_draw_error(out: np.ndarray, a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error of ``out`` (made from draw ``a``) against the expectation of two independent,
    identically distributed draws ``a``, ``b`` of one medium, estimated without it: B's variance,
    ``mean (a − b)² / 2``, taken off ``out``'s affine-fitted error against ``b``.  Unbiased when ``out``
    depends on ``a`` alone; noisy per image (the variance is about ten times the errors of a good despeckler),
    so compare methods on the same draws and average over images."""
    return mse_affine(out, b, mask) - float(np.mean((_masked(a, mask) - _masked(b, mask)) ** 2)) / 2


def ratio_structure(draws: np.ndarray, outputs: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """What a despeckler takes from the image besides speckle, measured exactly from K independent speckle
    draws of one medium (display units): the expectation of the ratio image over the draws.

    With r_k = draw_k − output_k (the ratio image in the log domain) and every output made from its own draw
    alone, E[r] = truth − E[output] is the structure the method removed (> 0) or added (< 0), whatever the
    speckle's grain: the speckle averages out of the mean over draws and its remainder, var(r) / K, is taken
    off.  The mask's mean of E[r] (a uniform grey shift, the tissue shift of the real clips) is removed
    first.  ``structure`` is the RMS of what is left over ``mask`` (``structure_sq`` its square before the
    clip at 0: unbiased, so average that over images); ``speckle_left`` the RMS spread of the
    outputs across draws (the speckle the method leaves, plus its own instability).  Their squares add up to
    the mean squared error against the speckle-free image, less its uniform part.  No reference image is
    needed, but several draws are: this is what the no-reference M index (:func:`m_index`) tries to read
    from one draw, which it cannot on correlated speckle (``docs/experiments/ratio_structure.md``)."""
    d = np.asarray(draws, np.float64)
    o = np.asarray(outputs, np.float64)
    if d.shape != o.shape or d.ndim != 3 or len(d) < 2:
        raise ValueError("ratio_structure needs K >= 2 draws and one output per draw, of one shape (K, H, W); "
                         f"got {d.shape} and {o.shape}")
    m = np.ones(d.shape[1:], bool) if mask is None else np.asarray(mask, bool)
    r = d - o
    k = len(r)
    rbar = r.mean(axis=0)[m]
    noise = r.var(axis=0, ddof=1)[m] / k
    s2 = float(np.mean((rbar - rbar.mean()) ** 2) - np.mean(noise))
    return {"structure": float(np.sqrt(max(s2, 0.0))), "structure_sq": s2,
            "speckle_left": float(np.sqrt(np.mean(o.var(axis=0, ddof=1)[m]))), "draws": k}


def psnr_floor(floor_mse: float) -> float:
    """The PSNR a perfect despeckler scores against a truth whose residual speckle has MSE ``floor_mse``."""
    return float(10 * np.log10(1.0 / max(float(floor_mse), 1e-12)))


def _pearson(a: ArrayLike, b: ArrayLike) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.size < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _patches(a: np.ndarray, mask: np.ndarray, size: int, fn) -> list[float]:
    h, w = a.shape
    out = []
    for y in range(0, h - size + 1, size):
        for x in range(0, w - size + 1, size):
            m = mask[y:y + size, x:x + size]
            if m.all():
                out.append(fn(a[y:y + size, x:x + size]))
    return out


AGREEMENT_LEVELS = ("pixel", "patch", "image")


def level_values(std: np.ndarray, mask: np.ndarray, patch: int = 8) -> dict[str, np.ndarray]:
    """A predicted std as :func:`uncertainty_agreement` reads it: per pixel, per ``patch``² patch inside the
    mask (mean) and per image (mean)."""
    px, ps, im = [], [], []
    for s, m in zip(np.asarray(std, np.float64), np.asarray(mask, bool)):
        px.append(s[m])
        ps += _patches(s, m, patch, np.mean)
        im.append(s[m].mean())
    return {"pixel": np.concatenate(px), "patch": np.asarray(ps), "image": np.asarray(im)}


def uncertainty_agreement(std: np.ndarray, err: np.ndarray, mask: np.ndarray, patch: int = 8) -> dict[str, float]:
    """Pearson r of predicted std vs |error| (stacks (N, H, W)): per pixel, per ``patch``² patch (mean std vs
    RMS error, patches fully inside the mask), per image (mean std vs RMS error)."""
    err, mask = np.asarray(err, np.float64), np.asarray(mask, bool)
    pred = level_values(std, mask, patch)
    pe, im_e = [], []
    for e, m in zip(err, mask):
        pe += _patches(e, m, patch, lambda v: np.sqrt(np.mean(v ** 2)))
        im_e.append(np.sqrt(np.mean(e[m] ** 2)))
    return {"pixel": _pearson(pred["pixel"], np.abs(err[mask])), "patch": _pearson(pred["patch"], pe),
            "image": _pearson(pred["image"], im_e), "n_patches": len(pe), "n_images": len(im_e)}


def oracle_std(err: np.ndarray, image: np.ndarray, pick=None) -> np.ndarray:
    """Per input ``n``, the RMS error (per pixel) of the other inputs of the same image ``image[n]`` —
    ``pick(others)`` chooses a subset of them."""
    err, image = np.asarray(err, np.float64), np.asarray(image)
    out = np.empty_like(err)
    for n in range(len(err)):
        others = [int(j) for j in np.nonzero(image == image[n])[0] if j != n]
        if pick is not None:
            others = pick(others)
        if not others:
            raise ValueError("input %d has no other input of its image to estimate its expected error" % n)
        out[n] = np.sqrt(np.mean(err[others] ** 2, axis=0))
    return out


def uncertainty_ceiling(err: np.ndarray, mask: np.ndarray, image: np.ndarray, patch: int = 8) -> dict:
    """How far any uncertainty map can track this error.  ``err`` (N, H, W) holds several inputs per image
    (independent speckle draws of the same scene, ``image`` (N,) says which).  The oracle for input ``n``
    predicts the error the model makes on average over draws, its bias included, estimated from the other
    inputs of the image; its r with input ``n``'s own |error| (as :func:`uncertainty_agreement` scores) is
    what chance — the input's and the truth's speckle — leaves.  Estimating from few draws adds noise that
    lowers r, so ``ceiling`` corrects it by the oracle's reliability (split halves of the other draws,
    Spearman–Brown): ``oracle / sqrt(reliability)``."""
    oracle = uncertainty_agreement(oracle_std(err, image), err, mask, patch)
    half_a = level_values(oracle_std(err, image, lambda o: o[0::2]), mask, patch)
    half_b = level_values(oracle_std(err, image, lambda o: o[1::2]), mask, patch)
    out: dict = {"oracle": {k: oracle[k] for k in AGREEMENT_LEVELS}, "ceiling": {}, "reliability": {}}
    for k in AGREEMENT_LEVELS:
        r_half = max(_pearson(half_a[k], half_b[k]), 1e-6)
        rel = 2 * r_half / (1 + r_half)  # of an oracle from twice the draws of a half
        out["reliability"][k] = float(rel)
        out["ceiling"][k] = float(min(1.0, oracle[k] / np.sqrt(rel)))
    return out


def calibration(std: np.ndarray, err: np.ndarray, mask: np.ndarray, floor: np.ndarray | None = None,
                bins: int = 10) -> dict[str, list[float] | float]:
    """Deciles of predicted std: mean prediction, RMS error (with ``floor`` — a per-pixel variance of the
    truth's residual speckle — subtracted from the squared error), and their ratio; ``max_rel_dev`` is the
    largest |RMS error / prediction − 1| over the deciles."""
    s = _masked(std, mask)
    e2 = _masked(err, mask) ** 2
    if floor is not None:
        e2 = e2 - _masked(floor, mask)
    edges = np.quantile(s, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    pred, rms = [], []
    for b in range(bins):
        sel = idx == b
        if not sel.any():
            continue
        pred.append(float(np.sqrt(np.mean(s[sel] ** 2))))
        rms.append(float(np.sqrt(max(np.mean(e2[sel]), 0.0))))
    ratio = [r / p if p > 0 else float("nan") for r, p in zip(rms, pred)]
    return {"predicted": pred, "rms_error": rms, "ratio": ratio,
            "max_rel_dev": float(np.nanmax(np.abs(np.array(ratio) - 1.0))) if ratio else float("nan")}


def fit_scale(std: np.ndarray, err: np.ndarray, mask: np.ndarray | None = None,
              floor: np.ndarray | None = None) -> float:
    """The one scale c minimising the mismatch of c·std with the RMS error: c² = E[e² − floor] / E[std²]."""
    s2 = _masked(std, mask) ** 2
    e2 = _masked(err, mask) ** 2 - (0.0 if floor is None else _masked(floor, mask))
    return float(np.sqrt(max(e2.mean(), 1e-12) / max(s2.mean(), 1e-12)))


# --------------------------------------------------------------------------- no-reference measures
def to_intensity(display: np.ndarray, dr_db: float) -> np.ndarray:
    return np.power(10.0, dr_db * (np.asarray(display, np.float64) - 1.0) / 10.0)


def enl(intensity: np.ndarray) -> float:
    """Equivalent number of looks of a (homogeneous) intensity patch: mean² / variance."""
    v = np.asarray(intensity, np.float64).ravel()
    var = v.var()
    return float(v.mean() ** 2 / var) if var > 0 else float("inf")


def ratio_image(inp: np.ndarray, out: np.ndarray, dr_db: float) -> np.ndarray:
    """The ratio image input / output in intensity."""
    return to_intensity(inp, dr_db) / np.maximum(to_intensity(out, dr_db), 1e-30)


def homogeneous_windows(inp: np.ndarray, mask: np.ndarray, dr_db: float, size: int = 15, n: int = 12,
                        min_level: float = 0.1) -> list[tuple[int, int]]:
    """Top-left corners of the ``n`` most homogeneous ``size``² windows (lowest coefficient of variation of
    the input intensity, non-overlapping, inside ``mask``, mean display level above ``min_level``)."""
    inten = to_intensity(inp, dr_db)
    h, w = inp.shape
    cands = []
    step = max(size // 2, 1)
    for y in range(0, h - size + 1, step):
        for x in range(0, w - size + 1, step):
            if not mask[y:y + size, x:x + size].all():
                continue
            if inp[y:y + size, x:x + size].mean() < min_level:
                continue
            patch = inten[y:y + size, x:x + size]
            cands.append((patch.std() / max(patch.mean(), 1e-30), y, x))
    cands.sort()
    chosen: list[tuple[int, int]] = []
    for _, y, x in cands:
        if all(abs(y - cy) >= size or abs(x - cx) >= size for cy, cx in chosen):
            chosen.append((y, x))
        if len(chosen) >= n:
            break
    return chosen


def _glcm_homogeneity(img: np.ndarray, levels: int = 32) -> float:
    from skimage.feature import graycomatrix, graycoprops

    v = np.asarray(img, np.float64)
    lo, hi = np.percentile(v, [1, 99])
    q = np.clip((v - lo) / max(hi - lo, 1e-12) * (levels - 1), 0, levels - 1).astype(np.uint8)
    g = graycomatrix(q, [1], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=levels, symmetric=True, normed=True)
    return float(graycoprops(g, "homogeneity").mean())


def m_index(inp: np.ndarray, out: np.ndarray, mask: np.ndarray, dr_db: float | None = None, size: int = 15,
            n_areas: int = 12, shuffles: int = 10, seed: int = 0) -> dict[str, float]:
    """The M index (0 = ideal) of a despeckled display image, with its two parts.

    Gomez, Ospina & Frery's measure, taken on the ratio image in the log domain our displays live in:
    r = input − output in display units (the log of I_in / I_out over DR).  For an ideal despeckler of
    display images (the output is the local mean of the displayed speckle, :mod:`simulator.randomized`)
    r is pure speckle: zero mean and the input's own spread in homogeneous areas.  First order, over the
    input's ``n_areas`` most homogeneous windows: r₁ = mean of (|mean r| + |std r − std in|) / (2 std in).
    Second order: δh = 100 |h0 − mean h_shuffled| / h0, h0 the GLCM homogeneity of r inside the mask's
    bounding box and h_shuffled that of randomly permuted copies.  M = (r₁ + δh) / 2.  Ultrasound speckle
    is correlated over its grain, so δh is not 0 even for an ideal despeckler: compare methods on the
    same image.  ``dr_db`` is not needed (kept for symmetry with the intensity measures)."""
    inp, out = np.asarray(inp, np.float64), np.asarray(out, np.float64)
    r = inp - out
    wins = _flattest_windows(inp, mask, size, n_areas)
    parts = []
    for y, x in wins:
        si = inp[y:y + size, x:x + size].std()
        pr = r[y:y + size, x:x + size]
        if si > 0:
            parts.append((abs(pr.mean()) + abs(pr.std() - si)) / (2 * si))
    r1 = float(np.mean(parts)) if parts else float("nan")
    ys, xs = np.nonzero(mask)
    box = r[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    inside = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    box = np.where(inside, box, np.median(box[inside]))
    h0 = _glcm_homogeneity(box)
    rng = np.random.default_rng(seed)
    hs = [_glcm_homogeneity(rng.permutation(box.ravel()).reshape(box.shape)) for _ in range(shuffles)]
    dh = float(100 * abs(h0 - np.mean(hs)) / max(h0, 1e-12))
    return {"M": 0.5 * (r1 + dh), "r1": r1, "delta_h": dh, "n_areas": len(wins)}


def _flattest_windows(img: np.ndarray, mask: np.ndarray, size: int, n: int, min_level: float = 0.08):
    """Top-left corners of the ``n`` flattest non-overlapping ``size``² windows of a display image (lowest
    std of a 3-px-smoothed copy: speckle averages out, structure does not), inside ``mask``."""
    sm = ndimage.uniform_filter(np.asarray(img, np.float64), 3)
    h, w = img.shape
    step = max(size // 2, 1)
    cands = []
    for y in range(0, h - size + 1, step):
        for x in range(0, w - size + 1, step):
            if mask[y:y + size, x:x + size].all() and img[y:y + size, x:x + size].mean() >= min_level:
                cands.append((sm[y:y + size, x:x + size].std(), y, x))
    cands.sort()
    chosen: list[tuple[int, int]] = []
    for _, y, x in cands:
        if all(abs(y - cy) >= size or abs(x - cx) >= size for cy, cx in chosen):
            chosen.append((y, x))
        if len(chosen) >= n:
            break
    return chosen


def fit_variance_weights(variances, err: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Non-negative weights w with err² ≈ Σ_k w_k · variances[k] over the pixels (least squares, each part
    normalised by its mean first so that parts of very different size are fitted alike)."""
    from scipy.optimize import nnls

    A = np.stack([_masked(v, mask) for v in variances], axis=1)
    y = _masked(err, mask) ** 2
    scale = np.sqrt(np.maximum(A.mean(axis=0), 1e-20))
    coef, _ = nnls(A / scale ** 2, y)
    return coef / scale ** 2


def fit_uncertainty_scales(aleatoric: np.ndarray, epistemic: np.ndarray, err: np.ndarray,
                           mask: np.ndarray | None = None) -> tuple[float, float]:
    """Scales (a, e) with err² ≈ a² · aleatoric² + e² · epistemic² (non-negative least squares over the
    pixels): the calibration of the total uncertainty sqrt((a σ_a)² + (e σ_e)²)."""
    coef = fit_variance_weights([aleatoric ** 2, epistemic ** 2], err, mask)
    return float(np.sqrt(coef[0])), float(np.sqrt(coef[1]))
