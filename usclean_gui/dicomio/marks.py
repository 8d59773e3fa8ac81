"""Burned-in marks and the field of view inside a B-mode pane, and filling marks before despeckling.

Pure functions over displayed grey frames (uint8 ``q``: 0 = black, 255 = white, MONOCHROME1
already inverted), in the style of pydicom's ``pixels`` helpers; :class:`ClipMasks` applies
them to a clip and caches what does not change from frame to frame.

What counts as a mark (text, calipers, markers, depth and focus ticks, ROI / colour-box
outlines, body marks; the detectors err on the side of a mark, since a false mark only leaves
a few pixels speckled while a missed one is destroyed):

* **colour**: any pixel that is not grey (beyond the lossy-compression tolerance), plus its
  8-neighbours (anti-aliased edges of coloured graphics are greyish);
* **plateaus** (:func:`frame_marks`): graphics are drawn in one flat value, speckle is not:
  8-connected groups of at least :data:`MIN_PLATEAU` pixels of exactly one value, above black
  and the grey map's lowest level, standing :data:`CONTRAST` levels above or below the local
  median (speckle's own flat runs lie near it: on simulated cines this check cuts the false marks
  2.6-4.7 times at the same recall), (lossy data: within a tolerance, and above the local median);
  in a cine whose tissue moves, :data:`CINE_MIN_PLATEAU` pixels, since its fixed graphics are found
  by what stays fixed (below); and
  near-white pixels (>= :data:`WHITE`) above the local median; dilated by one pixel for
  anti-aliased edges and dark outlines;
* **static** (:func:`static_marks`): in a cine whose tissue moves, pixels that stay fixed across
  frames spread over the loop (black ones excepted).

The **field of view** (:func:`fov_mask`) is the sector or rectangle of image content in a pane:
non-black pixels, closed over the speckle's dark gaps and hole-filled, large components only.
Nothing outside it is ever written, so the black background stays exactly as it was.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

if TYPE_CHECKING:  # pragma: no cover
    from .clip import Clip

#: Side of the median filter that estimates the background a mark stands on.
MEDIAN = 15
#: Smallest flat run (pixels of one value) taken as a drawn mark.
MIN_PLATEAU = 4
#: The same in each frame of a cine whose tissue moves (its fixed marks are found by :func:`static_marks`).
CINE_MIN_PLATEAU = 6
#: Mean difference (levels) between a flat group and the pixels around it for it to be a drawn mark.
EDGE_CONTRAST = 15
#: Largest difference between linked pixels of one flat mark (lossless data; interpolation leaves 1).
FLAT_TOLERANCE = 0
#: Levels (of 255) a mark must stand above the local median of the displayed frame.
CONTRAST = 20
#: Displayed level from which a pixel above the local median is a mark on its own.
WHITE = 248
#: Largest difference between the values of one mark's pixels in lossy-compressed data.
LOSSY_TOLERANCE = 3
#: Displayed level up to which a pixel counts as black background.
BLACK = 6
#: Most change (levels) across the loop of a fixed pixel (anti-aliased graphics vary by one), the
#: fraction of the local typical change below which a pixel up to STATIC_REACH pixels from a fixed
#: one is fixed too (edges blended with the moving image).
STATIC_CORE = 1
STATIC_GROWTH = 0.5
STATIC_REACH = 2
#: Length of the straight nearly-flat runs taken as drawn lines, and how far their sides are looked at
#: (11 px took runs along a laterally elongated speckle grain for lines; 15 keeps every drawn kind).
LINE_LENGTH = 15
LINE_SIDE = 3
#: Largest difference between the pixels of a nearly-flat drawn line: this many levels, or this
#: fraction of the line's contrast with its sides (a bright outline over tissue varies more).
LINE_TOLERANCE = 3
LINE_RELATIVE = 0.1
#: Frames sampled across a cine to find what stays fixed.
STATIC_FRAMES = 6
_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))
_RING = np.ones((3, 3), bool)


def to_display8(unit: np.ndarray) -> np.ndarray:
    """Displayed grey in [0, 1] to uint8 levels (exact for 8-bit sources)."""
    return np.clip(np.rint(np.asarray(unit, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def colour_marks(frame: np.ndarray, tolerance: int = 0) -> np.ndarray:
    """Bool (H, W): non-grey pixels of an RGB frame and their 8-neighbours (all False for grey)."""
    a = np.asarray(frame)
    if a.ndim == 2:
        return np.zeros(a.shape, bool)
    rgb = a[..., :3]
    colour = (rgb.max(axis=-1).astype(np.int32) - rgb.min(axis=-1).astype(np.int32)) > tolerance
    return ndimage.binary_dilation(colour, structure=_RING) if colour.any() else colour


def _plateaus(q: np.ndarray, cand: np.ndarray, tol: int, min_size: int = 0) -> np.ndarray:
    """Candidates in 8-connected groups of >= ``min_size`` (default :data:`MIN_PLATEAU`) pixels
    whose linked values differ by <= ``tol`` and whose surroundings differ from them by
    :data:`EDGE_CONTRAST` levels on average (a drawn edge, not a smooth patch of tissue).

    Worked on the candidate pixels only (a few % of a frame): the graph of linked candidates, its
    connected components, and each large group's ring of 8-neighbours (a ring pixel between two
    groups counts for the group whose first pixel comes last in raster order, as a 3x3 maximum of labels would).
    """
    h, w = q.shape
    ys, xs = np.nonzero(cand)
    out = np.zeros_like(cand)
    if ys.size == 0:
        return out
    qi = q.astype(np.int16)
    node = np.full((h, w), -1, np.int32)
    node[ys, xs] = np.arange(ys.size, dtype=np.int32)
    vals = qi[ys, xs]
    rows, cols = [], []
    for dy, dx in _OFFSETS:
        ny, nx = ys + dy, xs + dx
        inside = (ny < h) & (nx >= 0) & (nx < w)
        a = np.flatnonzero(inside)
        b = node[ny[a], nx[a]]
        link = (b >= 0) & (np.abs(vals[a] - qi[ny[a], nx[a]]) <= tol)
        rows.append(a[link])
        cols.append(b[link])
    r, c = np.concatenate(rows), np.concatenate(cols)
    if r.size == 0:
        return out
    n = ys.size
    graph = coo_matrix((np.ones(r.size, np.int8), (r, c)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)  # numbered by each group's first pixel
    big = np.bincount(labels)[labels] >= (min_size or MIN_PLATEAU)
    if not big.any():
        return out
    by, bx, lab = ys[big], xs[big], labels[big] + 1
    m = int(lab.max()) + 1
    level = np.bincount(lab, weights=vals[big], minlength=m) / np.maximum(np.bincount(lab, minlength=m), 1)
    # the ring: 8-neighbours of a large group's pixels outside every large group, each with the largest
    # adjacent label
    grid = np.zeros((h + 2, w + 2), np.int32)
    grid[by + 1, bx + 1] = lab
    ring = np.zeros((h + 2, w + 2), np.int32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                np.maximum.at(ring, (by + 1 + dy, bx + 1 + dx), lab)
    ring[grid > 0] = 0
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = 0
    ry, rx = np.nonzero(ring)
    rl = ring[ry, rx]
    diff = np.abs(qi[ry - 1, rx - 1] - level[rl])
    edge = np.bincount(rl, weights=diff, minlength=m) / np.maximum(np.bincount(rl, minlength=m), 1)
    edge[0] = 0
    out[by, bx] = edge[lab] >= EDGE_CONTRAST
    return out


def _window(a: np.ndarray, dy: int, dx: int, length: int, op) -> np.ndarray:
    """``r[i, j] = op(a[i + k*dy, j + k*dx] for k < length)`` for ``dy, dx`` in {0, 1} (``op`` idempotent:
    maximum, minimum, logical and), by doubling: log2(length) whole-array operations instead of ``length``.
    ``r`` has shape ``(H - (length-1)*dy, W - (length-1)*dx)``."""
    r, span = a, 1
    while span < length:
        step = min(span, length - span)  # windows of ``span`` at 0 and ``step``: overlap allowed (idempotent)
        hh, ww = r.shape[0] - step * dy, r.shape[1] - step * dx
        r = op(r[:hh, :ww], r[step * dy:step * dy + hh, step * dx:step * dx + ww])
        span += step
    return r


def _window_sum(a: np.ndarray, dy: int, dx: int, length: int) -> np.ndarray:
    """``r[i, j] = sum(a[i + k*dy, j + k*dx] for k < length)`` for ``dy, dx`` in {0, 1}, the shape of
    :func:`_window`'s result: the windows of 1, 2, 4, ... pixels that the bits of ``length`` name, laid end to
    end (in ``a``'s dtype: it must hold ``length`` times its largest value)."""
    hh, ww = a.shape[0] - (length - 1) * dy, a.shape[1] - (length - 1) * dx
    out = np.zeros((hh, ww), a.dtype)
    r, span, done = np.ascontiguousarray(a), 1, 0
    while span <= length:
        if length & span:
            out += r[done * dy:done * dy + hh, done * dx:done * dx + ww]
            done += span
        nh, nw = r.shape[0] - span * dy, r.shape[1] - span * dx
        r = r[:nh, :nw] + r[span * dy:span * dy + nh, span * dx:span * dx + nw]
        span *= 2
    return out


def _lines(q: np.ndarray, cand: np.ndarray, tol: int, length: int = LINE_LENGTH) -> np.ndarray:
    """Candidates on straight runs of ``length`` pixels (horizontal, vertical, diagonal) whose
    values differ by <= ``tol`` (or :data:`LINE_RELATIVE` of their contrast) and that differ from the pixels
    :data:`LINE_SIDE` away on both sides by :data:`EDGE_CONTRAST` on average: thin drawn lines, nearly flat
    (interpolated or lossy) as well as exact."""
    h, w = q.shape
    p = length + LINE_SIDE
    padded = (np.pad(q.astype(np.int16), p, mode="edge"), np.pad(np.ascontiguousarray(q, np.uint8), p, mode="edge"),
              np.pad(cand, p, mode="constant"))
    out = np.zeros((h, w), bool)
    for dy, dx in _OFFSETS:
        ky, kx = _line_starts(padded, (h, w), p, dy, dx, tol, length)
        for k in range(length):  # a kept run marks its whole length (inside the frame: every pixel a candidate)
            out[ky + k * dy, kx + k * dx] = True
    return out & cand


def _line_starts(padded: tuple[np.ndarray, np.ndarray, np.ndarray], shape: tuple[int, int], p: int, dy: int,
                 dx: int, tol: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the drawn runs of :func:`_lines` along ``(dy, dx)`` start: a run starting at (y, x) covers
    (y + k*dy, x + k*dx), k < length.  ``padded``: the frame as int16 and uint8 and the candidates, padded
    by ``p`` (edge values, candidates False)."""
    qi, q8, ok = padded
    h, w = shape
    flip = dx < 0  # a leftward diagonal is a rightward one in the mirrored frame
    ddx = -dx if flip else dx

    def windows(a: np.ndarray, op) -> np.ndarray:
        return _window(a[:, ::-1] if flip else a, dy, ddx, length, op)

    def at(r: np.ndarray, oy: int = 0, ox: int = 0) -> np.ndarray:  # the run starting at (y + oy, x + ox)
        if not flip:
            return r[p + oy:p + oy + h, p + ox:p + ox + w]
        return r[p + oy:p + oy + h, p - ox:p - ox + w][:, ::-1]

    top, bottom = windows(q8, np.maximum), windows(q8, np.minimum)
    hi, lo = at(top).astype(np.int16), at(bottom).astype(np.int16)
    spread = hi - lo
    run = at(windows(ok, np.logical_and)) & (spread <= max(tol, LINE_RELATIVE * 255))
    sides = ((dx * LINE_SIDE, -dy * LINE_SIDE), (-dx * LINE_SIDE, dy * LINE_SIDE))
    if run.any():
        # a side's mean |level - v| is at most |level - its mean| + half its range (in sums: x length)
        total = _window_sum(qi[:, ::-1] if flip else qi, dy, ddx, length)
        for sy, sx in sides:
            side = at(bottom, sy, sx).astype(np.int16)
            bound = 2 * np.abs(at(total) - at(total, sy, sx)) + length * (at(top, sy, sx) - side)
            run &= bound >= 2 * length * EDGE_CONTRAST
    ys, xs = np.nonzero(run)
    if ys.size == 0:
        return ys, xs
    # the level and the side contrast only where a flat run starts (a few % of the pixels), gathered and in
    # integers: with sum = the run's sum, a side's mean |level - v| is sum |sum - length * v| / length**2
    flat, wp = qi.ravel(), qi.shape[1]
    idx = ((p + ys) * wp + (p + xs))[:, None] + (np.arange(length) * (dy * wp + dx))[None, :]
    sums = flat[idx].sum(axis=1, dtype=np.int32)
    dev = [np.abs(sums[:, None] - length * flat[idx + (sy * wp + sx)].astype(np.int32)).sum(axis=1)
           for sy, sx in sides]
    contrast = np.minimum(*dev) / float(length * length)
    keep = (contrast >= EDGE_CONTRAST) & (spread[ys, xs] <= np.maximum(tol, LINE_RELATIVE * contrast))
    return ys[keep], xs[keep]


#: how far outside ``where`` the detectors read: the median's radius, the lines' side offset, the groups' ring
REACH = max(MEDIAN // 2, LINE_SIDE, 1)


def frame_marks(q: np.ndarray, where: np.ndarray | None = None, lossy: bool = False,
                min_plateau: int = MIN_PLATEAU) -> np.ndarray:
    """Bool mask of the burned-in graphics of one displayed frame (see the module docstring).

    Args:
        q: (H, W) uint8 displayed grey.
        where: bool (H, W), where to look (default: everywhere).
        lossy: the frame went through lossy compression (flat values are only nearly flat).
        min_plateau: the smallest flat group taken as a mark (lossy data: two more).

    Only the bounding box of ``where`` grown by :data:`REACH` pixels is read: no detector looks further
    from a pixel of ``where`` than that, so the mask is the one the whole frame gives.
    """
    q = np.ascontiguousarray(q, dtype=np.uint8)
    where = np.ones(q.shape, bool) if where is None else where
    rows, cols = np.flatnonzero(where.any(axis=1)), np.flatnonzero(where.any(axis=0))
    out = np.zeros(q.shape, bool)
    if not len(rows):
        return out
    y0, y1 = max(rows[0] - REACH, 0), min(rows[-1] + 1 + REACH, q.shape[0])
    x0, x1 = max(cols[0] - REACH, 0), min(cols[-1] + 1 + REACH, q.shape[1])
    out[y0:y1, x0:x1] = _frame_marks(np.ascontiguousarray(q[y0:y1, x0:x1]), where[y0:y1, x0:x1], lossy, min_plateau)
    return out


def _frame_marks(q: np.ndarray, where: np.ndarray, lossy: bool, min_plateau: int) -> np.ndarray:
    """:func:`frame_marks` computed on the whole of ``q``."""
    import cv2

    rel = q.astype(np.int16) - cv2.medianBlur(q, MEDIAN).astype(np.int16)
    above = rel >= CONTRAST
    floor = max(BLACK, int(np.percentile(q[where], 0.5))) if where.any() else BLACK  # a grey map's lowest level
    # a flat run of speckle lies near the local median; a drawn mark stands out of it (lossy data: bright ones)
    stands_out = above if lossy else np.abs(rel) >= CONTRAST
    flat = _plateaus(q, where & (q > floor) & stands_out, LOSSY_TOLERANCE if lossy else FLAT_TOLERANCE,
                     min_plateau + 2 if lossy else min_plateau)
    marks = flat | (where & above & (q >= WHITE)) | _lines(q, where & (q > floor), LINE_TOLERANCE)
    if not marks.any():
        return marks
    return ndimage.binary_dilation(marks, structure=_RING) & where


def static_marks(stack: np.ndarray, fov: np.ndarray, lossy: bool = False) -> np.ndarray | None:
    """Pixels that stay fixed across a cine's frames while its tissue moves, or None.

    The cores are the non-black pixels whose value changes by at most :data:`STATIC_CORE` levels
    (or the lossy tolerance); they grow by up to :data:`STATIC_REACH` pixels into neighbours that
    change less than :data:`STATIC_GROWTH` of the local typical change (anti-aliased edges blended with the
    moving image), then by one pixel.

    Args:
        stack: (K, H, W) uint8 displayed grey of K >= 3 frames spread over the loop.
        fov: bool (H, W), the field of view (where tissue moves).
        lossy: allow :data:`LOSSY_TOLERANCE` levels of change.

    Returns:
        Bool (H, W), or None when fewer than half of the field of view changes (a still stored
        as a loop: nothing to tell apart).
    """
    import cv2

    if stack.shape[0] < 3 or not fov.any():
        return None
    spread = stack.max(axis=0) - stack.min(axis=0)  # uint8: max >= min
    tol = LOSSY_TOLERANCE if lossy else 0
    if np.mean(spread[fov] > tol) < 0.5:
        return None
    typical = cv2.medianBlur(np.ascontiguousarray(spread), MEDIAN).astype(np.float32)
    fixed = (spread <= max(tol, STATIC_CORE)) & (stack.max(axis=0) > BLACK)
    if not fixed.any():
        return fixed
    calm = spread.astype(np.float32) <= np.maximum(tol, STATIC_GROWTH * typical)
    grown = ndimage.binary_dilation(fixed, structure=_RING, iterations=STATIC_REACH, mask=calm | fixed)
    return ndimage.binary_dilation(grown, structure=_RING)


def fov_mask(q: np.ndarray, lossy: bool = False) -> np.ndarray:
    """Bool (h, w): the field of view (sector or rectangle of image content) of a pane crop.

    ``q`` is the displayed grey of the pane (for a cine, the maximum over a few frames).  The
    background is every black area (<= :data:`BLACK`) that touches the crop's border and is
    larger than the speckle's dark gaps; what remains, less islands smaller than 5 % of the
    largest (text, ticks in the background), is the field of view.
    """
    black = q <= BLACK + (LOSSY_TOLERANCE if lossy else 0)
    labels, n = ndimage.label(black)
    background = np.zeros(q.shape, bool)
    if n:
        sizes = np.bincount(labels.ravel())
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        edge = edge[(edge > 0) & (sizes[edge] >= max(64, 0.002 * q.size))]
        background = np.isin(labels, edge)
    labels, n = ndimage.label(~background)
    if n == 0:
        return np.zeros(q.shape, bool)
    sizes = np.bincount(labels.ravel())[1:]
    big = np.flatnonzero(sizes >= max(0.05 * sizes.max(), 0.01 * q.size)) + 1
    return np.isin(labels, big)


def inpaint(unit: np.ndarray, mask: np.ndarray, radius: int = 3) -> np.ndarray:
    """``unit`` (float32 (h, w) in [0, 1]) with the ``mask`` pixels filled from their surroundings
    (OpenCV's Telea inpainting), so that the network sees no mark and leaves no halo."""
    import cv2

    if not mask.any():
        return unit
    # 16-bit in and out: OpenCV's inpainting of float32 images returns values outside the input's range
    levels = np.rint(np.clip(unit, 0.0, 1.0) * 65535.0).astype(np.uint16)
    out = cv2.inpaint(levels, mask.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    return np.where(mask, out.astype(np.float32) / 65535.0, unit).astype(np.float32)


class ClipMasks:
    """The masks of one clip: panes, fields of view, kept areas, marks, and what is despeckled.

    ``process_mask(i)`` is True on the pixels of frame ``i`` that take the despeckled value:
    inside an enabled pane and its field of view, not in a kept region, grey, and no mark.
    Everything else is written back byte-identical.
    """

    def __init__(self, clip: Clip, cache_frames: int = 24) -> None:
        self.clip = clip
        self._lock = threading.RLock()
        self._static: np.ndarray | None | bool = False  # False: not computed yet
        self._fov: np.ndarray | None = None
        self._panes: list[np.ndarray] | None = None
        self._frames: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_frames = cache_frames

    def reset(self) -> None:
        """Forget everything that depends on the layout (after the user changed a pane)."""
        with self._lock:
            self._fov, self._panes, self._static = None, None, False
            self._frames.clear()

    def forget_frames(self) -> None:
        """Drop the cached per-frame masks (the clip's fields of view and fixed marks are kept)."""
        with self._lock:
            self._frames.clear()

    def pane_masks(self) -> list[np.ndarray]:
        """Disjoint masks of every pane (enabled or not), kept regions removed, each within its
        field of view."""
        with self._lock:
            if self._panes is None:
                fov = self.fov()
                self._panes = [m & fov for m in self.clip.layout.pane_masks(self.clip.shape)]
            return self._panes

    def fov(self) -> np.ndarray:
        """Bool (H, W): the fields of view of all panes (see :func:`fov_mask`)."""
        with self._lock:
            if self._fov is None:
                peak = np.max(np.stack([self.display(i) for i in self.clip.sample_indices(3)]), axis=0)
                fov = np.zeros(self.clip.shape, bool)
                for pane in self.clip.layout.panes:
                    x0, y0, x1, y1 = pane.box
                    fov[y0:y1, x0:x1] |= fov_mask(peak[y0:y1, x0:x1], self.clip.lossy)
                self._fov = fov
            return self._fov

    def display(self, i: int) -> np.ndarray:
        return to_display8(self.clip.gray_frame(i))

    def static(self) -> np.ndarray | None:
        """The fixed pixels of the cine (:func:`static_marks`), None for a still or a still loop."""
        with self._lock:
            if self._static is False:
                idx = self.clip.sample_indices(STATIC_FRAMES)
                stack = np.stack([self.display(i) for i in idx]) if len(idx) >= 3 else np.zeros((0,) + self.clip.shape)
                self._static = static_marks(stack, self.fov(), self.clip.lossy) if len(idx) >= 3 else None
            return self._static

    def marks(self, i: int) -> np.ndarray:
        """Bool (H, W): the burned-in marks of frame ``i`` inside the fields of view."""
        return self._frame(i)[0]

    def process_mask(self, i: int) -> np.ndarray:
        """Bool (H, W): the pixels of frame ``i`` that take the despeckled value."""
        return self._frame(i)[1]

    def fill_mask(self, i: int) -> np.ndarray:
        """Bool (H, W): the pixels inpainted before despeckling (marks and kept regions inside
        the fields of view)."""
        return self._frame(i)[2]

    def _frame(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            hit = self._frames.get(i)
            if hit is not None:
                self._frames.move_to_end(i)
                return hit
        clip = self.clip
        live = np.zeros(clip.shape, bool)
        for k in clip.layout.enabled():
            live |= self.pane_masks()[k]
        static = self.static()
        # in a moving cine the fixed graphics are found by what stays fixed: frame by frame only larger flat
        # groups (changing text) count, so that speckle's short flat runs do not flicker as marks
        least = MIN_PLATEAU if static is None else CINE_MIN_PLATEAU
        marks = frame_marks(self.display(i), live, clip.lossy, least)
        marks |= colour_marks(clip.frame(i), clip.chroma_tolerance)
        if static is not None:
            marks |= static
        fov = self.fov()
        marks &= fov
        result = (marks, live & ~marks, fov & (marks | clip.layout.kept_mask(clip.shape)))
        with self._lock:
            self._frames[i] = result
            while len(self._frames) > self._cache_frames:
                self._frames.popitem(last=False)
        return result
