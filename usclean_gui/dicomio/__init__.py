"""Qt-free image I/O for USClean: DICOM / PNG / NPY reading with lazy frames, derived-series writing.

Modules, in pydicom 3's ``pixels`` style (pure transforms, format math in helpers):
``errors`` (DicomError), ``header`` (reading and checking a DICOM header), ``pixels`` (frame
decoding and the stored <-> displayed grey mapping), ``regions`` (panes and kept regions from
SequenceOfUltrasoundRegions or detected), ``marks`` (burned-in marks, fields of view,
inpainting), ``clip`` (open_image, Clip), ``writer`` (write_cine, write_derived, DerivedWriter,
write_png, write_npy), ``atomic`` (temp file + os.replace, used for every file USClean writes).
"""
from .atomic import atomic_path, check_destination
from .clip import Clip, open_image
from .errors import DicomError
from .regions import Layout, Pane, box_iou, detect_bmode_region, detect_panes
from .writer import (
    UNCERTAINTY_FULL_SCALE,
    DerivedWriter,
    compose_frame,
    uncertainty_frame,
    uncertainty_pixels,
    write_cine,
    write_derived,
    write_npy,
    write_png,
)

__all__ = [
    "Clip",
    "DerivedWriter",
    "DicomError",
    "Layout",
    "Pane",
    "UNCERTAINTY_FULL_SCALE",
    "atomic_path",
    "box_iou",
    "check_destination",
    "compose_frame",
    "detect_bmode_region",
    "detect_panes",
    "open_image",
    "uncertainty_frame",
    "uncertainty_pixels",
    "write_cine",
    "write_derived",
    "write_npy",
    "write_png",
]
