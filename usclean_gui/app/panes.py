"""Three linked image panes: original, despeckled, and uncertainty over the despeckled image.

All three view boxes share zoom and pan (``setXLink``/``setYLink``); the third shows the
ensemble's cross-member std through a pyqtgraph colormap, with an opacity slider and a colour
bar.  Images use row-major order with row 0 at the top (shallowest depth).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QSlider, QVBoxLayout, QWidget

TITLES = ("Original", "Despeckled", "Uncertainty (ensemble std)")
UNCERTAINTY_CMAP = "inferno"


class PaneViewBox(pg.ViewBox):
    """A view box in which the user can also draw an ROI.

    While :attr:`draw_mode` is ``"rect"`` or ``"ellipse"``, a left-button drag draws the shape's
    bounding box; with ``"polygon"``, left clicks add vertices and a double click (or a right
    click) closes it.  The finished shape goes to :attr:`on_drawn` as ``(kind, [(x, y), ...])``
    in image pixel coordinates; otherwise the box pans and zooms as usual.
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.draw_mode: str | None = None
        self.on_drawn: Callable[[str, list[tuple[float, float]]], None] | None = None
        self._points: list[tuple[float, float]] = []
        self._preview = pg.PlotCurveItem(pen=pg.mkPen((255, 255, 255), width=1, style=Qt.PenStyle.DashLine))
        self._preview.setZValue(30)
        self._preview.setVisible(False)
        self.addItem(self._preview, ignoreBounds=True)

    def set_draw_mode(self, mode: str | None) -> None:
        """Arm (``"rect"``, ``"ellipse"``, ``"polygon"``) or disarm (None) drawing."""
        self.draw_mode = mode
        self._points = []
        self._preview.setVisible(False)

    def _emit(self, pts: list[tuple[float, float]]) -> None:
        mode = self.draw_mode
        self.set_draw_mode(None)
        if self.on_drawn is not None and mode is not None:
            self.on_drawn(mode, pts)

    def _show_preview(self, xs: list[float], ys: list[float]) -> None:
        self._preview.setData(np.asarray(xs, float), np.asarray(ys, float))
        self._preview.setVisible(True)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 (pyqtgraph API)
        if self.draw_mode in ("rect", "ellipse") and ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            p0 = self.mapSceneToView(ev.buttonDownScenePos())
            p1 = self.mapSceneToView(ev.scenePos())
            if ev.isFinish():
                self._emit([(p0.x(), p0.y()), (p1.x(), p1.y())])
            else:
                self._show_preview([p0.x(), p1.x(), p1.x(), p0.x(), p0.x()], [p0.y(), p0.y(), p1.y(), p1.y(), p0.y()])
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 (pyqtgraph API)
        if self.draw_mode == "polygon" and ev.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            ev.accept()
            p = self.mapSceneToView(ev.scenePos())
            pt = (p.x(), p.y())
            if ev.button() == Qt.MouseButton.LeftButton and (not self._points or self._points[-1] != pt):
                self._points.append(pt)
            if (ev.double() or ev.button() == Qt.MouseButton.RightButton) and len(self._points) >= 3:
                self._emit(list(self._points))
                return
            xs = [q[0] for q in self._points]
            ys = [q[1] for q in self._points]
            self._show_preview(xs, ys)
            return
        super().mouseClickEvent(ev)


def to_display(img: np.ndarray) -> np.ndarray:
    """float [0, 1] (H, W) or (H, W, 3) to the uint8 image drawn on screen."""
    return (np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _image_item() -> pg.ImageItem:
    # no auto-downsampling: block-averaging on every repaint costs ~25 ms per 800x600 image
    return pg.ImageItem(axisOrder="row-major")


class PaneSet(QWidget):
    """The three linked panes plus the overlay's opacity slider."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("k")
        self.labels: list[pg.LabelItem] = []
        self.views: list[PaneViewBox] = []
        for col, title in enumerate(TITLES):
            label = self.graphics.addLabel(title, row=0, col=col)
            self.labels.append(label)
            vb = PaneViewBox(lockAspect=True, invertY=True, enableMenu=False)
            self.graphics.addItem(vb, row=1, col=col)
            self.views.append(vb)
        for vb in self.views[1:]:
            vb.setXLink(self.views[0])
            vb.setYLink(self.views[0])
        self.original = _image_item()
        self.despeckled = _image_item()
        self.base = _image_item()
        self.overlay = _image_item()
        self.overlay.setZValue(5)
        self.views[0].addItem(self.original)
        self.views[1].addItem(self.despeckled)
        self.views[2].addItem(self.base)
        self.views[2].addItem(self.overlay)
        self.colormap = pg.colormap.get(UNCERTAINTY_CMAP)
        self.colorbar = pg.ColorBarItem(values=(0.0, 0.1), colorMap=self.colormap, label="std (display units)",
                                        interactive=False, width=12, orientation="horizontal")
        self.colorbar.setImageItem(self.overlay)
        self.graphics.addItem(self.colorbar, row=2, col=2)
        grid = self.graphics.ci.layout
        for col in range(3):  # equal pane widths, so the linked views show the same region
            grid.setColumnStretchFactor(col, 1)
            grid.setColumnPreferredWidth(col, 100)
            grid.setColumnMinimumWidth(col, 50)
        for label in self.labels:
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.opacity.setToolTip("Opacity of the uncertainty overlay")
        self.opacity.valueChanged.connect(self._on_opacity)
        self._on_opacity(self.opacity.value())
        row = QHBoxLayout()
        row.addWidget(QLabel("Overlay opacity"))
        row.addWidget(self.opacity, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.graphics, 1)
        lay.addLayout(row)
        self._shape: tuple[int, ...] | None = None

    def _on_opacity(self, value: int) -> None:
        self.overlay.setOpacity(value / 100.0)

    @staticmethod
    def _show(item: pg.ImageItem, img: np.ndarray | None) -> None:
        if img is None:
            item.clear()
        else:  # 8-bit for display: pyqtgraph draws uint8 grey/RGB without a per-pixel lookup
            item.setImage(to_display(img), levels=(0, 255), autoLevels=False)

    def set_images(self, original: np.ndarray, despeckled: np.ndarray | None, std: np.ndarray | None,
                   std_mask: np.ndarray | None = None) -> None:
        """Show one frame; ``std_mask`` marks the pixels where the std is defined (others transparent)."""
        self._show(self.original, original)
        self._show(self.despeckled, despeckled)
        self._show(self.base, despeckled if despeckled is not None else original)
        if std is None:
            self.overlay.clear()
        else:
            s = np.asarray(std, dtype=np.float32).copy()
            if std_mask is not None:
                s[~std_mask] = np.nan
            finite = s[np.isfinite(s)]
            top = float(np.percentile(finite, 99.5)) if finite.size else 0.0
            top = max(top, 1e-3)
            self.overlay.setImage(s, autoLevels=False)
            self.colorbar.setLevels((0.0, top))
        self.labels[1].setText(TITLES[1] if despeckled is not None else TITLES[1] + " (not yet computed)")
        shape = np.asarray(original).shape
        if shape != self._shape:
            self._shape = shape
            self.views[0].autoRange(padding=0.02)

    def image(self, pane: int) -> np.ndarray | None:
        """The array shown in pane 0 or 1 (uint8, as drawn) or 2 (the float std overlay)."""
        item = (self.original, self.despeckled, self.overlay)[pane]
        return item.image

    def grab_qimage(self) -> QImage:
        """Render the panes (as on screen) to an image."""
        return self.graphics.grab().toImage()
