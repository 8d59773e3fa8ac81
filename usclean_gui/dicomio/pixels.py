"""Pixel access and the display mapping (stored value <-> displayed grey), pydicom's way.

* :func:`frame_decoder` decodes one frame at a time with :func:`pydicom.pixels.pixel_array`
  (``index=i``; from the file, so a clip is never in memory whole; a Deflated file from its
  inflated dataset), returns it in native byte order, YBR already converted to RGB by pydicom,
  PALETTE COLOR through :func:`pydicom.pixels.apply_color_lut`.
* :class:`DisplayMap` is a monotone lookup table from stored grey values to displayed grey in
  [0, 1] (bright = strong echo): linear over the stored range for 8-bit data, through
  :func:`pydicom.pixels.apply_voi_lut` (VOI LUT or window) for deeper data, inverted for
  MONOCHROME1.  Its inverse (:meth:`DisplayMap.from_unit`) writes despeckled values back.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DicomError, reason
from .header import ImageHeader
from .regions import luminance


class DisplayMap:
    """Stored values ``offset .. offset + len(lut) - 1`` -> displayed grey ``lut`` in [0, 1].

    Colour frames ((H, W, 3) uint8) map through their luminance / 255; float frames (NPY in
    [0, 1]) are their own display.
    """

    def __init__(self, lut: np.ndarray, offset: int, dtype: np.dtype) -> None:
        self.lut = np.asarray(lut, dtype=np.float32)
        self.offset = int(offset)
        self.dtype = np.dtype(dtype)
        self._decreasing = bool(self.lut[0] > self.lut[-1])
        self._sorted = self.lut[::-1] if self._decreasing else self.lut

    @classmethod
    def linear(cls, lo: int, hi: int, dtype: np.dtype, invert: bool = False) -> DisplayMap:
        """``lo`` -> 0 and ``hi`` -> 1 (or the reverse with ``invert``)."""
        lut = np.linspace(0.0, 1.0, int(hi) - int(lo) + 1)
        return cls(1.0 - lut if invert else lut, lo, dtype)

    def to_unit(self, stored: np.ndarray) -> np.ndarray:
        """Displayed grey (float32, bright = strong echo) of stored values or RGB pixels."""
        a = np.asarray(stored)
        if a.ndim == 3 or self.dtype.kind == "f" and a.dtype.kind == "f":
            g = luminance(a) / (255.0 if a.ndim == 3 else 1.0)
            return np.clip(g, 0.0, 1.0).astype(np.float32, copy=False)
        i = np.clip(a.astype(np.int64) - self.offset, 0, self.lut.size - 1)
        return self.lut[i]

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """The stored value (of :attr:`dtype`) whose display is nearest to ``unit``."""
        u = np.clip(np.asarray(unit, dtype=np.float32), 0.0, 1.0)
        if self.dtype.kind == "f":
            return u.astype(self.dtype)
        s = self._sorted
        j = np.clip(np.searchsorted(s, u), 1, s.size - 1)
        j -= (u - s[j - 1]) <= (s[j] - u)  # the nearer neighbour (ties: the lower one)
        k = (s.size - 1 - j) if self._decreasing else j
        info = np.iinfo(self.dtype)
        return np.clip(k + self.offset, info.min, info.max).astype(self.dtype)


def display_map(ds, header: ImageHeader, dtype: np.dtype) -> tuple[DisplayMap, str | None]:
    """The :class:`DisplayMap` of a checked grey header, and a note when its VOI was unusable."""
    from pydicom.pixels import apply_voi_lut

    if header.is_color:
        return DisplayMap.linear(0, 255, np.uint8), None
    stored = header.bits_stored
    lo, hi = (-(2 ** (stored - 1)), 2 ** (stored - 1) - 1) if header.signed else (0, 2**stored - 1)
    invert = header.photometric == "MONOCHROME1"
    has_voi = any(k in ds for k in ("WindowCenter", "WindowWidth", "VOILUTSequence"))
    if stored <= 8 or not has_voi:
        return DisplayMap.linear(lo, hi, dtype, invert), None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = np.asarray(apply_voi_lut(np.arange(lo, hi + 1, dtype=np.int64), ds), dtype=np.float64)
        span = float(y.max() - y.min())
        if not np.all(np.isfinite(y)) or span <= 0 or np.any(np.diff(y) < 0):
            raise ValueError("not an increasing mapping")
    except Exception as exc:  # a broken window is a display hint lost, not a broken image
        return DisplayMap.linear(lo, hi, dtype, invert), "VOI window ignored (%s)" % reason(exc)
    u = (y - y.min()) / span
    return DisplayMap(1.0 - u if invert else u, lo, dtype), None


def palette_table(ds, path: Path, header: ImageHeader) -> np.ndarray:
    """(2**BitsStored, 3) uint8 RGB of each PALETTE COLOR index (16-bit LUTs: their high byte)."""
    from pydicom.pixels import apply_color_lut

    n = 2 ** min(header.bits_stored, 16)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = apply_color_lut(np.arange(n, dtype=np.uint16 if n > 256 else np.uint8), ds)
    except Exception as exc:  # pydicom raises several types for a bad LUT
        raise DicomError("%s: its PALETTE COLOR lookup table cannot be read (%s)" % (path, reason(exc))) from exc
    if table.dtype != np.uint8:
        # 16-bit entries: keep the high byte (exact for v * 257 and v << 8 encodings); some writers
        # declare 16 bits but store 8-bit values, which are kept as they are.
        table = table if table.max() <= 255 else table >> 8
    return np.ascontiguousarray(table.astype(np.uint8))


def pixel_dataset(ds):
    """A dataset holding only what :func:`pydicom.pixels.pixel_array` reads of ``ds``: its file
    meta, the Image Pixel group (0028) and the pixel data elements (values shared, not copied)."""
    from pydicom.dataset import Dataset

    out = Dataset()
    out.file_meta = ds.file_meta
    for tag in ds.keys():
        if tag.group == 0x0028 or tag in (0x7FE00001, 0x7FE00002, 0x7FE00010):
            out.add(ds[tag])
    return out


def decode_problem(exc: BaseException) -> str:
    """What a decoder's exception means, in words."""
    text = reason(exc)
    low = text.lower()
    if "all available plugins" in low or "codestream" in low or "jpeg" in low or "rle" in low:
        return "its compressed image data is damaged or truncated"
    if "reshape" in low or "buffer" in low or "length" in low or "not enough" in low:
        return "the image data is shorter than the header says (the file is truncated or damaged)"
    return "the file is truncated or damaged (%s)" % text


def frame_decoder(source: Any, path: Path, header: ImageHeader,
                  lut: np.ndarray | None) -> Callable[[int], np.ndarray]:
    """``decode(i)`` -> frame ``i`` as displayed colours / stored grey, native byte order.

    ``source`` is the file's path (frames read from the file) or, for a Deflated file, its
    inflated dataset.  Grey frames keep their stored dtype; colour frames are (H, W, 3) uint8
    (deeper RGB scaled to 8 bit).

    Raises (from ``decode``):
        DicomError: the frame cannot be decoded (truncated or corrupt data, decoder failure).
    """
    from pydicom.pixels import pixel_array

    def decode(i: int) -> np.ndarray:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arr = pixel_array(source, index=i)
        except MemoryError as exc:
            raise DicomError("%s: frame %d cannot be decoded: it needs more memory than is free" % (path, i)) from exc
        except Exception as exc:  # decoders raise RuntimeError, ValueError, struct.error, ...
            raise DicomError("%s: frame %d cannot be decoded: %s" % (path, i, decode_problem(exc))) from exc
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if lut is not None:
            arr = lut[np.clip(arr, 0, lut.shape[0] - 1)]
        elif arr.ndim == 3 and arr.dtype != np.uint8:
            top = 2.0**header.bits_stored - 1
            arr = np.clip(np.rint(arr.astype(np.float64) / top * 255.0), 0, 255).astype(np.uint8)
        if arr.shape[:2] != header.shape or arr.ndim != (3 if header.is_color else 2):
            raise DicomError("%s: frame %d decoded to shape %s, expected %dx%d" % (path, i, arr.shape, *header.shape))
        return np.ascontiguousarray(arr)

    return decode
