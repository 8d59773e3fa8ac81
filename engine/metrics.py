"""Image-quality and contrast metrics used by the evaluation, the CLI and the GUI's ROI tools.

All functions take numpy arrays (any float/int dtype) and return Python floats (or a dict for
:func:`roi_stats`).  Images are (H, W) in the display domain [0, 1] unless stated otherwise; masks
are boolean arrays of the same shape.  Bad input (shape mismatch, empty ROI, NaN/inf values,
too few samples) raises :class:`ValueError` with a message naming the problem.

Definitions
-----------
- PSNR = 10 log10(data_range² / MSE) (``skimage.metrics.peak_signal_noise_ratio``); with a mask,
  the MSE is taken over the masked pixels only.
- SSIM: ``skimage.metrics.structural_similarity`` (7×7 uniform window, default constants); with a
  mask, the full SSIM map is computed on the whole image and averaged inside the mask.
- CNR = |μ_t − μ_b| / sqrt(σ_t² + σ_b²) (population standard deviations).  Its value depends on
  the intensity domain (envelope, dB, display); the caller states which domain it passes.
- gCNR (Rodriguez-Molares et al., IEEE TUFFC 2020) = 1 − Σ_k min(p_t(k), p_b(k)), with p_t, p_b
  the normalised histograms of the two samples over ``bins`` common bins spanning both samples'
  range.  It lies in [0, 1]: 0 for identical distributions, 1 for non-overlapping ones, and is
  invariant (up to binning) to monotone intensity transforms.
"""
from __future__ import annotations

import numpy as np
from scipy import stats
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

_SSIM_WIN = 7  # scikit-image's default window (uniform, 7x7)

__all__ = ["psnr", "ssim", "cnr", "gcnr", "roi_stats", "pearson", "spearman"]


def _finite(a: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("%s is empty" % name)
    if not np.all(np.isfinite(arr)):
        raise ValueError("%s contains NaN or infinite values" % name)
    return arr


def _pair(x: np.ndarray, ref: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    xa = _finite(x, "image")
    ra = _finite(ref, "reference")
    if xa.shape != ra.shape:
        raise ValueError("image shape %s differs from reference shape %s" % (xa.shape, ra.shape))
    if mask is None:
        return xa, ra, None
    m = np.asarray(mask)
    if m.shape != xa.shape:
        raise ValueError("mask shape %s differs from image shape %s" % (m.shape, xa.shape))
    m = m.astype(bool)
    if not m.any():
        raise ValueError("mask selects no pixels (empty ROI)")
    return xa, ra, m


def _check_range(data_range: float) -> float:
    dr = float(data_range)
    if not np.isfinite(dr) or dr <= 0:
        raise ValueError("data_range must be a positive number, got %r" % (data_range,))
    return dr


def psnr(x: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio of ``x`` against ``ref`` in dB (inf when they are identical).

    With ``mask`` the mean squared error is taken over the masked pixels only.
    """
    xa, ra, m = _pair(x, ref, mask)
    dr = _check_range(data_range)
    if m is not None:
        xa, ra = xa[m], ra[m]
    if np.array_equal(xa, ra):
        return float("inf")
    return float(peak_signal_noise_ratio(ra, xa, data_range=dr))


def ssim(x: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """Structural similarity of 2-D ``x`` against ``ref`` (scikit-image, 7×7 window).

    With ``mask`` the SSIM map of the whole image is averaged over the masked pixels (away from
    the 3-pixel border scikit-image also excludes), so an all-True mask gives the unmasked value.
    """
    xa, ra, m = _pair(x, ref, mask)
    dr = _check_range(data_range)
    if xa.ndim != 2:
        raise ValueError("ssim expects 2-D images, got shape %s" % (xa.shape,))
    if min(xa.shape) < _SSIM_WIN:
        raise ValueError("ssim needs images of at least 7x7 pixels, got %s" % (xa.shape,))
    if m is None:
        return float(structural_similarity(ra, xa, data_range=dr, win_size=_SSIM_WIN))
    _, smap = structural_similarity(ra, xa, data_range=dr, win_size=_SSIM_WIN, full=True)
    # Like scikit-image's mean SSIM, leave out the 3-pixel border where the window is padded,
    # unless the ROI lies entirely inside that border.
    pad = (_SSIM_WIN - 1) // 2
    inner = np.zeros_like(m)
    inner[pad:-pad, pad:-pad] = True
    sel = m & inner if (m & inner).any() else m
    return float(np.mean(smap[sel]))


def per_image(metric, out: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``metric`` (:func:`psnr` or :func:`ssim`) of each image of the stack ``out`` against the same image of
    ``ref``, inside the same image of ``mask`` when given: a float array with one value per image."""
    masks = [None] * len(out) if mask is None else mask
    return np.array([metric(o, r, mask=m) for o, r, m in zip(out, ref, masks)], float)


def _sample(values: np.ndarray, name: str, min_size: int = 1) -> np.ndarray:
    arr = _finite(values, name).ravel()
    if arr.size < min_size:
        raise ValueError("%s needs at least %d values, got %d" % (name, min_size, arr.size))
    return arr


def cnr(target_values: np.ndarray, background_values: np.ndarray) -> float:
    """Contrast-to-noise ratio |μ_t − μ_b| / sqrt(σ_t² + σ_b²) of two pixel samples.

    Returns inf when both samples are constant with different means and 0 when they are
    constant and equal.
    """
    t = _sample(target_values, "target ROI")
    b = _sample(background_values, "background ROI")
    diff = abs(float(t.mean()) - float(b.mean()))
    denom = float(np.sqrt(t.var() + b.var()))
    if denom == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / denom


def gcnr(target_values: np.ndarray, background_values: np.ndarray, bins: int = 256) -> float:
    """Generalised CNR: 1 − overlap of the two samples' normalised histograms on common bins."""
    t = _sample(target_values, "target ROI")
    b = _sample(background_values, "background ROI")
    if int(bins) < 2:
        raise ValueError("gcnr needs at least 2 bins, got %r" % (bins,))
    lo = min(float(t.min()), float(b.min()))
    hi = max(float(t.max()), float(b.max()))
    if hi == lo:  # both samples are the same constant: complete overlap
        return 0.0
    edges = np.linspace(lo, hi, int(bins) + 1)
    pt = np.histogram(t, bins=edges)[0] / t.size
    pb = np.histogram(b, bins=edges)[0] / b.size
    return float(np.clip(1.0 - np.minimum(pt, pb).sum(), 0.0, 1.0))


def roi_stats(image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean, population std, min, max and pixel count ``n`` of ``image`` inside ``mask``."""
    img = _finite(image, "image")
    m = np.asarray(mask)
    if m.shape != img.shape:
        raise ValueError("mask shape %s differs from image shape %s" % (m.shape, img.shape))
    vals = img[m.astype(bool)]
    if vals.size == 0:
        raise ValueError("mask selects no pixels (empty ROI)")
    return {"mean": float(vals.mean()), "std": float(vals.std()), "min": float(vals.min()),
            "max": float(vals.max()), "n": int(vals.size)}


def _corr_inputs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = _sample(a, "first sample", 2)
    y = _sample(b, "second sample", 2)
    if x.size != y.size:
        raise ValueError("correlation needs samples of equal size, got %d and %d" % (x.size, y.size))
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise ValueError("correlation is undefined for a constant sample")
    return x, y


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation coefficient r of two equally sized samples (flattened)."""
    x, y = _corr_inputs(a, b)
    return float(stats.pearsonr(x, y)[0])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation ρ of two equally sized samples (flattened)."""
    x, y = _corr_inputs(a, b)
    return float(stats.spearmanr(x, y)[0])
