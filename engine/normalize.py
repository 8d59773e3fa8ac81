"""Real-frame normalisation: speckle grain (pixels per speckle) and contrast scale (gain / dynamic range).

Scanners differ from our simulator in display dynamic range, gain and sampling density.  Before the
network we bring a frame to the training statistics, and undo the mapping afterwards:

1. **Grain.**  The speckle component (frame minus a Gaussian blur, σ = 4 px) is autocorrelated inside
   the imaged region (pixels above 1/255); the axial and lateral full widths at half maximum of the
   autocorrelation are the grain size in pixels.  The model card's ``reference`` holds the range of
   grains the network saw in training (5th–95th percentile of training frames, widened by the
   pixel-spacing augmentation).  A frame whose grain lies outside that range (by more than 15 %) is
   resampled on that axis to the nearest end of the range (area filter when shrinking, cubic when
   enlarging; factor clamped to [0.25, 4]), and the outputs are resampled back.
2. **Contrast.**  The median 7 × 7 local standard deviation (a speckle-std estimate, ≈ 5.57 dB / DR for
   fully developed speckle) is compared with the trained range (widened by the dynamic-range
   augmentation); outside it the frame is scaled about its median, w' = m + a (w − m), a ∈ [0.5, 2]
   bringing it to the nearest end of the range, and the outputs are mapped back by m + (y − m) / a.
   The gain (overall level) is left alone: training augments it.

On frames like the training data every factor is within tolerance and the mapping is the identity.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
from scipy import ndimage

GRAIN_TOL = 1.15
STD_TOL = 1.15


def _valid(frame: np.ndarray) -> np.ndarray:
    return frame > (1.0 / 255.0)


def grain_size(frame: np.ndarray, max_crop: int = 256) -> tuple[float, float]:
    """(axial, lateral) speckle grain in pixels: FWHM of the speckle autocorrelation in the imaged region."""
    f = frame.astype(np.float64)
    h, w = f.shape
    cy, cx = h // 2, w // 2
    hy, hx = min(h, max_crop) // 2, min(w, max_crop) // 2
    crop = f[cy - hy:cy + hy, cx - hx:cx + hx]
    valid = _valid(crop)
    s = (crop - ndimage.gaussian_filter(crop, 4.0)) * valid
    s = s - s[valid].mean() * valid if valid.any() else s
    ny, nx = s.shape
    spec = np.fft.rfft2(s, s=(2 * ny, 2 * nx))
    ac = np.fft.irfft2(np.abs(spec) ** 2, s=(2 * ny, 2 * nx))
    cnt = np.fft.irfft2(np.abs(np.fft.rfft2(valid.astype(float), s=(2 * ny, 2 * nx))) ** 2, s=(2 * ny, 2 * nx))
    ac = ac / np.maximum(cnt, 1.0)
    if ac[0, 0] <= 0:
        return (float("nan"), float("nan"))
    ac = ac / ac[0, 0]

    def fwhm(profile: np.ndarray) -> float:
        below = np.nonzero(profile < 0.5)[0]
        if len(below) == 0:
            return float(len(profile))
        i = int(below[0])
        p0, p1 = profile[i - 1], profile[i]
        return 2.0 * ((i - 1) + (p0 - 0.5) / max(p0 - p1, 1e-12))

    return fwhm(ac[: ny, 0]), fwhm(ac[0, : nx])


def speckle_std(frame: np.ndarray) -> float:
    """Median 7 × 7 local standard deviation over the imaged region (display units)."""
    f = frame.astype(np.float64)
    m = ndimage.uniform_filter(f, 7)
    v = np.maximum(ndimage.uniform_filter(f * f, 7) - m * m, 0.0)
    valid = ndimage.binary_erosion(_valid(f), iterations=3)
    vals = np.sqrt(v[valid]) if valid.any() else np.sqrt(v.ravel())
    return float(np.median(vals))


def measure_reference(frames, zoom: tuple[float, float] = (1.0, 1.0),
                      dr_ratio: tuple[float, float] = (1.0, 1.0)) -> dict:
    """Training statistics for the model card's ``reference``: median grain and speckle std, and the
    ranges the network saw (5th–95th percentiles, grain widened by the pixel-spacing augmentation
    ``zoom``, std by the dynamic-range augmentation ``dr_ratio`` (std scales by 1/ratio))."""
    grains = np.array([grain_size(f) for f in frames])
    stds = np.array([speckle_std(f) for f in frames])
    lo, hi = np.nanpercentile(grains, 5, axis=0), np.nanpercentile(grains, 95, axis=0)
    return {"grain_px": [float(np.nanmedian(grains[:, 0])), float(np.nanmedian(grains[:, 1]))],
            "grain_range": [[float(lo[i] * zoom[0]), float(hi[i] * zoom[1])] for i in range(2)],
            "speckle_std": float(np.median(stds)),
            "std_range": [float(np.percentile(stds, 5) / dr_ratio[1]), float(np.percentile(stds, 95) / dr_ratio[0])]}


def _to_range(value: float, lo: float, hi: float, tol: float) -> float:
    """Factor that brings ``value`` to the nearest end of [lo, hi] (1 when within the tolerance)."""
    if not np.isfinite(value) or value <= 0 or lo / tol <= value <= hi * tol:
        return 1.0
    return (lo if value < lo else hi) / value


@dataclass
class Plan:
    """A fitted normalisation of one frame: ``forward`` before the network, ``inverse`` after."""

    shape: tuple[int, int]
    work_shape: tuple[int, int]
    median: float
    scale: float

    @property
    def identity(self) -> bool:
        return self.shape == self.work_shape and self.scale == 1.0

    def forward(self, frame: np.ndarray) -> np.ndarray:
        w = frame
        if self.work_shape != self.shape:
            interp = cv2.INTER_AREA if self.work_shape[0] * self.work_shape[1] < w.size else cv2.INTER_CUBIC
            w = cv2.resize(w, self.work_shape[::-1], interpolation=interp)
        if self.scale != 1.0:
            w = self.median + self.scale * (w - self.median)
        return np.clip(w, 0.0, 1.0).astype(np.float32)

    def inverse(self, out: np.ndarray) -> np.ndarray:
        y = out
        if self.scale != 1.0:
            y = self.median + (y - self.median) / self.scale
        if self.work_shape != self.shape:
            interp = cv2.INTER_AREA if self.shape[0] * self.shape[1] < y.size else cv2.INTER_CUBIC
            y = cv2.resize(y.astype(np.float32), self.shape[::-1], interpolation=interp)
        return y.astype(np.float32)

    def inverse_variance(self, var: np.ndarray) -> np.ndarray:
        """Map a per-pixel variance of the network's output back (the contrast scale squared, resampled)."""
        v = np.asarray(var, np.float32) / np.float32(self.scale ** 2)
        if self.work_shape != self.shape:
            interp = cv2.INTER_AREA if self.shape[0] * self.shape[1] < v.size else cv2.INTER_LINEAR
            v = cv2.resize(v, self.shape[::-1], interpolation=interp)
        return np.maximum(v, 0.0).astype(np.float32)


def fit(frame: np.ndarray, reference: dict, min_side: int = 16, max_side: int = 4096,
        grains: tuple[float, float] | None = None) -> Plan:
    """Measure ``frame`` and plan the mapping into the ``reference`` ranges (identity when inside);
    ``grains``: the frame's :func:`grain_size` when already measured."""
    shape = (int(frame.shape[0]), int(frame.shape[1]))
    grains = grain_size(frame) if grains is None else grains
    ranges = reference.get("grain_range") or [[g, g] for g in reference["grain_px"]]
    zoom = [float(np.clip(_to_range(g, lo, hi, GRAIN_TOL), 0.25, 4.0)) for g, (lo, hi) in zip(grains, ranges)]
    work = tuple(int(np.clip(round(n * z), min_side, max_side)) if z != 1.0 else n for n, z in zip(shape, zoom))
    plan = Plan(shape, cast(tuple[int, int], work), 0.0, 1.0)  # one zoom per axis of the 2-D shape
    w = plan.forward(frame)
    sd = speckle_std(w)
    lo, hi = reference.get("std_range") or [reference["speckle_std"]] * 2
    a = _to_range(sd, lo, hi, STD_TOL)
    if a != 1.0:
        plan.scale = float(np.clip(a, 0.5, 2.0))
        valid = _valid(w)
        plan.median = float(np.median(w[valid])) if valid.any() else float(np.median(w))
    return plan
