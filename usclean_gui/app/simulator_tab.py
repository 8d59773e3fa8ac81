"""The simulator tab: make a phantom with a chosen probe, despeckle it, and score against truth.

Fast (PSF-convolution) simulations take a fraction of a second and run in a helper thread (so
even a convex-probe simulation never freezes the window); full-physics (pymust) runs in a
worker process with elapsed-time feedback and Cancel.  Panes: ground truth, simulated,
despeckled, uncertainty; a table of PSNR, SSIM, CNR and gCNR (simulated vs despeckled).  The
"domain shift" view runs the same phantom through every probe preset with the chosen model and
tabulates the same metrics — how a model trained on one probe fares on the others.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QProgressBar, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from .engine_thread import EngineController
from .viewer_state import EngineSettings
from .sim_worker import SimRequest, process_job, score, simulate

PANES = ("Ground truth", "Simulated", "Despeckled", "Uncertainty (std)")
METRICS = ("PSNR (dB)", "SSIM", "CNR", "gCNR")


def _names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    from simulator.phantoms import PHANTOM_NAMES
    from simulator.probes import PROBE_NAMES

    return PHANTOM_NAMES, PROBE_NAMES


class SimulatorTab(QWidget):
    """Phantom + probe + frequency → simulation → despeckling → metrics, plus the domain-shift table."""

    simulated = Signal()  #: a new simulation is on show
    despeckled = Signal()  #: the despeckled image and its metrics are on show
    shift_done = Signal()  #: the domain-shift table is complete

    def __init__(self, engine: EngineController, settings: Callable[[], EngineSettings],
                 message: Callable[[str, str], None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._engine = engine
        self._settings = settings
        self._message = message
        self.sim: Any = None  #: the SimResult on show
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.shift_results: dict[str, dict[str, dict[str, float]]] = {}
        self._shift_sims: list[Any] = []
        self._job: int | None = None
        self._job_kind = ""
        self._proc: Any = None
        self._proc_path = "full"
        self._queue: Any = None
        self._t0 = 0.0
        self._poll = QTimer(self)
        self._poll.setInterval(100)
        self._poll.timeout.connect(self._poll_process)
        self._threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usclean-sim")
        self._future: Future | None = None
        self._future_kind = ""
        self._then_despeckle = False
        self._future_poll = QTimer(self)
        self._future_poll.setInterval(20)
        self._future_poll.timeout.connect(self._poll_future)
        engine.frame_ready.connect(self._on_frame)
        engine.finished.connect(self._on_done)
        engine.cancelled.connect(self._on_cancelled)
        engine.failed.connect(self._on_failed)

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

        controls = QGroupBox("Phantom and probe")
        form = QFormLayout(controls)
        form.addRow("Phantom", self.phantom)
        form.addRow("Probe", self.probe)
        form.addRow("Frequency", self.freq)
        form.addRow("Size (px)", self.size)
        form.addRow("Seed", self.seed)
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
        self.shift_table = QTableWidget(0, 1 + 2 * len(METRICS))
        self.shift_table.setHorizontalHeaderLabels(
            ["Probe"] + ["%s %s" % (m, k) for m in METRICS for k in ("sim", "desp")])
        side = QVBoxLayout()
        side.addWidget(controls)
        note = QLabel("Against the ground truth inside the imaged field. CNR / gCNR: lesion vs background "
                      "mask of the phantom, display domain (n/a: the phantom has no lesion).")
        note.setWordWrap(True)
        side.addWidget(note)
        self.metrics.verticalHeader().setDefaultSectionSize(22)
        self.metrics.setFixedHeight(22 * len(METRICS) + 30)
        self.metrics.horizontalHeader().setStretchLastSection(True)
        side.addWidget(self.metrics)
        side.addStretch(1)
        side_w = QWidget()
        side_w.setLayout(side)
        side_w.setMaximumWidth(420)

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
        self.items[3].setColorMap(pg.colormap.get("inferno"))
        centre = QVBoxLayout()
        centre.addWidget(self.graphics, 3)
        centre.addWidget(QLabel("Domain shift: the same phantom through every probe, despeckled by the chosen model"))
        centre.addWidget(self.shift_table, 1)
        lay = QHBoxLayout(self)
        lay.addLayout(centre, 1)
        lay.addWidget(side_w)
        self._set_busy(False)

    # ------------------------------------------------------------------------------ helpers
    def request(self, path: str = "fast", probe: str | None = None) -> SimRequest:
        f = self.freq.value()
        return SimRequest(self.phantom.currentText(), probe or self.probe.currentText(), f if f > 0 else None,
                          self.size.value(), self.seed.value(), path)

    @property
    def busy(self) -> bool:
        return (self._job is not None or self._future is not None
                or (self._proc is not None and self._proc.is_alive()))

    def _set_busy(self, busy: bool) -> None:
        for b in (self.fast_button, self.full_button, self.despeckle_button, self.shift_button):
            b.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

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
            top = max(float(np.percentile(self.std, 99.5)), 1e-3)
            self.items[3].setImage(np.asarray(self.std, dtype=np.float32), levels=(0.0, top), autoLevels=False)
        rows = [score(sim.bmode, sim)] + ([score(self.mean, sim)] if self.mean is not None else [])
        for r, m in enumerate(METRICS):
            for c in range(2):
                v = rows[c][m] if c < len(rows) else None
                text = "" if v is None else ("n/a" if math.isnan(v) else "%.3f" % v)
                self.metrics.setItem(r, c, QTableWidgetItem(text))

    def _set_sim(self, sim: Any) -> None:
        self.sim, self.mean, self.std = sim, None, None
        self._show()
        self.views[0].autoRange(padding=0.02)

    # ------------------------------------------------------------------------------ simulate
    def simulate_fast(self, then_despeckle: bool = False) -> bool:
        """Simulate with the fast path in a helper thread; :attr:`simulated` is emitted when shown."""
        if self.busy:
            return False
        req = self.request("fast")
        self._start_future("fast", lambda: simulate(req))
        self._then_despeckle = then_despeckle
        return True

    def _start_future(self, kind: str, fn: Callable[[], Any]) -> None:
        self._future_kind = kind
        self._t0 = time.monotonic()
        self._future = self._threads.submit(fn)
        self.progress.setRange(0, 0)
        self.status.setText("simulating…")
        self._set_busy(True)
        self._future_poll.start()

    def _poll_future(self) -> None:
        fut = self._future
        if fut is None or not fut.done():
            return
        self._future_poll.stop()
        self._future = None
        self.progress.setRange(0, 1000)
        self._set_busy(False)
        try:
            result = fut.result()
        except (ValueError, ImportError, RuntimeError, MemoryError) as exc:
            self.status.setText("simulation failed")
            self._message("Simulation failed:\n%s" % exc, "error")
            return
        elapsed = time.monotonic() - self._t0
        if self._future_kind == "fast":
            self._set_sim(result)
            self.status.setText("%s / %s, fast path, %.2f s" % (self.phantom.currentText(), result.probe, elapsed))
            self.simulated.emit()
            if self._then_despeckle:
                self.despeckle()
        else:
            self._shift_sims = result
            self._submit("shift", [np.asarray(r.bmode, dtype=np.float32) for r in result])

    def simulate_full(self, path: str = "full") -> None:
        """Simulate in a worker process (cancellable); ``path`` is the simulator path, full physics
        unless stated.  :attr:`simulated` is emitted when the result is on show."""
        if self.busy:
            return
        ctx = mp.get_context("spawn")
        self._queue = ctx.Queue()
        self._proc_path = path
        self._proc = ctx.Process(target=process_job, args=(self.request(path), self._queue), daemon=True)
        self._proc.start()
        self._t0 = time.monotonic()
        self.progress.setRange(0, 0)  # busy indicator: pymust reports no progress
        self._set_busy(True)
        self._poll.start()

    def _poll_process(self) -> None:
        import queue as _q

        elapsed = time.monotonic() - self._t0
        try:
            kind, payload = self._queue.get_nowait()
        except _q.Empty:
            if self._proc is not None and not self._proc.is_alive():
                self._end_process()
                self._message("The simulation process stopped unexpectedly (exit code %s)."
                              % self._proc.exitcode, "error")
            else:
                self.status.setText("simulating (%s path) in a worker process… %.0f s" % (self._proc_path, elapsed))
            return
        self._end_process()
        if kind == "ok":
            self._set_sim(payload)
            self.status.setText("%s / %s, %s path (worker process), %.0f s"
                                % (self.phantom.currentText(), payload.probe, payload.path, elapsed))
            self.simulated.emit()
        else:
            self._message("Simulation (%s path) failed:\n%s" % (self._proc_path, payload), "error")

    def _end_process(self) -> None:
        self._poll.stop()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        if self._proc is not None:
            if self._proc.is_alive():  # its result (if any) is already here: do not wait for its teardown
                self._proc.terminate()
            self._proc.join(timeout=0.5)
        self._set_busy(False)

    # ------------------------------------------------------------------------------ engine
    def despeckle(self) -> int | None:
        """Despeckle the simulated image with the viewer's engine settings (simulating first if needed)."""
        if self.sim is None:
            self.simulate_fast(then_despeckle=True)
            return None
        return self._submit("single", [np.asarray(self.sim.bmode, dtype=np.float32)])

    def domain_shift(self) -> None:
        """Simulate the phantom with every probe (fast path), then despeckle each with the chosen model."""
        if self.busy:
            return
        _, probes = _names()
        reqs = [self.request("fast", p) for p in probes]
        self._shift_probes = list(probes)
        self.shift_results = {}
        self.shift_table.setRowCount(0)
        self._start_future("shift", lambda: [simulate(r) for r in reqs])

    def _submit(self, kind: str, frames: list[np.ndarray]) -> int | None:
        if self.busy:
            return None
        self._job_kind = kind
        # every probe's image is its own acquisition: normalised and despeckled on its own
        self._job = self._engine.submit(range(len(frames)), lambda i: frames[i], self._settings(), independent=True)
        self.progress.setValue(0)
        self._set_busy(True)
        self._engine.progress.connect(self._on_progress)
        return self._job

    def _on_progress(self, job: int, frac: float, eta: float) -> None:
        if job == self._job:
            self.progress.setValue(int(1000 * frac))
            self.status.setText("despeckling… %.0f %%%s" % (100 * frac, "" if math.isnan(eta) else ", ETA %.0f s" % eta))

    def _on_frame(self, job: int, i: int, mean: np.ndarray, std: np.ndarray) -> None:
        if job != self._job:
            return
        if self._job_kind == "single":
            self.mean, self.std = mean, std
            self._show()
            return
        probe, sim = self._shift_probes[i], self._shift_sims[i]
        self.shift_results[probe] = {"sim": score(sim.bmode, sim), "desp": score(mean, sim)}
        r = self.shift_table.rowCount()
        self.shift_table.insertRow(r)
        self.shift_table.setItem(r, 0, QTableWidgetItem(probe))
        for k, m in enumerate(METRICS):
            for j, key in enumerate(("sim", "desp")):
                v = self.shift_results[probe][key][m]
                self.shift_table.setItem(r, 1 + 2 * k + j, QTableWidgetItem("n/a" if math.isnan(v) else "%.3f" % v))

    def _finish(self, text: str) -> None:
        self._job = None
        self._engine.progress.disconnect(self._on_progress)
        self._set_busy(False)
        self.status.setText(text)

    def _on_done(self, job: int) -> None:
        if job == self._job:
            self.progress.setValue(1000)
            if self._job_kind == "shift":
                self._finish("domain shift done (%s)" % self._settings().model)
                self.shift_done.emit()
            else:
                self._finish("despeckled")
                self.despeckled.emit()

    def _on_cancelled(self, job: int) -> None:
        if job == self._job:
            self._finish("cancelled")

    def _on_failed(self, job: int, msg: str) -> None:
        if job == self._job:
            self._finish("failed")
            self._message(msg, "error")

    # ------------------------------------------------------------------------------ stop
    def cancel(self) -> None:
        """Stop the running simulation process or despeckling job."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._end_process()
            self.status.setText("simulation cancelled")
        if self._future is not None:  # a fast simulation cannot be interrupted: drop its result
            self._future_poll.stop()
            self._future = None
            self.progress.setRange(0, 1000)
            self._set_busy(False)
            self.status.setText("simulation cancelled")
        if self._job is not None:
            self._engine.cancel(self._job)

    def shutdown(self) -> None:
        """Called when the window closes: stop the worker process, drop pending simulations."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=1.0)
        self._poll.stop()
        self._future_poll.stop()
        self._threads.shutdown(wait=False, cancel_futures=True)
