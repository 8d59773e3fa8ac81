"""Target and background ROIs shown on all panes, with CNR / gCNR measurements.

Each ROI (rectangle, ellipse or polygon) is held as a Qt-free :class:`~.viewer_state.RoiShape`
placed on a reference frame; the panel mirrors it as one pyqtgraph ROI per pane, kept in step while
the user drags any of them.  ROIs either stay **fixed** or **follow the tissue** through the loop
(:class:`~.tracking.BlockTracker`, block matching on the original frames), the user's choice.
Measurements (original vs despeckled, in the display domain) are shown for the current frame and,
on request, across the whole loop in a plot (its legend below it, never over the curves); every
measured row can be exported to CSV with the ROI geometry of its frame.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QGridLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                               QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from .tracking import BlockTracker

from .viewer_state import MEASURE_DOMAIN, ClipSession, Measurement, RoiShape, measure

COLORS = {"target": (255, 90, 90), "background": (70, 190, 255)}
CURVES = (("cnr_o", "CNR original", (200, 200, 200), 1, False), ("cnr_d", "CNR despeckled", (255, 200, 0), 2, False),
          ("gcnr_o", "gCNR original", (200, 200, 200), 1, True), ("gcnr_d", "gCNR despeckled", (255, 200, 0), 2, True))
ROWS = ("CNR", "gCNR", "mean target", "std target", "mean background", "std background", "area target",
        "area background")


def _make_item(shape: RoiShape) -> pg.ROI:
    pen = pg.mkPen(COLORS[shape.role], width=2)
    if shape.kind == "polygon":
        return pg.PolyLineROI([list(p) for p in shape.points], closed=True, pen=pen)
    x, y, w, h = shape.params
    if shape.kind == "rect":
        return pg.RectROI((x, y), (w, h), pen=pen)
    item = pg.EllipseROI((x, y), (w, h), pen=pen)
    for handle in list(item.getHandles()):  # keep the ellipse axis-aligned: no rotation handle
        if handle.typ == "r":
            item.removeHandle(handle)
    item.addScaleHandle((1.0, 1.0), (0.0, 0.0))
    return item


def _shape_from_item(role: str, kind: str, item: pg.ROI) -> RoiShape:
    pos = item.pos()
    if kind == "polygon":
        pts = [(float(pos.x() + p.x()), float(pos.y() + p.y())) for p in item.getState()["points"]]
        return RoiShape(role, kind, points=pts)
    size = item.size()
    return RoiShape(role, kind, params=(float(pos.x()), float(pos.y()), float(size.x()), float(size.y())))


def _legend_html() -> str:
    """The loop plot's legend as a two-column table (kept under the plot, never over the curves)."""
    cells = []
    for _, name, rgb, width, dashed in CURVES:
        line = "- - -" if dashed else "&#8212;&#8212;"
        cells.append('<td><span style="color: rgb%s; font-weight: %s">%s</span>&nbsp;%s</td>'
                     % (str(rgb), "bold" if width > 1 else "normal", line, name.replace(" ", "&nbsp;")))
    rows = ["<tr>%s%s</tr>" % (cells[k], cells[k + 1]) for k in (0, 2)]
    return '<table cellspacing="0" cellpadding="1">%s</table>' % "".join(rows)


class RoiPanel(QWidget):
    """ROI tools: add/remove ROIs, fixed or tracked, the measurement table, the loop plot and CSV export."""

    export_requested = Signal()

    def __init__(self, views: list[pg.ViewBox], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._views = views
        self.shapes: dict[str, RoiShape] = {}  #: each ROI as placed on its reference frame
        self._reference: dict[str, int] = {}
        self._trackers: dict[str, BlockTracker] = {}
        self._items: dict[str, list[pg.ROI]] = {}
        self._syncing = False
        self._session: ClipSession | None = None
        self._frame = 0
        self.rows: list[Measurement] = []  #: rows measured so far (exported to CSV)
        self.current: Measurement | None = None
        self._loop_todo: list[int] = []
        self._loop_rows: list[Measurement] = []
        self._loop_timer = QTimer(self)
        self._loop_timer.setInterval(0)
        self._loop_timer.timeout.connect(self._loop_step)
        self.on_error: Callable[[str], None] = lambda msg: None
        self._drawing_role: str | None = None
        for vb in self._views:
            if hasattr(vb, "on_drawn"):
                vb.on_drawn = self._on_drawn
        box = QGroupBox("ROIs and contrast")
        grid = QGridLayout(box)
        self._build_tools(grid)
        self._build_table(grid)
        self._build_plot(grid)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(box)

    # -- building -----------------------------------------------------------------------------
    def _build_tools(self, grid: QGridLayout) -> None:
        self.kind = QComboBox()
        self.kind.addItems(["rect", "ellipse", "polygon"])
        self.kind.setToolTip("Shape of the next ROI")
        add_t = QPushButton("Draw target")
        add_t.setToolTip("Drag on any pane (polygon: click the vertices, double-click to close)")
        add_t.clicked.connect(lambda: self.start_drawing("target"))
        add_b = QPushButton("Draw background")
        add_b.setToolTip(add_t.toolTip())
        add_b.clicked.connect(lambda: self.start_drawing("background"))
        clear = QPushButton("Clear")
        clear.clicked.connect(self.clear)
        self.follow = QCheckBox("Follow the tissue through the loop")
        self.follow.setToolTip("Track each ROI by block matching on the original frames; "
                               "off: the ROIs stay where they were drawn")
        self.follow.toggled.connect(lambda _: self._on_follow())
        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        grid.addWidget(QLabel("Shape"), 0, 0)
        grid.addWidget(self.kind, 0, 1)
        buttons = QHBoxLayout()
        for b in (add_t, add_b, clear):
            buttons.addWidget(b)
        grid.addLayout(buttons, 1, 0, 1, 2)
        grid.addWidget(self.follow, 2, 0, 1, 2)
        grid.addWidget(self.hint, 3, 0, 1, 2)

    def _build_table(self, grid: QGridLayout) -> None:
        self.table = QTableWidget(len(ROWS), 2)
        self.table.setHorizontalHeaderLabels(["Original", "Despeckled"])
        self.table.setVerticalHeaderLabels(list(ROWS))
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.setMinimumHeight(20 * len(ROWS) + 28)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.domain = QLabel("Domain: " + MEASURE_DOMAIN)
        self.domain.setWordWrap(True)
        self.loop_button = QPushButton("Measure over loop")
        self.loop_button.clicked.connect(self.measure_loop)
        self.csv_button = QPushButton("Export CSV…")
        self.csv_button.clicked.connect(self.export_requested)
        grid.addWidget(self.domain, 4, 0, 1, 2)
        grid.addWidget(self.table, 5, 0, 1, 2)
        row = QHBoxLayout()
        row.addWidget(self.loop_button)
        row.addWidget(self.csv_button)
        grid.addLayout(row, 6, 0, 1, 2)

    def _build_plot(self, grid: QGridLayout) -> None:
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(150)
        self.plot.setLabel("bottom", "time in the loop (ms)")
        self.plot.setLabel("left", "CNR / gCNR")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.curves = {}
        for key, name, rgb, width, dashed in CURVES:
            style = Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine
            self.curves[key] = self.plot.plot(pen=pg.mkPen(rgb, width=width, style=style), name=name)
        self.placeholder = pg.TextItem("Draw a target and a background ROI,\nthen Measure over loop",
                                       color=(170, 170, 170), anchor=(0.5, 0.5))
        self.plot.addItem(self.placeholder, ignoreBounds=True)
        self.legend = QLabel(_legend_html())
        self.legend.setWordWrap(True)
        grid.addWidget(self.plot, 7, 0, 1, 2)
        grid.addWidget(self.legend, 8, 0, 1, 2)
        self._reset_plot()

    def _reset_plot(self) -> None:
        for c in self.curves.values():
            c.setData([], [])
        s = self._session
        end = s.time_ms(max(s.n_frames - 1, 1)) if s is not None else 1000.0
        self.plot.setXRange(0.0, end, padding=0.02)
        self.plot.setYRange(0.0, 1.5, padding=0.02)
        self.placeholder.setPos(end / 2.0, 0.75)
        self.placeholder.setVisible(True)

    # -- context ------------------------------------------------------------------------------
    def set_session(self, session: ClipSession | None) -> None:
        self._loop_timer.stop()
        self._loop_todo = []
        self.loop_button.setEnabled(True)
        self.cancel_drawing()
        self._session = session
        self._frame = 0
        self.rows.clear()
        self.clear()
        self._reset_plot()

    def set_frame(self, i: int) -> None:
        self._frame = int(i)
        if self.follow.isChecked():
            self._place_items()
        self.update_measurement()

    # -- ROIs ---------------------------------------------------------------------------------
    def start_drawing(self, role: str, kind: str | None = None) -> None:
        """Arm every pane so the next drag (or polygon clicks) draws the ``role`` ROI."""
        kind = kind or self.kind.currentText()
        self._drawing_role = role
        for vb in self._views:
            if hasattr(vb, "set_draw_mode"):
                vb.set_draw_mode(kind)
        how = "click the vertices, double-click to close" if kind == "polygon" else "drag on any pane"
        self.hint.setText("Drawing the %s %s: %s (Esc cancels)." % (role, kind, how))

    def cancel_drawing(self) -> None:
        self._drawing_role = None
        for vb in self._views:
            if hasattr(vb, "set_draw_mode"):
                vb.set_draw_mode(None)
        self.hint.setText("")

    def _on_drawn(self, kind: str, pts: list[tuple[float, float]]) -> None:
        role = self._drawing_role
        self.cancel_drawing()
        if role is None:
            return
        if kind == "polygon":
            shape = RoiShape(role, kind, points=[(float(x), float(y)) for x, y in pts])
        else:
            (xa, ya), (xb, yb) = pts
            w, h = abs(xb - xa), abs(yb - ya)
            if w < 1 or h < 1:
                self.on_error("That ROI is smaller than a pixel; drag a larger box.")
                return
            shape = RoiShape(role, kind, params=(min(xa, xb), min(ya, yb), w, h))
        self.set_roi(shape)

    def set_roi(self, shape: RoiShape) -> None:
        """Place (or replace) the ROI of ``shape.role`` on every pane, on the frame on screen, and re-measure."""
        self._remove(shape.role)
        self.shapes[shape.role] = shape
        self._reference[shape.role] = self._frame
        items = []
        for vb in self._views:
            item = _make_item(shape)
            item.setZValue(20)
            vb.addItem(item)
            item.sigRegionChanged.connect(lambda it, role=shape.role: self._sync(role, it))
            item.sigRegionChangeFinished.connect(lambda it, role=shape.role: self._finished(role, it))
            items.append(item)
        self._items[shape.role] = items
        self.update_measurement()

    def items(self, role: str) -> list[pg.ROI]:
        """The pyqtgraph ROI items of ``role`` (one per pane)."""
        return list(self._items.get(role, []))

    def _remove(self, role: str) -> None:
        for item, vb in zip(self._items.pop(role, []), self._views):
            vb.removeItem(item)
        self.shapes.pop(role, None)
        self._trackers.pop(role, None)
        self._reference.pop(role, None)

    def clear(self) -> None:
        for role in list(self._items):
            self._remove(role)
        self.update_measurement()

    def _sync(self, role: str, source: pg.ROI) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            state = source.getState()
            for item in self._items.get(role, []):
                if item is not source:
                    item.setState(state)
        finally:
            self._syncing = False

    def _finished(self, role: str, source: pg.ROI) -> None:
        if self._syncing or role not in self.shapes:
            return
        # the user moved the ROI: it is placed again, on the frame on screen
        self.shapes[role] = _shape_from_item(role, self.shapes[role].kind, source)
        self._reference[role] = self._frame
        self._trackers.pop(role, None)
        self.update_measurement()

    # -- tracking -----------------------------------------------------------------------------
    @property
    def tracking(self) -> bool:
        return self.follow.isChecked() and self._session is not None and self._session.n_frames > 1

    def shape_at(self, role: str, i: int) -> RoiShape:
        """The ``role`` ROI in frame ``i``: where it was placed, or moved with the tissue."""
        shape = self.shapes[role]
        if not self.tracking:
            return shape
        tr = self._trackers.get(role)
        if tr is None:
            s = self._session
            tr = BlockTracker(s.original_frame, s.n_frames, self._reference.get(role, 0), shape.bbox())
            self._trackers[role] = tr
        dx, dy = tr.offset(i)
        return shape.moved(dx, dy)

    def _place_items(self) -> None:
        """Move the ROI items to where the ROIs are in the frame on screen."""
        self._syncing = True
        try:
            for role, items in self._items.items():
                shape = self.shape_at(role, self._frame)
                for item in items:
                    item.setState(_make_item(shape).getState())
        finally:
            self._syncing = False

    def _on_follow(self) -> None:
        self._trackers.clear()
        if not self.follow.isChecked():  # back to where the ROIs were placed
            self._syncing = True
            try:
                for role, items in self._items.items():
                    for item in items:
                        item.setState(_make_item(self.shapes[role]).getState())
            finally:
                self._syncing = False
        else:
            self._place_items()
        self.update_measurement()

    # -- measurements -------------------------------------------------------------------------
    def _measure(self, i: int) -> Measurement | None:
        s = self._session
        if s is None or "target" not in self.shapes or "background" not in self.shapes:
            return None
        m = measure(s.original_frame(i), s.despeckled_frame(i) if s.result_kind(i) == "ensemble" else None,
                    self.shape_at("target", i), self.shape_at("background", i), s.spacing_mm, frame=i,
                    time_ms=s.time_ms(i))
        m.roi_mode = "tracked" if self.tracking else "fixed"
        return m

    def update_measurement(self) -> None:
        """Re-measure the current frame and fill the table."""
        if not self.shapes and self.current is None:
            return  # nothing to measure, and the table is empty already
        try:
            m = self._measure(self._frame)
        except ValueError as exc:
            m = None
            self.domain.setText("Domain: %s\n%s" % (MEASURE_DOMAIN, exc))
        else:
            self.domain.setText("Domain: " + MEASURE_DOMAIN)
        self.current = m
        for r in range(len(ROWS)):
            for c in range(2):
                self.table.setItem(r, c, QTableWidgetItem(""))
        if m is None:
            return
        for c, st in enumerate((m.original, m.despeckled)):
            if st is None:
                continue
            vals = (st.cnr, st.gcnr, st.mean_t, st.std_t, st.mean_b, st.std_b)
            for r, v in enumerate(vals):
                self.table.setItem(r, c, QTableWidgetItem("%.3f" % v))
        for r, v in ((6, m.area_t), (7, m.area_b)):
            self.table.setItem(r, 0, QTableWidgetItem("%.2f %s" % (v, m.area_unit)))
        self.rows = [row for row in self.rows if row.frame != m.frame] + [m]

    def measure_loop(self) -> None:
        """Measure every frame (incrementally, so the window stays responsive) and plot over time."""
        if self._session is None or len(self.shapes) < 2:
            self.on_error("Draw a target and a background ROI first.")
            return
        self._loop_todo = list(range(self._session.n_frames))
        self._loop_rows = []
        self.loop_button.setEnabled(False)
        self._reset_plot()
        self.placeholder.setVisible(False)
        self._loop_timer.start()

    @property
    def loop_running(self) -> bool:
        return self._loop_timer.isActive()

    def _loop_step(self) -> None:
        if not self._loop_todo:
            self._loop_timer.stop()
            self.loop_button.setEnabled(True)
            return
        i = self._loop_todo.pop(0)
        try:
            m = self._measure(i)
        except ValueError as exc:
            self._loop_timer.stop()
            self.loop_button.setEnabled(True)
            self.on_error(str(exc))
            return
        if m is None:
            return
        self._loop_rows.append(m)
        self.rows = [row for row in self.rows if row.frame != i] + [m]
        self._plot_loop()

    def _plot_loop(self) -> None:
        rows = self._loop_rows
        t = np.array([r.time_ms for r in rows])
        self.curves["cnr_o"].setData(t, [r.original.cnr for r in rows])
        self.curves["gcnr_o"].setData(t, [r.original.gcnr for r in rows])
        d = [r for r in rows if r.despeckled is not None]
        td = np.array([r.time_ms for r in d])
        self.curves["cnr_d"].setData(td, [r.despeckled.cnr for r in d])
        self.curves["gcnr_d"].setData(td, [r.despeckled.gcnr for r in d])
        top = max([1.0] + [r.original.cnr for r in rows] + [r.despeckled.cnr for r in d])
        self.plot.setYRange(0.0, top * 1.1, padding=0.0)
