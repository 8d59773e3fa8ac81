"""One view (zoom and pan) for every pane, changed only by the user.

:class:`ViewKeeper` holds what the user asked for: **fit** (the whole image in the pane, the
default), or a **centre and scale** (screen pixels per image pixel) set by the wheel, a drag, or
**1:1**.  It applies that to every pane whenever a pane is resized, so re-layouts, new frames and
new results never move or shrink the picture; the panes are not linked through pyqtgraph (whose
aspect-locked links drift outwards when panes are resized), the keeper sets each one.
"""
from __future__ import annotations

from collections.abc import Sequence

import pyqtgraph as pg
from PySide6.QtCore import QObject, QRectF, Signal


class ViewKeeper(QObject):
    """Keeps ``views`` showing the same region at the same scale (see the module docstring)."""

    changed = Signal()  #: the user's view changed (fit, 1:1, zoom or pan)

    def __init__(self, views: Sequence[pg.ViewBox], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.views = list(views)
        self.mode = "fit"  #: "fit" or "scale"
        self.image_size = (1.0, 1.0)  #: (width, height) of the image, pixels
        self.centre = (0.5, 0.5)
        self.scale = 1.0  #: screen pixels per image pixel (mode "scale")
        self._applying = False
        for vb in self.views:
            vb.disableAutoRange()
            vb.sigResized.connect(lambda *_: self.apply())
            vb.sigRangeChangedManually.connect(lambda *_, vb=vb: self._on_user(vb))

    # -- what the user asks for --------------------------------------------------------------
    def set_image_size(self, width: float, height: float) -> None:
        """A new clip: remember its size and fit it."""
        self.image_size = (float(width), float(height))
        self.fit()

    def fit(self) -> None:
        """The whole image in each pane (also the reset)."""
        self.mode = "fit"
        self.apply()
        self.changed.emit()

    def one_to_one(self) -> None:
        """One image pixel per screen pixel, about the current centre."""
        self._remember(self._shown())
        self.mode = "scale"
        self.scale = 1.0
        self.apply()
        self.changed.emit()

    def show(self, centre: tuple[float, float], scale: float) -> None:
        """Centre the panes on ``centre`` (image pixels) at ``scale`` screen pixels per image pixel."""
        self.centre = (float(centre[0]), float(centre[1]))
        self.scale = max(float(scale), 1e-3)
        self.mode = "scale"
        self.apply()
        self.changed.emit()

    def zoom_label(self) -> str:
        if self.mode == "fit":
            return "fit"
        return "%.0f %%" % (100.0 * self.scale)

    # -- keeping it --------------------------------------------------------------------------
    def _shown(self) -> pg.ViewBox:
        return next((vb for vb in self.views if vb.isVisible() and vb.width() > 1), self.views[0])

    def _remember(self, vb: pg.ViewBox) -> None:
        (x0, x1), (y0, y1) = vb.viewRange()
        self.centre = ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
        if vb.width() > 1 and x1 > x0:
            self.scale = vb.width() / (x1 - x0)

    def _on_user(self, vb: pg.ViewBox) -> None:
        if self._applying:
            return
        self._remember(vb)
        self.mode = "scale"
        self.apply()
        self.changed.emit()

    def apply(self) -> None:
        """Set every pane's range from the user's choice (called on every resize)."""
        if self._applying:
            return
        self._applying = True
        try:
            for vb in self.views:
                self._apply_to(vb)
        finally:
            self._applying = False

    def _apply_to(self, vb: pg.ViewBox) -> None:
        w, h = vb.width(), vb.height()
        if w < 2 or h < 2:
            return
        if self.mode == "fit":
            iw, ih = self.image_size
            s = min(w / iw, h / ih)
            cx, cy = iw / 2.0, ih / 2.0
        else:
            s = self.scale
            cx, cy = self.centre
        hw, hh = w / s / 2.0, h / s / 2.0
        vb.setRange(QRectF(cx - hw, cy - hh, 2 * hw, 2 * hh), padding=0.0)
