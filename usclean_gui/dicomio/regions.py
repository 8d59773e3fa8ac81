"""Where the B-mode panes are inside a frame, and which areas must stay as they are.

Boxes are half-open pixel boxes ``(x0, y0, x1, y1)``: the area is ``frame[y0:y1, x0:x1]``.
DICOM's RegionLocationMaxX1/MaxY1 are inclusive, so ``x1 = MaxX1 + 1``.

A :class:`Layout` is the plan for a clip: its *panes* (each 2D tissue region of
SequenceOfUltrasoundRegions with its own spacing, or each image pane detected on the displayed
frame when the file has no regions) and its *kept* areas (every non-tissue region: spectral
Doppler, colour and grey bars, traces, ECG), which are never written even where they overlap a
pane.  Pixels where panes overlap belong to the smallest of them.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

Box = tuple[int, int, int, int]

#: PhysicalUnitsX/YDirection code for centimetres.
UNITS_CM = 3
#: RegionSpatialFormat code for a 2D image.
SPATIAL_2D = 1
#: RegionDataType codes: tissue, and colour flow (colour pixels over tissue: its grey pixels are tissue).
DATA_TISSUE = 1
DATA_COLOUR_FLOW = 2
DATA_TYPE_NAMES = {
    0: "unspecified", 1: "tissue", 2: "colour flow", 3: "PW spectral Doppler", 4: "CW spectral Doppler",
    5: "Doppler mean trace", 6: "Doppler mode trace", 7: "Doppler max trace", 8: "volume trace",
    9: "ECG trace", 10: "pulse trace", 11: "phonocardiogram trace", 12: "grey bar", 13: "colour bar",
    14: "integrated backscatter", 15: "area trace", 16: "d(area)/dt trace", 17: "other physiological trace",
}


@dataclass(frozen=True)
class UltrasoundRegion:
    """One item of SequenceOfUltrasoundRegions, clamped to the image."""

    box: Box
    spatial_format: int | None
    data_type: int | None
    units_x: int | None
    units_y: int | None
    delta_x: float | None
    delta_y: float | None

    @property
    def area(self) -> int:
        return box_area(self.box)

    @property
    def is_tissue(self) -> bool:
        """A 2D tissue image (what is despeckled)."""
        return self.data_type == DATA_TISSUE and self.spatial_format in (SPATIAL_2D, None)

    @property
    def kind(self) -> str:
        return DATA_TYPE_NAMES.get(self.data_type if self.data_type is not None else 0, "other data")

    def spacing_mm(self) -> tuple[float, float] | None:
        """``(dz_mm, dx_mm)`` when both directions are in centimetres with finite positive deltas."""
        if self.units_x != UNITS_CM or self.units_y != UNITS_CM:
            return None
        d = (self.delta_y, self.delta_x)
        if any(v is None or not math.isfinite(v) or v <= 0 or v > 10.0 for v in d):
            return None
        return (float(d[0]) * 10.0, float(d[1]) * 10.0)


@dataclass
class Pane:
    """One image area that is despeckled on its own (its own crop, normalisation and spacing)."""

    box: Box
    spacing_mm: tuple[float, float] | None
    source: str  # "dicom", "detected" or "user"
    label: str
    enabled: bool = True


@dataclass
class Layout:
    """The panes of a clip and the boxes that are kept byte-identical (see the module docstring)."""

    panes: list[Pane]
    kept: list[tuple[Box, str]] = field(default_factory=list)

    def enabled(self) -> list[int]:
        return [k for k, p in enumerate(self.panes) if p.enabled]

    def bounding_box(self, shape: tuple[int, int]) -> Box:
        """The box around every enabled pane (the whole frame when none is enabled)."""
        boxes = [self.panes[k].box for k in self.enabled()]
        if not boxes:
            return (0, 0, shape[1], shape[0])
        return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))

    def kept_mask(self, shape: tuple[int, int]) -> np.ndarray:
        m = np.zeros(shape, dtype=bool)
        for box, _ in self.kept:
            m |= box_mask(box, shape)
        return m

    def pane_masks(self, shape: tuple[int, int]) -> list[np.ndarray]:
        """Disjoint bool masks, one per pane (enabled or not): its box, less kept areas and
        pixels of smaller overlapping panes."""
        kept = self.kept_mask(shape)
        order = sorted(range(len(self.panes)), key=lambda k: box_area(self.panes[k].box))
        taken = kept.copy()
        out: list[np.ndarray] = [np.zeros(shape, bool)] * len(self.panes)
        for k in order:
            m = box_mask(self.panes[k].box, shape) & ~taken
            taken |= m
            out[k] = m
        return out


def box_area(b: Box) -> int:
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


def clamp_box(box: Sequence[float], shape: tuple[int, int]) -> Box:
    """Clamp a half-open box to an image of ``shape = (H, W)``; may return an empty box."""
    h, w = shape
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1 = min(max(x0, 0), w), min(max(x1, 0), w)
    y0, y1 = min(max(y0, 0), h), min(max(y1, 0), h)
    return (x0, y0, max(x0, x1), max(y0, y1))


def _number(item, name: str, cast):
    try:
        value = item.get(name, None)
        if value is None or value == "":
            return None
        out = cast(value)
    except Exception:  # a broken optional value reads as absent
        return None
    return out if cast is int or math.isfinite(out) else None


def parse_regions(ds, shape: tuple[int, int]) -> list[UltrasoundRegion]:
    """Read SequenceOfUltrasoundRegions from a pydicom dataset, each clamped to ``shape``.

    Items whose location is missing or not numeric are skipped; a non-finite PhysicalDelta
    reads as absent (no spacing).
    """
    out: list[UltrasoundRegion] = []
    try:
        items = list(ds.get("SequenceOfUltrasoundRegions", None) or [])
    except Exception:
        return out
    for item in items:
        loc = [_number(item, n, int) for n in ("RegionLocationMinX0", "RegionLocationMinY0",
                                               "RegionLocationMaxX1", "RegionLocationMaxY1")]
        if any(v is None for v in loc):
            continue
        raw = (loc[0], loc[1], loc[2] + 1, loc[3] + 1)
        out.append(UltrasoundRegion(
            box=clamp_box(raw, shape),
            spatial_format=_number(item, "RegionSpatialFormat", int),
            data_type=_number(item, "RegionDataType", int),
            units_x=_number(item, "PhysicalUnitsXDirection", int),
            units_y=_number(item, "PhysicalUnitsYDirection", int),
            delta_x=_number(item, "PhysicalDeltaX", float),
            delta_y=_number(item, "PhysicalDeltaY", float),
        ))
    return out


def plan_layout(regions: Sequence[UltrasoundRegion], shape: tuple[int, int],
                detect: Callable[[np.ndarray], list[Box]], spacing_mm: tuple[float, float] | None = None) -> Layout:
    """The panes and kept areas of a clip.

    Panes are the 2D tissue regions (failing those, 2D regions of unspecified data type); a file
    without any is searched with ``detect(kept_mask)`` (every pane it returns, ``spacing_mm`` for
    each).  Every other region but colour flow is kept.
    """
    usable = [r for r in regions if r.area > 0]
    tissue = [r for r in usable if r.is_tissue]
    if not tissue:
        tissue = [r for r in usable if r.spatial_format == SPATIAL_2D and r.data_type in (None, 0)]
    kept = [(r.box, r.kind) for r in usable if r not in tissue and r.data_type != DATA_COLOUR_FLOW]
    layout = Layout([], kept)
    if tissue:
        layout.panes = [Pane(r.box, r.spacing_mm(), "dicom", "tissue region %d" % (k + 1))
                        for k, r in enumerate(sorted(tissue, key=lambda r: (r.box[1], r.box[0])))]
    else:
        boxes = detect(layout.kept_mask(shape))
        layout.panes = [Pane(b, spacing_mm, "detected", "pane %d" % (k + 1)) for k, b in enumerate(boxes)]
    return layout


def user_layout(layout: Layout, box: Box) -> Layout:
    """``layout`` with its panes replaced by one user-drawn pane (spacing of the pane it overlaps most)."""
    best = max(layout.panes, key=lambda p: box_iou(p.box, box), default=None)
    spacing = best.spacing_mm if best is not None and box_iou(best.box, box) > 0 else None
    return replace(layout, panes=[Pane(box, spacing, "user", "user region")])


# -- pixels ---------------------------------------------------------------------------------
def chroma(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel ``max(R, G, B) - min(R, G, B)`` as int32 (0 for a grey pixel)."""
    a = np.asarray(rgb)
    return a.max(axis=-1).astype(np.int32) - a.min(axis=-1).astype(np.int32)


def grey_pixels(frame: np.ndarray, tolerance: int = 0) -> np.ndarray:
    """Bool mask of grey pixels: all True for a single-channel frame, else chroma <= tolerance."""
    a = np.asarray(frame)
    if a.ndim == 2:
        return np.ones(a.shape, dtype=bool)
    return chroma(a[..., :3]) <= tolerance


def luminance(frame: np.ndarray) -> np.ndarray:
    """Float32 luminance in the frame's own units (Rec. 601 weights; equal to R for grey pixels)."""
    a = np.asarray(frame)
    if a.ndim == 2:
        return a.astype(np.float32)
    rgb = a[..., :3].astype(np.float32)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


# -- detection --------------------------------------------------------------------------------
def _content(lum: np.ndarray, colour: np.ndarray | None) -> np.ndarray:
    """Grey, non-black pixels with strokes up to ~4 px wide (text, calipers, ticks) opened away."""
    top = float(np.percentile(lum, 99.5)) if lum.size else 0.0
    mask = lum > 0.012 * top  # the far edges of a sector are faint
    if colour is not None:
        mask &= ~ndimage.binary_dilation(colour, iterations=1)  # anti-aliased colour edges are greyish
    return ndimage.binary_opening(mask, structure=np.ones((5, 5), bool))


def detect_panes(lum: np.ndarray, colour: np.ndarray | None = None, exclude: np.ndarray | None = None,
                 min_fraction: float = 0.15) -> list[Box]:
    """Every image pane of a displayed frame (single, dual side by side, quad), top-left first.

    A pane is a large connected area of grey, non-black pixels once thin structures are opened
    away and the speckle's dark gaps closed; panes smaller than ``min_fraction`` of the largest
    (or 1 % of the frame) are dropped.

    Args:
        lum: (H, W) displayed grey (bright = strong echo: MONOCHROME1 already inverted).
        colour: bool (H, W), colour pixels (not image), or None.
        exclude: bool (H, W), areas that are no pane (kept regions), or None.

    Returns:
        Half-open boxes; empty when nothing stands out (an all-black or all-noise frame).
    """
    h, w = lum.shape
    mask = _content(np.asarray(lum, dtype=np.float32), colour)
    if exclude is not None:
        mask &= ~exclude
    if not mask.any():
        return []
    k = max(3, min(h, w) // 40)
    solid = ndimage.uniform_filter(mask.astype(np.float32), size=2 * k + 1) > 0.15
    solid = ndimage.binary_fill_holes(solid)
    solid = ndimage.binary_opening(solid, structure=np.ones((k, k), bool))  # text blocks that survived
    labels, n = ndimage.label(solid)
    if n == 0:
        return []
    sizes = ndimage.sum_labels(solid, labels, index=np.arange(1, n + 1))
    keep = [j + 1 for j in np.argsort(-sizes) if sizes[j] >= max(min_fraction * sizes.max(), 0.01 * h * w)]
    boxes = []
    for lab in keep:
        comp = labels == lab
        inner = comp & mask  # the blob overhangs the content by up to k pixels
        rows = np.flatnonzero((inner if inner.any() else comp).any(axis=1))
        cols = np.flatnonzero((inner if inner.any() else comp).any(axis=0))
        boxes.append((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))
    return sorted(_merge_nested(boxes), key=lambda b: (round(b[1] / max(1, h // 8)), b[0]))


def _merge_nested(boxes: list[Box]) -> list[Box]:
    """Merge boxes that mostly overlap (one blob split by a dark band, a fan's bounding boxes)."""
    out = list(boxes)
    changed = True
    while changed:
        changed = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                inter = box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
                if inter > 0.5 * min(box_area(a), box_area(b)):
                    out[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del out[j]
                    changed = True
                    break
            if changed:
                break
    return out


def detect_bmode_region(frame: np.ndarray, chroma_tolerance: int = 3) -> Box:
    """The box around every B-mode pane of a frame that has no SequenceOfUltrasoundRegions.

    Args:
        frame: (H, W) grey or (H, W, 3) RGB frame, any numeric dtype (its values as displayed).
        chroma_tolerance: largest ``max(RGB) - min(RGB)`` still counted as grey (lossy JPEG
            leaves a few levels of chroma on grey pixels).

    Returns:
        The half-open bounding box of the panes of :func:`detect_panes`; the whole frame when
        nothing stands out.

    Raises:
        ValueError: for a frame that is not (H, W) or (H, W, 3|4).
    """
    a = np.asarray(frame)
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise ValueError("detect_bmode_region needs an (H, W) or (H, W, 3) frame, got shape %s" % (a.shape,))
    h, w = a.shape[:2]
    colour = ~grey_pixels(a, chroma_tolerance) if a.ndim == 3 else None
    boxes = detect_panes(luminance(a), colour)
    if not boxes:
        return (0, 0, w, h)
    return Layout([Pane(b, None, "detected", "") for b in boxes]).bounding_box((h, w))


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two half-open boxes."""
    inter = box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = box_area(a) + box_area(b) - inter
    return inter / union if union else 0.0


def box_mask(box: Box, shape: tuple[int, int]) -> np.ndarray:
    """Bool (H, W) mask that is True inside ``box``."""
    m = np.zeros(shape, dtype=bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m
