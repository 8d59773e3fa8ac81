"""GUI: where save dialogs open (documents, then the last folder per kind, never the install), and
the message the app gives when the X11 libraries Qt needs are missing."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.timeout(120)

from PySide6.QtWidgets import QFileDialog  # noqa: E402

from engine.testing import tiny_ensemble  # noqa: E402
from usclean_gui.app import export_dirs, platform_check  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "resources" / "demo" / "demo_clip.dcm"


@pytest.fixture
def documents(tmp_path, monkeypatch):
    docs = tmp_path / "Documents"
    docs.mkdir()
    monkeypatch.setattr(export_dirs, "documents_dir", lambda: docs)
    return docs


@pytest.fixture
def dialogs(monkeypatch):
    """Every save dialog the window opens: (start path); the user picks what ``answer`` holds."""
    calls: list[str] = []
    answer: list[str] = [""]

    def fake(parent, title, start, filt):
        calls.append(start)
        return answer[0], filt

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake))
    return calls, answer


def test_save_dialogs_open_in_documents_and_remember_each_kind(make_window, qtbot, documents, dialogs, tmp_path):
    calls, answer = dialogs
    win = make_window(model="tiny", engine_loader=lambda name: tiny_ensemble(seed=0))
    assert win.open_file(DEMO)  # the demo clip lives in the install: never a default destination
    win._ask_export_png()
    assert Path(calls[-1]) == documents / "demo_clip_panes.png"
    elsewhere = tmp_path / "exports"
    elsewhere.mkdir()
    answer[0] = str(elsewhere / "my.png")
    win._ask_export_png()
    assert (elsewhere / "my.png").exists()
    answer[0] = ""
    win._ask_export_png()
    assert Path(calls[-1]).parent == elsewhere  # remembered for PNGs…
    win._ask_export_csv()
    assert Path(calls[-1]).parent == documents  # …not for the other kinds
    win._ask_export_mp4()
    win._ask_export_dicom()
    assert all(Path(c).parent == documents for c in calls[-2:])


def test_the_install_and_read_only_folders_are_never_suggested(make_window, documents, dialogs, tmp_path):
    calls, _ = dialogs
    win = make_window()
    win.settings.setValue("export_dir/png", str(export_dirs.INSTALL_ROOT / "resources" / "demo"))
    win._ask_export_png()
    assert Path(calls[-1]).parent == documents
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        win.settings.setValue("export_dir/png", str(locked))
        import os

        if os.access(locked, os.W_OK):  # root writes anywhere: the check is the access() call itself
            assert export_dirs.usable(locked)
        else:
            win._ask_export_png()
            assert Path(calls[-1]).parent == documents
    finally:
        locked.chmod(0o755)
    assert not export_dirs.usable(export_dirs.INSTALL_ROOT) and export_dirs.usable(tmp_path)


def test_missing_x11_libraries_are_named_with_their_packages():
    missing = platform_check.missing_x11_libraries(lambda lib: lib not in ("libxcb-cursor.so.0", "libxcb-icccm.so.4"))
    assert missing == ["libxcb-cursor.so.0", "libxcb-icccm.so.4"]
    text = platform_check.advice(missing)
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4" in text and "libxcb-cursor.so.0" in text
    assert platform_check.uses_x11({"DISPLAY": ":0"}, "linux")
    assert not platform_check.uses_x11({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert not platform_check.uses_x11({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert not platform_check.uses_x11({"DISPLAY": ":0"}, "darwin")
    assert set(platform_check.X11_LIBRARIES.values()) >= {"libxcb-cursor0", "libxkbcommon-x11-0", "libegl1"}


def test_a_screenshot_renders_offscreen_where_the_window_could_not_open():
    def lacking(*libs):
        return lambda lib: lib not in libs

    everything = lacking()
    assert platform_check.headless_platform({}, "linux", everything) == "offscreen"  # no display
    assert platform_check.headless_platform({"DISPLAY": ":0"}, "linux", everything) is None
    # a display, but the xcb plugin would abort for a missing library: a picture needs no window
    assert platform_check.headless_platform({"DISPLAY": ":0"}, "linux", lacking("libxcb-cursor.so.0")) == "offscreen"
    assert platform_check.headless_platform({"WAYLAND_DISPLAY": "w-0"}, "linux", lacking("libxcb-cursor.so.0")) is None
    assert platform_check.headless_platform({"QT_QPA_PLATFORM": "minimal"}, "linux", everything) is None


def test_the_app_says_which_packages_are_missing(monkeypatch, capsys):
    from usclean_gui import app

    monkeypatch.setattr(platform_check, "uses_x11", lambda: True)
    monkeypatch.setattr(platform_check, "missing_x11_libraries", lambda: ["libxcb-cursor.so.0"])
    assert app.main([]) == 4
    err = capsys.readouterr().err
    assert "libxcb-cursor0" in err and "cannot open" in err
