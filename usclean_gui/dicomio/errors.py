"""The one exception type of the image I/O package, and the words its messages share."""
from __future__ import annotations


class DicomError(ValueError):
    """A file that cannot be read or written as an image, with a message a user can act on.

    Subclasses :class:`ValueError`, so the CLI prints it and exits with code 2 and the GUI
    shows it in a message box (see docs/ARCHITECTURE.md).  ``unexpected`` is True only for the
    last-resort wrapping of an exception no check anticipated (the fuzz test counts those).
    """

    unexpected: bool = False


def size_words(n_bytes: int) -> str:
    """A file size as a person says it: ``"812 bytes"``, ``"20 kB"``, ``"3.4 MB"``."""
    n = int(n_bytes)
    if n < 1000:
        return "%d bytes" % n
    if n < 1_000_000:
        return "%d kB" % round(n / 1000.0)
    return "%.1f MB" % (n / 1e6)


def reason(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(":") if text else type(exc).__name__
