"""The one exception type of the image I/O package."""
from __future__ import annotations


class DicomError(ValueError):
    """A file that cannot be read or written as an image, with a message a user can act on.

    Subclasses :class:`ValueError`, so the CLI prints it and exits with code 2 and the GUI
    shows it in a message box (see docs/ARCHITECTURE.md).
    """
