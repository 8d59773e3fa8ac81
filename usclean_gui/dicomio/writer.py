"""Writing DICOM, PNG and NPY files (always atomically, never over the source).

* :func:`write_cine` – a simulated cine loop as Ultrasound Multi-frame Image Storage.
* :func:`write_derived` – a despeckled (or uncertainty) clip as a derived series of its source.
* :func:`write_png`, :func:`write_npy` – plain image files for the CLI.
"""
from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmwrite
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

from .atomic import atomic_path, check_destination
from .errors import DicomError

US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"
SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
FRAME_TIME_TAG = 0x00181063
FRAME_TIME_VECTOR_TAG = 0x00181065


def _now() -> tuple[str, str]:
    t = _dt.datetime.now()
    return t.strftime("%Y%m%d"), t.strftime("%H%M%S.%f")


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def save_dataset(ds: Dataset, out_path: str | os.PathLike, protect: Sequence[str | os.PathLike | None] = ()) -> Path:
    """Write ``ds`` as a DICOM Part 10 file atomically; return the path written."""
    with atomic_path(out_path, tuple(protect)) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd values copied from a source are written as they were
        dcmwrite(tmp, ds, enforce_file_format=True)  # not save_as: it refuses a big-endian source's header
    return Path(out_path)


def _apply_meta(ds: Dataset, meta: dict[str, Any]) -> None:
    for keyword, value in meta.items():
        if tag_for_keyword(keyword) is None:
            raise ValueError("write_cine: %r is not a DICOM keyword" % keyword)
        try:
            setattr(ds, keyword, value)
        except (TypeError, ValueError) as exc:
            raise ValueError("write_cine: bad value for %s (%s): %s" % (keyword, dictionary_VR(keyword), exc)) from exc


def _us_region(shape: tuple[int, int], spacing_mm: tuple[float, float] | None, box=None) -> Dataset:
    """A 2D-tissue SequenceOfUltrasoundRegions item; ``box`` half-open, default the whole image."""
    h, w = shape
    x0, y0, x1, y1 = box if box is not None else (0, 0, w, h)
    item = Dataset()
    item.RegionSpatialFormat = 1
    item.RegionDataType = 1
    item.RegionFlags = 0
    item.RegionLocationMinX0 = int(x0)
    item.RegionLocationMinY0 = int(y0)
    item.RegionLocationMaxX1 = int(x1) - 1
    item.RegionLocationMaxY1 = int(y1) - 1
    if spacing_mm is not None:
        item.PhysicalUnitsXDirection = 3
        item.PhysicalUnitsYDirection = 3
        item.PhysicalDeltaX = float(spacing_mm[1]) / 10.0
        item.PhysicalDeltaY = float(spacing_mm[0]) / 10.0
    else:
        item.PhysicalUnitsXDirection = 0
        item.PhysicalUnitsYDirection = 0
        item.PhysicalDeltaX = 0.0
        item.PhysicalDeltaY = 0.0
    return item


def write_cine(
    frames_uint8: np.ndarray,
    spacing_mm: tuple[float, float],
    frame_time_ms: float,
    out_path: str | os.PathLike,
    patient_name: str = "SIMULATED",
    description: str = "",
    **meta: Any,
) -> Path:
    """Write a grey cine loop as Ultrasound Multi-frame Image Storage (MONOCHROME2, 8 bit).

    Args:
        frames_uint8: (F, H, W) or (H, W) uint8, row 0 = shallowest depth.
        spacing_mm: ``(dz_mm, dx_mm)`` pixel spacing; written as PhysicalDeltaY/X in cm in a
            SequenceOfUltrasoundRegions item (2D tissue) that covers the whole image.
        frame_time_ms: time between frames; written as FrameTime with FrameIncrementPointer,
            and CineRate (frames per second, rounded).
        out_path: the .dcm file to write (atomically).
        patient_name: PatientName (a simulation is not a patient).
        description: SeriesDescription (also ImageComments).
        **meta: further DICOM attributes by keyword, e.g. ``Manufacturer="USClean simulator"``,
            ``TransducerData=["L11-5v"]``, ``StudyInstanceUID=...`` to add to a study.

    Returns:
        The path written.

    Raises:
        ValueError: bad frames, spacing, frame time or an unknown keyword in ``meta``.
    """
    frames = np.asarray(frames_uint8)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or frames.shape[0] < 1 or min(frames.shape[1:]) < 1:
        raise ValueError("write_cine needs (F, H, W) or (H, W) frames, got shape %s" % (frames.shape,))
    if frames.dtype != np.uint8:
        raise ValueError("write_cine needs uint8 frames, got %s" % frames.dtype)
    dz, dx = (float(v) for v in spacing_mm)
    if not (np.isfinite(dz) and np.isfinite(dx) and dz > 0 and dx > 0):
        raise ValueError("write_cine: spacing_mm must be two positive numbers, got %r" % (spacing_mm,))
    ft = float(frame_time_ms)
    if not (np.isfinite(ft) and ft > 0):
        raise ValueError("write_cine: frame_time_ms must be positive, got %r" % (frame_time_ms,))
    n, h, w = frames.shape
    date, time = _now()
    sop_uid = generate_uid()

    ds = Dataset()
    ds.file_meta = _file_meta(US_MULTIFRAME_STORAGE, sop_uid)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = US_MULTIFRAME_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
    ds.AccessionNumber = ""
    ds.Modality = "US"
    ds.Manufacturer = "USClean"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = description
    ds.PatientName = patient_name
    ds.PatientID = patient_name
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    if description:
        ds.ImageComments = description
    ds.SequenceOfUltrasoundRegions = DicomSequence([_us_region((h, w), (dz, dx))])
    ds.FrameTime = "%.6g" % ft
    ds.FrameIncrementPointer = FRAME_TIME_TAG
    ds.CineRate = max(1, int(round(1000.0 / ft)))
    ds.RecommendedDisplayFrameRate = ds.CineRate
    _apply_meta(ds, meta)
    ds.set_pixel_data(np.ascontiguousarray(frames), "MONOCHROME2", 8, generate_instance_uid=False)
    ds.NumberOfFrames = n  # set_pixel_data drops it for a single frame; the multi-frame IOD needs it
    return save_dataset(ds, out_path)


def write_png(path: str | os.PathLike, image: np.ndarray, protect: Sequence[str | os.PathLike | None] = ()) -> Path:
    """Write one image as PNG atomically.

    Args:
        path: destination .png.
        image: (H, W) uint8/uint16 grey, (H, W, 3) uint8/uint16 RGB, or float in [0, 1]
            (stored as 8 bit).
        protect: paths that must not be overwritten (the source).
    """
    import cv2

    a = np.asarray(image)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise ValueError("write_png: the image contains NaN or inf")
        a = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    if a.dtype not in (np.uint8, np.uint16):
        raise ValueError("write_png: needs uint8, uint16 or float [0, 1] pixels, got %s" % a.dtype)
    if a.ndim == 3 and a.shape[-1] == 3:
        a = a[..., ::-1]  # RGB -> OpenCV's BGR
    elif a.ndim != 2:
        raise ValueError("write_png: needs an (H, W) or (H, W, 3) image, got shape %s" % (a.shape,))
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(a))
    if not ok:
        raise DicomError("write_png: OpenCV could not encode the image")
    with atomic_path(path, tuple(protect)) as tmp:
        tmp.write_bytes(buf.tobytes())
    return Path(path)


def write_npy(path: str | os.PathLike, array: np.ndarray, protect: Sequence[str | os.PathLike | None] = ()) -> Path:
    """Write an array as .npy atomically (no pickle)."""
    a = np.asarray(array)
    if a.dtype == object:
        raise ValueError("write_npy: object arrays are not written")
    with atomic_path(path, tuple(protect)) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, a, allow_pickle=False)
    return Path(path)


# ---------------------------------------------------------------------------------------------
# Derived series
#: std (grey units, [0, 1] scale) stored as pixel value 255 in an uncertainty series/PNG.
UNCERTAINTY_FULL_SCALE = 0.25
PURPOSE_SOURCE_IMAGE = ("121322", "DCM", "Source image for image processing operation")
_MULTIFRAME_SC = {
    "MONO8": "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
    "MONO16": "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
    "RGB": "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
}
_DROP_KEYWORDS = (
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData", "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData", "PaletteColorLookupTableUID", "IconImageSequence",
    "DigitalSignaturesSequence", "MACParametersSequence", "StartTrim", "StopTrim",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "PixelData", "FloatPixelData",
    "DoubleFloatPixelData", "SmallestImagePixelValue", "LargestImagePixelValue", "DataSetTrailingPadding",
)


def _unit_stack(clip, frames_unit, n: int) -> list[np.ndarray]:
    """Validate processed frames: full-frame (H, W) or B-mode crop (h, w) float in [0, 1]."""
    frames = list(frames_unit) if not isinstance(frames_unit, np.ndarray) or frames_unit.ndim == 3 else [frames_unit]
    if len(frames) != n:
        raise ValueError("got %d processed frame(s) for %d frame index(es)" % (len(frames), n))
    x0, y0, x1, y1 = clip.bmode_region
    ok = (clip.shape, (y1 - y0, x1 - x0))
    out = []
    for k, f in enumerate(frames):
        a = np.asarray(f)
        if a.ndim != 2 or a.shape not in ok:
            raise ValueError("processed frame %d has shape %s; expected %s (full frame) or %s (B-mode crop)"
                             % (k, a.shape, ok[0], ok[1]))
        if a.dtype.kind != "f":
            raise ValueError("processed frames must be float in [0, 1], got %s" % a.dtype)
        if not np.all(np.isfinite(a)):
            raise ValueError("processed frame %d contains NaN or inf" % k)
        out.append(a)
    return out


def _full(clip, unit: np.ndarray) -> np.ndarray:
    if unit.shape == clip.shape:
        return unit
    full = np.zeros(clip.shape, dtype=np.float32)
    x0, y0, x1, y1 = clip.bmode_region
    full[y0:y1, x0:x1] = unit
    return full


def paste(frame: np.ndarray, mask: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """A copy of ``frame`` with ``stored`` values (one per ``mask`` pixel) in R, G and B."""
    out = np.array(frame)
    out[mask] = stored[:, None] if out.ndim == 3 else stored
    return out


def compose_frame(clip, index: int, unit: np.ndarray) -> np.ndarray:
    """Source frame ``index`` (as decoded) with the pixels of ``clip.process_mask(index)``
    replaced by the processed grey values ``unit`` (full frame or B-mode crop, [0, 1]).

    Colour frames get the grey value in R, G and B; every other pixel is the decoded source.
    """
    (u,) = _unit_stack(clip, [unit], 1)
    mask = clip.process_mask(index)
    return paste(clip.frame(index), mask, clip.from_unit(_full(clip, u)[mask]))


def uncertainty_pixels(std: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 (H, W): ``255 * std / UNCERTAINTY_FULL_SCALE`` on ``mask``, 0 elsewhere."""
    out = np.zeros(mask.shape, dtype=np.uint8)
    out[mask] = np.clip(np.rint(np.asarray(std)[mask] / UNCERTAINTY_FULL_SCALE * 255.0), 0, 255).astype(np.uint8)
    return out


def uncertainty_frame(clip, index: int, std: np.ndarray) -> np.ndarray:
    """uint8 (H, W) uncertainty image: ``255 * std / UNCERTAINTY_FULL_SCALE`` on the processed
    pixels, 0 elsewhere."""
    (u,) = _unit_stack(clip, [std], 1)
    return uncertainty_pixels(_full(clip, u), clip.process_mask(index))


def _to_integer(frame: np.ndarray) -> np.ndarray:
    """Float frames (an NPY source) are stored as 8 bit; integer frames as they are."""
    if frame.dtype.kind == "f":
        return np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)
    return frame


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _fresh_dataset(clip, multi: bool, rgb: bool, deep: bool) -> Dataset:
    """Header for a derived image of a PNG/NPY source: Secondary Capture, new study."""
    ds = Dataset()
    if not multi:
        ds.SOPClassUID = SC_IMAGE_STORAGE
    else:
        ds.SOPClassUID = _MULTIFRAME_SC["RGB" if rgb else ("MONO16" if deep else "MONO8")]
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.Modality = "US"
    ds.ConversionType = "WSD"
    ds.PatientName = "ANONYMOUS"
    ds.PatientID = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = generate_uid()
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber = 0
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    if clip.spacing_mm is not None:
        ds.PixelSpacing = [float(clip.spacing_mm[0]), float(clip.spacing_mm[1])]
    return ds


_SWAP_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _to_little_endian(ds: Dataset) -> None:
    """Byte-swap the binary values of a header read as big endian (pydicom re-encodes the rest
    when writing little endian, but not OW/OF/OL/OD/OV), nested sequences included; UN values,
    whose structure is unknown, are dropped."""
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value:
                _to_little_endian(item)
        elif elem.VR in _SWAP_SIZES and isinstance(elem.value, bytes):
            n = _SWAP_SIZES[elem.VR]
            usable = len(elem.value) // n * n
            elem.value = np.frombuffer(elem.value[:usable], dtype=">u%d" % n).astype("<u%d" % n).tobytes()
        elif elem.VR == "UN":
            del ds[elem.tag]


def _source_header(clip, indices: Sequence[int], uncertainty: bool) -> tuple[Dataset, str, bool, str, list]:
    """A copy of the source header for a derived series: (ds, SOP class, multi-frame class,
    old description, old image type)."""
    src = clip.dataset
    ds = copy.deepcopy(src)  # the header (read without pixel data)
    if src.original_encoding[1] is False:  # read as big endian
        _to_little_endian(ds)
    for kw in _DROP_KEYWORDS:
        if kw in ds:
            delattr(ds, kw)
    sop_class = str(src.get("SOPClassUID", SC_IMAGE_STORAGE))
    multi_class = "NumberOfFrames" in src or sop_class == US_MULTIFRAME_STORAGE
    if len(indices) > 1 and not multi_class:
        raise ValueError("write_derived: the source is a single-frame image, but %d frames were given" % len(indices))
    ds.SOPClassUID = sop_class
    try:
        ds.SeriesNumber = int(src.get("SeriesNumber", None) or 0) + (2000 if uncertainty else 1000)
    except (TypeError, ValueError):
        ds.SeriesNumber = 2000 if uncertainty else 1000
    ref = Dataset()
    ref.ReferencedSOPClassUID = sop_class
    ref.ReferencedSOPInstanceUID = str(src.get("SOPInstanceUID", ""))
    if multi_class:
        ref.ReferencedFrameNumber = [i + 1 for i in indices] if len(indices) > 1 else indices[0] + 1
    ref.PurposeOfReferenceCodeSequence = DicomSequence([_code(*PURPOSE_SOURCE_IMAGE)])
    ds.SourceImageSequence = DicomSequence([ref])
    if "FrameTimeVector" in src and multi_class:
        raw = src.FrameTimeVector
        vec = [float(v) for v in (raw if hasattr(raw, "__iter__") and not isinstance(raw, str) else [raw])]
        if len(vec) == clip.n_frames:
            ds.FrameTimeVector = [0.0] + [vec[i] for i in indices[1:]]
    return ds, sop_class, multi_class, str(src.get("SeriesDescription", "") or ""), list(src.get("ImageType", []) or [])


def derived_header(clip, indices: Sequence[int], description: str, uncertainty: bool = False,
                   series_description: str | None = None) -> tuple[Dataset, bool]:
    """The header of a derived series of ``clip`` (no pixel data yet) and whether it is multi-frame.

    The source's SOP class (Secondary Capture for a PNG/NPY source), same study, new Series
    and SOP Instance UIDs, ImageType DERIVED\\SECONDARY, DerivationDescription, a
    SourceImageSequence, LossyImageCompression, the source's regions and timing.
    """
    date, time = _now()
    sop_uid = generate_uid()
    if clip.dataset is not None:
        ds, sop_class, multi_class, old_desc, old_type = _source_header(clip, indices, uncertainty)
    else:
        deep = not uncertainty and np.dtype(clip.frame_dtype).itemsize > 1
        ds = _fresh_dataset(clip, len(indices) > 1, clip.is_color and not uncertainty, deep)
        sop_class, multi_class, old_desc, old_type = str(ds.SOPClassUID), len(indices) > 1, clip.path.stem, []
        ds.SeriesNumber = 2 if uncertainty else 1
        description = "%s; source file %s" % (description, clip.path.name)
        if clip.frame_time_ms and multi_class:
            ds.FrameTime = "%.6g" % clip.frame_time_ms
            ds.FrameIncrementPointer = FRAME_TIME_TAG
    ds.file_meta = _file_meta(sop_class, sop_uid)
    ds.SOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.InstanceNumber = 1
    ds.SeriesDate = ds.ContentDate = date
    ds.SeriesTime = ds.ContentTime = time
    if uncertainty:
        ds.ImageType = ["DERIVED", "SECONDARY", "UNCERTAINTY"]
        description = "%s; pixel value = 255 x std / %g (grey scale [0, 1])" % (description, UNCERTAINTY_FULL_SCALE)
        for kw in ("WindowCenter", "WindowWidth", "VOILUTSequence", "WindowCenterWidthExplanation", "VOILUTFunction"):
            if kw in ds:
                delattr(ds, kw)
    else:
        ds.ImageType = ["DERIVED", "SECONDARY"] + [str(v) for v in old_type[2:]]
    ds.DerivationDescription = description[:1024]
    suffix = " uncertainty" if uncertainty else " despeckled"
    ds.SeriesDescription = (series_description if series_description is not None else (old_desc + suffix).strip())[:64]
    ds.LossyImageCompression = "01" if clip.lossy else "00"
    if not clip.lossy:
        for kw in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if kw in ds:
                delattr(ds, kw)
    return ds, multi_class


def _photometric(clip, uncertainty: bool, rgb: bool, dtype: np.dtype) -> tuple[str, int]:
    if uncertainty:
        return "MONOCHROME2", 8
    if rgb:
        return "RGB", 8
    src = clip.dataset
    src_pi = str(src.get("PhotometricInterpretation", "")).strip() if src is not None else ""
    photometric = "MONOCHROME1" if src_pi == "MONOCHROME1" else "MONOCHROME2"
    if dtype.itemsize == 1:
        return photometric, 8
    return photometric, int(src.get("BitsStored", 16)) if src is not None else 16


class DerivedWriter:
    """Write a derived series frame by frame: the pixels stream into a temporary file beside the
    output, then header and pixels are written in one pass with :func:`pydicom.dcmwrite` (the
    pixel data as a buffered element) to a second temporary file that replaces ``out_path``.

    Memory stays at one frame whatever the clip length.  Use as a context manager::

        with DerivedWriter(clip, out, "model ...", indices) as w:
            for frame in frames:
                w.add(frame)      # (H, W) or (H, W, 3), the dtype of clip.frame (uint8 if uncertainty)
        # written here; on an exception nothing is left behind and out_path is untouched
    """

    def __init__(self, clip, out_path: str | os.PathLike, description: str, frame_indices: Sequence[int],
                 uncertainty: bool = False, series_description: str | None = None) -> None:
        self.clip, self.out = clip, Path(out_path)
        self.indices = [int(i) for i in frame_indices]
        if not self.indices:
            raise ValueError("write_derived: no frames to write")
        if any(not 0 <= i < clip.n_frames for i in self.indices):
            raise ValueError("write_derived: frame indices must lie in 0..%d" % (clip.n_frames - 1))
        check_destination(self.out, (clip.path,))
        self.uncertainty = uncertainty
        self.ds, self.multi = derived_header(clip, self.indices, description, uncertainty, series_description)
        self._first: np.ndarray | None = None
        self._count = 0
        fd, raw = tempfile.mkstemp(prefix="." + self.out.name + ".", suffix=".pixels.part", dir=self.out.parent)
        self._raw_path = Path(raw)
        self._raw = os.fdopen(fd, "wb")

    def __enter__(self) -> DerivedWriter:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def add(self, pixels: np.ndarray) -> None:
        """Append the next frame (its stored pixels)."""
        a = np.ascontiguousarray(_to_integer(np.asarray(pixels)))
        if self._first is None:
            if a.dtype not in (np.uint8, np.uint16, np.int8, np.int16) or a.shape[:2] != self.clip.shape:
                raise ValueError("write_derived: frame of shape %s and dtype %s; expected %s uint8/16"
                                 % (a.shape, a.dtype, self.clip.shape))
            self._first = a
        elif a.shape != self._first.shape or a.dtype != self._first.dtype:
            raise ValueError("write_derived: frame %d has shape %s %s, the first %s %s"
                             % (self._count, a.shape, a.dtype, self._first.shape, self._first.dtype))
        if self._count >= len(self.indices):
            raise ValueError("write_derived: more frames than the %d frame indices" % len(self.indices))
        self._raw.write(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
        self._count += 1

    def close(self) -> Path:
        """Write the series atomically; return its path."""
        try:
            if self._count != len(self.indices):
                raise ValueError("write_derived: %d of %d frames were given" % (self._count, len(self.indices)))
            if self._raw.tell() % 2:
                self._raw.write(b"\x00")  # pixel data values have even length
            self._raw.close()
            first = self._first
            photometric, bits = _photometric(self.clip, self.uncertainty, first.ndim == 3, first.dtype)
            self.ds.set_pixel_data(first, photometric, bits, generate_instance_uid=False)
            if self.multi:
                self.ds.NumberOfFrames = self._count
            with open(self._raw_path, "rb") as raw:
                self.ds.PixelData = raw
                save_dataset(self.ds, self.out, protect=(self.clip.path,))
            return self.out
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the partial output (nothing is written to ``out_path``)."""
        if not self._raw.closed:
            self._raw.close()
        with contextlib.suppress(OSError):
            self._raw_path.unlink()


def write_derived(
    clip,
    frames_unit,
    out_path: str | os.PathLike,
    description: str,
    frame_indices: Sequence[int] | None = None,
    uncertainty: bool = False,
    series_description: str | None = None,
) -> Path:
    """Write processed frames of ``clip`` as a derived DICOM series (atomically).

    The output has the source's SOP class (a PNG/NPY source gives Secondary Capture), the same
    StudyInstanceUID, new Series/SOP Instance UIDs, ImageType DERIVED\\SECONDARY,
    DerivationDescription ``description``, a SourceImageSequence (purpose 121322 DCM),
    LossyImageCompression "01" when the source was lossy, and the source's ultrasound regions
    and frame timing.  It is Explicit VR Little Endian in the decoded colour model (RGB stays
    RGB, YBR and PALETTE COLOR become RGB, MONOCHROME1/2 stay; a big-endian or Deflated source
    is converted).  Frames are composed and written one at a time (:class:`DerivedWriter`).

    Only pixels where ``clip.process_mask(i)`` is True take the processed grey value (in R, G
    and B for colour); all others are byte-identical to the decoded source.  With
    ``uncertainty=True`` the frames are a per-pixel std and the series is MONOCHROME2 8-bit,
    pixel ``255 * std / UNCERTAINTY_FULL_SCALE`` on processed pixels and 0 elsewhere.

    Args:
        clip: the opened source (:func:`usclean_gui.dicomio.open_image`).
        frames_unit: (F, H, W) or (F, h, w) (B-mode crop) float in [0, 1], or a list of 2D arrays.
        out_path: destination file; must not be the source.
        description: DerivationDescription (model, sampler, steps, members, strength).
        frame_indices: the source frame of each processed frame (default 0..F-1).
        uncertainty: write an uncertainty map series instead of a despeckled one.
        series_description: SeriesDescription (default: the source's + " despeckled"/" uncertainty").

    Returns:
        The path written.

    Raises:
        ValueError: shapes, dtypes or indices that do not match the clip; DicomError for
            an output that would overwrite the source.
    """
    n_in = len(frames_unit)
    indices = list(range(n_in)) if frame_indices is None else [int(i) for i in frame_indices]
    if not indices:
        raise ValueError("write_derived: no frames to write")
    if any(not 0 <= i < clip.n_frames for i in indices):
        raise ValueError("write_derived: frame indices must lie in 0..%d" % (clip.n_frames - 1))
    units = _unit_stack(clip, frames_unit, len(indices))
    with DerivedWriter(clip, out_path, description, indices, uncertainty, series_description) as writer:
        for i, u in zip(indices, units):
            writer.add(uncertainty_frame(clip, i, u) if uncertainty else compose_frame(clip, i, u))
    return Path(out_path)
