"""The "B-mode region" box: the regions of the open clip, outlined on the original pane.

Each region (:func:`~.viewer_state.bmode_regions`) gets a dashed outline and a "show" checkbox; the
first is the box that is despeckled, and with "Adjust" the user drags or resizes its outline
(:attr:`RegionBox.moved` carries the new box).  A clip whose layout has B-mode panes (tissue regions of
SequenceOfUltrasoundRegions, or detected panes: :class:`usclean_gui.dicomio.Pane`) also gets a
"despeckle" checkbox per pane: switching one off leaves that pane as it is
(:meth:`ClipSession.set_pane_enabled`; :attr:`RegionBox.pane_toggled` says so, results are dropped).
"""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QGroupBox, QLabel, QVBoxLayout, QWidget

from .viewer_state import ClipSession, bmode_regions

PEN = (255, 220, 0)


def _describe(box: tuple[int, int, int, int]) -> str:
    x0, y0, x1, y1 = box
    return "x %d–%d, y %d–%d" % (x0, x1, y0, y1)


class RegionBox(QGroupBox):
    """Region outlines on ``view`` with a show toggle per region and an "adjust" switch."""

    moved = Signal(tuple)  #: (x0, y0, x1, y1) the user gave the despeckled region
    pane_toggled = Signal(int, bool)  #: pane k switched on / off (the session's results were dropped)

    def __init__(self, view: pg.ViewBox, parent: QWidget | None = None) -> None:
        super().__init__("B-mode region", parent)
        self.view = view
        self.items: list[pg.RectROI] = []
        self.toggles: list[QCheckBox] = []
        self.pane_checks: list[QCheckBox] = []
        self.session: ClipSession | None = None
        self.label = QLabel("—")
        self.label.setWordWrap(True)
        self.edit = QCheckBox("Adjust the region on the original pane")
        self.edit.toggled.connect(self._on_edit)
        self._lay = QVBoxLayout(self)
        self._lay.addWidget(self.label)
        self._lay.addWidget(self.edit)

    def show_session(self, session: ClipSession) -> None:
        """Outline the regions of ``session`` (the first one is the box that is despeckled)."""
        for item in self.items:
            self.view.removeItem(item)
        for t in self.toggles + self.pane_checks:
            self._lay.removeWidget(t)
            t.deleteLater()
        self.session = session
        boxes = [session.box] + [b for b in bmode_regions(session.clip)[1:]]
        self.items = [self._outline(b, editable=k == 0) for k, b in enumerate(boxes)]
        self.toggles = []
        for k, b in enumerate(boxes):
            # short texts (a check box does not wrap): the box is in the tooltip, so the panel keeps its width
            t = QCheckBox("Show region %d%s" % (k + 1, " (despeckled)" if k == 0 else ""))
            t.setToolTip(_describe(b))
            t.setChecked(True)
            t.toggled.connect(lambda on, item=self.items[k]: item.setVisible(on))
            self._lay.insertWidget(1 + k, t)
            self.toggles.append(t)
        self.pane_checks = []
        for k, pane in enumerate(session.panes()):
            spacing = "" if pane.spacing_mm is None else ", %.3g × %.3g mm" % tuple(pane.spacing_mm)
            c = QCheckBox("Despeckle pane %d: %s" % (k + 1, pane.label))
            c.setToolTip("%s%s" % (_describe(pane.box), spacing))
            c.setChecked(pane.enabled)
            c.toggled.connect(lambda on, k=k: self._on_pane(k, on))
            self._lay.insertWidget(1 + len(boxes) + k, c)
            self.pane_checks.append(c)
        src = getattr(session.clip, "region_source", "")
        self.label.setText("%s (%s)" % (_describe(session.box), src or "whole frame"))

    def _on_pane(self, k: int, on: bool) -> None:
        if self.session is not None and self.session.set_pane_enabled(k, on):
            self.pane_toggled.emit(k, on)

    def _outline(self, box: tuple[int, int, int, int], editable: bool) -> pg.RectROI:
        x0, y0, x1, y1 = box
        item = pg.RectROI((x0, y0), (x1 - x0, y1 - y0), pen=pg.mkPen(PEN, width=1, style=Qt.PenStyle.DashLine))
        item.setZValue(10)
        on = editable and self.edit.isChecked()
        item.translatable = item.resizable = on
        for h in item.getHandles():
            h.setVisible(on)
        if editable:
            item.sigRegionChangeFinished.connect(self._on_moved)
        self.view.addItem(item, ignoreBounds=True)
        return item

    @property
    def item(self) -> pg.RectROI | None:
        """The outline of the despeckled region."""
        return self.items[0] if self.items else None

    def _on_edit(self, on: bool) -> None:
        if self.item is None:
            return
        self.item.translatable = self.item.resizable = on
        for h in self.item.getHandles():
            h.setVisible(on)

    def _on_moved(self, item: pg.RectROI) -> None:
        pos, size = item.pos(), item.size()
        self.moved.emit((pos.x(), pos.y(), pos.x() + size.x(), pos.y() + size.y()))
