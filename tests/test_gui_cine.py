"""GUI: the cine controller (wall-clock playback that drops frames, fps, loop, keyboard)."""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.timeout(120)

from PySide6.QtCore import Qt  # noqa: E402


@pytest.fixture
def window(make_window, qtbot):
    win = make_window()
    qtbot.waitExposed(win)
    return win


def _open(win, dicom_factory, n=10, **kw):
    frames = dicom_factory.frames(n_frames=n, colour=False, text=False)
    assert win.open_file(dicom_factory.dicom("cine.dcm", frames, **kw))
    return frames


def test_fps_from_the_file_and_time_label(window, dicom_factory):
    _open(window, dicom_factory, frame_time_ms=50.0)
    assert window.cine.fps.value() == pytest.approx(20.0)
    window.cine.set_frame(4)
    assert "frame 5 / 10" in window.cine.label.text() and "200 ms" in window.cine.label.text()
    window.cine.fps.setValue(10.0)  # editable
    assert window.cine.frame_time_ms == pytest.approx(100.0) and "400 ms" in window.cine.label.text()


@pytest.mark.parametrize("timing", ["vector", "cine_rate"])
def test_fps_from_vector_and_cine_rate(window, dicom_factory, timing):
    _open(window, dicom_factory, n=4, timing=timing, frame_time_ms=25.0)
    assert window.cine.fps.value() == pytest.approx(40.0, rel=0.02)


def test_playback_follows_the_wall_clock_and_drops_frames(window, qtbot, dicom_factory):
    _open(window, dicom_factory, n=40, frame_time_ms=10.0)  # 100 fps: faster than rendering keeps up with
    seen = []
    window.cine.frame_changed.connect(seen.append)
    slow = lambda i: time.sleep(0.03)  # noqa: E731 - a 30 ms render per frame
    window.cine.frame_changed.connect(slow)
    window.cine.loop.setChecked(False)
    t0 = time.monotonic()
    window.cine.play()
    qtbot.waitUntil(lambda: not window.cine.playing, timeout=5000)
    elapsed = time.monotonic() - t0
    assert window.cine.frame == 39
    assert elapsed < 0.8, "a 0.4 s clip took %.2f s: playback slowed down instead of dropping frames" % elapsed
    assert window.cine.dropped > 0 and len(seen) < 40
    assert seen == sorted(seen)


def test_loop_wraps_around(window, qtbot, dicom_factory):
    _open(window, dicom_factory, n=5, frame_time_ms=20.0)
    seen = []
    window.cine.frame_changed.connect(seen.append)
    window.cine.play()
    qtbot.waitUntil(lambda: len(seen) > 8, timeout=3000)
    window.cine.pause()
    assert not window.cine.playing
    assert any(b < a for a, b in zip(seen, seen[1:])), "playback must wrap from the last frame to the first"


def test_keyboard_shortcuts_and_buttons(window, qtbot, dicom_factory):
    frames = _open(window, dicom_factory, n=6)
    qtbot.keyClick(window, Qt.Key.Key_Right)
    qtbot.keyClick(window, Qt.Key.Key_Right)
    assert window.cine.frame == 2
    assert np.array_equal(window.panes.image(0), frames[2])  # 8-bit grey shown as stored
    assert not np.array_equal(window.panes.image(0), frames[0])
    qtbot.keyClick(window, Qt.Key.Key_Left)
    assert window.cine.frame == 1
    qtbot.keyClick(window, Qt.Key.Key_End)
    assert window.cine.frame == 5
    qtbot.keyClick(window, Qt.Key.Key_Home)
    assert window.cine.frame == 0
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert window.cine.playing
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert not window.cine.playing
    window.cine.next_button.click()
    assert window.cine.frame == 1
    window.cine.slider.setValue(4)
    assert window.cine.frame == 4
