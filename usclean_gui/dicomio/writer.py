"""Writing DICOM, PNG and NPY files (always atomically, never over the source).

* :func:`write_cine` – a simulated cine loop as Ultrasound Multi-frame Image Storage.
* :func:`write_derived` – a despeckled (or uncertainty) clip as a derived series of its source.
* :func:`write_png`, :func:`write_npy` – plain image files for the CLI.
"""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

from .atomic import atomic_path
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
    with atomic_path(out_path, tuple(protect)) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
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
