"""Qt-free image I/O for USClean: DICOM / PNG / NPY reading with lazy frames, derived-series writing.

The public import path is :mod:`usclean_gui.dicom`, which re-exports this package's API.
"""
from .errors import DicomError
from .regions import box_iou, detect_bmode_region
from .writer import write_cine, write_npy, write_png

__all__ = ["DicomError", "box_iou", "detect_bmode_region", "write_cine", "write_npy", "write_png"]
