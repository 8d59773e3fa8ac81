"""``usclean-gui FILE --screenshot OUT.png``: open, despeckle the first frames, save the panes, exit.

Used for the README's pictures and smoke tests.  Exit codes: 0 written, 2 bad input (file or
output path), 3 the engine failed or timed out.  Messages go to stderr.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

ENGINE_TIMEOUT_S = 600
PANE_WIDTH = 480  #: width of each pane in the screenshot, pixels


def screenshot(path: str, out: str, model: str | None = None, n_frames: int = 2,
               engine_loader: Callable[[str], Any] | None = None) -> int:
    """Render the three panes of ``path`` (first ``n_frames`` despeckled) to ``out``; returns an exit code."""
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from . import export
    from .main_window import MainWindow

    dest = Path(out)
    if not dest.parent.is_dir() or dest.is_dir() or (Path(path).exists() and dest.resolve() == Path(path).resolve()):
        print("usclean-gui: error: cannot write the screenshot to %s (missing folder, a folder, or the input "
              "file itself)" % out, file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication(["usclean-gui"])
    errors: list[str] = []

    def sink(level: str, text: str) -> None:
        print("usclean-gui: %s: %s" % (level, text.replace("\n", " ")), file=sys.stderr)
        if level == "error":
            errors.append(text)

    with tempfile.TemporaryDirectory() as tmp:
        win = MainWindow(engine_loader, settings=QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat))
        win.message_sink = sink
        try:
            if model:
                win.model_combo.setCurrentText(model)
            win.resize(1500, 560)
            win.show()
            if not win.open_file(path):
                return 2
            frames = list(range(min(max(1, n_frames), win.session.n_frames)))
            loop = QEventLoop()
            outcome: list[str] = []
            job = win.despeckle(frames)
            for sig, name in ((win.engine.finished, "done"), (win.engine.cancelled, "cancelled"),
                              (win.engine.failed, "failed")):
                sig.connect(lambda j, *_, name=name: (outcome.append(name), loop.quit()) if j == job else None)
            QTimer.singleShot(ENGINE_TIMEOUT_S * 1000, loop.quit)
            loop.exec()
            if outcome != ["done"]:
                if not outcome:
                    print("usclean-gui: error: despeckling timed out after %d s" % ENGINE_TIMEOUT_S, file=sys.stderr)
                return 3
            win.side_panel.hide()  # the picture is the three panes, sized to the image
            win.cine.set_frame(0)
            h, w = win.session.shape
            pane_w = PANE_WIDTH
            win.panes.graphics.setFixedSize(3 * pane_w + 20, int(pane_w * h / w) + 90)
            win.show_frame(0)
            app.processEvents()
            win.panes.views[0].autoRange(padding=0.0)
            app.processEvents()
            try:
                written = export.snapshot_png(win.panes.grab_qimage(), out, (path,))
            except (ValueError, OSError) as exc:
                print("usclean-gui: error: %s" % exc, file=sys.stderr)
                return 2
            print("usclean-gui: wrote %s" % written, file=sys.stderr)
            return 0
        finally:
            win.close()
            app.processEvents()
