"""Real-frame normalisation: speckle grain (pixels per speckle) and contrast scale (gain / dynamic range).

Scanners differ from our simulator in display dynamic range, gain and sampling density.  Before the
network we bring a frame to the training statistics, and undo the mapping afterwards:

1. **Grain.**  The speckle component (frame minus a Gaussian blur, σ = 4 px) is autocorrelated inside
   the imaged region (pixels above 1/255); the axial and lateral full widths at half maximum of the
   autocorrelation are the grain size in pixels.  If a size differs from the training grain
   (``reference["grain_px"]``) by more than the tolerance (training already augments pixel spacing by
   about ±30 %), the frame is resampled by ``reference / measured`` on that axis (area filter when
   shrinking, cubic when enlarging; factor clamped to [0.25, 4]) and the result resampled back.
2. **Contrast.**  The median 7 × 7 local standard deviation (a speckle-std estimate, ≈ 5.57 dB / DR for
   fully developed speckle) is compared with the training value ``reference["speckle_std"]``; if they
   differ by more than 15 % the frame is scaled about its median, w' = m + a (w − m),
   a = reference / measured ∈ [0.5, 2], and the outputs mapped back by m + (y − m) / a.  The gain
   (overall level) is left alone: training augments it.

On frames like the training data every factor is within tolerance and the mapping is the identity.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

GRAIN_TOL = 1.3
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


def measure_reference(frames) -> dict:
    """Training statistics (store them in the model card as ``reference``)."""
    grains = np.array([grain_size(f) for f in frames])
    stds = np.array([speckle_std(f) for f in frames])
    return {"grain_px": [float(np.nanmedian(grains[:, 0])), float(np.nanmedian(grains[:, 1]))],
            "speckle_std": float(np.median(stds))}


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


def fit(frame: np.ndarray, reference: dict, min_side: int = 16, max_side: int = 4096) -> Plan:
    """Measure ``frame`` and plan the mapping to the ``reference`` statistics."""
    shape = (int(frame.shape[0]), int(frame.shape[1]))
    ga, gl = grain_size(frame)
    ra, rl = reference["grain_px"]
    zoom = []
    for g, r in ((ga, ra), (gl, rl)):
        z = r / g if np.isfinite(g) and g > 0 else 1.0
        zoom.append(float(np.clip(z, 0.25, 4.0)) if not (1 / GRAIN_TOL <= z <= GRAIN_TOL) else 1.0)
    work = tuple(int(np.clip(round(n * z), min_side, max_side)) for n, z in zip(shape, zoom))
    plan = Plan(shape, work, 0.0, 1.0)
    w = plan.forward(frame)
    sd = speckle_std(w)
    a = reference["speckle_std"] / sd if sd > 0 else 1.0
    if not (1 / STD_TOL <= a <= STD_TOL):
        plan.scale = float(np.clip(a, 0.5, 2.0))
        valid = _valid(w)
        plan.median = float(np.median(w[valid])) if valid.any() else float(np.median(w))
    return plan
