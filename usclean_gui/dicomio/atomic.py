"""Atomic file writes: a temporary file in the destination folder, then ``os.replace``.

The one way ``usclean_gui`` writes files (DICOM series, PNG, NPY, MP4, CSV): a failed or
interrupted write leaves neither a partial output nor a temporary file, and the source of an
export is never a valid destination.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import DicomError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()  # read once at import: os.umask is process-wide, not thread-safe


def check_destination(out_path: str | os.PathLike, protect: tuple[str | os.PathLike | None, ...] = ()) -> Path:
    """``out_path`` as a Path, after checking it may be written.

    Raises:
        DicomError: when ``out_path`` is one of ``protect``, is a folder, or its folder is missing.
    """
    out = Path(out_path)
    for p in protect:
        if p and Path(p).exists() and out.exists() and out.resolve() == Path(p).resolve():
            raise DicomError("refusing to write %s: it is the source file (choose another output name)" % out)
    if out.is_dir():
        raise DicomError("%s is a folder, not a file name" % out)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise DicomError("cannot write %s: folder %s does not exist" % (out, parent))
    return out


@contextlib.contextmanager
def atomic_path(out_path: str | os.PathLike, protect: tuple[str | os.PathLike | None, ...] = (),
                suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path next to ``out_path``; on success it replaces ``out_path``.

    On any exception the temporary file is removed and ``out_path`` is left as it was.

    Args:
        out_path: the final destination.
        protect: paths that must never be written (the source file of an export).
        suffix: the temporary file's suffix (writers that pick a format by extension need the
            real one, e.g. ``".mp4"``).

    Raises:
        DicomError: when ``out_path`` is one of ``protect``, is a folder, or its folder is missing.
    """
    out = check_destination(out_path, protect)
    parent = out.parent if str(out.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix="." + out.name + ".", suffix=suffix, dir=parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp_path, out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise
