"""The image panes: original, despeckled and uncertainty, in one of three layouts.

Layouts: ``three`` (original | despeckled | uncertainty over the despeckled image), ``two``
(original | despeckled) and ``one`` (one large pane that compares the two with a split line: left
of it the original, right of it the despeckled image; drag the line or the slider, or toggle
between the two with T).  Every pane shows the same region at the same scale (:class:`ViewKeeper`);
titles and the colour bar never change while a clip plays, so the panes never re-layout.  A frame
without an ensemble result shows the preview or the original with a small marker in the corner.
Uncertainty uses the fixed scale of :mod:`.uncertainty`.  Images are row-major, row 0 at the top.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (QButtonGroup, QGridLayout, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSlider,
                               QToolButton, QVBoxLayout, QWidget)

from . import uncertainty
from .view_keeper import ViewKeeper
from .viewer_state import blend

TITLES = ("Original", "Despeckled", "Uncertainty")
LAYOUTS = ("three", "two", "one")
LAYOUT_NAMES = {"three": "Three panes", "two": "Two panes", "one": "One pane (compare)"}
MARKER_STYLE = {
    None: "color: #dddddd; background: rgba(60, 60, 60, 200);",
    "preview": "color: #202020; background: rgba(255, 190, 60, 220);",
    "ensemble": "color: #102010; background: rgba(120, 220, 120, 200);",
}


class PaneViewBox(pg.ViewBox):
    """A view box in which the user can also draw an ROI, reset the view and open a menu.

    While :attr:`draw_mode` is ``"rect"`` or ``"ellipse"``, a left-button drag draws the shape's
    bounding box; with ``"polygon"``, left clicks add vertices and a double click (or a right
    click) closes it.  The finished shape goes to :attr:`on_drawn` as ``(kind, [(x, y), ...])``
    in image pixel coordinates.  Otherwise the box pans and zooms, a double click calls
    :attr:`on_double` (reset the view) and a right click :attr:`on_context` (the pane menu).
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.draw_mode: str | None = None
        self.on_drawn: Callable[[str, list[tuple[float, float]]], None] | None = None
        self.on_double: Callable[[], None] | None = None
        self.on_context: Callable[[object], None] | None = None
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

    def mouseDragEvent(self, ev, axis=None) -> None:  # pyqtgraph API name
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

    def mouseClickEvent(self, ev) -> None:  # pyqtgraph API name
        if self.draw_mode == "polygon" and ev.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            ev.accept()
            self._polygon_click(ev)
            return
        if self.draw_mode is None and ev.button() == Qt.MouseButton.LeftButton and ev.double():
            ev.accept()
            if self.on_double is not None:
                self.on_double()
            return
        if self.draw_mode is None and ev.button() == Qt.MouseButton.RightButton and self.on_context is not None:
            ev.accept()
            self.on_context(ev.screenPos())
            return
        super().mouseClickEvent(ev)

    def _polygon_click(self, ev) -> None:
        p = self.mapSceneToView(ev.scenePos())
        pt = (p.x(), p.y())
        if ev.button() == Qt.MouseButton.LeftButton and (not self._points or self._points[-1] != pt):
            self._points.append(pt)
        if (ev.double() or ev.button() == Qt.MouseButton.RightButton) and len(self._points) >= 3:
            self._emit(list(self._points))
            return
        self._show_preview([q[0] for q in self._points], [q[1] for q in self._points])


def to_display(img: np.ndarray) -> np.ndarray:
    """float [0, 1] (H, W) or (H, W, 3) to the uint8 image drawn on screen."""
    return (np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def split_composite(original: np.ndarray, despeckled: np.ndarray, column: int) -> np.ndarray:
    """The original left of ``column`` and the despeckled image from it on (same dtype and shape)."""
    out = np.array(despeckled, copy=True)
    if original.ndim != out.ndim:  # a grey despeckled frame beside a colour original: show both in colour
        out = np.repeat(out[..., None], 3, axis=2) if out.ndim == 2 else out
        original = np.repeat(original[..., None], 3, axis=2) if original.ndim == 2 else original
    out[:, :max(0, column)] = original[:, :max(0, column)]
    return out


def _image_item() -> pg.ImageItem:
    # no auto-downsampling: block-averaging on every repaint costs ~25 ms per 800x600 image
    return pg.ImageItem(axisOrder="row-major")


def uncertainty_lut() -> np.ndarray:
    return uncertainty.lut()


def colour_map() -> pg.ColorMap:
    """The fixed uncertainty colour map (the same table the MP4 export uses)."""
    table = uncertainty.lut()
    return pg.ColorMap(np.linspace(0.0, 1.0, len(table)), table)


def _marker(parent: QWidget) -> QLabel:
    m = QLabel(parent)
    m.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
    m.move(6, 6)
    m.hide()
    return m


class PaneSet(QWidget):
    """The panes, their layout switch, the compare split, the overlay opacity and the colour bar."""

    layout_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layout_name = "three"
        self.split = 0.5  #: single-pane compare: fraction of the width that shows the original
        self.strength = 1.0  #: shown = strength × despeckled + (1 − strength) × original
        self._has_clip = False
        self._frame: dict[str, object] = {}
        self.views: list[PaneViewBox] = []
        self.widgets: list[pg.GraphicsView] = []
        self.titles: list[QLabel] = []
        self.markers: list[QLabel] = []
        self.grid_widget = QWidget()
        self.grid = QGridLayout(self.grid_widget)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setHorizontalSpacing(4)
        self.grid.setVerticalSpacing(2)
        for col, title in enumerate(TITLES):
            self._add_pane(col, title)
        self.original, self.despeckled = _image_item(), _image_item()
        self.base, self.overlay = _image_item(), _image_item()
        self.overlay.setZValue(5)
        self.views[0].addItem(self.original)
        self.views[1].addItem(self.despeckled)
        self.views[2].addItem(self.base)
        self.views[2].addItem(self.overlay)
        self.split_line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen((255, 220, 0), width=2),
                                          hoverPen=pg.mkPen((255, 255, 120), width=3))
        self.split_line.setZValue(40)
        self.split_line.sigPositionChanged.connect(self._on_split_line)
        self.views[0].addItem(self.split_line, ignoreBounds=True)
        self.colormap = colour_map()
        self.overlay.setLookupTable(self.colormap.getLookupTable(nPts=256))
        self._build_colorbar()
        self.keeper = ViewKeeper(self.views, self)
        self._build_controls()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.grid_widget, 1)
        lay.addLayout(self.controls)
        self.set_layout("three")

    # ------------------------------------------------------------------------------ building
    def _add_pane(self, col: int, title: str) -> None:
        label = QLabel(title)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setStyleSheet("font-weight: bold;")
        label.setFixedHeight(label.sizeHint().height() + 2)
        view = pg.GraphicsView()
        view.setBackground("k")
        view.setMinimumSize(120, 120)
        view.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        vb = PaneViewBox(lockAspect=True, invertY=True, enableMenu=False)
        view.setCentralItem(vb)
        self.grid.addWidget(label, 0, col)
        self.grid.addWidget(view, 1, col)
        self.titles.append(label)
        self.widgets.append(view)
        self.views.append(vb)
        self.markers.append(_marker(view))

    def _build_colorbar(self) -> None:
        self.colorbar_widget = pg.GraphicsLayoutWidget()
        self.colorbar_widget.setBackground("k")
        self.colorbar_widget.setFixedHeight(64)
        self.colorbar = pg.ColorBarItem(values=uncertainty.levels(), colorMap=self.colormap, interactive=False,
                                        width=14, orientation="horizontal", label=uncertainty.label())
        ticks = [(float(np.log2(v)), uncertainty.tick_text(v)) for v in uncertainty.TICKS_GREY]
        self.colorbar.axis.setTicks([ticks, []])
        self.colorbar.axis.setStyle(hideOverlappingLabels=False)
        self.colorbar_widget.addItem(self.colorbar)
        self.grid.addWidget(self.colorbar_widget, 2, 2)

    def _build_controls(self) -> None:
        self.controls = QHBoxLayout()
        self.layout_buttons: dict[str, QToolButton] = {}
        group = QButtonGroup(self)
        for name, text in (("three", "3 panes"), ("two", "2 panes"), ("one", "1 pane")):
            b = QToolButton()
            b.setText(text)
            b.setCheckable(True)
            b.setToolTip(LAYOUT_NAMES[name])
            b.clicked.connect(lambda _=False, name=name: self.set_layout(name))
            group.addButton(b)
            self.layout_buttons[name] = b
            self.controls.addWidget(b)
        self.fit_button = QToolButton()
        self.fit_button.setText("Fit")
        self.fit_button.setToolTip("Fit the image to the pane (F; double-click resets)")
        self.fit_button.clicked.connect(self.keeper.fit)
        self.one_button = QToolButton()
        self.one_button.setText("1:1")
        self.one_button.setToolTip("One image pixel per screen pixel (1)")
        self.one_button.clicked.connect(self.keeper.one_to_one)
        for b in (self.fit_button, self.one_button):
            self.controls.addWidget(b)
        self.zoom_label = QLabel("fit")
        self.zoom_label.setFixedWidth(48)
        self.keeper.changed.connect(lambda: self.zoom_label.setText(self.keeper.zoom_label()))
        self.controls.addWidget(self.zoom_label)
        self.compare_button = QPushButton("Original ⇄ Despeckled")
        self.compare_button.setToolTip("Show the whole pane as original or despeckled (T)")
        self.compare_button.clicked.connect(self.toggle_compare)
        self.split_slider = QSlider(Qt.Orientation.Horizontal)
        self.split_slider.setRange(0, 100)
        self.split_slider.setValue(50)
        self.split_slider.setToolTip("Split line: original to its left, despeckled to its right")
        self.split_slider.valueChanged.connect(lambda v: self.set_split(v / 100.0))
        self.split_label = QLabel("split")
        self.opacity_label = QLabel("Overlay opacity")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.opacity.setToolTip("Opacity of the uncertainty overlay")
        self.opacity.valueChanged.connect(lambda v: self.overlay.setOpacity(v / 100.0))
        self.overlay.setOpacity(0.6)
        for w in (self.compare_button, self.split_label):
            self.controls.addWidget(w)
        self.controls.addWidget(self.split_slider, 1)
        self.controls.addWidget(self.opacity_label)
        self.controls.addWidget(self.opacity, 1)
        self.strength_slider = QSlider(Qt.Orientation.Horizontal)
        self.strength_slider.setRange(0, 100)
        self.strength_slider.setValue(100)
        self.strength_slider.setMaximumWidth(120)
        self.strength_slider.setToolTip("Despeckling strength: shown = strength × despeckled + (1 − strength) × "
                                        "original, in display grey levels")
        self.strength_slider.valueChanged.connect(lambda v: self.set_strength(v / 100.0))
        self.strength_label = QLabel("Strength 100 %")
        self.strength_label.setFixedWidth(self.strength_label.sizeHint().width() + 6)
        self.controls.addWidget(self.strength_label)
        self.controls.addWidget(self.strength_slider)
        self.controls.addStretch(0)  # takes the room of the sliders a layout hides

    # ------------------------------------------------------------------------------ layout
    def set_layout(self, name: str) -> None:
        """Switch to ``three``, ``two`` or ``one`` pane(s); the zoom and centre are kept."""
        if name not in LAYOUTS:
            raise ValueError("layout must be one of %s, got %r" % (LAYOUTS, name))
        self.layout_name = name
        shown = {"three": 3, "two": 2, "one": 1}[name]
        for col in range(3):
            on = col < shown
            self.titles[col].setVisible(on)
            self.widgets[col].setVisible(on)
            self.grid.setColumnStretch(col, 1 if on else 0)
        self.colorbar_widget.setVisible(name == "three")
        single = name == "one"
        for w in (self.compare_button, self.split_slider, self.split_label):
            w.setVisible(single)
        for w in (self.opacity, self.opacity_label):
            w.setVisible(name == "three")
        self.split_line.setVisible(single)
        self.titles[0].setText("Original | Despeckled" if single else TITLES[0])
        self.layout_buttons[name].setChecked(True)
        self._render()
        self.keeper.apply()
        self.layout_changed.emit(name)

    def cycle_layout(self) -> None:
        self.set_layout(LAYOUTS[(LAYOUTS.index(self.layout_name) + 1) % len(LAYOUTS)])

    def set_split(self, frac: float) -> None:
        """Single pane: the original left of ``frac`` of the width, the despeckled image right of it."""
        self.split = min(max(float(frac), 0.0), 1.0)
        self.split_slider.blockSignals(True)
        self.split_slider.setValue(int(round(100 * self.split)))
        self.split_slider.blockSignals(False)
        w = self._width()
        self.split_line.blockSignals(True)
        self.split_line.setValue(self.split * w)
        self.split_line.blockSignals(False)
        self._render()

    def set_strength(self, strength: float) -> None:
        """Mix the despeckled image with the original (1: fully despeckled, 0: the original)."""
        self.strength = min(max(float(strength), 0.0), 1.0)
        self.strength_slider.blockSignals(True)
        self.strength_slider.setValue(int(round(100 * self.strength)))
        self.strength_slider.blockSignals(False)
        self.strength_label.setText("Strength %d %%" % round(100 * self.strength))
        self._render()

    def toggle_compare(self) -> None:
        """Single pane: the whole pane original, or the whole pane despeckled."""
        self.set_split(0.0 if self.split >= 0.5 else 1.0)

    def _on_split_line(self) -> None:
        w = self._width()
        if w > 0:
            self.set_split(self.split_line.value() / w)

    def _width(self) -> int:
        return int(self.keeper.image_size[0]) if self._has_clip else 0

    # ------------------------------------------------------------------------------ images
    def new_clip(self, width: int, height: int) -> None:
        """A new clip: fit its size and clear the panes."""
        self._frame = {}
        for item in (self.original, self.despeckled, self.base, self.overlay):
            item.clear()
        self._has_clip = True
        self.keeper.set_image_size(width, height)
        self.set_split(self.split)

    def set_uncertainty_label(self, text: str) -> None:
        self.colorbar.axis.setLabel(text)

    def set_images(self, original: np.ndarray, despeckled: np.ndarray | None, std: np.ndarray | None,
                   std_mask: np.ndarray | None = None, kind: str | None = None, members: int = 0,
                   preview: str = "1 member") -> None:
        """Show one frame: ``kind`` says what ``despeckled`` is ("ensemble", "preview" or None when
        not despeckled yet); ``std_mask`` marks the pixels where the std is defined; ``preview`` what a
        preview is made with (shown in its marker)."""
        if despeckled is None:
            kind = None
        elif kind is None:
            kind = "ensemble"
        self._frame = {"original": original, "despeckled": despeckled, "std": std, "mask": std_mask,
                       "kind": kind, "members": members, "preview": preview}
        self._render()

    def _render(self) -> None:
        f = self._frame
        if not f:
            return
        orig = to_display(f["original"])
        desp = self._shown_despeckled(orig)
        if self.layout_name == "one":
            shown = split_composite(orig, desp, int(round(self.split * orig.shape[1])))
        else:
            shown = orig
        self.original.setImage(shown, levels=(0, 255), autoLevels=False)
        if self.layout_name != "one":
            self.despeckled.setImage(desp, levels=(0, 255), autoLevels=False)
        if self.layout_name == "three":
            self.base.setImage(desp, levels=(0, 255), autoLevels=False)
            over = self._overlay()
            if over is None:
                self.overlay.clear()
            else:
                self.overlay.setImage(over, levels=uncertainty.levels(), autoLevels=False)
        self._set_markers()

    def _shown_despeckled(self, orig: np.ndarray) -> np.ndarray:
        f = self._frame
        if f["despeckled"] is None:
            return orig
        return to_display(blend(f["original"], f["despeckled"], self.strength))

    def _overlay(self) -> np.ndarray | None:
        f = self._frame
        if f.get("std") is None or f.get("kind") != "ensemble":
            return None
        s = uncertainty.encode(f["std"])
        if f.get("mask") is not None:
            s[~np.asarray(f["mask"], dtype=bool)] = np.nan
        return s

    def _set_markers(self) -> None:
        kind, members = self._frame.get("kind"), self._frame.get("members") or 0
        text = {None: "not despeckled yet: original shown",
                "preview": "preview · %s" % (self._frame.get("preview") or "1 member"),
                "ensemble": "ensemble · %d members" % members if members else "ensemble"}[kind]
        unc = {None: "no uncertainty yet", "preview": "no uncertainty yet (preview)", "ensemble": ""}[kind]
        if self.layout_name == "one":
            self._marker(0, "original  |  despeckled: " + text, kind)
        else:
            self._marker(0, "", kind)
            self._marker(1, text, kind)
            self._marker(2, unc, kind)

    def _marker(self, pane: int, text: str, kind: str | None) -> None:
        m = self.markers[pane]
        if not text:
            m.hide()
            return
        if m.text() != text:
            m.setText(text)
            m.setStyleSheet(MARKER_STYLE[kind] + " padding: 1px 5px; border-radius: 3px;")
            m.adjustSize()
        m.show()

    def marker_text(self, pane: int) -> str:
        """The marker in the corner of ``pane`` ("" when none is shown)."""
        m = self.markers[pane]
        return m.text() if not m.isHidden() else ""

    def image(self, pane: int) -> np.ndarray | None:
        """What pane 0 (the original, uint8) or 1 (the despeckled image or its stand-in, uint8) shows,
        or pane 2's overlay (log₂ grey levels, NaN where transparent; None when there is none)."""
        f = self._frame
        if not f:
            return None
        if pane == 0:
            return to_display(f["original"])
        if pane == 1:
            return self._shown_despeckled(to_display(f["original"]))
        return self._overlay()

    def grab_qimage(self) -> QImage:
        """Render the panes (as on screen) to an image."""
        return self.grid_widget.grab().toImage()
