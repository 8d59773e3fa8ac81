"""Where the B-mode image is inside a frame, and which of its pixels may be despeckled.

Boxes are half-open pixel boxes ``(x0, y0, x1, y1)``: the region is ``frame[y0:y1, x0:x1]``.
DICOM's RegionLocationMaxX1/MaxY1 are inclusive, so ``x1 = MaxX1 + 1``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

Box = tuple[int, int, int, int]

#: PhysicalUnitsX/YDirection code for centimetres.
UNITS_CM = 3
#: RegionSpatialFormat code for a 2D image.
SPATIAL_2D = 1
#: RegionDataType code for tissue.
DATA_TISSUE = 1


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
        x0, y0, x1, y1 = self.box
        return max(0, x1 - x0) * max(0, y1 - y0)

    def spacing_mm(self) -> tuple[float, float] | None:
        """``(dz_mm, dx_mm)`` when both directions are in centimetres, else None."""
        if self.units_x != UNITS_CM or self.units_y != UNITS_CM:
            return None
        if not self.delta_x or not self.delta_y or self.delta_x <= 0 or self.delta_y <= 0:
            return None
        return (abs(float(self.delta_y)) * 10.0, abs(float(self.delta_x)) * 10.0)


def clamp_box(box: Sequence[float], shape: tuple[int, int]) -> Box:
    """Clamp a half-open box to an image of ``shape = (H, W)``; may return an empty box."""
    h, w = shape
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1 = min(max(x0, 0), w), min(max(x1, 0), w)
    y0, y1 = min(max(y0, 0), h), min(max(y1, 0), h)
    return (x0, y0, max(x0, x1), max(y0, y1))


def parse_regions(ds, shape: tuple[int, int]) -> list[UltrasoundRegion]:
    """Read SequenceOfUltrasoundRegions from a pydicom dataset, each clamped to ``shape``."""
    out: list[UltrasoundRegion] = []
    for item in ds.get("SequenceOfUltrasoundRegions", None) or []:
        try:
            raw = (
                int(item.RegionLocationMinX0),
                int(item.RegionLocationMinY0),
                int(item.RegionLocationMaxX1) + 1,
                int(item.RegionLocationMaxY1) + 1,
            )
        except (AttributeError, TypeError, ValueError):
            continue

        def _get(name: str, cast):
            value = item.get(name, None)
            try:
                return None if value is None or value == "" else cast(value)
            except (TypeError, ValueError):
                return None

        out.append(
            UltrasoundRegion(
                box=clamp_box(raw, shape),
                spatial_format=_get("RegionSpatialFormat", int),
                data_type=_get("RegionDataType", int),
                units_x=_get("PhysicalUnitsXDirection", int),
                units_y=_get("PhysicalUnitsYDirection", int),
                delta_x=_get("PhysicalDeltaX", float),
                delta_y=_get("PhysicalDeltaY", float),
            )
        )
    return out


def pick_bmode_region(regions: Sequence[UltrasoundRegion]) -> UltrasoundRegion | None:
    """The 2D tissue region (the largest if several); failing that the largest 2D region."""
    usable = [r for r in regions if r.area > 0]
    for wanted in (
        lambda r: r.spatial_format == SPATIAL_2D and r.data_type == DATA_TISSUE,
        lambda r: r.spatial_format == SPATIAL_2D and r.data_type in (None, 0),
        lambda r: r.spatial_format == SPATIAL_2D,
    ):
        cands = [r for r in usable if wanted(r)]
        if cands:
            return max(cands, key=lambda r: r.area)
    return None


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


def detect_bmode_region(frame: np.ndarray, chroma_tolerance: int = 3) -> Box:
    """Find the B-mode image in a frame that has no SequenceOfUltrasoundRegions.

    The B-mode image is taken as the largest connected area of grey, non-black pixels after
    thin structures (burned-in text, calipers, tick marks: strokes a few pixels wide) are
    removed by a morphological opening and the speckle's dark gaps are closed.  Colour pixels
    (chroma > ``chroma_tolerance``, e.g. colour Doppler, coloured overlays) are not image.

    Args:
        frame: (H, W) grey or (H, W, 3) RGB frame, any numeric dtype.
        chroma_tolerance: largest ``max(RGB) - min(RGB)`` still counted as grey (lossy JPEG
            leaves a few levels of chroma on grey pixels).

    Returns:
        The bounding box ``(x0, y0, x1, y1)`` (half-open) of that area; the whole frame when
        nothing stands out (an all-black or all-noise frame).

    Raises:
        ValueError: for a frame that is not (H, W) or (H, W, 3|4).
    """
    a = np.asarray(frame)
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise ValueError("detect_bmode_region needs an (H, W) or (H, W, 3) frame, got shape %s" % (a.shape,))
    h, w = a.shape[:2]
    lum = luminance(a)
    top = float(np.percentile(lum, 99.5)) if lum.size else 0.0
    if top <= 0:
        return (0, 0, w, h)
    # Image pixels: grey and above the black background (1.2 % of the bright level: the
    # far edges of a sector are faint).
    mask = grey_pixels(a, chroma_tolerance) & (lum > 0.012 * top)
    # Dilate the colour out a little: anti-aliased edges of coloured overlays are greyish.
    if a.ndim == 3:
        colour = ~grey_pixels(a, chroma_tolerance)
        mask &= ~ndimage.binary_dilation(colour, iterations=1)
    # Remove strokes (text, calipers, lines) up to ~4 px wide (anti-aliased text included).
    mask = ndimage.binary_opening(mask, structure=np.ones((5, 5), bool))
    # Close the dark gaps between speckle grains and small anechoic areas.
    k = max(3, min(h, w) // 40)
    density = ndimage.uniform_filter(mask.astype(np.float32), size=2 * k + 1)
    solid = density > 0.15
    solid = ndimage.binary_fill_holes(solid)
    # A second opening at the closing scale drops text blocks that survived as blobs.
    solid = ndimage.binary_opening(solid, structure=np.ones((k, k), bool))
    labels, n = ndimage.label(solid)
    if n == 0:
        return (0, 0, w, h)
    sizes = ndimage.sum_labels(solid, labels, index=np.arange(1, n + 1))
    best = int(np.argmax(sizes)) + 1
    if sizes[best - 1] < 0.01 * h * w:
        return (0, 0, w, h)
    # The blob follows the image content (the density filter overhangs it by up to k pixels):
    # take the bounding box of the image pixels inside it.
    comp = labels == best
    inner = comp & mask
    if inner.any():
        comp = inner
    rows = np.flatnonzero(comp.any(axis=1))
    cols = np.flatnonzero(comp.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two half-open boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: max(0, r[2] - r[0]) * max(0, r[3] - r[1])  # noqa: E731
    union = area(a) + area(b) - inter
    return inter / union if union else 0.0


def box_mask(box: Box, shape: tuple[int, int]) -> np.ndarray:
    """Bool (H, W) mask that is True inside ``box``."""
    m = np.zeros(shape, dtype=bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m
