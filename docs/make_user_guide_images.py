"""The user guide's pictures, made by the app itself: a short scripted session in the real window.

    Xvfb :99 -screen 0 1366x768x24 &  DISPLAY=:99 python docs/make_user_guide_images.py [--out docs/images]

(offscreen works too: QT_QPA_PLATFORM=offscreen).  It opens the demo clip in a 1366×768 window with
the shipped default model and saves, in order: the first preview right after opening, three panes
with the ensemble, the loop playing while the work fills in, a zoom on the lesion kept through playback,
ROIs that follow the tissue with the CNR over the loop,
Help ▸ Keyboard shortcuts, a frame of the exported MP4, pydicom's cardiac example, and the simulator
tab.  It prints what it measured (dropped frames, the view range before and after playing).
The per-layout pictures are ``usclean-gui FILE --screenshot OUT --layout L`` (see USER_GUIDE.md).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo" / "demo_clip.dcm"
SIZE = (1366, 768)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "images"))
    args = ap.parse_args()
    out = Path(args.out)
    sys.path.insert(0, str(ROOT))
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from usclean_gui.app.main_window import MainWindow

    app = QApplication.instance() or QApplication(["usclean-gui"])
    with tempfile.TemporaryDirectory() as tmp:
        settings = QSettings(str(Path(tmp) / "guide.ini"), QSettings.Format.IniFormat)
        win = MainWindow(settings=settings)
        win.message_sink = lambda level, text: print("%s: %s" % (level, text))
        win.resize(*SIZE)
        win.show()
        session(app, win, out, Path(tmp))
        win.close()
    return 0


def wait(app, until, timeout_s: float = 600.0) -> None:
    t0 = time.monotonic()
    while not until():
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError("the session step did not finish in %.0f s" % timeout_s)
        app.processEvents()
        time.sleep(0.01)


def run_for(app, seconds: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        app.processEvents()
        time.sleep(0.005)


def save(app, widget, path: Path) -> None:
    app.processEvents()
    widget.grab().save(str(path))
    print("wrote", path)


def session(app, win, out: Path, tmp: Path) -> None:
    from usclean_gui.app.viewer_state import RoiShape

    assert win.open_file(DEMO)  # despeckling starts by itself
    wait(app, lambda: win.session.result_kind(0) is not None)
    save(app, win, out / "guide_01_open_preview.png")
    wait(app, lambda: len(win.session.means) >= 3)
    save(app, win, out / "guide_02_three_panes.png")
    before = [vb.viewRange() for vb in win.panes.views]
    win.cine.play()
    run_for(app, 3.6)  # not a whole number of loops: the picture shows a frame mid-loop
    save(app, win, out / "guide_03_playing.png")
    win.cine.pause()
    after = [vb.viewRange() for vb in win.panes.views]
    print("view range before / after playing: %s / %s; dropped %d frames, %d shown before despeckling"
          % (before[0], after[0], win.cine.dropped, win.undespeckled_shown))
    keeper = win.panes.keeper
    keeper.show((70.0, 60.0), 2.5)  # the lesion, 250 %: what the wheel does, set exactly
    win.cine.play()
    run_for(app, 2.0)
    win.cine.pause()
    save(app, win, out / "guide_04_zoom.png")
    keeper.fit()
    wait(app, lambda: len(win.session.means) == win.session.n_frames)
    win.cine.set_frame(0)
    win.roi.set_roi(RoiShape("target", "ellipse", params=(54, 42, 26, 26)))
    win.roi.set_roi(RoiShape("background", "rect", params=(110, 40, 40, 40)))
    win.roi.follow.setChecked(True)
    win.roi.measure_loop()
    wait(app, lambda: not win.roi.loop_running)
    cnrs = [r.despeckled.cnr for r in sorted(win.roi.rows, key=lambda r: r.frame)]
    print("tracked ROIs: despeckled CNR %.2f .. %.2f over the loop" % (min(cnrs), max(cnrs)))
    win.cine.set_frame(20)
    win.side_panel.verticalScrollBar().setValue(win.side_panel.verticalScrollBar().maximum())
    save(app, win, out / "guide_05_roi_tracked.png")
    win.side_panel.verticalScrollBar().setValue(0)
    dialog = win.show_shortcuts()
    save(app, dialog, out / "guide_06_shortcuts.png")
    dialog.close()
    mp4_frame(win, tmp, out / "guide_07_mp4_frame.png")
    from pydicom import examples

    assert win.open_file(examples.get_path("ybr_color"))
    win.cine.set_frame(5)
    wait(app, lambda: 5 in win.session.means)
    save(app, win, out / "guide_08_cardiac_three_panes.png")
    simulator(app, win, out / "guide_09_simulator.png")


def mp4_frame(win, tmp: Path, dest: Path) -> None:
    import cv2

    mp4 = win.export_mp4(str(tmp / "demo.mp4"))
    ok, frame = cv2.VideoCapture(str(mp4)).read()
    assert ok
    cv2.imwrite(str(dest), frame)
    print("wrote", dest, "(frame 1 of", mp4.name + ")")


def simulator(app, win, dest: Path) -> None:
    win.tabs.setCurrentIndex(1)
    wait(app, lambda: win._simulator is not None)
    tab = win.simulator
    tab.phantom.setCurrentText("lesions")
    tab.size.setValue(128)
    tab.domain_shift()
    wait(app, lambda: not tab.busy)
    tab.despeckle()
    wait(app, lambda: not tab.busy)
    save(app, win, dest)


if __name__ == "__main__":
    sys.exit(main())
