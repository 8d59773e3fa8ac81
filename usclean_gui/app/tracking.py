"""ROIs that follow tissue through a cine loop: block matching on the original frames (Qt-free).

:class:`BlockTracker` follows one ROI's bounding box from the frame where it was placed (the
reference), frame by frame in both directions: the block (box + a margin, lightly blurred against
speckle) of frame k is searched for in frame k ± 1 within ``search`` pixels of its last position by
normalised cross-correlation (``cv2.matchTemplate``), with a parabola through the peak for sub-pixel
shifts.  Offsets are computed on demand and cached, so jumping to frame 29 tracks 29 steps once.
Matching frame to frame follows deforming tissue; its drift over a loop is the price.
"""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

MIN_BLOCK = 16  #: a smaller ROI is matched with a block of at least this size about its centre
MARGIN = 4
SEARCH = 12
BLUR_SIGMA = 1.2


def grey(frame: np.ndarray) -> np.ndarray:
    """float32 (H, W) of a grey or colour frame (the mean of R, G, B)."""
    a = np.asarray(frame, dtype=np.float32)
    return a.mean(axis=2) if a.ndim == 3 else a


def _subpixel(c: np.ndarray, y: int, x: int) -> tuple[float, float]:
    def peak(m1: float, c0: float, p1: float) -> float:
        d = m1 - 2 * c0 + p1
        return 0.0 if d >= 0 else float(np.clip(0.5 * (m1 - p1) / d, -0.5, 0.5))

    dy = peak(c[y - 1, x], c[y, x], c[y + 1, x]) if 0 < y < c.shape[0] - 1 else 0.0
    dx = peak(c[y, x - 1], c[y, x], c[y, x + 1]) if 0 < x < c.shape[1] - 1 else 0.0
    return dy, dx


def match(prev: np.ndarray, cur: np.ndarray, box: tuple[int, int, int, int],
          search: int = SEARCH) -> tuple[float, float]:
    """Shift (dx, dy) that moves block ``box`` (x0, y0, x1, y1) of ``prev`` onto ``cur``."""
    h, w = prev.shape
    x0, y0, x1, y1 = box
    tpl = prev[y0:y1, x0:x1]
    sx0, sy0 = max(0, x0 - search), max(0, y0 - search)
    sx1, sy1 = min(w, x1 + search), min(h, y1 + search)
    win = cur[sy0:sy1, sx0:sx1]
    if tpl.size == 0 or win.shape[0] < tpl.shape[0] or win.shape[1] < tpl.shape[1] or float(tpl.std()) < 1e-6:
        return 0.0, 0.0
    c = cv2.matchTemplate(win, tpl, cv2.TM_CCOEFF_NORMED)
    _, _, _, (px, py) = cv2.minMaxLoc(c)
    dy, dx = _subpixel(c, py, px)
    return float(sx0 + px + dx - x0), float(sy0 + py + dy - y0)


class BlockTracker:
    """Offsets (dx, dy) of one ROI in every frame relative to the reference frame."""

    def __init__(self, frame: Callable[[int], np.ndarray], n_frames: int, reference: int,
                 bbox: tuple[float, float, float, float], search: int = SEARCH) -> None:
        self._frame = frame
        self.n = int(n_frames)
        self.reference = int(reference)
        self.search = search
        self.bbox = bbox
        self._offsets: dict[int, tuple[float, float]] = {self.reference: (0.0, 0.0)}
        self._grey: dict[int, np.ndarray] = {}

    def _prepared(self, i: int) -> np.ndarray:
        if i not in self._grey:
            if len(self._grey) > 4:
                self._grey.pop(next(iter(self._grey)))
            self._grey[i] = cv2.GaussianBlur(grey(self._frame(i)), (0, 0), BLUR_SIGMA)
        return self._grey[i]

    def _block(self, shape: tuple[int, int], off: tuple[float, float]) -> tuple[int, int, int, int]:
        h, w = shape
        x0, y0, x1, y1 = self.bbox
        cx, cy = (x0 + x1) / 2 + off[0], (y0 + y1) / 2 + off[1]
        hw = max((x1 - x0) / 2 + MARGIN, MIN_BLOCK / 2)
        hh = max((y1 - y0) / 2 + MARGIN, MIN_BLOCK / 2)
        bx0, by0 = int(round(max(0, cx - hw))), int(round(max(0, cy - hh)))
        bx1, by1 = int(round(min(w, cx + hw))), int(round(min(h, cy + hh)))
        return bx0, by0, bx1, by1

    def offset(self, i: int) -> tuple[float, float]:
        """(dx, dy) of the ROI in frame ``i`` (tracked from the reference, cached)."""
        i = min(max(int(i), 0), self.n - 1)
        if i in self._offsets:
            return self._offsets[i]
        step = 1 if i > self.reference else -1
        k = i - step
        while k not in self._offsets:  # the nearest tracked frame on the way from the reference
            k -= step
        while k != i:
            prev, cur = self._prepared(k), self._prepared(k + step)
            off = self._offsets[k]
            box = self._block(prev.shape, off)
            dx, dy = match(prev, cur, box, self.search)  # the tissue under the block moved by (dx, dy)
            self._offsets[k + step] = (off[0] + dx, off[1] + dy)
            k += step
        return self._offsets[i]
