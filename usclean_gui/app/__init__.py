"""The USClean desktop app (PySide6 + pyqtgraph): ``usclean-gui [FILE] [--screenshot OUT.png]``.

Importing this package is cheap: Qt, pyqtgraph and torch are imported only by :func:`main`
and the modules it loads.  Qt-free modules: ``viewer_state`` (clip / ROI / measurement state),
``engine_work`` (the engine's work as generators and its planning), ``sim_worker`` (the simulator
tab's work), ``tracking`` (ROIs that follow tissue), ``uncertainty`` (the fixed scale),
``platform_check`` (missing X11 libraries).  Qt modules: ``workers`` (the one worker idiom),
``main_window``, ``panes`` with ``view_keeper``, ``cine``, ``roi``, ``engine_panel``,
``despeckle_runner``, ``simulator_tab``, ``shortcuts``, ``export`` with ``export_dirs``, and
``headless`` (the ``--screenshot`` mode).
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
                   help="open FILE, let the app despeckle it, save the window to OUT.png and exit (no display "
                        "needed)")
    p.add_argument("--model", default=None, help="model to use (default: multiprobe)")
    p.add_argument("--frames", type=int, default=2,
                   help="--screenshot: frames with their ensemble result before the picture (default 2)")
    p.add_argument("--frame", type=int, default=0, help="--screenshot: the frame on screen (default 0)")
    p.add_argument("--layout", choices=("three", "two", "one"), default="three",
                   help="--screenshot: pane layout (default three)")
    p.add_argument("--size", default="1366x768", help="--screenshot: window size WxH (default 1366x768)")
    p.add_argument("--panes-only", action="store_true", help="--screenshot: save the panes, not the whole window")
    return p


def _size(text: str) -> tuple[int, int] | None:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        return None
    return (w, h) if w > 0 and h > 0 else None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``usclean-gui`` console script."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from . import platform_check

    if args.screenshot:
        if platform := platform_check.headless_platform():
            os.environ["QT_QPA_PLATFORM"] = platform
        if missing := platform_check.CORE_LIBRARIES.intersection(platform_check.missing_x11_libraries()):
            print(platform_check.advice(sorted(missing)), file=sys.stderr)
            return 4
        if not args.file:
            print("usclean-gui: --screenshot needs a FILE to open", file=sys.stderr)
            return 2
        size = _size(args.size)
        if size is None:
            print("usclean-gui: --size must be WIDTHxHEIGHT, e.g. 1366x768", file=sys.stderr)
            return 2
        from .headless import screenshot

        return screenshot(args.file, args.screenshot, model=args.model, n_frames=args.frames, layout=args.layout,
                          frame=args.frame, size=size, panes_only=args.panes_only)

    if platform_check.uses_x11() and (missing := platform_check.missing_x11_libraries()):
        print(platform_check.advice(missing), file=sys.stderr)
        return 4
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
        win.set_model(args.model)
    win.show()
    if args.file:
        win.open_file(args.file)
    return int(app.exec())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
