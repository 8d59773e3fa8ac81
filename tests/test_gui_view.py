"""GUI: a stable view (open → auto-despeckle → play: the range does not move), fit / 1:1 / reset,
the layouts (three, two, one pane with a split), the window size, Help ▸ Keyboard shortcuts."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.timeout(120)

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.testing import tiny_ensemble  # noqa: E402


@pytest.fixture
def window(make_window, qtbot):
    win = make_window(model="tiny", engine_loader=lambda name: tiny_ensemble(seed=0))
    win.resize(1366, 740)
    qtbot.waitExposed(win)
    return win


def _open(win, dicom_factory, n=8, colour=False, **kw):
    frames = dicom_factory.frames(n_frames=n, colour=colour)
    assert win.open_file(dicom_factory.dicom("clip.dcm", frames, **kw))
    QApplication.processEvents()
    return frames


def _ranges(win):
    return [np.array(vb.viewRange()) for vb in win.panes.views if vb.isVisible()]


def _wheel(win, pane, steps=3):
    """Turn the mouse wheel over the middle of ``pane`` (a real wheel event on its viewport)."""
    view = win.panes.widgets[pane]
    pos = QPointF(view.viewport().width() / 2, view.viewport().height() / 2)
    ev = QWheelEvent(pos, QPointF(view.viewport().mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, 120 * steps),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view.viewport(), ev)
    QApplication.processEvents()


def test_open_autodespeckle_play_keeps_the_view(make_window, qtbot, dicom_factory):
    win = make_window(model="tiny", engine_loader=lambda name: tiny_ensemble(seed=0), auto_despeckle=True)
    win.resize(1366, 740)
    qtbot.waitExposed(win)
    frames = dicom_factory.frames(n_frames=12, colour=True)
    assert win.open_file(dicom_factory.dicom("cine.dcm", frames, frame_time_ms=30.0))
    QApplication.processEvents()
    start = _ranges(win)
    h, w = win.session.shape
    for (x0, x1), (y0, y1) in start:  # fitted: the whole image shows, as large as the pane allows
        assert x0 <= 0.5 and x1 >= w - 0.5 and y0 <= 0.5 and y1 >= h - 0.5
        assert min((x1 - x0) / w, (y1 - y0) / h) == pytest.approx(1.0, abs=0.02)
    geometry = [v.geometry() for v in win.panes.widgets]
    seen = []
    win.frame_stored.connect(lambda r: seen.append(r.kind))
    win.cine.play()
    qtbot.waitUntil(lambda: len(win.session.means) == 12, timeout=60000)
    qtbot.wait(200)
    win.cine.pause()
    print("dropped %d frames while despeckling in the background" % win.cine.dropped)
    assert "preview" in seen and "ensemble" in seen
    for a, b in zip(start, _ranges(win)):
        np.testing.assert_allclose(a, b, atol=1e-6)  # neither zoomed nor panned by new frames or results
    assert [v.geometry() for v in win.panes.widgets] == geometry  # and no pane re-laid out


def test_zoom_is_shared_and_kept_until_fit_or_reset(window, qtbot, dicom_factory):
    _open(window, dicom_factory)
    fitted = _ranges(window)
    _wheel(window, 1)  # zoom in on the despeckled pane
    zoomed = _ranges(window)
    assert zoomed[0][0, 1] - zoomed[0][0, 0] < fitted[0][0, 1] - fitted[0][0, 0]
    views = [vb for vb in window.panes.views if vb.isVisible()]
    for vb, r in zip(views, zoomed):  # every pane: the same centre at the same scale
        np.testing.assert_allclose(r.mean(axis=1), zoomed[0].mean(axis=1), atol=1e-6)
        assert vb.width() / (r[0, 1] - r[0, 0]) == pytest.approx(window.panes.keeper.scale, rel=1e-6)
    assert window.panes.keeper.mode == "scale" and window.panes.zoom_label.text().endswith("%")
    window.resize(1200, 700)  # a re-layout keeps the zoom (screen px per image px) and the centre
    QApplication.processEvents()
    keeper = window.panes.keeper
    vb = window.panes.views[0]
    (x0, x1), _ = vb.viewRange()
    assert vb.width() / (x1 - x0) == pytest.approx(keeper.scale, rel=1e-6)
    window.panes.keeper.one_to_one()  # 1:1
    (x0, x1), _ = vb.viewRange()
    assert vb.width() / (x1 - x0) == pytest.approx(1.0, rel=1e-6)
    qtbot.keyClick(window, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)  # the reset shortcut
    assert keeper.mode == "fit" and window.panes.zoom_label.text() == "fit"
    _wheel(window, 0)
    window.panes.views[2].on_double()  # double-click on a pane
    assert keeper.mode == "fit"
    _wheel(window, 0)
    entries = {a.text(): a for a in window.view_menu.actions()}
    entries["&Reset view"].trigger()  # the menu entry
    assert keeper.mode == "fit"
    qtbot.keyClick(window, Qt.Key.Key_1)
    assert keeper.mode == "scale" and keeper.scale == 1.0
    qtbot.keyClick(window, Qt.Key.Key_F)
    assert keeper.mode == "fit"


def test_right_click_opens_the_pane_menu(window, qtbot, dicom_factory):
    from PySide6.QtWidgets import QMenu

    _open(window, dicom_factory, n=2)
    window.panes.views[1].on_context(window.panes.widgets[1].mapToGlobal(QPoint(20, 20)))
    menus = [m for m in window.findChildren(QMenu) if m.isVisible()]
    assert menus and {"&Fit to pane", "&Reset view", "Save PNG snapshot…"} <= {a.text() for a in menus[-1].actions()}
    menus[-1].close()


def test_layouts(window, qtbot, dicom_factory):
    frames = _open(window, dicom_factory, n=3)
    panes = window.panes
    assert panes.layout_name == "three" and all(w.isVisible() for w in panes.widgets)
    _wheel(window, 0)
    scale = panes.keeper.scale
    qtbot.keyClick(window, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    assert panes.layout_name == "two" and [w.isVisible() for w in panes.widgets] == [True, True, False]
    assert not panes.colorbar_widget.isVisible()
    assert panes.widgets[0].width() > 1.3 * panes.widgets[2].minimumWidth()
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert panes.layout_name == "one" and [w.isVisible() for w in panes.widgets] == [True, False, False]
    assert panes.keeper.scale == scale  # the zoom survives the switch
    assert panes.split_slider.isVisible() and panes.split_line.isVisible()
    assert panes.split_line.value() == pytest.approx(0.5 * frames.shape[2])  # the line sits on the split
    # nothing despeckled yet: the whole pane is the original, with a marker saying so
    assert np.array_equal(panes.original.image, frames[0])
    assert "not despeckled yet" in panes.marker_text(0)
    with qtbot.waitSignal(window.despeckle_ended, timeout=60000):
        window.despeckle()
    desp = panes.image(1)
    w = frames.shape[2]
    panes.set_split(0.25)
    col = int(round(0.25 * w))
    shown = panes.original.image
    assert np.array_equal(shown[:, :col], frames[0][:, :col]) and np.array_equal(shown[:, col:], desp[:, col:])
    assert panes.split_line.value() == pytest.approx(0.25 * w) and panes.split_slider.value() == 25
    panes.split_line.setValue(0.75 * w)  # dragging the line moves the split
    assert panes.split == pytest.approx(0.75)
    qtbot.keyClick(window, Qt.Key.Key_T)  # toggle: the whole pane despeckled, then the whole pane original
    assert panes.split == 0.0 and np.array_equal(panes.original.image, desp)
    qtbot.keyClick(window, Qt.Key.Key_T)
    assert panes.split == 1.0 and np.array_equal(panes.original.image, frames[0])
    qtbot.keyClick(window, Qt.Key.Key_L)  # next layout: back to three
    assert panes.layout_name == "three" and panes.colorbar_widget.isVisible()
    assert window.settings.value("layout") == "three"
    with pytest.raises(ValueError):
        panes.set_layout("four")


def test_window_fits_a_1366x768_screen(window):
    hint = window.minimumSizeHint()
    assert hint.width() <= 1366 and hint.height() <= 768 - 40, hint  # 40 px for the title bar and a panel
    window.resize(1366, 728)
    QApplication.processEvents()
    assert window.statusBar().isVisible() and window.statusBar().geometry().bottom() < window.height()
    assert all(w.width() >= 200 for w in window.panes.widgets)  # three panes large enough to judge


def test_help_lists_every_shortcut(window):
    from usclean_gui.app.shortcuts import SHORTCUTS

    dialog = window.show_shortcuts()
    assert dialog.isVisible() and dialog.table.rowCount() == len(SHORTCUTS)
    listed = " ".join(dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount()))
    for action in window.view_menu.actions():
        for seq in action.shortcuts():
            assert seq.toString() in listed, seq.toString()
    help_menu = [m for m in window.menuBar().actions() if m.text() == "&Help"][0].menu()
    assert {"&Keyboard shortcuts", "&User guide", "&About USClean"} <= {a.text() for a in help_menu.actions()}
    dialog.close()


def test_side_panel_can_be_hidden_for_larger_panes(window, qtbot, dicom_factory):
    _open(window, dicom_factory, n=2)
    before = window.panes.widgets[0].width()
    qtbot.keyClick(window, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)
    QApplication.processEvents()
    assert not window.side_panel.isVisible() and window.panes.widgets[0].width() > before
    assert window.panes.keeper.mode == "fit"  # and the image is fitted to the larger pane
    vb = window.panes.views[0]
    (x0, x1), (y0, y1) = vb.viewRange()
    h, w = window.session.shape
    assert min((x1 - x0) / w, (y1 - y0) / h) == pytest.approx(1.0, abs=0.02)
    qtbot.keyClick(window, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)
    assert window.side_panel.isVisible()
