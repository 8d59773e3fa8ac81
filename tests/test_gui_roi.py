"""GUI: target/background ROIs on all panes, CNR and gCNR against the formula, loop plot, CSV."""
from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.timeout(120)

from PySide6.QtCore import QPointF, Qt  # noqa: E402

from usclean_gui.app.viewer_state import MEASURE_DOMAIN, RoiShape  # noqa: E402

H, W = 80, 100


def _constructed(tmp_path, n: int = 3):
    """Float frames: dim target (left), brighter and noisier background (right); seeded."""
    rng = np.random.default_rng(7)
    frames = np.empty((n, H, W), np.float32)
    for f in range(n):
        frames[f, :, : W // 2] = rng.normal(0.30, 0.05, (H, W // 2))
        frames[f, :, W // 2:] = rng.normal(0.60 + 0.05 * f, 0.10, (H, W - W // 2))
    frames = np.clip(frames, 0.0, 1.0)
    path = tmp_path / "constructed.npy"
    np.save(path, frames)
    return path, frames


def _cnr(t, b):
    return abs(t.mean() - b.mean()) / np.sqrt(t.var() + b.var())


def _gcnr(t, b, bins=256):
    edges = np.linspace(min(t.min(), b.min()), max(t.max(), b.max()), bins + 1)
    pt = np.histogram(t, edges)[0] / t.size
    pb = np.histogram(b, edges)[0] / b.size
    return 1.0 - np.minimum(pt, pb).sum()


def test_two_rois_cnr_gcnr_match_formula(window, tmp_path):
    path, frames = _constructed(tmp_path)
    assert window.open_file(path)
    window.roi.set_roi(RoiShape("target", "rect", params=(10, 10, 20, 30)))
    window.roi.set_roi(RoiShape("background", "ellipse", params=(60, 20, 30, 40)))
    # both ROIs are drawn on all three panes
    assert all(len(window.roi.items(r)) == 3 for r in ("target", "background"))
    for vb, item in zip(window.panes.views, window.roi.items("target")):
        assert item in vb.addedItems
    m = window.roi.current
    assert m is not None and m.frame == 0
    t = frames[0, 10:40, 10:30].astype(np.float64)
    yy, xx = np.mgrid[0:H, 0:W]
    ell = ((xx + 0.5 - 75) / 15) ** 2 + ((yy + 0.5 - 40) / 20) ** 2 < 1
    b = frames[0][ell].astype(np.float64)
    assert m.original.cnr == pytest.approx(_cnr(t, b), rel=1e-6)
    assert m.original.gcnr == pytest.approx(_gcnr(t, b), abs=1e-9)
    assert m.original.mean_t == pytest.approx(t.mean(), rel=1e-6)
    assert m.original.std_b == pytest.approx(b.std(), rel=1e-6)
    assert m.area_t == 600 and m.area_unit == "px"  # NPY carries no spacing
    assert abs(m.area_b - ell.sum()) <= 0.02 * ell.sum()
    assert m.despeckled is None  # nothing despeckled yet: only the original column is filled
    assert window.roi.table.item(0, 0).text() == "%.3f" % _cnr(t, b)
    assert window.roi.table.item(1, 0).text() == "%.3f" % _gcnr(t, b)
    assert window.roi.table.item(0, 1).text() == ""
    assert MEASURE_DOMAIN in window.roi.domain.text()
    # moving to another frame re-measures
    window.cine.step(1)
    assert window.roi.current.frame == 1
    t1 = frames[1, 10:40, 10:30].astype(np.float64)
    assert window.roi.current.original.cnr == pytest.approx(_cnr(t1, frames[1][ell].astype(np.float64)), rel=1e-6)


def test_polygon_roi_and_sync_between_panes(window, tmp_path):
    path, frames = _constructed(tmp_path, n=1)
    assert window.open_file(path)
    window.roi.set_roi(RoiShape("target", "polygon", points=[(5, 5), (35, 5), (35, 45), (5, 45)]))
    window.roi.set_roi(RoiShape("background", "rect", params=(60, 10, 30, 30)))
    t = frames[0, 5:45, 5:35].astype(np.float64)
    assert window.roi.current.area_t == t.size
    assert window.roi.current.original.cnr == pytest.approx(_cnr(t, frames[0, 10:40, 60:90].astype(np.float64)),
                                                            rel=1e-6)
    # drag the background ROI on the despeckled pane: the other panes follow and the shape updates
    items = window.roi.items("background")
    items[1].setPos((55, 20), finish=True)
    assert all(tuple(it.pos()) == (55.0, 20.0) for it in items)
    assert window.roi.shapes["background"].params[:2] == (55.0, 20.0)
    b = frames[0, 20:50, 55:85].astype(np.float64)
    assert window.roi.current.original.cnr == pytest.approx(_cnr(t, b), rel=1e-6)


def test_area_in_mm2_with_calibrated_dicom(window, dicom_factory):
    path = dicom_factory.dicom("cal.dcm", dicom_factory.frames(n_frames=2, colour=False), spacing_mm=(0.25, 0.3))
    assert window.open_file(path)
    window.roi.set_roi(RoiShape("target", "rect", params=(40, 30, 20, 20)))
    window.roi.set_roi(RoiShape("background", "ellipse", params=(80, 30, 30, 30)))
    m = window.roi.current
    assert m.area_unit == "mm²"
    n_t = window.roi.shapes["target"].mask(window.session.shape).sum()
    assert m.area_t == pytest.approx(n_t * 0.25 * 0.3)
    assert "mm²" in window.roi.table.item(6, 0).text()


def test_measure_over_loop_and_csv(window, qtbot, tmp_path):
    path, frames = _constructed(tmp_path, n=4)
    assert window.open_file(path)
    window.roi.measure_loop()  # no ROIs yet: a message, no crash
    assert window.messages[-1][0] == "warning"
    window.roi.set_roi(RoiShape("target", "rect", params=(10, 10, 20, 30)))
    window.roi.set_roi(RoiShape("background", "rect", params=(60, 10, 30, 30)))
    window.roi.measure_loop()
    qtbot.waitUntil(lambda: not window.roi.loop_running, timeout=20000)
    assert sorted(r.frame for r in window.roi.rows) == [0, 1, 2, 3]
    x, y = window.roi.curves["cnr_o"].getData()
    assert len(x) == 4 and x[1] == pytest.approx(window.session.frame_time_ms)
    # background brightens frame by frame, so the original CNR rises over the loop
    assert np.all(np.diff(y) > 0)
    out = tmp_path / "roi.csv"
    assert window.export_csv(str(out)) == out
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 4 and {r["image"] for r in rows} == {"original"}
    r0 = rows[0]
    assert r0["file"] == str(path) and r0["frame"] == "0" and r0["domain"] == MEASURE_DOMAIN
    assert r0["target_roi"] == "rect[x=10.0,y=10.0,w=20.0,h=30.0]"
    assert float(r0["cnr"]) == pytest.approx(_cnr(frames[0, 10:40, 10:30].astype(np.float64),
                                                  frames[0, 10:40, 60:90].astype(np.float64)), rel=1e-5)
    assert not list(tmp_path.glob(".roi*"))  # no temporary file left behind


def test_roi_masks_follow_pixel_centres():
    r = RoiShape("target", "rect", params=(2.0, 3.0, 4.0, 2.0)).mask((10, 10))
    assert r.sum() == 8 and r[3:5, 2:6].all()
    e = RoiShape("background", "ellipse", params=(0.0, 0.0, 10.0, 10.0)).mask((10, 10))
    yy, xx = np.mgrid[0:10, 0:10]
    expect = ((xx + 0.5 - 5) / 5) ** 2 + ((yy + 0.5 - 5) / 5) ** 2 < 1
    assert np.array_equal(e, expect)
    with pytest.raises(ValueError):
        RoiShape("target", "polygon", points=[(0, 0), (1, 1)])
    with pytest.raises(ValueError):
        RoiShape("lesion", "rect")


def _send(widget, etype, pos, button, buttons):
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    p = QPointF(pos)
    ev = QMouseEvent(etype, p, widget.mapToGlobal(p), button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, ev)


def _to_widget(window, pane, x, y):
    vb = window.panes.views[pane]
    return window.panes.widgets[pane].mapFromScene(vb.mapViewToScene(QPointF(x, y)))


def _drag(window, pane, a, b):
    from PySide6.QtCore import QEvent

    vp = window.panes.widgets[pane].viewport()
    p0, p1 = _to_widget(window, pane, *a), _to_widget(window, pane, *b)
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    _send(vp, QEvent.Type.MouseButtonPress, p0, left, left)
    for k in range(1, 6):
        _send(vp, QEvent.Type.MouseMove, p0 + (p1 - p0) * (k / 5), none, left)
    _send(vp, QEvent.Type.MouseButtonRelease, p1, left, none)


def _click(window, pane, pt, double=False):
    from PySide6.QtCore import QEvent

    vp = window.panes.widgets[pane].viewport()
    p = _to_widget(window, pane, *pt)
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    _send(vp, QEvent.Type.MouseButtonPress, p, left, left)
    _send(vp, QEvent.Type.MouseButtonRelease, p, left, none)
    if double:
        _send(vp, QEvent.Type.MouseButtonDblClick, p, left, left)
        _send(vp, QEvent.Type.MouseButtonRelease, p, left, none)


def test_draw_rois_with_the_mouse(window, qtbot, tmp_path):
    path, frames = _constructed(tmp_path, n=1)
    assert window.open_file(path)
    qtbot.waitExposed(window)
    window.roi.kind.setCurrentText("rect")
    window.roi.start_drawing("target")
    assert "drag" in window.roi.hint.text()
    _drag(window, 1, (10, 10), (30, 40))  # on the despeckled pane
    shape = window.roi.shapes["target"]
    assert shape.kind == "rect" and np.allclose(shape.params, (10, 10, 20, 30), atol=0.6)
    assert all(len(window.roi.items(r)) == 3 for r in ("target",))
    window.roi.kind.setCurrentText("polygon")
    window.roi.start_drawing("background")
    for pt in ((60, 10), (90, 10), (90, 40)):
        _click(window, 0, pt)
    _click(window, 0, (60, 40), double=True)
    bg = window.roi.shapes["background"]
    assert bg.kind == "polygon" and len(bg.points) == 4
    assert np.allclose(bg.points, [(60, 10), (90, 10), (90, 40), (60, 40)], atol=0.6)
    m = window.roi.current
    assert m is not None and m.original.cnr > 1.0  # dim target vs bright background
    # panning still works once drawing is over
    assert all(vb.draw_mode is None for vb in window.panes.views) and window.roi.hint.text() == ""
    window.roi.start_drawing("target")  # Esc stops drawing
    assert all(vb.draw_mode == "polygon" for vb in window.panes.views)
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert all(vb.draw_mode is None for vb in window.panes.views) and window.roi.hint.text() == ""


def _moving_cyst(tmp_path, n=10, step=(2, 1)):
    """Speckle-like texture moving rigidly by ``step`` (dx, dy) px per frame, with a dark disc in it."""
    rng = np.random.default_rng(3)
    big = rng.gamma(2.0, 0.2, (H + 60, W + 60)).astype(np.float32)
    yy, xx = np.mgrid[0:H + 60, 0:W + 60]
    big[(xx - 55) ** 2 + (yy - 55) ** 2 < 12 ** 2] *= 0.2
    frames = np.stack([big[30 - k * step[1]:30 - k * step[1] + H, 30 - k * step[0]:30 - k * step[0] + W]
                       for k in range(n)])
    frames = np.clip(frames, 0.0, 1.0)
    path = tmp_path / "moving.npy"
    np.save(path, frames)
    return path, frames


def test_rois_can_follow_the_tissue(window, qtbot, tmp_path):
    path, frames = _moving_cyst(tmp_path)
    assert window.open_file(path)
    window.roi.set_roi(RoiShape("target", "ellipse", params=(17, 17, 16, 16)))  # on the disc (centre 25, 25)
    window.roi.set_roi(RoiShape("background", "rect", params=(50, 10, 25, 25)))
    cnr0 = window.roi.current.original.cnr
    window.cine.set_frame(9)
    fixed = window.roi.current.original.cnr
    assert fixed < 0.6 * cnr0  # a fixed ROI slides off the moving disc
    window.roi.follow.setChecked(True)
    tracked = window.roi.current
    assert tracked.original.cnr == pytest.approx(cnr0, rel=0.1) and tracked.roi_mode == "tracked"
    x, y, w, h = window.roi.shape_at("target", 9).params
    assert (x, y) == pytest.approx((17 + 18, 17 + 9), abs=1.0)  # moved with the tissue: 9 frames × (2, 1) px
    item = window.roi.items("target")[0]
    assert tuple(item.pos()) == pytest.approx((x, y), abs=1e-6)  # and shown there on every pane
    assert tracked.target_roi == window.roi.shape_at("target", 9).describe() != window.roi.shapes["target"].describe()
    window.roi.measure_loop()
    qtbot.waitUntil(lambda: not window.roi.loop_running, timeout=10000)
    cnrs = [r.original.cnr for r in sorted(window.roi.rows, key=lambda r: r.frame)]
    assert max(cnrs) - min(cnrs) < 0.15 * cnr0  # steady through the loop
    window.roi.follow.setChecked(False)  # back where they were drawn
    assert tuple(window.roi.items("target")[1].pos()) == (17.0, 17.0)
    assert window.roi.current.original.cnr == pytest.approx(fixed, rel=1e-6)


def test_loop_plot_legend_outside_and_axis_of_the_clip(window, qtbot, tmp_path):
    path, frames = _constructed(tmp_path, n=4)
    assert window.open_file(path)
    plot = window.roi.plot.getPlotItem()
    assert plot.legend is None  # no legend drawn over the curves; it is a label under the plot
    assert "CNR&nbsp;despeckled" in window.roi.legend.text() and window.roi.legend.isVisible()
    (x0, x1), _ = plot.viewRange()
    end = 3 * window.session.frame_time_ms
    assert x0 <= 0 and x1 == pytest.approx(end, rel=0.05)  # the clip's time axis before any measurement
    assert window.roi.placeholder.isVisible()
    assert plot.getAxis("bottom").labelText == "time in the loop (ms)"
