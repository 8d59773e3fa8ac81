"""Qt-free state of the viewer: the open clip, despeckled results, ROIs and measurements.

The widgets in this package are thin views over these objects (napari's split between a data
model and its Qt layer), so everything here can be tested and reused without a display.

Conventions follow ``docs/ARCHITECTURE.md``: frames are (H, W) float32 in [0, 1] (or (H, W, 3)
for colour frames), row 0 is the shallowest depth, pixel spacing is ``(dz_mm, dx_mm)``.
ROI coordinates are in image pixels: ``x`` is the column, ``y`` the row.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from skimage.draw import ellipse as _draw_ellipse
from skimage.draw import polygon as _draw_polygon

ROI_KINDS = ("rect", "ellipse", "polygon")
#: bytes of derived arrays (decoded originals, pasted results, std maps) a ClipSession keeps: a typical
#: loop is decoded once while it plays (30 frames of 480×640 colour: 110 MB of originals)
CACHE_BYTES = 384 * 1024 * 1024
CACHE_MIN_ENTRIES = 12  #: a few frames' worth, whatever their size
ROI_ROLES = ("target", "background")
#: The intensity domain in which the app measures CNR: the displayed, log-compressed grey level.
MEASURE_DOMAIN = "display [0, 1] (log-compressed grey level)"


class ClipLike(Protocol):
    """What the viewer needs from :class:`usclean_gui.dicomio.Clip`."""

    n_frames: int
    is_color: bool
    bmode_region: tuple[int, int, int, int]
    spacing_mm: tuple[float, float] | None
    frame_time_ms: float | None

    def frame(self, i: int) -> np.ndarray: ...

    def gray_frame(self, i: int) -> np.ndarray: ...

    def process_mask(self, i: int) -> np.ndarray: ...


def region_box(region: Any, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Return ``(x0, y0, x1, y1)`` (end-exclusive, clamped to ``shape``) for a B-mode region.

    ``region`` is a 4-sequence ``(x0, y0, x1, y1)`` or ``None`` (the whole image).
    """
    h, w = int(shape[0]), int(shape[1])
    if region is None:
        return 0, 0, w, h
    vals = tuple(region)
    if len(vals) != 4:
        raise ValueError("a B-mode region needs 4 numbers (x0, y0, x1, y1), got %r" % (region,))
    x0, y0, x1, y1 = (int(round(float(v))) for v in vals)
    x0, x1 = sorted((min(max(x0, 0), w), min(max(x1, 0), w)))
    y0, y1 = sorted((min(max(y0, 0), h), min(max(y1, 0), h)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError("the B-mode region %r is empty inside a %dx%d image" % (vals, w, h))
    return x0, y0, x1, y1


def bmode_regions(clip: Any) -> list[tuple[int, int, int, int]]:
    """The B-mode regions of a clip as ``(x0, y0, x1, y1)`` boxes.

    Today a clip exposes one (``clip.bmode_region``); a clip that lists several (``clip.bmode_regions``,
    from the DICOM/region pipeline being built) gives them all.  Callers treat the result as a list.
    """
    many = getattr(clip, "bmode_regions", None)
    if many:
        return [tuple(int(v) for v in r) for r in many]  # type: ignore[misc]
    one = getattr(clip, "bmode_region", None)
    return [tuple(int(v) for v in one)] if one is not None else []  # type: ignore[list-item]


def blend(original: np.ndarray, despeckled: np.ndarray, strength: float) -> np.ndarray:
    """``strength`` × despeckled + (1 − strength) × original, in the display domain (float [0, 1])."""
    s = min(max(float(strength), 0.0), 1.0)
    if s >= 1.0:
        return despeckled
    return (s * np.asarray(despeckled, dtype=np.float32) + (1.0 - s) * np.asarray(original, dtype=np.float32))


def to_unit(frame: np.ndarray) -> np.ndarray:
    """Scale a frame to float32 in [0, 1]: unsigned integers by their dtype's range, floats clipped."""
    a = np.asarray(frame)
    if a.dtype.kind == "u":
        return a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    return np.clip(a.astype(np.float32), 0.0, 1.0)


# ----------------------------------------------------------------------------------------- ROIs
@dataclass
class RoiShape:
    """A target or background ROI in image pixel coordinates.

    ``rect``: ``params = (x, y, w, h)``; ``ellipse``: ``params = (x, y, w, h)`` of the bounding box;
    ``polygon``: ``points = [(x, y), ...]`` (at least three vertices).
    """

    role: str
    kind: str
    params: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    points: list[tuple[float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.role not in ROI_ROLES:
            raise ValueError("ROI role must be one of %s, got %r" % (ROI_ROLES, self.role))
        if self.kind not in ROI_KINDS:
            raise ValueError("ROI kind must be one of %s, got %r" % (ROI_KINDS, self.kind))
        if self.kind == "polygon" and len(self.points) < 3:
            raise ValueError("a polygon ROI needs at least 3 vertices")

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Boolean (H, W) mask of the pixels whose centres lie inside the ROI."""
        h, w = int(shape[0]), int(shape[1])
        m = np.zeros((h, w), dtype=bool)
        if self.kind == "polygon":
            xs = np.array([p[0] for p in self.points], dtype=float) - 0.5
            ys = np.array([p[1] for p in self.points], dtype=float) - 0.5
            rr, cc = _draw_polygon(ys, xs, shape=(h, w))
        else:
            x, y, bw, bh = (float(v) for v in self.params)
            if self.kind == "rect":
                c0, c1 = math.ceil(x - 0.5), math.floor(x + bw - 0.5)
                r0, r1 = math.ceil(y - 0.5), math.floor(y + bh - 0.5)
                m[max(r0, 0):max(min(r1 + 1, h), 0), max(c0, 0):max(min(c1 + 1, w), 0)] = True
                return m
            rr, cc = _draw_ellipse(y + bh / 2 - 0.5, x + bw / 2 - 0.5, bh / 2, bw / 2, shape=(h, w))
        m[rr, cc] = True
        return m

    def moved(self, dx: float, dy: float) -> RoiShape:
        """The same ROI translated by (dx, dy) pixels."""
        if self.kind == "polygon":
            return RoiShape(self.role, self.kind, points=[(x + dx, y + dy) for x, y in self.points])
        x, y, w, h = self.params
        return RoiShape(self.role, self.kind, params=(x + dx, y + dy, w, h))

    def bbox(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the ROI."""
        if self.kind == "polygon":
            xs, ys = [p[0] for p in self.points], [p[1] for p in self.points]
            return min(xs), min(ys), max(xs), max(ys)
        x, y, w, h = self.params
        return x, y, x + w, y + h

    def describe(self) -> str:
        """Geometry as text for CSV provenance (pixels)."""
        if self.kind == "polygon":
            return "polygon[" + ";".join("%.1f,%.1f" % p for p in self.points) + "]"
        return "%s[x=%.1f,y=%.1f,w=%.1f,h=%.1f]" % ((self.kind,) + tuple(self.params))


@dataclass
class RegionStats:
    """Statistics of one image inside a target/background ROI pair."""

    cnr: float
    gcnr: float
    mean_t: float
    std_t: float
    mean_b: float
    std_b: float


def region_stats(image: np.ndarray, target: np.ndarray, background: np.ndarray) -> RegionStats:
    """CNR, gCNR, mean and std of ``image`` (display domain) in the two masks."""
    from engine.metrics import cnr, gcnr

    img = np.asarray(image)
    t = img[target].astype(np.float64)
    b = img[background].astype(np.float64)
    if img.ndim == 3:  # a colour frame: the mean of R, G, B (equal on grey B-mode pixels)
        t, b = t.mean(axis=1), b.mean(axis=1)
    if t.size == 0 or b.size == 0:
        raise ValueError("an ROI lies outside the image or covers no pixels")
    return RegionStats(cnr(t, b), gcnr(t, b), float(t.mean()), float(t.std()), float(b.mean()), float(b.std()))


@dataclass
class Measurement:
    """One row of the measurements table (one frame, original vs despeckled)."""

    frame: int
    time_ms: float
    original: RegionStats
    despeckled: RegionStats | None
    area_t: float
    area_b: float
    area_unit: str
    target_roi: str = ""  #: the target's geometry in this frame (it moves when ROIs follow tissue)
    background_roi: str = ""
    roi_mode: str = "fixed"  #: "fixed" or "tracked"


def measure(original: np.ndarray, despeckled: np.ndarray | None, target: RoiShape, background: RoiShape,
            spacing_mm: tuple[float, float] | None, frame: int = 0, time_ms: float = 0.0) -> Measurement:
    """Measure a target/background ROI pair on one frame (original and, if given, despeckled)."""
    shape = np.asarray(original).shape[:2]
    mt, mb = target.mask(shape), background.mask(shape)
    if not mt.any() or not mb.any():
        raise ValueError("draw both ROIs inside the image before measuring")
    orig = region_stats(original, mt, mb)
    desp = region_stats(despeckled, mt, mb) if despeckled is not None else None
    geo = (target.describe(), background.describe())
    if spacing_mm is not None and all(s and s > 0 for s in spacing_mm):
        px = float(spacing_mm[0]) * float(spacing_mm[1])
        return Measurement(frame, time_ms, orig, desp, mt.sum() * px, mb.sum() * px, "mm²", *geo)
    return Measurement(frame, time_ms, orig, desp, float(mt.sum()), float(mb.sum()), "px", *geo)


# ------------------------------------------------------------------------------ clip session
@dataclass
class EngineSettings:
    """What the engine is asked to do (also written into every export's provenance)."""

    model: str = "multiprobe"
    sampler: str | None = None
    steps: int | None = None
    members: int | None = None
    seed: int = 0

    def describe(self) -> str:
        return "model=%s sampler=%s steps=%s members=%s seed=%d" % (
            self.model, self.sampler or "default", self.steps or "default", self.members or "all", self.seed)


class ClipSession:
    """An open clip plus its despeckled frames (means and stds) and the B-mode region in use.

    Despeckled results are stored only for the B-mode region box; :meth:`despeckled_frame`
    pastes them back into the full frame, changing only the pixels of the clip's
    ``process_mask`` (grey B-mode pixels), so text, calipers and colour Doppler stay untouched.
    """

    def __init__(self, clip: ClipLike, path: str = "") -> None:
        self.clip = clip
        self.path = path
        self.n_frames = int(clip.n_frames)
        first = np.asarray(clip.frame(0))
        self.shape: tuple[int, int] = tuple(first.shape[:2])  # type: ignore[assignment]
        self.means: dict[int, np.ndarray] = {}  #: ensemble means (what is exported)
        self.stds: dict[int, np.ndarray] = {}  #: ensemble stds (uncertainty, display units)
        self.previews: dict[int, np.ndarray] = {}  #: one-member previews, shown until the ensemble's arrive
        self.settings: EngineSettings | None = None
        #: how much of the despeckled image is shown, 0 (the original) to 1 (see :meth:`set_strength`)
        self.strength = 1.0
        self.generation = 0  #: bumped whenever results are dropped (results of older work are refused)
        # the last few frames' derived arrays (GUI thread only): a frame is drawn, measured and
        # overlaid from the same arrays without recomputing the colour test or the composite
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._cache_bytes = 0

    # -- geometry ---------------------------------------------------------------------------
    @property
    def spacing_mm(self) -> tuple[float, float] | None:
        sp = getattr(self.clip, "spacing_mm", None)
        if sp is None:
            return None
        sp = tuple(float(v) for v in sp)
        return sp if all(v > 0 and math.isfinite(v) for v in sp) else None  # type: ignore[return-value]

    @property
    def frame_time_ms(self) -> float:
        """Time between frames in ms (the clip's, or 1000/30 when it states none)."""
        ft = getattr(self.clip, "frame_time_ms", None)
        try:
            ft = float(np.mean(ft)) if ft is not None else None
        except (TypeError, ValueError):
            ft = None
        return ft if ft and ft > 0 and math.isfinite(ft) else 1000.0 / 30.0

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The B-mode region ``(x0, y0, x1, y1)`` (half-open) that is despeckled."""
        return region_box(getattr(self.clip, "bmode_region", None), self.shape)

    def set_box(self, box: tuple[int, int, int, int]) -> bool:
        """Let the user move the B-mode region; clears results computed for the old one.

        Returns True when the region changed.
        """
        new = region_box(box, self.shape)
        if new == self.box:
            return False
        self.clip.bmode_region = new
        self.clear_results()
        self._cache.clear()
        self._cache_bytes = 0
        return True

    def set_strength(self, strength: float) -> bool:
        """Show ``original + strength * (despeckled - original)`` (display domain, [0, 1]); the
        std is scaled alike.  Returns True when it changed."""
        from usclean_gui.pipeline import check_strength

        s = check_strength(strength)
        if s == self.strength:
            return False
        self.strength = s
        for key in [k for k in self._cache if k[0] in ("desp", "std")]:
            del self._cache[key]
        return True

    def panes(self) -> list[Any]:
        """The clip's panes (``usclean_gui.dicomio.Pane``: box, spacing_mm, source, label, enabled);
        empty for a clip without a layout."""
        layout = getattr(self.clip, "layout", None)
        return list(layout.panes) if layout is not None else []

    def set_pane_enabled(self, k: int, enabled: bool) -> bool:
        """Despeckle pane ``k`` or leave it as it is; clears results (the region box may change).
        Returns True when it changed."""
        panes = self.panes()
        if not 0 <= int(k) < len(panes) or panes[int(k)].enabled == bool(enabled):
            return False
        self.clip.set_pane_enabled(int(k), bool(enabled))
        self.clear_results()
        self._cache.clear()
        return True

    def shown(self, i: int) -> np.ndarray | None:
        """The despeckled box of frame ``i`` blended with the original by :attr:`strength`."""
        if i not in self.means:
            return None
        mean = np.clip(self.means[i], 0.0, 1.0)
        if self.strength == 1.0:
            return mean
        x0, y0, x1, y1 = self.box
        grey = to_unit(self.clip.gray_frame(i))[y0:y1, x0:x1]
        return (grey + self.strength * (mean - grey)).astype(np.float32)

    def clear_results(self) -> None:
        self.means.clear()
        self.stds.clear()
        self.previews.clear()
        self.settings = None
        self.generation += 1
        for key in [k for k in self._cache if k[0] not in ("mask", "orig")]:
            self._drop(key)

    def _cached(self, kind: str, i: int, make: Callable[[], np.ndarray]) -> np.ndarray:
        key = (kind, int(i))
        hit = self._cache.get(key)
        if hit is None:
            hit = make()
            self._cache[key] = hit
            self._cache_bytes += hit.nbytes
            while len(self._cache) > CACHE_MIN_ENTRIES and self._cache_bytes > CACHE_BYTES:
                self._cache_bytes -= self._cache.popitem(last=False)[1].nbytes
        else:
            self._cache.move_to_end(key)
        return hit

    # -- frames -----------------------------------------------------------------------------
    def original_frame(self, i: int) -> np.ndarray:
        """Frame ``i`` for display: float32 [0, 1], (H, W) grey or (H, W, 3) colour (read-only)."""
        def make() -> np.ndarray:
            a = to_unit(self.clip.frame(i)) if self.clip.is_color else to_unit(self.clip.gray_frame(i))
            a.setflags(write=False)
            return a

        return self._cached("orig", i, make)

    def engine_input(self, i: int) -> np.ndarray:
        """The grey B-mode box of frame ``i`` that the engine despeckles (float32 [0, 1]); for a
        DICOM / PNG / NPY clip its burned-in marks are filled first (``usclean_gui.pipeline``)."""
        if hasattr(self.clip, "masks"):
            from usclean_gui.pipeline import box_input

            return box_input(self.clip, i, self.box)
        x0, y0, x1, y1 = self.box
        return np.ascontiguousarray(to_unit(self.clip.gray_frame(i))[y0:y1, x0:x1])

    def store(self, i: int, mean: np.ndarray, std: np.ndarray, kind: str = "ensemble") -> None:
        """Keep a result of frame ``i``: ``kind`` "ensemble" (mean + std) or "preview" (mean only)."""
        if kind == "preview":
            if i in self.means:
                return
            self.previews[i] = np.asarray(mean, dtype=np.float32)
        else:
            self.means[i] = np.asarray(mean, dtype=np.float32)
            self.stds[i] = np.asarray(std, dtype=np.float32)
            self.previews.pop(i, None)
        self._drop(("desp", int(i)))
        self._drop(("std", int(i)))

    def _drop(self, key: tuple[str, int]) -> None:
        hit = self._cache.pop(key, None)
        if hit is not None:
            self._cache_bytes -= hit.nbytes

    def result_kind(self, i: int) -> str | None:
        """What frame ``i`` holds: "ensemble", "preview" or None (not despeckled yet)."""
        if i in self.means:
            return "ensemble"
        return "preview" if i in self.previews else None

    def paste_mask(self, i: int) -> np.ndarray:
        """Pixels of frame ``i`` replaced by the despeckled image: process mask ∩ region box."""
        def make() -> np.ndarray:
            x0, y0, x1, y1 = self.box
            box = np.zeros(self.shape, dtype=bool)
            box[y0:y1, x0:x1] = True
            pm = getattr(self.clip, "process_mask", None)
            return box & np.asarray(pm(i), dtype=bool) if pm is not None else box

        return self._cached("mask", i, make)

    def despeckled_frame(self, i: int) -> np.ndarray | None:
        """Frame ``i`` with its grey B-mode pixels despeckled (same layout as the original): the
        ensemble mean, else the preview, else None."""
        src = self.means.get(i)
        if src is None:
            src = self.previews.get(i)
        if src is None:
            return None

        def make() -> np.ndarray:
            out = self.original_frame(i).copy()
            x0, y0, x1, y1 = self.box
            m = self.paste_mask(i)[y0:y1, x0:x1]  # the mask lies inside the box
            vals = np.clip(src, 0.0, 1.0)
            if out.ndim == 3:
                vals, m = vals[..., None], m[..., None]
            np.copyto(out[y0:y1, x0:x1], vals, where=m)
            out.setflags(write=False)
            return out

        return self._cached("desp", i, make)

    def std_frame(self, i: int) -> np.ndarray | None:
        """Full-size std map of frame ``i`` (zero outside the despeckled pixels)."""
        if i not in self.stds:
            return None

        def make() -> np.ndarray:
            full = np.zeros(self.shape, dtype=np.float32)
            x0, y0, x1, y1 = self.box
            m = self.paste_mask(i)[y0:y1, x0:x1]
            full[y0:y1, x0:x1] = np.where(m, self.strength * self.stds[i], 0.0)
            full.setflags(write=False)
            return full

        return self._cached("std", i, make)

    def time_ms(self, i: int) -> float:
        return float(i) * self.frame_time_ms
