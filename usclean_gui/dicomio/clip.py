"""Opening DICOM, PNG and NPY files as a :class:`Clip` whose frames are decoded lazily.

A :class:`Clip` never holds the whole clip in memory: DICOM frames are decoded one at a time
(:func:`.pixels.frame_decoder`) and kept in a small LRU cache; NPY stacks are memory-mapped.
Frames are returned as decoded (pydicom converts YBR to RGB; PALETTE COLOR goes through its
LUT), so they can be written back byte-identical where nothing was processed.  The header is
checked by :mod:`.header`, the grey mapping is a :class:`.pixels.DisplayMap`, the panes and
kept regions a :class:`.regions.Layout`, the marks and processed pixels :class:`.marks.ClipMasks`.
"""
from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.multival import MultiValue

from . import header as hdr
from .errors import DicomError, reason, size_words
from .marks import ClipMasks
from .pixels import DisplayMap, display_map, frame_decoder, palette_table, pixel_dataset
from .regions import Box, Layout, UltrasoundRegion, clamp_box, detect_panes, parse_regions, plan_layout, user_layout

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
CACHE_FRAMES = 8
MIN_SIDE = hdr.MIN_SIDE
_LOSSY_TS = {
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.51",  # JPEG extended
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000 (lossy allowed)
    "1.2.840.10008.1.2.4.93",  # JPEG 2000 multi-component (lossy allowed)
    "1.2.840.10008.1.2.4.203",  # HTJ2K (lossy allowed)
}
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
        display: the stored value <-> displayed grey mapping (:class:`.pixels.DisplayMap`).
        regions: the clamped SequenceOfUltrasoundRegions items (empty when absent).
        layout: the panes that are despeckled and the regions kept as they are.
        region_source: ``"dicom"``, ``"detected"`` or ``"user"`` (after setting bmode_region).
        spacing_mm: ``(dz_mm, dx_mm)`` of the first pane (units cm) or PixelSpacing, else None.
        frame_time_ms: time between frames (FrameTime / FrameTimeVector / CineRate /
            RecommendedDisplayFrameRate), else None.
        lossy: True when the source pixels went through lossy compression.
        chroma_tolerance: largest ``max(RGB) - min(RGB)`` counted as a grey pixel (0 unless lossy).
        meta: patient / study / series basics, manufacturer, transfer syntax (strings).
        notes: things about the file a user may want to know (e.g. an unusable VOI window).
        dataset: the DICOM header without pixel data (None for PNG/NPY).
        masks: marks, fields of view and processed pixels (:class:`.marks.ClipMasks`).
    """

    def __init__(self, path: Path, n_frames: int, shape: tuple[int, int], is_color: bool,
                 decode: Callable[[int], np.ndarray], display: DisplayMap,
                 regions: list[UltrasoundRegion] | None = None, spacing_mm: tuple[float, float] | None = None,
                 frame_time_ms: float | None = None, lossy: bool = False, meta: dict[str, Any] | None = None,
                 dataset: Any = None, cache_frames: int = CACHE_FRAMES, notes: list[str] | None = None) -> None:
        self.path = Path(path)
        self.n_frames = int(n_frames)
        self.shape = (int(shape[0]), int(shape[1]))
        self.is_color = bool(is_color)
        self._decode = decode
        self.display = display
        self.regions = list(regions or [])
        self.lossy = bool(lossy)
        self.chroma_tolerance = 3 if (self.lossy and self.is_color) else 0
        self.meta = dict(meta or {})
        self.notes = list(notes or [])
        self.dataset = dataset
        self.frame_time_ms = frame_time_ms
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_frames = max(1, int(cache_frames))
        self._lock = threading.RLock()
        self.masks = ClipMasks(self)
        self.layout: Layout = plan_layout(self.regions, self.shape, self._detect_panes, spacing_mm)
        self.region_source = self.layout.panes[0].source if self.layout.panes else "detected"
        if not self.layout.panes:  # nothing stands out: the whole frame (less kept regions)
            self.layout = user_layout(self.layout, (0, 0, self.shape[1], self.shape[0]))
            self.layout.panes[0].source = self.region_source = "detected"
        first = self.layout.panes[0].spacing_mm
        self.spacing_mm = first if first is not None else spacing_mm

    # -- frames ---------------------------------------------------------------------------
    def forget_frames(self) -> None:
        """Drop the decoded frames and per-frame masks kept in memory (the next access decodes again)."""
        with self._lock:
            self._cache.clear()
        self.masks.forget_frames()

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
        """Map stored (or RGB) pixel values to float32 displayed grey in [0, 1] (bright = strong echo)."""
        return self.display.to_unit(stored)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_unit`: grey in [0, 1] to stored values of the frame dtype."""
        return self.display.from_unit(unit)

    @property
    def frame_dtype(self) -> np.dtype:
        """The dtype :meth:`frame` returns."""
        return self.frame(0).dtype

    def gray_frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as float32 (H, W) displayed grey in [0, 1] (for RGB: the luminance)."""
        return self.to_unit(self.frame(i))

    def sample_indices(self, k: int) -> list[int]:
        """Up to ``k`` frame indices spread over the clip (first and last included)."""
        return sorted({int(round(v)) for v in np.linspace(0, self.n_frames - 1, min(k, self.n_frames))})

    # -- panes and masks ----------------------------------------------------------------------
    def _detect_panes(self, kept: np.ndarray) -> list[Box]:
        frames = [np.asarray(self.frame(i)) for i in self.sample_indices(3)]
        lum = np.max(np.stack([self.to_unit(f) for f in frames]), axis=0)
        colour = None
        if self.is_color:
            colour = np.zeros(self.shape, bool)
            for f in frames:
                colour |= (f.max(-1).astype(np.int16) - f.min(-1).astype(np.int16)) > (3 if self.lossy else 0)
        return detect_panes(lum, colour, exclude=kept)

    @property
    def bmode_region(self) -> Box:
        """Half-open ``(x0, y0, x1, y1)`` around every enabled pane (``frame[y0:y1, x0:x1]``)."""
        return self.layout.bounding_box(self.shape)

    @bmode_region.setter
    def bmode_region(self, box: Box) -> None:
        b = clamp_box(box, self.shape)
        if b[2] - b[0] < 1 or b[3] - b[1] < 1:
            raise ValueError("the B-mode region %r is empty inside a %dx%d image"
                             % (tuple(box), self.shape[1], self.shape[0]))
        with self._lock:
            self.layout = user_layout(self.layout, b)
            self.masks.reset()
        self.region_source = "user"

    def set_pane_enabled(self, k: int, enabled: bool) -> None:
        """Switch pane ``k`` of :attr:`layout` on or off (an off pane is written back unchanged)."""
        with self._lock:
            self.layout.panes[int(k)].enabled = bool(enabled)
            self.masks.reset()

    def overlay_mask(self, i: int = 0) -> np.ndarray:
        """Bool (H, W): the burned-in marks found in frame ``i`` (see :mod:`.marks`)."""
        return self.masks.marks(i)

    def process_mask(self, i: int) -> np.ndarray:
        """Bool (H, W): pixels of frame ``i`` that may be despeckled.

        Inside an enabled pane and its field of view, outside every kept region, grey (R == G == B
        within ``chroma_tolerance`` for colour frames) and not a burned-in mark.
        """
        return self.masks.process_mask(i)


# ---------------------------------------------------------------------------------------------
def open_image(path: str | Path) -> Clip:
    """Open a DICOM file (any suffix), a PNG (or other raster still) or an NPY still/stack.

    NPY arrays: (H, W) or (F, H, W) uint8 / uint16 / float in [0, 1], or (H, W, 3) /
    (F, H, W, 3) uint8 RGB; memory-mapped.

    Raises:
        DicomError: missing, unreadable, truncated or non-image files, unsupported transfer
            syntaxes and missing decoders, with a message that names the file and says what is
            wrong; never another exception type.
    """
    p = Path(path)
    try:
        if not p.exists():
            raise DicomError("%s: no such file" % p)
        if p.is_dir():
            raise DicomError("%s is a folder; open a .dcm, .png or .npy file" % p)
        suffix = p.suffix.lower()
        if suffix == ".npy":
            return _open_npy(p)
        if suffix in RASTER_SUFFIXES:
            return _open_raster(p)
        with warnings.catch_warnings():  # pydicom warns about every odd value; errors are what count
            warnings.simplefilter("ignore")
            return _open_dicom(p)
    except DicomError:
        raise
    except (OSError, MemoryError) as exc:
        raise DicomError("%s cannot be read (%s)" % (p, reason(exc))) from exc
    except Exception as exc:  # last resort: no check anticipated this; still one clear line
        err = DicomError("%s cannot be read: %s (%s)" % (p, reason(exc), type(exc).__name__))
        err.unexpected = True
        raise err from exc


def _open_raster(p: Path) -> Clip:
    import cv2

    data = np.fromfile(p, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise DicomError("%s is not a readable image file (empty, truncated or not a %s)"
                         % (p, p.suffix.lstrip(".").upper()))
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
    hdr.check_size(img.shape[0], img.shape[1], str(p))
    display = DisplayMap.linear(0, 255 if img.dtype == np.uint8 else 65535, img.dtype)
    meta = {"format": "PNG" if p.suffix.lower() == ".png" else p.suffix.lstrip(".").upper()}
    return Clip(p, 1, img.shape[:2], img.ndim == 3, lambda i: img, display, meta=meta,
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
        display = DisplayMap.linear(0, 255 if a.dtype == np.uint8 else 65535, a.dtype)
    elif a.dtype.kind == "f":
        display = DisplayMap.linear(0, 1, np.float32)
    else:
        raise DicomError("%s: dtype %s is not supported (uint8, uint16 or float in [0, 1])" % (p, a.dtype))
    if stack.shape[0] < 1:
        raise DicomError("%s holds no frames" % p)
    hdr.check_size(stack.shape[1], stack.shape[2], str(p))

    def decode(i: int) -> np.ndarray:
        f = np.array(stack[i])
        if f.dtype.kind == "f":
            if not np.all(np.isfinite(f)):
                raise DicomError("%s: frame %d contains NaN or inf" % (p, i))
            if f.min() < 0 or f.max() > 1:
                raise DicomError("%s: float frames must lie in [0, 1] (frame %d spans %.3g..%.3g)"
                                 % (p, i, f.min(), f.max()))
            f = f.astype(np.float32)
        return f

    decode(0)
    return Clip(p, stack.shape[0], stack.shape[1:3], color, decode, display, meta={"format": "NPY"})


# ---------------------------------------------------------------------------------------------
def _frame_time_ms(ds) -> float | None:
    def num(v) -> float | None:
        try:
            f = float(v)
        except (TypeError, ValueError, OverflowError):
            return None
        return f if np.isfinite(f) and f > 0 else None

    def listed(v) -> list:
        return list(v) if isinstance(v, (list, tuple, MultiValue)) else [v]

    def from_vector() -> float | None:
        vec = ds.get("FrameTimeVector", None)
        if vec is None:
            return None
        values = [num(v) for v in listed(vec)[1:]]  # the first entry is 0 by definition
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    pointer = ds.get("FrameIncrementPointer", None)
    pointers = [] if pointer is None else [int(t) for t in listed(pointer)]
    if 0x00181065 in pointers and from_vector():
        return from_vector()
    if (0x00181063 in pointers or not pointers) and num(ds.get("FrameTime", None)):
        return num(ds.get("FrameTime", None))
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


def _pixel_spacing(ds) -> tuple[float, float] | None:
    try:
        ps = [float(v) for v in ds.get("PixelSpacing", None) or []]
    except (TypeError, ValueError):
        return None
    ok = len(ps) == 2 and all(np.isfinite(v) and 0 < v <= 100 for v in ps)
    return (ps[0], ps[1]) if ok else None


def _meta(ds, ts) -> dict[str, Any]:
    import pydicom

    meta: dict[str, Any] = {"format": "DICOM"}
    for key in _META_KEYS:
        if key in ds:
            meta[key] = str(ds.get(key))
    meta["TransferSyntaxUID"] = str(ts)
    meta["TransferSyntax"] = ts.name
    if "SOPClassUID" in ds:
        meta["SOPClassName"] = pydicom.uid.UID(str(ds.SOPClassUID)).name
    return meta


def _open_dicom(p: Path) -> Clip:
    size = p.stat().st_size
    ds, cut_off = hdr.read_dataset(p)
    if cut_off:
        raise DicomError("%s is truncated at %s: the file ends inside its %s" % (
            p, size_words(size), "image data" if "PixelData" not in ds else "header, after the image data"))
    if "PixelData" not in ds:
        raise hdr.missing_pixels_error(ds, p, size)
    header = hdr.image_header(ds, p)
    ts = header.transfer_syntax
    if ts.is_encapsulated:
        hdr.check_decoder(p, ts)
    hdr.check_pixel_data(ds, header, p, size)
    hdr.decode_all(ds, p)
    lut = palette_table(ds, p, header) if header.photometric == "PALETTE COLOR" else None
    # pixel_array cannot seek in a deflated stream: decode from the inflated dataset's pixel elements
    source: Any = pixel_dataset(ds) if ts.is_deflated else p
    del ds.PixelData  # the header is kept without its pixels
    decode = frame_decoder(source, p, header, lut)
    first = decode(0)  # catches truncated compressed data and decoder problems now, not mid-run
    if header.frames > 1:
        decode(header.frames - 1)
    display, note = display_map(ds, header, first.dtype)
    meta = _meta(ds, ts)
    meta["NumberOfFrames"] = str(header.frames)
    timed = header.frames > 1 or "FrameTime" in ds
    return Clip(p, header.frames, header.shape, header.is_color, decode, display,
                regions=parse_regions(ds, header.shape), spacing_mm=_pixel_spacing(ds),
                frame_time_ms=_frame_time_ms(ds) if timed else None, lossy=_is_lossy(ds, ts), meta=meta,
                dataset=ds, notes=[note] if note else [])
