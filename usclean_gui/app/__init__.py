"""The USClean desktop app (PySide6 + pyqtgraph): ``usclean-gui [FILE] [--screenshot OUT.png]``.

Importing this package is cheap: Qt, pyqtgraph and torch are imported only by :func:`main`
and the modules it loads.  Modules: ``viewer_state`` (Qt-free clip / ROI / measurement state),
``main_window``, ``panes``, ``cine``, ``roi``, ``engine_thread``, ``simulator_tab`` (with the
Qt-free ``sim_worker``), ``export`` and ``headless`` (the ``--screenshot`` mode).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Any

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="usclean-gui", description="USClean: view and despeckle ultrasound clips")
    p.add_argument("file", nargs="?", help="a DICOM clip, PNG or NPY to open")
    p.add_argument("--screenshot", metavar="OUT.png",
                   help="open FILE, despeckle its first frames with the default model, save the window's three "
                        "panes to OUT.png and exit (no display needed)")
    p.add_argument("--model", default=None, help="ensemble to use (default: multiprobe)")
    p.add_argument("--frames", type=int, default=2, help="frames despeckled in --screenshot mode (default 2)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``usclean-gui`` console script."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.screenshot:
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        if not args.file:
            print("usclean-gui: --screenshot needs a FILE to open", file=sys.stderr)
            return 2
        from .headless import screenshot

        return screenshot(args.file, args.screenshot, model=args.model, n_frames=args.frames)

    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("USClean")
    app.setOrganizationName("USClean")
    win = MainWindow()

    def report(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        """Last resort: an unexpected error becomes a message, the window stays up."""
        traceback.print_exception(kind, value, tb)
        win.show_message("Unexpected error (please report it): %s: %s" % (kind.__name__, value), "error")

    sys.excepthook = report
    if args.model:
        win.model_combo.setCurrentText(args.model)
    win.show()
    if args.file:
        win.open_file(args.file)
    return int(app.exec())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
