"""The "Despeckling" box of the viewer: model list, sampler, steps, members, auto-despeckle,
Despeckle / Cancel, progress with ETA, and what the open clip holds (ensemble frames, previews)."""
from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QElapsedTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QProgressBar, QPushButton, QSizePolicy, QSpinBox, QWidget)

from . import uncertainty
from .engine_work import ModelInfo
from .viewer_state import ClipSession, EngineSettings

from engine.catalog import SHIPPED as MODELS  # the shipped models, the default first
SAMPLERS = ("default", "posterior", "ddim", "em")
OTHER = "Other model folder…"
PROGRESS_INTERVAL_MS = 150  #: the progress bar and ETA are refreshed at most this often


def _fixed_label(text: str = "") -> QLabel:
    """A label whose text changes never re-layout the window."""
    label = QLabel(text)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    label.setMinimumHeight(label.sizeHint().height())
    return label


class EnginePanel(QGroupBox):
    """Engine settings and status; emits :attr:`settings_changed` when the user changes a setting."""

    settings_changed = Signal()
    start_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Despeckling", parent)
        form = QFormLayout(self)
        self.model_combo = QComboBox()
        self.model_combo.addItems(list(MODELS))
        self.model_combo.addItem(OTHER)
        self.model_combo.setToolTip("A shipped model, or a model folder written by `usclean train`")
        self.model_combo.activated.connect(self._on_model_activated)
        self._model = MODELS[0]
        self.sampler_combo = QComboBox()
        self.sampler_combo.addItems(list(SAMPLERS))
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 100)
        self.steps_spin.setSpecialValueText("default")
        self.members_spin = QSpinBox()
        self.members_spin.setRange(0, 16)
        self.members_spin.setSpecialValueText("all")
        for w in (self.sampler_combo,):
            w.currentIndexChanged.connect(lambda *_: self.settings_changed.emit())
        for w in (self.steps_spin, self.members_spin):
            w.valueChanged.connect(lambda *_: self.settings_changed.emit())
        form.addRow("Model", self.model_combo)
        form.addRow("Sampler", self.sampler_combo)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Members", self.members_spin)
        self.auto_check = QCheckBox("Despeckle on open")
        self.auto_check.setToolTip("Start despeckling as soon as a clip is open: the frame on screen first")
        form.addRow(self.auto_check)
        self.run_button = QPushButton("Despeckle")
        self.run_button.setToolTip("Despeckle the clip: the frame on screen first, then outwards")
        self.run_button.clicked.connect(self.start_requested)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_requested)
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        form.addRow(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("%p % ensemble")
        form.addRow(self.progress)
        self.eta_label = _fixed_label("")
        form.addRow(self.eta_label)
        self.model_info = QLabel("model loads when the first clip is despeckled")
        self.model_info.setWordWrap(True)
        form.addRow(self.model_info)
        self.unc_info = QLabel(uncertainty.describe())
        self.unc_info.setWordWrap(True)
        form.addRow(self.unc_info)
        self._clock = QElapsedTimer()
        self._clock.start()
        self.set_busy(False)

    # -- model list ----------------------------------------------------------------------------
    def set_model(self, name: str) -> None:
        """Select model ``name`` (a shipped name or a folder), adding it to the list if needed."""
        name = str(name).strip()
        if not name:
            return
        idx = self.model_combo.findText(name)
        if idx < 0:
            idx = self.model_combo.count() - 1
            self.model_combo.insertItem(idx, name)
        self.model_combo.setCurrentIndex(idx)
        changed = name != self._model
        self._model = name
        if changed:
            self.settings_changed.emit()

    def model(self) -> str:
        return self._model

    def _on_model_activated(self, index: int) -> None:
        if self.model_combo.itemText(index) != OTHER:
            self.set_model(self.model_combo.itemText(index))
            return
        folder = QFileDialog.getExistingDirectory(self, "Model folder", str(Path.home()))
        if folder:
            self.set_model(folder)
        else:
            self.model_combo.setCurrentIndex(self.model_combo.findText(self._model))

    def settings(self) -> EngineSettings:
        sampler = self.sampler_combo.currentText()
        return EngineSettings(model=self._model, sampler=None if sampler == "default" else sampler,
                              steps=self.steps_spin.value() or None, members=self.members_spin.value() or None)

    # -- status --------------------------------------------------------------------------------
    def set_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)

    def on_model(self, info: ModelInfo) -> None:
        self.members_spin.setMaximum(max(1, info.members))
        self.model_info.setText(info.describe())
        self.unc_info.setText(uncertainty.describe(info.card))

    def show_clip(self, session: ClipSession | None, eta_s: float = float("nan"), running: bool = False,
                  force: bool = False) -> None:
        """Describe what the open clip holds; refreshed at most every PROGRESS_INTERVAL_MS unless ``force``."""
        if not force and self._clock.elapsed() < PROGRESS_INTERVAL_MS:
            return
        self._clock.restart()
        if session is None:
            self.progress.setValue(0)
            self.eta_label.setText("no clip open")
            return
        n, done, prev = session.n_frames, len(session.means), len(session.previews)
        self.progress.setValue(int(round(1000 * done / max(n, 1))))
        bits = ["%d / %d frame%s: ensemble" % (done, n, "s" if n != 1 else "")]
        if prev:
            bits.append("%d preview%s" % (prev, "s" if prev != 1 else ""))
        if running and done < n:
            bits.append("ETA %s" % ("…" if math.isnan(eta_s) else "%.0f s" % eta_s))
        elif not running and done < n:
            bits.append("stopped")
        self.eta_label.setText(" · ".join(bits))
