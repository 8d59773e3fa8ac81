"""Where save dialogs open: the user's documents folder, then the last folder used for that kind of
export (PNG, MP4, DICOM, CSV, each remembered on its own), never the install or a read-only folder."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

INSTALL_ROOT = Path(__file__).resolve().parents[2]  #: the source tree / installed package's root
KINDS = ("png", "mp4", "dicom", "csv")


def documents_dir() -> Path:
    """The user's documents folder (home when the platform names none or it does not exist)."""
    loc = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    p = Path(loc) if loc else Path.home()
    return p if p.is_dir() else Path.home()


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def usable(folder: Path) -> bool:
    """A folder the app may suggest: exists, is writable, and lies outside the install."""
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        return False
    return not any(_inside(folder, root) for root in (INSTALL_ROOT, Path(sys.prefix)))


def start_dir(settings: QSettings, kind: str) -> Path:
    """The folder a save dialog for ``kind`` opens in."""
    saved = settings.value("export_dir/%s" % kind, "")
    if saved and usable(Path(str(saved))):
        return Path(str(saved))
    return documents_dir()


def remember(settings: QSettings, kind: str, path: str | os.PathLike) -> None:
    """Remember the folder of a file just written, for the next export of that kind."""
    folder = Path(path).resolve().parent
    if usable(folder):
        settings.setValue("export_dir/%s" % kind, str(folder))
