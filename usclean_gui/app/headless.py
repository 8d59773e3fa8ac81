"""``usclean-gui FILE --screenshot OUT.png``: open, let the app despeckle, save the window, exit.

The window opens at ``size`` (default 1366×768, the smallest screen the app is made for) in the
chosen layout; the app despeckles as it does for a user (the frame on screen first) and the
picture is taken once frame ``frame`` and ``n_frames`` frames in all have their ensemble result.
``panes_only`` saves the panes instead of the whole window.  Used for the README's and the user
guide's pictures and for smoke tests.  Exit codes: 0 written, 2 bad input (file or output path),
3 the engine failed or timed out.  Messages go to stderr.
"""
from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENGINE_TIMEOUT_S = 600
DEFAULT_SIZE = (1366, 768)


def _bad_output(path: str, out: str) -> bool:
    dest = Path(out)
    return not dest.parent.is_dir() or dest.is_dir() or (Path(path).exists() and dest.resolve() == Path(path).resolve())


def _wait_for(win: Any, frame: int, n_frames: int) -> str:
    """Run the event loop until ``frame`` and ``n_frames`` frames have ensemble results ("done"),
    the engine stopped ("failed") or the time-out ("timeout")."""
    from PySide6.QtCore import QEventLoop, QTimer

    s = win.session
    need = min(max(1, n_frames), s.n_frames)

    def ready() -> bool:
        return frame in s.means and len(s.means) >= need

    if ready():
        return "done"
    loop = QEventLoop()
    outcome: list[str] = []

    def check(*_: Any) -> None:
        if ready():
            outcome.append("done")
            loop.quit()

    def ended(complete: bool) -> None:
        if not outcome:
            outcome.append("done" if ready() else "failed")
            loop.quit()

    win.frame_stored.connect(check)
    win.despeckle_ended.connect(ended)
    QTimer.singleShot(ENGINE_TIMEOUT_S * 1000, loop.quit)
    loop.exec()
    return outcome[0] if outcome else "timeout"


def screenshot(path: str, out: str, model: str | None = None, n_frames: int = 2,
               engine_loader: Callable[[str], Any] | None = None, layout: str = "three", frame: int = 0,
               size: tuple[int, int] = DEFAULT_SIZE, panes_only: bool = False) -> int:
    """Render ``path`` in the window to ``out`` (see the module docstring); returns an exit code."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from . import export
    from .main_window import MainWindow

    if _bad_output(path, out):
        print("usclean-gui: error: cannot write the screenshot to %s (missing folder, a folder, or the input "
              "file itself)" % out, file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication(["usclean-gui"])

    def sink(level: str, text: str) -> None:
        print("usclean-gui: %s: %s" % (level, text.replace("\n", " ")), file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
        win = MainWindow(engine_loader, settings=settings)
        win.message_sink = sink
        try:
            if model:
                win.set_model(model)
            win.panes.set_layout(layout)
            win.resize(*size)
            win.show()
            if not win.open_file(path):
                return 2
            win.cine.set_frame(min(max(0, frame), win.session.n_frames - 1))  # the work follows the frame
            outcome = _wait_for(win, win.cine.frame, n_frames)
            if outcome != "done":
                if outcome == "timeout":
                    print("usclean-gui: error: despeckling timed out after %d s" % ENGINE_TIMEOUT_S, file=sys.stderr)
                return 3
            win.runner.stop()
            win.show_frame(win.cine.frame)
            app.processEvents()
            image = win.panes.grab_qimage() if panes_only else win.grab().toImage()
            try:
                written = export.snapshot_png(image, out, (path,))
            except (ValueError, OSError) as exc:
                print("usclean-gui: error: %s" % exc, file=sys.stderr)
                return 2
            print("usclean-gui: wrote %s" % written, file=sys.stderr)
            return 0
        finally:
            win.close()
            app.processEvents()
