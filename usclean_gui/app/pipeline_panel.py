"""A small panel for the despeckling pipeline's two user controls: the strength slider and one
check box per B-mode pane of the open clip.

Self-contained (not yet placed in :class:`~usclean_gui.app.main_window.MainWindow`): give it a
:class:`~usclean_gui.app.model.ClipSession` with :meth:`PipelinePanel.set_session`; it applies the
user's choices to the session (``set_strength``, ``set_pane_enabled``) and emits
``strength_changed(float)`` (redraw the panes) and ``pane_toggled(int, bool)`` (the session's
results were cleared: despeckle again).
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QGroupBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from .model import ClipSession


class PipelinePanel(QWidget):
    """Strength slider (0-100 %) and pane check boxes."""

    strength_changed = Signal(float)
    pane_toggled = Signal(int, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session: ClipSession | None = None
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setValue(100)
        self.slider.setToolTip("How much of the despeckled image is shown: 0 % the original, 100 % fully despeckled")
        self.slider_label = QLabel()
        self.panes_box = QGroupBox("B-mode panes")
        self.panes_box.setLayout(QVBoxLayout())
        self.pane_checks: list[QCheckBox] = []
        row = QHBoxLayout()
        row.addWidget(QLabel("Strength"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.slider_label)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.panes_box)
        self.slider.valueChanged.connect(self._on_slider)
        self._on_slider(self.slider.value())
        self.setEnabled(False)

    def strength(self) -> float:
        return self.slider.value() / 100.0

    def set_session(self, session: ClipSession | None) -> None:
        """Show ``session``'s panes (one check box each, with its box and spacing) and apply the
        current strength to it; ``None`` empties the panel."""
        self.session = session
        for box in self.pane_checks:
            self.panes_box.layout().removeWidget(box)
            box.deleteLater()
        self.pane_checks = []
        for k, pane in enumerate(session.panes() if session is not None else []):
            x0, y0, x1, y1 = pane.box
            spacing = "" if pane.spacing_mm is None else ", %.3g x %.3g mm" % tuple(pane.spacing_mm)
            box = QCheckBox("%s (%s): %dx%d px at %d,%d%s" % (pane.label, pane.source, x1 - x0, y1 - y0, x0, y0, spacing))
            box.setChecked(pane.enabled)
            box.toggled.connect(lambda on, k=k: self._on_pane(k, on))
            self.panes_box.layout().addWidget(box)
            self.pane_checks.append(box)
        self.panes_box.setVisible(bool(self.pane_checks))
        if session is not None:
            session.set_strength(self.strength())
        self.setEnabled(session is not None)

    def _on_slider(self, value: int) -> None:
        self.slider_label.setText("%d %%" % value)
        if self.session is not None and self.session.set_strength(value / 100.0):
            self.strength_changed.emit(value / 100.0)

    def _on_pane(self, k: int, on: bool) -> None:
        if self.session is not None and self.session.set_pane_enabled(k, on):
            self.pane_toggled.emit(k, on)
