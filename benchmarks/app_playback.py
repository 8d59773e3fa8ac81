"""The app playing a cine live: what the despeckled pane held on every frame shown, and the frames dropped.

Opens the real main window (offscreen unless ``QT_QPA_PLATFORM`` says otherwise), opens a clip with the
default model, lets the engine despeckle it while the loop plays at the clip's own frame rate for
``--seconds``, and counts, for every frame drawn, what the despeckled pane held: the ensemble, the preview
or nothing yet (the original shown alone). Playback drops frames rather than slow down; those are counted
too (the status bar's numbers). Two clips by default: the demo clip and a 480 × 640 cardiac cine at 30 fps
(pydicom's bundled cine frame upsampled 2×, sliding a pixel per frame, as ``realtime.py --clip`` writes).

The engine keeps one core for the GUI (``engine.catalog.resolve_threads``), so on a 2-core machine the
network runs on one thread here, not on two as in ``realtime.py``.

    python benchmarks/app_playback.py [--seconds 15] [--clip FILE.dcm ...]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cardiac_cine(folder: Path, frames: int = 90) -> Path:
    """A 480 × 640 cine at 30 fps made from pydicom's bundled cardiac frame (``realtime.sliding_cine``)."""
    from realtime import real_frame, sliding_cine

    from usclean_gui.dicomio import write_cine

    path = folder / "cardiac_480x640.dcm"
    write_cine(sliding_cine(real_frame(), frames), (0.2, 0.2), 1000 / 30, path)
    return path


def play(win, app, path: Path, seconds: float) -> dict:
    """Open ``path``, wait for the model, play ``seconds`` of wall clock; what each drawn frame held."""
    held = {"ensemble": 0, "preview": 0, "nothing": 0}
    last_nothing = [None]  # seconds into playback of the last frame drawn without a result
    if not win.open_file(str(path)):
        raise SystemExit("cannot open %s: %s" % (path, win.messages[-1:] or ""))
    t = time.monotonic()
    while win.model_info is None and time.monotonic() - t < 60:  # the model loads in the worker
        app.processEvents()
        time.sleep(0.005)

    def drawn(i: int) -> None:
        kind = win.session.result_kind(i) if win.session is not None else None
        held[kind or "nothing"] += 1
        if kind is None:
            last_nothing[0] = time.monotonic() - t0

    win.cine.frame_changed.connect(drawn)
    win.cine.loop.setChecked(True)
    t0 = time.monotonic()
    win.cine.play()
    while time.monotonic() - t0 < seconds:
        app.processEvents()
        time.sleep(0.001)
    win.cine.pause()
    win.cine.frame_changed.disconnect(drawn)
    shown = sum(held.values())
    return dict(held, shown=shown, dropped=win.cine.dropped, fps=win.cine.fps.value(),
                n=win.cine.n_frames, due=int(seconds * win.cine.fps.value()),
                made_by=win.model_info.preview, status=win.dropped_label.text(), last_nothing_s=last_nothing[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--clip", nargs="*", help="clips to play (default: the demo clip and a 480x640 cardiac cine)")
    a = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from engine import backends
    from engine.catalog import resolve_threads
    from usclean_gui.app.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        clips = [Path(c) for c in a.clip] if a.clip else [ROOT / "resources" / "demo" / "demo_clip.dcm",
                                                           cardiac_cine(Path(tmp))]
        print("the app playing for %.0f s; the engine on %s thread(s), %s" % (
            a.seconds, resolve_threads("auto"), "OpenVINO bf16" if backends.openvino_bf16() else "fp32"))
        for path in clips:
            settings = QSettings(str(Path(tmp) / "gui.ini"), QSettings.Format.IniFormat)
            settings.setValue("auto_despeckle", True)
            win = MainWindow(settings=settings)
            win.message_sink = lambda level, text: None
            win.resize(1366, 768)
            win.show()
            r = play(win, app, path, a.seconds)
            print("  %s (%d frames at %.1f fps, preview: %s): %d frames due, %d drawn, %d dropped;"
                  " the pane held the ensemble on %d, the preview on %d, nothing yet on %d"
                  % (path.name, r["n"], r["fps"], r["made_by"], r["due"], r["shown"], r["dropped"],
                     r["ensemble"], r["preview"], r["nothing"]))
            if r["last_nothing_s"] is not None:
                print("    the last frame drawn without a result: %.1f s into playback (one pass of the clip: %.1f s)"
                      % (r["last_nothing_s"], r["n"] / r["fps"]))
            print("    status bar: %s" % r["status"])
            win.runner.stop()
            win.close()
            app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
