"""Qt-free image I/O for USClean: DICOM / PNG / NPY reading with lazy frames, derived-series writing.

The public import path is :mod:`usclean_gui.dicom`, which re-exports this package's API.
Modules: ``errors`` (DicomError), ``regions`` (B-mode region from DICOM or detected),
``clip`` (open_image, Clip), ``writer`` (write_cine, write_derived, write_png, write_npy),
``atomic`` (temp file + os.replace).
"""
from .clip import Clip, open_image
from .errors import DicomError
from .regions import box_iou, detect_bmode_region
from .writer import (
    UNCERTAINTY_FULL_SCALE,
    compose_frame,
    uncertainty_frame,
    write_cine,
    write_derived,
    write_npy,
    write_png,
)

__all__ = [
    "Clip",
    "DicomError",
    "UNCERTAINTY_FULL_SCALE",
    "box_iou",
    "compose_frame",
    "detect_bmode_region",
    "open_image",
    "uncertainty_frame",
    "write_cine",
    "write_derived",
    "write_npy",
    "write_png",
]
