"""The simulator tab: make a phantom with a chosen probe, despeckle it, and score against truth.

Every job is one worker (:mod:`.workers`): a fast (PSF-convolution) simulation, a full-physics
simulation (pymust in a worker process, elapsed time shown, Cancel terminates it), despeckling, or
the domain-shift run.  Panes: ground truth, simulated, despeckled, uncertainty (the viewer's fixed
scale and colour bar); a table of PSNR, SSIM, CNR and gCNR (simulated vs despeckled).  The tab has
its own model list (it starts on the viewer's model); the domain-shift table runs the same phantom
through every probe preset and marks the probes the model was trained on.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QProgressBar, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from . import uncertainty, workers
from .engine_panel import MODELS
from .engine_work import FrameResult, ModelCache, ModelInfo, despeckle_images
from .panes import colour_map
from .sim_worker import SimRequest, fast_job, full_physics_job, score, shift_job
from .viewer_state import EngineSettings

PANES = ("Ground truth", "Simulated", "Despeckled", "Uncertainty")
METRICS = ("PSNR (dB)", "SSIM", "CNR", "gCNR")
TRAINED = " (trained)"


def _names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    from simulator.phantoms import PHANTOM_NAMES
    from simulator.probes import PROBE_NAMES

    return PHANTOM_NAMES, PROBE_NAMES


def _cell(v: float | None) -> QTableWidgetItem:
    return QTableWidgetItem("" if v is None else ("n/a" if math.isnan(v) else "%.3f" % v))


class SimulatorTab(QWidget):
    """Phantom + probe + frequency → simulation → despeckling → metrics, plus the domain-shift table."""

    simulated = Signal()  #: a new simulation is on show
    despeckled = Signal()  #: the despeckled image and its metrics are on show
    shift_done = Signal()  #: the domain-shift table is complete

    def __init__(self, cache: ModelCache, model: str, message: Callable[[str, str], None],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._cache = cache
        self._message = message
        self.sim: Any = None  #: the SimResult on show
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.shift_results: dict[str, dict[str, dict[str, float]]] = {}
        self.model_info: ModelInfo | None = None
        self.worker: Any = None  #: the running job's worker (None when idle)
        self.full_pid: int | None = None  #: the full-physics process of the running job
        side = self._build_controls(model)
        centre = self._build_panes()
        lay = QHBoxLayout(self)
        lay.addLayout(centre, 1)
        lay.addWidget(side)
        self._set_busy(False)

    # ------------------------------------------------------------------------------ building
    def _build_controls(self, model: str) -> QWidget:
        phantoms, probes = _names()
        self.phantom = QComboBox()
        self.phantom.addItems(list(phantoms))
        if "cyst" in phantoms:
            self.phantom.setCurrentText("cyst")
        self.probe = QComboBox()
        self.probe.addItems(list(probes))
        self.freq = QDoubleSpinBox()
        self.freq.setRange(0.0, 20.0)
        self.freq.setDecimals(2)
        self.freq.setSuffix(" MHz")
        self.freq.setSpecialValueText("preset")
        self.freq.setToolTip("Centre frequency (0 = the probe preset's)")
        self.size = QSpinBox()
        self.size.setRange(32, 512)
        self.size.setSingleStep(32)
        self.size.setValue(128)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2 ** 31 - 1)
        self.model_combo = QComboBox()
        self.model_combo.addItems(list(dict.fromkeys([model, *MODELS])))
        self.model_combo.setToolTip("The model this tab despeckles with (its own choice, not the viewer's)")
        self.model_combo.currentTextChanged.connect(lambda _: self._on_model_changed())
        self.fast_button = QPushButton("Simulate (fast)")
        self.fast_button.clicked.connect(lambda: self.simulate_fast())
        self.full_button = QPushButton("Simulate (full physics)")
        self.full_button.clicked.connect(lambda: self.simulate_full())
        self.despeckle_button = QPushButton("Despeckle")
        self.despeckle_button.clicked.connect(lambda: self.despeckle())
        self.shift_button = QPushButton("Domain shift (all probes)")
        self.shift_button.clicked.connect(lambda: self.domain_shift())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.model_label = QLabel("")
        self.model_label.setWordWrap(True)
        controls = QGroupBox("Phantom, probe and model")
        form = QFormLayout(controls)
        for name, w in (("Phantom", self.phantom), ("Probe", self.probe), ("Frequency", self.freq),
                        ("Size (px)", self.size), ("Seed", self.seed), ("Model", self.model_combo)):
            form.addRow(name, w)
        form.addRow(self.model_label)
        for a, b in ((self.fast_button, self.full_button), (self.despeckle_button, self.shift_button)):
            row = QHBoxLayout()
            row.addWidget(a)
            row.addWidget(b)
            form.addRow(row)
        form.addRow(self.cancel_button)
        form.addRow(self.progress)
        form.addRow(self.status)
        self.metrics = QTableWidget(len(METRICS), 2)
        self.metrics.setHorizontalHeaderLabels(["Simulated", "Despeckled"])
        self.metrics.setVerticalHeaderLabels(list(METRICS))
        self.metrics.verticalHeader().setDefaultSectionSize(22)
        self.metrics.setFixedHeight(22 * len(METRICS) + 30)
        self.metrics.horizontalHeader().setStretchLastSection(True)
        note = QLabel("Against the ground truth inside the imaged field. CNR / gCNR: lesion vs background "
                      "mask of the phantom, display domain (n/a: the phantom has no lesion).")
        note.setWordWrap(True)
        side = QVBoxLayout()
        side.addWidget(controls)
        side.addWidget(note)
        side.addWidget(self.metrics)
        side.addStretch(1)
        side_w = QWidget()
        side_w.setLayout(side)
        side_w.setMaximumWidth(400)
        return side_w

    def _build_panes(self) -> QVBoxLayout:
        self.graphics = pg.GraphicsLayoutWidget()
        self.views: list[pg.ViewBox] = []
        self.items: list[pg.ImageItem] = []
        for k, title in enumerate(PANES):
            self.graphics.addLabel(title, row=2 * (k // 2), col=k % 2)
            vb = self.graphics.addViewBox(row=2 * (k // 2) + 1, col=k % 2, lockAspect=True, invertY=True,
                                          enableMenu=False)
            item = pg.ImageItem(axisOrder="row-major")
            vb.addItem(item)
            if self.views:
                vb.setXLink(self.views[0])
                vb.setYLink(self.views[0])
            self.views.append(vb)
            self.items.append(item)
        cmap = colour_map()
        self.items[3].setLookupTable(cmap.getLookupTable(nPts=256))
        self.colorbar = pg.ColorBarItem(values=uncertainty.levels(), colorMap=cmap, interactive=False, width=14,
                                        orientation="horizontal", label=uncertainty.label())
        self.colorbar.axis.setTicks([[(float(np.log2(v)), uncertainty.tick_text(v))
                                      for v in uncertainty.TICKS_GREY], []])
        self.colorbar.axis.setStyle(hideOverlappingLabels=False)
        self.graphics.addItem(self.colorbar, row=4, col=1)
        self.shift_table = QTableWidget(0, 1 + 2 * len(METRICS))
        self.shift_table.setHorizontalHeaderLabels(
            ["Probe"] + ["%s %s" % (m, k) for m in METRICS for k in ("sim", "desp")])
        centre = QVBoxLayout()
        centre.addWidget(self.graphics, 3)
        self.shift_label = QLabel("Domain shift: the same phantom through every probe, despeckled by the tab's "
                                  "model; probes it was trained on are marked%s" % TRAINED)
        self.shift_label.setWordWrap(True)
        centre.addWidget(self.shift_label)
        centre.addWidget(self.shift_table, 1)
        return centre

    # ------------------------------------------------------------------------------ helpers
    def request(self, path: str = "fast", probe: str | None = None) -> SimRequest:
        f = self.freq.value()
        return SimRequest(self.phantom.currentText(), probe or self.probe.currentText(), f if f > 0 else None,
                          self.size.value(), self.seed.value(), path)

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(model=self.model_combo.currentText())

    def set_model(self, name: str) -> None:
        if self.model_combo.findText(name) < 0:
            self.model_combo.addItem(name)
        self.model_combo.setCurrentText(name)

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def _set_busy(self, busy: bool) -> None:
        for b in (self.fast_button, self.full_button, self.despeckle_button, self.shift_button):
            b.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _start(self, job: Callable[..., Any], *args: Any, on_yield: Callable[[Any], None],
               on_return: Callable[[Any], None], busy_text: str) -> None:
        self.progress.setRange(0, 0)
        self.status.setText(busy_text)
        self._set_busy(True)
        holder: list[Any] = []

        def yielded(value: Any) -> None:
            if not holder[0].abort_requested:
                on_yield(value)

        def returned(value: Any) -> None:
            self._end(holder[0])  # idle before the result is shown: it may start the next job
            on_return(value)

        self.worker = workers.start(job, *args, owner=self, connect={
            "yielded": yielded, "returned": returned, "errored": self._on_error,
            "finished": lambda: self._end(holder[0])})
        holder.append(self.worker)

    def _on_error(self, exc: BaseException) -> None:
        self.status.setText("failed")
        self._message(str(exc) or exc.__class__.__name__, "error")

    def _end(self, worker: Any) -> None:
        if worker is not self.worker:  # ended already, or handed over to the next job
            return
        if worker.abort_requested:
            self.status.setText("cancelled")
        self.worker = None
        self.full_pid = None
        self.progress.setRange(0, 1000)
        self._set_busy(False)

    def _on_model_changed(self) -> None:
        self.model_info = None
        self.model_label.setText("")

    def _on_model(self, info: ModelInfo) -> None:
        self.model_info = info
        self.model_label.setText(info.describe())
        self.colorbar.axis.setLabel(uncertainty.label(info.card))

    # ------------------------------------------------------------------------------ showing
    def _show(self) -> None:
        sim = self.sim
        if sim is None:
            return
        for item, img in zip(self.items[:3], (sim.clean, sim.bmode, self.mean)):
            if img is None:
                item.clear()
            else:
                item.setImage(np.asarray(img, dtype=np.float32), levels=(0.0, 1.0), autoLevels=False)
        if self.std is None:
            self.items[3].clear()
        else:
            self.items[3].setImage(uncertainty.encode(self.std), levels=uncertainty.levels(), autoLevels=False)
        rows = [score(sim.bmode, sim)] + ([score(self.mean, sim)] if self.mean is not None else [])
        for r, m in enumerate(METRICS):
            for c in range(2):
                self.metrics.setItem(r, c, _cell(rows[c][m] if c < len(rows) else None))

    def _set_sim(self, sim: Any) -> None:
        self.sim, self.mean, self.std = sim, None, None
        self._show()
        self.views[0].autoRange(padding=0.02)

    # ------------------------------------------------------------------------------ simulate
    def simulate_fast(self, then_despeckle: bool = False) -> bool:
        """Simulate with the fast path in a worker; :attr:`simulated` is emitted when shown."""
        if self.busy:
            return False
        req = self.request("fast")

        def done(sim: Any) -> None:
            self._set_sim(sim)
            self.status.setText("%s / %s, fast path" % (req.phantom, sim.probe))
            self.simulated.emit()
            if then_despeckle:
                self._start_despeckle()

        self._start(fast_job, req, on_yield=lambda _: None, on_return=done, busy_text="simulating…")
        return True

    def simulate_full(self, path: str = "full") -> None:
        """Simulate in a worker process (cancellable); ``path`` is the simulator path, full physics
        unless stated.  :attr:`simulated` is emitted when the result is on show."""
        if self.busy:
            return
        req = self.request(path)

        def waiting(item: tuple[int, float]) -> None:
            self.full_pid = item[0]
            self.status.setText("simulating (%s path) in a worker process… %.0f s" % (path, item[1]))

        def done(sim: Any) -> None:
            self._set_sim(sim)
            self.status.setText("%s / %s, %s path (worker process)" % (req.phantom, sim.probe, sim.path))
            self.simulated.emit()

        self._start(full_physics_job, req, on_yield=waiting, on_return=done,
                    busy_text="starting a worker process for the %s path…" % path)

    # ------------------------------------------------------------------------------ engine
    def despeckle(self) -> None:
        """Despeckle the simulated image with the tab's model (simulating first if needed)."""
        if self.busy:
            return
        if self.sim is None:
            self.simulate_fast(then_despeckle=True)
            return
        self._start_despeckle()

    def _start_despeckle(self) -> None:
        def got(item: Any) -> None:
            if isinstance(item, ModelInfo):
                self._on_model(item)
            elif isinstance(item, FrameResult):
                self.mean, self.std = item.mean, item.std
                self._show()

        def done(_: Any) -> None:
            self.status.setText("despeckled (%s)" % self.engine_settings().model)
            self.despeckled.emit()

        self._start(despeckle_images, self._cache, self.engine_settings(),
                    [np.asarray(self.sim.bmode, dtype=np.float32)], on_yield=got, on_return=done,
                    busy_text="despeckling…")

    def domain_shift(self) -> None:
        """Simulate the phantom with every probe (fast path), then despeckle each with the tab's model."""
        if self.busy:
            return
        _, probes = _names()
        self.shift_results = {}
        self.shift_table.setRowCount(0)

        def done(_: Any) -> None:
            self.status.setText("domain shift done (%s)" % self.engine_settings().model)
            self.shift_done.emit()

        self._start(shift_job, self._cache, self.engine_settings(), [self.request("fast", p) for p in probes],
                    on_yield=self._on_shift_item, on_return=done, busy_text="simulating every probe…")

    def _on_shift_item(self, item: tuple) -> None:
        if item[0] == "simulated":
            self.status.setText("simulated with %s" % item[1])
        elif item[0] == "model":
            self._on_model(item[1])
            self.status.setText("despeckling with %s…" % item[1].name)
        elif item[0] == "despeckled":
            _, probe, sim, res = item
            self.shift_results[probe] = {"sim": score(sim.bmode, sim), "desp": score(res.mean, sim)}
            self._add_shift_row(probe)

    def trained_probes(self) -> tuple[str, ...]:
        return self.model_info.probes if self.model_info is not None else ()

    def _add_shift_row(self, probe: str) -> None:
        r = self.shift_table.rowCount()
        self.shift_table.insertRow(r)
        trained = probe in self.trained_probes()
        name = QTableWidgetItem(probe + (TRAINED if trained else ""))
        if trained:
            font = QFont(name.font())
            font.setBold(True)
            name.setFont(font)
            name.setToolTip("The model was trained on this probe")
        self.shift_table.setItem(r, 0, name)
        for k, m in enumerate(METRICS):
            for j, key in enumerate(("sim", "desp")):
                self.shift_table.setItem(r, 1 + 2 * k + j, _cell(self.shift_results[probe][key][m]))
        self.shift_table.resizeColumnToContents(0)

    # ------------------------------------------------------------------------------ stop
    def cancel(self) -> None:
        """Stop the running job (a worker process is terminated when its worker closes)."""
        if self.worker is not None:
            self.worker.quit()
            self.status.setText("cancelled")

    def shutdown(self) -> None:
        """Called when the window closes: stop the running job."""
        self.cancel()
