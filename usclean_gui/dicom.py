"""Qt-free DICOM / PNG / NPY image I/O (the module the CLI and the GUI share).

Implementation lives in the :mod:`usclean_gui.dicomio` package; this module is its stable
import path (see docs/ARCHITECTURE.md).
"""
from usclean_gui.dicomio import *  # noqa: F401,F403
from usclean_gui.dicomio import __all__  # noqa: F401
