"""GUI: opening every DICOM variant, stills and bad files in the real window (pytest-qt, offscreen)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import examples
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, RLELossless

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.timeout(120)

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402

from usclean_gui.app.main_window import MainWindow  # noqa: E402
from usclean_gui.dicomio import box_iou  # noqa: E402


def _assert_shown(win: MainWindow, n_frames: int) -> None:
    assert win.session is not None and win.session.n_frames == n_frames
    img = win.panes.image(0)
    assert img is not None and img.shape[:2] == win.session.shape
    assert int(np.ptp(img)) > 12, "the original pane must show a non-constant image"


VARIANTS = [
    # id, colour frames, dicom() keyword arguments
    ("mono2-8bit-multiframe", False, {}),
    ("mono1-16bit", False, {"photometric": "MONOCHROME1", "bits": 16}),
    ("mono2-16bit", False, {"bits": 16}),
    ("rgb", True, {}),
    ("ybr-full", True, {"photometric": "YBR_FULL"}),
    ("ybr-full-422-jpeg-baseline", True, {"photometric": "YBR_FULL_422", "transfer_syntax": JPEGBaseline8Bit}),
    ("palette-8bit-lut", True, {"photometric": "PALETTE COLOR", "palette_bits": 8}),
    ("palette-16bit-lut", True, {"photometric": "PALETTE COLOR", "palette_bits": 16}),
    ("rle-rgb", True, {"transfer_syntax": RLELossless}),
    ("rle-mono", False, {"transfer_syntax": RLELossless}),
    ("j2k-lossless-mono", False, {"transfer_syntax": JPEG2000Lossless}),
    ("j2k-rgb", True, {"transfer_syntax": JPEG2000Lossless}),
    ("jpeg-ls-mono", False, {"transfer_syntax": JPEGLSLossless}),
    ("frame-time-vector", False, {"timing": "vector"}),
    ("cine-rate-no-regions", True, {"timing": "cine_rate", "region": None}),
]


@pytest.mark.parametrize("colour,kw", [v[1:] for v in VARIANTS], ids=[v[0] for v in VARIANTS])
def test_open_dicom_variant_and_play(window, qtbot, dicom_factory, file_snapshot, colour, kw):
    ts = kw.get("transfer_syntax")
    if ts is not None and not dicom_factory.encoder_available(ts):
        pytest.skip("no pydicom encoder for %s installed here (decoding is covered by pylibjpeg)" % ts.name)
    n = 3
    frames = dicom_factory.frames(n_frames=n, colour=colour)
    path = dicom_factory.dicom("v.dcm", frames, **kw)
    snap = file_snapshot(path)
    assert window.open_file(path), window.messages
    _assert_shown(window, n)
    assert window.session.clip.is_color == colour
    # the cine controller steps and plays through the frames
    window.cine.step(1)
    assert window.cine.frame == 1
    first = window.panes.image(0).copy()
    window.cine.step(1)
    assert not np.array_equal(first, window.panes.image(0)), "stepping must change the picture (speckle differs)"
    window.cine.play()
    qtbot.waitUntil(lambda: window.cine.frame == 0 or window.cine.frame == 1, timeout=2000)
    window.cine.pause()
    assert snap.unchanged()
    assert not [m for m in window.messages if m[0] == "error"]


def test_region_and_spacing_from_dicom(window, dicom_factory):
    path = dicom_factory.dicom("r.dcm", dicom_factory.frames(n_frames=2), spacing_mm=(0.25, 0.3))
    assert window.open_file(path)
    assert window.session.box == dicom_factory.box
    assert window.session.spacing_mm == pytest.approx((0.25, 0.3))
    assert "mm/px" in window.file_label.text()


def test_region_detected_when_regions_removed(window, dicom_factory):
    frames = dicom_factory.frames(n_frames=4, colour=True)
    path = dicom_factory.dicom("noregion.dcm", frames, region=None)
    assert window.open_file(path)
    assert window.session.clip.region_source == "detected"
    assert box_iou(window.session.box, dicom_factory.box) >= 0.9
    # the user can move the region: results are cleared and the clip follows
    window.set_region((30, 22, 140, 110))
    assert window.session.box == (30, 22, 140, 110)
    assert window.session.clip.region_source == "user"


@pytest.mark.parametrize("name", ["ybr_color", "palette_color"])
def test_open_pydicom_example(window, name):
    path = examples.get_path(name)
    before = Path(path).read_bytes()
    assert window.open_file(path), window.messages
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    _assert_shown(window, int(ds.get("NumberOfFrames", 1) or 1))
    assert window.session.spacing_mm is not None  # both carry SequenceOfUltrasoundRegions
    if window.session.n_frames > 1:
        window.cine.last()
        assert window.cine.frame == window.session.n_frames - 1
    assert Path(path).read_bytes() == before


def test_open_png_and_npy(window, dicom_factory):
    frames = dicom_factory.frames(n_frames=3, colour=False)
    assert window.open_file(dicom_factory.png("still.png", frames[0]))
    _assert_shown(window, 1)
    assert not window.cine.play_button.isEnabled()  # a still has nothing to play
    assert window.open_file(dicom_factory.npy("stack.npy", frames))
    _assert_shown(window, 3)


BAD = ["truncated", "truncated_jpeg", "sr", "rt", "no_pixels", "mpeg4", "not_dicom", "empty_png", "corrupt_png",
       "pickle_npy", "rank_npy", "dtype_npy", "nan_npy"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_file_shows_message_and_keeps_running(window, dicom_factory, kind):
    good = dicom_factory.dicom("good.dcm", dicom_factory.frames(n_frames=2))
    assert window.open_file(good)
    bad = dicom_factory.bad(kind)
    listing = sorted(p.name for p in dicom_factory.folder.iterdir())
    data = bad.read_bytes()
    shown: list[tuple[str, str]] = []
    window.message_sink = lambda level, text: shown.append((level, text))
    assert not window.open_file(bad)
    assert len(shown) == 1 and shown[0][0] == "error"
    assert bad.name in shown[0][1] and len(shown[0][1]) > len(bad.name) + 20, shown  # says why
    assert "Traceback" not in shown[0][1]
    # the app is alive and still shows the previous clip; nothing was written
    assert window.session is not None and Path(window.session.path) == good
    window.cine.step(1)
    assert window.cine.frame == 1
    assert sorted(p.name for p in dicom_factory.folder.iterdir()) == listing
    assert bad.read_bytes() == data


def test_missing_file_and_folder(window, tmp_path):
    shown = []
    window.message_sink = lambda level, text: shown.append(text)
    assert not window.open_file(tmp_path / "nope.dcm")
    assert not window.open_file(tmp_path)
    assert len(shown) == 2 and "does not exist" in shown[0] and "folder" in shown[1]


def test_recent_files_and_drop(window, dicom_factory):
    a = dicom_factory.dicom("a.dcm", dicom_factory.frames(n_frames=2))
    b = dicom_factory.npy("b.npy", dicom_factory.frames(n_frames=2, colour=False))
    assert window.open_file(a) and window.open_file(b)
    assert window.recent_files()[:2] == [str(b.resolve()), str(a.resolve())]
    actions = window.recent_menu.actions()
    assert [x.text() for x in actions[:2]] == window.recent_files()[:2]
    actions[1].trigger()
    assert Path(window.session.path).resolve() == a.resolve()
    # drag and drop a file onto the window
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(b))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert Path(window.session.path).resolve() == b.resolve()


def test_user_drags_the_region(window, dicom_factory):
    path = dicom_factory.dicom("r.dcm", dicom_factory.frames(n_frames=2))
    assert window.open_file(path)
    item = window.region_box.item
    assert not item.translatable and not any(h.isVisible() for h in item.getHandles())
    window.region_box.edit.setChecked(True)
    assert item.translatable and all(h.isVisible() for h in item.getHandles())
    x0, y0, x1, y1 = dicom_factory.box
    item.setPos((x0 + 4, y0 + 2), finish=True)
    assert window.session.box == (x0 + 4, y0 + 2, min(x1 + 4, 176), min(y1 + 2, 128))
    assert "user" in window.region_box.label.text()


def test_default_message_box_does_not_block(window, qtbot, dicom_factory):
    from PySide6.QtWidgets import QMessageBox

    window.message_sink = None  # the real, non-modal message box
    bad = dicom_factory.bad("sr")
    assert not window.open_file(bad)  # returns at once: the box does not run its own event loop
    boxes = [w for w in window.findChildren(QMessageBox) if w.isVisible()]
    assert len(boxes) == 1 and bad.name in boxes[0].text() and "(SR)" in boxes[0].text(), boxes[0].text()
    assert boxes[0].icon() == QMessageBox.Icon.Critical
    boxes[0].accept()
    qtbot.waitUntil(lambda: not boxes[0].isVisible(), timeout=2000)
