"""Opening DICOM, PNG and NPY files as a :class:`Clip` whose frames are decoded lazily.

A :class:`Clip` never holds the whole clip in memory: DICOM frames are decoded one at a time
with :func:`pydicom.pixels.pixel_array` (``index=i``) and kept in a small LRU cache; NPY
stacks are memory-mapped.  Frames are returned exactly as decoded (pydicom converts YBR to
RGB; PALETTE COLOR goes through :func:`pydicom.pixels.apply_color_lut`, 16-bit LUTs are
reduced to their high byte), so they can be written back byte-identical where nothing was processed.

Grey mapping (``gray_frame``): stored value ``v`` maps to ``(v - lo) / (hi - lo)`` clipped to
[0, 1], with ``lo, hi = 0, 255`` for 8-bit and RGB data, the VOI window (WindowCenter/Width)
for deeper grey data when present and otherwise ``0, 2**BitsStored - 1``; MONOCHROME1 is
inverted so that bright always means strong echo.  :meth:`Clip.from_unit` is its inverse.
"""
from __future__ import annotations

import struct
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydicom.multival import MultiValue

from .errors import DicomError
from .regions import (
    Box,
    UltrasoundRegion,
    box_mask,
    detect_bmode_region,
    grey_pixels,
    luminance,
    parse_regions,
    pick_bmode_region,
)

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
CACHE_FRAMES = 8
MIN_SIDE = 16

_VIDEO_TS_PREFIX = "1.2.840.10008.1.2.4.10"  # MPEG-2, MPEG-4 AVC, HEVC (…4.100 to …4.108)
_LOSSY_TS = {
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.51",  # JPEG extended
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000 (lossy allowed)
    "1.2.840.10008.1.2.4.93",  # JPEG 2000 multi-component (lossy allowed)
    "1.2.840.10008.1.2.4.203",  # HTJ2K (lossy allowed)
}
_SOP_KINDS = (
    ("1.2.840.10008.5.1.4.1.1.88.", "a Structured Report (SR)"),
    ("1.2.840.10008.5.1.4.1.1.481.", "a radiotherapy (RT) object"),
    ("1.2.840.10008.5.1.4.1.1.104.", "an encapsulated document (PDF/CDA)"),
    ("1.2.840.10008.5.1.4.1.1.11.", "a presentation state"),
    ("1.2.840.10008.5.1.4.1.1.9.", "a waveform"),
    ("1.2.840.10008.5.1.4.1.1.66", "a raw data / registration / segmentation object"),
)
_META_KEYS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
    "StudyTime", "StudyDescription", "AccessionNumber", "SeriesInstanceUID", "SeriesNumber",
    "SeriesDescription", "Modality", "Manufacturer", "ManufacturerModelName", "TransducerData",
    "SOPClassUID", "SOPInstanceUID", "PhotometricInterpretation", "BitsStored", "LossyImageCompression",
)


class Clip:
    """A still or a cine loop, frames decoded on demand.

    Attributes:
        path: the file it was read from.
        n_frames: number of frames.
        shape: ``(H, W)``.
        is_color: True when frames are (H, W, 3) RGB.
        spacing_mm: ``(dz_mm, dx_mm)`` from the B-mode region (units cm) or PixelSpacing, else None.
        frame_time_ms: time between frames (FrameTime / FrameTimeVector / CineRate /
            RecommendedDisplayFrameRate), else None.
        regions: the clamped SequenceOfUltrasoundRegions items (empty when absent).
        region_source: ``"dicom"``, ``"detected"`` or ``"user"`` (after setting bmode_region).
        lossy: True when the source pixels went through lossy compression.
        chroma_tolerance: largest ``max(RGB) - min(RGB)`` counted as a grey pixel (0 unless lossy).
        meta: patient / study / series basics, manufacturer, transfer syntax (strings).
        dataset: the DICOM header without pixel data (None for PNG/NPY).
    """

    def __init__(
        self,
        path: Path,
        n_frames: int,
        shape: tuple[int, int],
        is_color: bool,
        decode: Callable[[int], np.ndarray],
        gray_range: tuple[float, float],
        invert: bool = False,
        regions: list[UltrasoundRegion] | None = None,
        spacing_mm: tuple[float, float] | None = None,
        frame_time_ms: float | None = None,
        lossy: bool = False,
        meta: dict[str, Any] | None = None,
        dataset: Any = None,
        cache_frames: int = CACHE_FRAMES,
    ) -> None:
        self.path = Path(path)
        self.n_frames = int(n_frames)
        self.shape = (int(shape[0]), int(shape[1]))
        self.is_color = bool(is_color)
        self._decode = decode
        self._lo, self._hi = float(gray_range[0]), float(gray_range[1])
        self._invert = bool(invert)
        self.regions = list(regions or [])
        self.lossy = bool(lossy)
        self.chroma_tolerance = 3 if (self.lossy and self.is_color) else 0
        self.meta = dict(meta or {})
        self.dataset = dataset
        self.frame_time_ms = frame_time_ms
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_frames = max(1, int(cache_frames))
        self._lock = threading.RLock()
        self._overlay: np.ndarray | None = None
        region = pick_bmode_region(self.regions)
        if region is not None:
            self._bmode_region: Box = region.box
            self.region_source = "dicom"
            spacing_mm = region.spacing_mm() or spacing_mm
        else:
            self._bmode_region = self._detect_region()
            self.region_source = "detected"
        self.spacing_mm = spacing_mm

    # -- frames ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n_frames

    def __repr__(self) -> str:
        return "Clip(%r, n_frames=%d, shape=%s, color=%s)" % (str(self.path), self.n_frames, self.shape, self.is_color)

    def _index(self, i: int) -> int:
        i = int(i)
        if i < 0:
            i += self.n_frames
        if not 0 <= i < self.n_frames:
            raise IndexError("frame %d out of range: the clip has %d frame(s)" % (i, self.n_frames))
        return i

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as decoded: (H, W) uint8/uint16 (int16 if signed) or (H, W, 3) uint8 RGB.

        The array is read-only (it is shared with the cache); copy it before editing.
        """
        i = self._index(i)
        with self._lock:
            hit = self._cache.get(i)
            if hit is not None:
                self._cache.move_to_end(i)
                return hit
        arr = self._decode(i)
        arr.setflags(write=False)
        with self._lock:
            self._cache[i] = arr
            self._cache.move_to_end(i)
            while len(self._cache) > self._cache_frames:
                self._cache.popitem(last=False)
        return arr

    def to_unit(self, stored: np.ndarray) -> np.ndarray:
        """Map stored (or RGB) pixel values to float32 grey in [0, 1] (bright = strong echo)."""
        lum = luminance(stored)
        g = (lum - self._lo) / (self._hi - self._lo)
        np.clip(g, 0.0, 1.0, out=g)
        if self._invert:
            g = 1.0 - g
        return g.astype(np.float32, copy=False)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_unit`: grey in [0, 1] to stored values of the frame dtype."""
        g = np.clip(np.asarray(unit, dtype=np.float64), 0.0, 1.0)
        if self._invert:
            g = 1.0 - g
        v = np.rint(self._lo + g * (self._hi - self._lo))
        dtype = self.frame_dtype
        if dtype.kind == "f":
            return v.astype(dtype)
        info = np.iinfo(dtype)
        return np.clip(v, info.min, info.max).astype(dtype)

    @property
    def frame_dtype(self) -> np.dtype:
        """The dtype :meth:`frame` returns."""
        return self.frame(0).dtype

    def gray_frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as float32 (H, W) in [0, 1] (for RGB: the luminance)."""
        return self.to_unit(self.frame(i))

    # -- region and mask --------------------------------------------------------------------
    @property
    def bmode_region(self) -> Box:
        """Half-open ``(x0, y0, x1, y1)`` of the B-mode image (``frame[y0:y1, x0:x1]``)."""
        return self._bmode_region

    @bmode_region.setter
    def bmode_region(self, box: Box) -> None:
        from .regions import clamp_box

        b = clamp_box(box, self.shape)
        if b[2] - b[0] < 1 or b[3] - b[1] < 1:
            raise ValueError("the B-mode region %r is empty inside a %dx%d image" % (tuple(box), self.shape[1], self.shape[0]))
        with self._lock:
            self._bmode_region = b
            self._overlay = None  # overlays are searched inside the region
        self.region_source = "user"

    def _sample_indices(self, k: int) -> list[int]:
        return sorted({int(round(v)) for v in np.linspace(0, self.n_frames - 1, min(k, self.n_frames))})

    def _detect_region(self) -> Box:
        frames = [np.asarray(self.frame(i)) for i in self._sample_indices(3)]
        stack = np.max(np.stack(frames), axis=0) if len(frames) > 1 else frames[0]
        return detect_bmode_region(stack, chroma_tolerance=3 if self.lossy else 0)

    def overlay_mask(self) -> np.ndarray:
        """Bool (H, W) mask of burned-in overlays found as far as detectable.

        In a cine loop, text and calipers are the bright pixels that are identical in every
        sampled frame while the speckle changes (dilated by one pixel for anti-aliasing).  A
        still, or a loop whose frames do not change, gives an empty mask: there grey overlays
        cannot be told from tissue (coloured ones are excluded by :meth:`process_mask`).
        """
        with self._lock:
            if self._overlay is not None:
                return self._overlay
        from scipy import ndimage

        mask = np.zeros(self.shape, dtype=bool)
        idx = self._sample_indices(4)
        if len(idx) >= 3:
            frames = [np.asarray(self.frame(i)) for i in idx]
            static = np.ones(self.shape, dtype=bool)
            for f in frames[1:]:
                eq = f == frames[0]
                static &= eq.all(axis=-1) if eq.ndim == 3 else eq
            lum = self.to_unit(frames[0])
            region = box_mask(self._bmode_region, self.shape)
            candidates = static & (lum > 0.25) & region
            # Overlays are strokes of several pixels; lone static pixels are speckle by chance.
            labels, n = ndimage.label(candidates, structure=np.ones((3, 3), bool))
            if n:
                sizes = np.bincount(labels.ravel())
                candidates = (sizes >= 4)[labels] & candidates
            if region.any() and candidates.sum() < 0.05 * region.sum():
                mask = ndimage.binary_dilation(candidates, iterations=1)
        with self._lock:
            self._overlay = mask
        return mask

    def process_mask(self, i: int) -> np.ndarray:
        """Bool (H, W): pixels of frame ``i`` that may be despeckled.

        Inside the B-mode region, grey (R == G == B within ``chroma_tolerance`` for colour
        frames) and not a detected overlay (see :meth:`overlay_mask`).
        """
        m = box_mask(self._bmode_region, self.shape)
        if self.is_color:
            m &= grey_pixels(self.frame(i), self.chroma_tolerance)
        m &= ~self.overlay_mask()
        return m


# ---------------------------------------------------------------------------------------------
def open_image(path: str | Path) -> Clip:
    """Open a DICOM file (any suffix), a PNG (or other raster still) or an NPY still/stack.

    NPY arrays: (H, W) or (F, H, W) uint8 / uint16 / float in [0, 1], or (H, W, 3) /
    (F, H, W, 3) uint8 RGB; memory-mapped.

    Raises:
        DicomError: missing, unreadable, truncated or non-image files, unsupported transfer
            syntaxes and missing decoders, with a message saying what is wrong.
    """
    p = Path(path)
    if not p.exists():
        raise DicomError("%s: no such file" % p)
    if p.is_dir():
        raise DicomError("%s is a folder; open a .dcm, .png or .npy file" % p)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return _open_npy(p)
    if suffix in RASTER_SUFFIXES:
        return _open_raster(p)
    return _open_dicom(p)


def _check_size(h: int, w: int, what: str) -> None:
    if h < MIN_SIDE or w < MIN_SIDE:
        raise DicomError("%s: the image is %dx%d pixels; at least %dx%d are needed" % (what, w, h, MIN_SIDE, MIN_SIDE))


def _open_raster(p: Path) -> Clip:
    import cv2

    data = np.fromfile(p, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise DicomError("%s is not a readable image file (empty, truncated or not a %s)" % (p, p.suffix.lstrip(".").upper()))
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[..., 0]
        elif img.shape[2] in (3, 4):
            img = np.ascontiguousarray(img[..., 2::-1])  # BGR(A) -> RGB
        else:
            raise DicomError("%s: %d channels are not supported" % (p, img.shape[2]))
    if img.dtype not in (np.uint8, np.uint16):
        raise DicomError("%s: %s pixels are not supported (8- or 16-bit images only)" % (p, img.dtype))
    if img.ndim == 3 and img.dtype == np.uint16:
        img = np.rint(img / 257.0).astype(np.uint8)
    _check_size(img.shape[0], img.shape[1], str(p))
    hi = 255.0 if img.dtype == np.uint8 else 65535.0
    meta = {"format": "PNG" if p.suffix.lower() == ".png" else p.suffix.lstrip(".").upper()}
    return Clip(p, 1, img.shape[:2], img.ndim == 3, lambda i: img, (0.0, hi), meta=meta,
                lossy=p.suffix.lower() in (".jpg", ".jpeg"))


def _open_npy(p: Path) -> Clip:
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DicomError("%s is not a readable .npy array (%s)" % (p, exc)) from exc
    if not isinstance(arr, np.ndarray):
        raise DicomError("%s does not hold a single array" % p)
    a = arr
    color = a.ndim in (3, 4) and a.shape[-1] == 3 and a.dtype == np.uint8
    if color:
        stack = a if a.ndim == 4 else a[None]
    elif a.ndim in (2, 3):
        stack = a if a.ndim == 3 else a[None]
    else:
        raise DicomError("%s: an array of rank %d (shape %s); expected (H, W), (F, H, W) or (…, 3) uint8 RGB"
                         % (p, a.ndim, a.shape))
    if a.dtype == np.uint8 or a.dtype == np.uint16:
        hi = 255.0 if a.dtype == np.uint8 else 65535.0
    elif a.dtype.kind == "f":
        hi = 1.0
    else:
        raise DicomError("%s: dtype %s is not supported (uint8, uint16 or float in [0, 1])" % (p, a.dtype))
    if stack.shape[0] < 1:
        raise DicomError("%s holds no frames" % p)
    _check_size(stack.shape[1], stack.shape[2], str(p))

    def decode(i: int) -> np.ndarray:
        f = np.array(stack[i])
        if f.dtype.kind == "f":
            if not np.all(np.isfinite(f)):
                raise DicomError("%s: frame %d contains NaN or inf" % (p, i))
            if f.min() < 0 or f.max() > 1:
                raise DicomError("%s: float frames must lie in [0, 1] (frame %d spans %.3g..%.3g)" % (p, i, f.min(), f.max()))
            f = f.astype(np.float32)
        return f

    decode(0)
    return Clip(p, stack.shape[0], stack.shape[1:3], color, decode, (0.0, hi), meta={"format": "NPY"})


# ---------------------------------------------------------------------------------------------
def _pixel_element(p: Path):
    """Read the header; return (dataset, value_length or None if no pixel data, bytes after it)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    size = p.stat().st_size
    try:
        with open(p, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            pos = fh.tell()
            head = fh.read(12)
    except InvalidDicomError as exc:
        raise DicomError("%s is not a DICOM file (no DICOM header found)" % p) from exc
    except (EOFError, OSError, struct.error, ValueError, KeyError, IndexError, TypeError) as exc:
        raise DicomError("%s is truncated or corrupt: its DICOM header cannot be read (%s)" % (p, exc)) from exc
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    little = True if ts is None else ts.is_little_endian
    implicit = False if ts is None else ts.is_implicit_VR
    if len(head) < 8:
        return ds, None, 0
    e = "<" if little else ">"
    group, elem = struct.unpack(e + "HH", head[:4])
    if (group, elem) != (0x7FE0, 0x0010):
        return ds, None, 0
    if implicit:
        (length,) = struct.unpack(e + "I", head[4:8])
        start = pos + 8
    else:
        if len(head) < 12:
            return ds, -1, 0
        (length,) = struct.unpack(e + "I", head[8:12])
        start = pos + 12
    return ds, length, size - start


def _describe_sop(ds) -> str | None:
    uid = str(ds.get("SOPClassUID", ""))
    for prefix, what in _SOP_KINDS:
        if uid.startswith(prefix):
            return what
    return None


def _check_decoder(p: Path, ts) -> None:
    from pydicom.pixels import get_decoder

    if str(ts).startswith(_VIDEO_TS_PREFIX):
        raise DicomError(
            "%s is stored as compressed video (%s), which USClean cannot decode; export the clip "
            "from the scanner or PACS uncompressed, RLE or JPEG" % (p, ts.name)
        )
    try:
        dec = get_decoder(ts)
    except NotImplementedError as exc:
        raise DicomError("%s uses the transfer syntax %s, which no installed decoder supports" % (p, ts.name)) from exc
    if not dec.is_available:
        raise DicomError(
            "%s uses %s, but no decoder for it is installed (%s)" % (p, ts.name, "; ".join(dec.missing_dependencies))
        )


def _frame_time_ms(ds) -> float | None:
    def num(v) -> float | None:
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        return f if np.isfinite(f) and f > 0 else None

    def from_vector() -> float | None:
        vec = ds.get("FrameTimeVector", None)
        if vec is None:
            return None
        values = [num(v) for v in (list(vec) if isinstance(vec, (list, tuple, MultiValue)) else [vec])]
        values = [v for v in values[1:] if v is not None]  # the first entry is 0 by definition
        return float(np.mean(values)) if values else None

    pointer = ds.get("FrameIncrementPointer", None)
    if pointer is None:
        pointers = []
    else:
        pointers = [int(t) for t in (pointer if isinstance(pointer, (list, tuple, MultiValue)) else [pointer])]
    if 0x00181065 in pointers:
        v = from_vector()
        if v:
            return v
    if 0x00181063 in pointers or not pointers:
        v = num(ds.get("FrameTime", None))
        if v:
            return v
    for v in (num(ds.get("FrameTime", None)), from_vector()):
        if v:
            return v
    for key in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = num(ds.get(key, None))
        if rate:
            return 1000.0 / rate
    return None


def _is_lossy(ds, ts) -> bool:
    flag = str(ds.get("LossyImageCompression", "") or "").strip()
    if flag in ("00", "01"):
        return flag == "01"
    return str(ts) in _LOSSY_TS


def _open_dicom(p: Path) -> Clip:
    import pydicom
    from pydicom.pixels import apply_color_lut, pixel_array

    ds, length, remaining = _pixel_element(p)
    if length is None:
        what = _describe_sop(ds)
        if what:
            raise DicomError("%s is %s, not an image" % (p, what))
        if "SOPClassUID" not in ds and "Rows" not in ds:
            raise DicomError("%s is truncated or corrupt: its DICOM header ends before the image attributes" % p)
        if ds.get("Rows") and ds.get("Columns"):
            raise DicomError("%s describes an image but contains no pixel data (is the file truncated?)" % p)
        raise DicomError("%s is a DICOM file without pixel data (not an image)" % p)
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts is None:
        ts = pydicom.uid.ImplicitVRLittleEndian
    for key in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        if key not in ds:
            raise DicomError("%s lacks %s, so its pixels cannot be read" % (p, key))
    rows, cols = int(ds.Rows), int(ds.Columns)
    _check_size(rows, cols, str(p))
    try:
        n_frames = max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        n_frames = 1
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    bits_alloc = int(ds.BitsAllocated)
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    if ts.is_encapsulated:
        _check_decoder(p, ts)
        if length != 0xFFFFFFFF:
            raise DicomError("%s: compressed pixel data must have undefined length; the file is malformed" % p)
    else:
        if bits_alloc not in (8, 16):
            raise DicomError("%s: %d-bit pixels are not supported (8 or 16 bit)" % (p, bits_alloc))
        expected = rows * cols * spp * (bits_alloc // 8) * n_frames
        if length < 0 or remaining < expected or length < expected:
            raise DicomError(
                "%s is truncated: %d of the %d bytes of pixel data are present" % (p, max(0, min(remaining, length)), expected)
            )
    if photometric not in ("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR") and not photometric.startswith("YBR"):
        raise DicomError("%s: photometric interpretation %s is not supported" % (p, photometric))

    lut: np.ndarray | None = None
    if photometric == "PALETTE COLOR":
        try:
            n_idx = 2 ** int(ds.get("BitsStored", bits_alloc))
            table = apply_color_lut(np.arange(n_idx, dtype=np.uint16 if n_idx > 256 else np.uint8), ds)
        except Exception as exc:  # pydicom raises several types for a bad LUT
            raise DicomError("%s: its PALETTE COLOR lookup table cannot be read (%s)" % (p, exc)) from exc
        if table.dtype != np.uint8:
            # 16-bit LUT entries: keep the high byte (exact for v * 257 and v << 8 encodings);
            # some writers declare 16 bits but store 8-bit values, which are kept as they are.
            table = table if table.max() <= 255 else table >> 8
            table = table.astype(np.uint8)
        lut = table
    color = spp == 3 or lut is not None

    def decode(i: int) -> np.ndarray:
        try:
            arr = pixel_array(p, index=i)
        except Exception as exc:  # decoders raise RuntimeError, ValueError, struct.error, ...
            reason = str(exc).splitlines()[0].rstrip(":") if str(exc) else type(exc).__name__
            raise DicomError("%s: frame %d cannot be decoded; the file is truncated or corrupt (%s)"
                             % (p, i, reason)) from exc
        if lut is not None:
            arr = lut[np.clip(arr, 0, lut.shape[0] - 1)]
        elif arr.ndim == 3 and arr.dtype != np.uint8:
            stored = int(ds.get("BitsStored", 16))
            arr = np.clip(np.rint(arr.astype(np.float64) / (2**stored - 1) * 255.0), 0, 255).astype(np.uint8)
        if arr.shape[:2] != (rows, cols):
            raise DicomError("%s: frame %d decoded to shape %s, expected %dx%d" % (p, i, arr.shape, rows, cols))
        return np.ascontiguousarray(arr)

    # Gray mapping
    bits_stored = int(ds.get("BitsStored", bits_alloc) or bits_alloc)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if color or bits_stored <= 8:
        lo, hi = 0.0, 255.0 if not signed else 127.0
    else:
        lo, hi = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0.0, 2**bits_stored - 1.0)
        wc, ww = ds.get("WindowCenter", None), ds.get("WindowWidth", None)
        try:
            if wc is not None and ww is not None:
                c = float(wc[0] if hasattr(wc, "__len__") and not isinstance(wc, str) else wc)
                w = float(ww[0] if hasattr(ww, "__len__") and not isinstance(ww, str) else ww)
                if w > 1:
                    lo, hi = c - 0.5 - (w - 1) / 2.0, c - 0.5 + (w - 1) / 2.0
        except (TypeError, ValueError):
            pass

    regions = parse_regions(ds, (rows, cols))
    spacing = None
    ps = ds.get("PixelSpacing", None)
    try:
        if ps is not None and len(ps) == 2 and float(ps[0]) > 0 and float(ps[1]) > 0:
            spacing = (float(ps[0]), float(ps[1]))
    except (TypeError, ValueError):
        spacing = None
    meta: dict[str, Any] = {"format": "DICOM"}
    for key in _META_KEYS:
        if key in ds:
            meta[key] = str(ds.get(key))
    meta["TransferSyntaxUID"] = str(ts)
    meta["TransferSyntax"] = ts.name
    sop = ds.get("SOPClassUID", None)
    if sop is not None:
        meta["SOPClassName"] = pydicom.uid.UID(str(sop)).name
    meta["NumberOfFrames"] = str(n_frames)

    # Validate the first and the last frame now: catches truncated encapsulated data and
    # decoder problems at open time instead of in the middle of a run.
    decode(0)
    if n_frames > 1:
        decode(n_frames - 1)
    return Clip(
        p, n_frames, (rows, cols), color, decode, (lo, hi), invert=photometric == "MONOCHROME1",
        regions=regions, spacing_mm=spacing,
        frame_time_ms=_frame_time_ms(ds) if n_frames > 1 or "FrameTime" in ds else None,
        lossy=_is_lossy(ds, ts), meta=meta, dataset=ds,
    )
