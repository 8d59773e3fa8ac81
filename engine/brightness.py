"""Brightness as the scanner showed it: the despeckled frame keeps the input's local mean grey level.

A despeckler that learned the speckle-free B-mode (:mod:`simulator.randomized`) outputs, in expectation,
the local mean of the displayed speckle; on a real frame whose grey map or gain it has not seen it can
drift darker or brighter.  :func:`keep_local_mean` adds back the low-pass residual: with ``r = input −
output`` inside the imaged region, ``output + G_σ*(m·r) / G_σ*m`` (``m`` the region mask, a normalised
convolution so black background and borders do not pull the mean down).  This is *speckle-aware*: σ is
three times the frame's larger speckle grain (:func:`engine.normalize.grain_size`, at least 6 px), so the
speckle inside the window averages out (its residual in the correction is ≈ the speckle's std over √(the
number of grains in the window), under a grey level) and only the brightness the network lost comes back;
structure at the PSF scale is the network's.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .normalize import grain_size

MIN_SIGMA = 6.0
GRAIN_FACTOR = 3.0


def window_sigma(frame: np.ndarray, grains: tuple[float, float] | None = None) -> float:
    """The correction's Gaussian σ (px) for a frame: 3 × its larger speckle grain (``grains``, measured
    when not given), at least 6 px."""
    g = [v for v in (grain_size(frame) if grains is None else grains) if np.isfinite(v)]
    return float(max(MIN_SIGMA, GRAIN_FACTOR * max(g))) if g else MIN_SIGMA


def keep_local_mean(inp: np.ndarray, out: np.ndarray, mask: np.ndarray | None = None,
                    sigma: float | None = None) -> np.ndarray:
    """``out`` with the input's local mean restored inside ``mask`` (default: pixels above 1/255)."""
    inp = np.asarray(inp, np.float32)
    out = np.asarray(out, np.float32)
    m = (inp > 1.0 / 255.0) if mask is None else np.asarray(mask, bool)
    if not m.any():
        return out
    s = window_sigma(inp) if sigma is None else float(sigma)
    mf = m.astype(np.float32)
    num = ndimage.gaussian_filter((inp - out) * mf, s, mode="constant")
    den = ndimage.gaussian_filter(mf, s, mode="constant")
    corr = np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0)
    return np.where(m, np.clip(out + corr, 0.0, 1.0), out).astype(np.float32)
