"""The main window: menus, file opening (dialog, drag and drop, recent files), the viewer tab
(three panes, cine controller, engine controls, B-mode region, ROI tools) and the simulator tab.

Bad input never escapes as a traceback: every failure becomes a message through
:meth:`MainWindow.show_message`, which by default opens a non-modal message box and can be
replaced (``window.message_sink = callable``) so tests and headless runs never block on a dialog.
"""
from __future__ import annotations

import importlib
import math
import os
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QElapsedTimer, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QIcon, QKeySequence, QShortcut
from PySide6.QtWidgets import (QApplication, QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox,
                               QHBoxLayout, QLabel, QMainWindow, QMessageBox, QProgressBar, QPushButton,
                               QSizePolicy, QSpinBox, QSplitter, QTabWidget, QVBoxLayout, QWidget)

from . import export
from .cine import CineController
from .engine_thread import EngineController
from .viewer_state import ClipSession, EngineSettings
from .panes import PaneSet
from .roi import RoiPanel

MODELS = ("multiprobe", "l11-5v", "baseline")
SAMPLERS = ("default", "posterior", "ddim", "em")
MAX_RECENT = 8
PROGRESS_INTERVAL_MS = 150  #: the progress bar and ETA are refreshed at most this often
OPEN_FILTER = "Images (*.dcm *.dicom *.DCM *.png *.npy *.jpg *.tif *.tiff);;All files (*)"
ICON = Path(__file__).resolve().parents[2] / "resources" / "icons" / "usclean.svg"


SIMULATOR_MODULES = ("simulator.probes", "simulator.phantoms", "simulator.physics")


class MainWindow(QMainWindow):
    """The USClean window.  ``engine_loader(name) -> Ensemble`` replaces the shipped loader (tests)."""

    def __init__(self, engine_loader: Callable[[str], Any] | None = None,
                 settings: QSettings | None = None) -> None:
        super().__init__()
        self.setWindowTitle("USClean")
        if ICON.exists():
            self.setWindowIcon(QIcon(str(ICON)))
        self.setAcceptDrops(True)
        self.settings = settings or QSettings("USClean", "usclean-gui")
        self.message_sink: Callable[[str, str], None] | None = None
        self.messages: list[tuple[str, str]] = []  #: every message shown (level, text)
        self.session: ClipSession | None = None
        self.engine = EngineController(engine_loader, self)
        self._job: int | None = None
        self._job_session: ClipSession | None = None

        self.panes = PaneSet()
        self.cine = CineController()
        self.cine.frame_changed.connect(self.show_frame)
        self.cine.install_shortcuts(self)
        esc = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        esc.activated.connect(lambda: self.roi.cancel_drawing())
        self.roi = RoiPanel(self.panes.views)
        self.roi.on_error = lambda msg: self.show_message(msg, "warning")
        self.roi.export_requested.connect(self._ask_export_csv)
        self._region_item: pg.RectROI | None = None

        viewer = QWidget()
        left = QVBoxLayout()
        left.addWidget(self.panes, 1)
        left.addWidget(self.cine)
        side = QVBoxLayout()
        side.addWidget(self._build_engine_box())
        side.addWidget(self._build_region_box())
        side.addWidget(self.roi, 1)
        side_w = QWidget()
        side_w.setLayout(side)
        side_w.setMaximumWidth(420)
        self.side_panel = side_w
        left_w = QWidget()
        left_w.setLayout(left)
        split = QSplitter()
        split.addWidget(left_w)
        split.addWidget(side_w)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        split.setSizes([1100, 400])
        QHBoxLayout(viewer).addWidget(split)

        self.tabs = QTabWidget()
        self.tabs.addTab(viewer, "Viewer")
        # The simulator tab needs pymust, whose import takes seconds: it is imported in a helper
        # thread the first time the tab is shown, and the tab is built when that is done.
        self._simulator: Any = None
        self._sim_loading: threading.Thread | None = None
        placeholder = QLabel("Loading the simulator…")
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.tabs.addTab(placeholder, "Simulator")
        self.tabs.currentChanged.connect(self._on_tab)
        self._sim_poll = QTimer(self)
        self._sim_poll.setInterval(50)
        self._sim_poll.timeout.connect(self._on_sim_poll)
        self.setCentralWidget(self.tabs)
        self._build_menus()
        self.file_label = QLabel("Open a DICOM clip (File ▸ Open or drop a file here)")
        self.statusBar().addWidget(self.file_label, 1)

        self.engine.frame_ready.connect(self._on_frame_ready)
        self.engine.progress.connect(self._on_progress)
        self.engine.finished.connect(self._on_job_end)
        self.engine.cancelled.connect(self._on_job_end)
        self.engine.failed.connect(self._on_failed)
        self.engine.busy_changed.connect(self._on_busy)
        self.engine.model_loaded.connect(self._on_model_loaded)
        self._on_busy(False)
        self.resize(1500, 800)

    def _on_tab(self, index: int) -> None:
        if index != 1 or self._simulator is not None or self._sim_loading is not None:
            return

        def load() -> None:
            for name in SIMULATOR_MODULES:
                try:
                    importlib.import_module(name)
                except Exception:  # noqa: BLE001 - the tab reports it when it is built
                    return

        self._sim_loading = threading.Thread(target=load, name="usclean-simulator-import", daemon=True)
        self._sim_loading.start()
        self._sim_poll.start()

    def _on_sim_poll(self) -> None:
        if self._sim_loading is not None and self._sim_loading.is_alive():
            return
        self._sim_poll.stop()
        try:
            self.simulator
        except ImportError as exc:
            self.tabs.widget(1).setText("The simulator is not available: %s" % exc)

    @property
    def simulator(self) -> Any:
        """The simulator tab (:class:`~.simulator_tab.SimulatorTab`), built on first use."""
        if self._simulator is None:
            from .simulator_tab import SimulatorTab

            self._simulator = SimulatorTab(self.engine, self.engine_settings, self.show_message)
            current = self.tabs.currentIndex()
            self.tabs.blockSignals(True)
            old = self.tabs.widget(1)
            self.tabs.removeTab(1)
            old.deleteLater()
            self.tabs.insertTab(1, self._simulator, "Simulator")
            self.tabs.setCurrentIndex(current)
            self.tabs.blockSignals(False)
        return self._simulator

    # ------------------------------------------------------------------------------ building
    def _build_engine_box(self) -> QGroupBox:
        box = QGroupBox("Despeckling engine")
        form = QFormLayout(box)
        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.addItems(MODELS)
        self.model_combo.setToolTip("A shipped ensemble or a folder holding one")
        self.sampler_combo = QComboBox()
        self.sampler_combo.addItems(SAMPLERS)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 100)
        self.steps_spin.setSpecialValueText("default")
        self.members_spin = QSpinBox()
        self.members_spin.setRange(0, 16)
        self.members_spin.setSpecialValueText("all")
        browse = QPushButton("…")
        browse.setToolTip("Use a model folder written by `usclean train`")
        browse.setMaximumWidth(32)
        browse.clicked.connect(self._ask_model_folder)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(browse)
        form.addRow("Model", model_row)
        form.addRow("Sampler", self.sampler_combo)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Members", self.members_spin)
        self.run_clip_button = QPushButton("Despeckle clip")
        self.run_clip_button.clicked.connect(lambda: self.despeckle())
        self.run_frame_button = QPushButton("This frame")
        self.run_frame_button.clicked.connect(lambda: self.despeckle([self.cine.frame]))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout()
        for b in (self.run_clip_button, self.run_frame_button, self.cancel_button):
            row.addWidget(b)
        form.addRow(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.eta_label = QLabel("")
        # text changes must not re-layout the window (and re-render the panes) on every update
        self.eta_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.eta_label.setMinimumHeight(self.eta_label.sizeHint().height())
        self._progress_clock = QElapsedTimer()
        self._progress_clock.start()
        self.model_info = QLabel("model not loaded yet")
        self.model_info.setWordWrap(True)
        form.addRow(self.model_info)
        form.addRow(self.progress)
        form.addRow(self.eta_label)
        return box

    def _ask_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder", str(Path.home()))
        if folder:
            self.model_combo.setCurrentText(folder)

    def _build_region_box(self) -> QGroupBox:
        box = QGroupBox("B-mode region")
        lay = QVBoxLayout(box)
        self.region_label = QLabel("—")
        self.region_label.setWordWrap(True)
        self.region_edit = QCheckBox("Adjust the region on the original pane")
        self.region_edit.toggled.connect(self._on_region_edit)
        lay.addWidget(self.region_label)
        lay.addWidget(self.region_edit)
        return box

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        act = QAction("&Open…", self)
        act.setShortcut(QKeySequence.StandardKey.Open)
        act.triggered.connect(self._ask_open)
        file_menu.addAction(act)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self._refresh_recent()
        file_menu.addSeparator()
        for text, slot in (("Export derived &DICOM…", self._ask_export_dicom),
                           ("Export &PNG snapshot…", self._ask_export_png),
                           ("Export &MP4 cine…", self._ask_export_mp4),
                           ("Export measurements &CSV…", self._ask_export_csv)):
            a = QAction(text, self)
            a.triggered.connect(slot)
            file_menu.addAction(a)
        self.export_unc_action = QAction("Also export the uncertainty series with DICOM", self)
        self.export_unc_action.setCheckable(True)
        file_menu.addAction(self.export_unc_action)
        file_menu.addSeparator()
        quit_act = QAction("&Quit", self)
        quit_act.setShortcut(QKeySequence.StandardKey.Quit)
        quit_act.triggered.connect(self.close)
        file_menu.addAction(quit_act)
        help_menu = self.menuBar().addMenu("&Help")
        about = QAction("&About USClean", self)
        about.triggered.connect(lambda: self.show_message(
            "USClean: ultrasound despeckling with an IR-SDE diffusion ensemble.\n"
            "Mean of the ensemble = image; cross-member std = uncertainty.", "info"))
        help_menu.addAction(about)

    # ------------------------------------------------------------------------------ messages
    def show_message(self, text: str, level: str = "error") -> None:
        """Tell the user something (non-blocking); ``level`` is "error", "warning" or "info"."""
        self.messages.append((level, text))
        self.statusBar().showMessage(text.splitlines()[0] if text else "", 10000)
        if self.message_sink is not None:
            self.message_sink(level, text)
            return
        icon = {"error": QMessageBox.Icon.Critical, "warning": QMessageBox.Icon.Warning}.get(
            level, QMessageBox.Icon.Information)
        box = QMessageBox(icon, "USClean", text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # ------------------------------------------------------------------------------ opening
    def _ask_open(self) -> None:
        start = str(self.settings.value("last_dir", str(Path.home())))
        path, _ = QFileDialog.getOpenFileName(self, "Open image or clip", start, OPEN_FILTER)
        if path:
            self.open_file(path)

    def open_file(self, path: str | os.PathLike) -> bool:
        """Open a DICOM / PNG / NPY file; on failure show why and keep the current clip."""
        from usclean_gui.dicom import open_image

        p = Path(path)
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            if not p.exists():
                raise FileNotFoundError("%s does not exist" % p)
            if p.is_dir():
                raise IsADirectoryError("%s is a folder; open a file" % p)
            clip = open_image(p)
            session = ClipSession(clip, str(p))
        except (ValueError, OSError, IndexError) as exc:
            self.show_message("Cannot open %s:\n%s" % (p.name, exc), "error")
            return False
        except Exception as exc:  # a decoder bug must not take the window down
            self.show_message("Cannot open %s:\n%s: %s" % (p.name, exc.__class__.__name__, exc), "error")
            return False
        finally:
            QApplication.restoreOverrideCursor()
        self.set_session(session)
        self._add_recent(str(p.resolve()))
        self.settings.setValue("last_dir", str(p.resolve().parent))
        return True

    def set_session(self, session: ClipSession) -> None:
        """Show a newly opened clip (cancels work on the previous one)."""
        if self._job is not None:
            self.engine.cancel(self._job)
        self.session = session
        self.roi.set_session(session)
        self.cine.set_clip(session.n_frames, session.frame_time_ms)
        self.panes.set_images(session.original_frame(0), None, None)
        self._place_region_item()
        self.show_frame(0)
        self.panes.views[0].autoRange(padding=0.02)
        self._update_info()
        self.setWindowTitle("USClean — %s" % Path(session.path).name)

    def _update_info(self) -> None:
        s = self.session
        if s is None:
            return
        clip = s.clip
        h, w = s.shape
        sp = s.spacing_mm
        fps = 1000.0 / s.frame_time_ms
        bits = ["%s" % Path(s.path).name, "%d frame%s" % (s.n_frames, "s" if s.n_frames != 1 else ""),
                "%d×%d%s" % (w, h, " RGB" if clip.is_color else ""),
                ("%.3f×%.3f mm/px" % sp) if sp else "uncalibrated",
                "%.1f fps%s" % (fps, "" if getattr(clip, "frame_time_ms", None) else " (assumed)")]
        self.file_label.setText("   ".join(bits))
        x0, y0, x1, y1 = s.box
        src = getattr(clip, "region_source", "")
        self.region_label.setText("x %d–%d, y %d–%d (%s)" % (x0, x1, y0, y1, src or "whole frame"))

    def _add_recent(self, path: str) -> None:
        recent = [p for p in self.recent_files() if p != path]
        self.settings.setValue("recent", [path] + recent[:MAX_RECENT - 1])
        self._refresh_recent()

    def recent_files(self) -> list[str]:
        val = self.settings.value("recent", [])
        if isinstance(val, str):
            val = [val]
        return [str(v) for v in (val or [])]

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.recent_files():
            a = self.recent_menu.addAction(p)
            a.triggered.connect(lambda _=False, p=p: self.open_file(p))
        self.recent_menu.setEnabled(bool(self.recent_files()))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt API)
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt API)
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.open_file(files[0])

    # ------------------------------------------------------------------------------ display
    def show_frame(self, i: int) -> None:
        """Draw frame ``i`` in the three panes and re-measure the ROIs."""
        s = self.session
        if s is None:
            return
        try:
            orig = s.original_frame(i)
            desp = s.despeckled_frame(i)
            std = s.std_frame(i)
            mask = s.paste_mask(i) if std is not None else None
        except (ValueError, OSError) as exc:
            self.cine.pause()
            self.show_message("Cannot decode frame %d:\n%s" % (i + 1, exc), "error")
            return
        self.panes.set_images(orig, desp, std, mask)
        self.roi.set_frame(i)

    # ------------------------------------------------------------------------------ region
    def _place_region_item(self) -> None:
        if self._region_item is not None:
            self.panes.views[0].removeItem(self._region_item)
        x0, y0, x1, y1 = self.session.box
        item = pg.RectROI((x0, y0), (x1 - x0, y1 - y0), pen=pg.mkPen((255, 220, 0), width=1,
                                                                      style=Qt.PenStyle.DashLine))
        item.setZValue(10)
        item.translatable = self.region_edit.isChecked()
        item.resizable = self.region_edit.isChecked()
        for h in item.getHandles():
            h.setVisible(self.region_edit.isChecked())
        item.sigRegionChangeFinished.connect(self._on_region_moved)
        self.panes.views[0].addItem(item)
        self._region_item = item

    def _on_region_edit(self, on: bool) -> None:
        if self._region_item is None:
            return
        self._region_item.translatable = on
        for h in self._region_item.getHandles():
            h.setVisible(on)

    def set_region(self, box: tuple[int, int, int, int]) -> None:
        """Use ``box`` (x0, y0, x1, y1) as the B-mode region; drops results for the old one."""
        if self.session is None:
            return
        try:
            changed = self.session.set_box(box)
        except ValueError as exc:
            self.show_message(str(exc), "warning")
            changed = True
        if changed:
            if self._job is not None:
                self.engine.cancel(self._job)
            self._place_region_item()
            self._update_info()
            self.show_frame(self.cine.frame)

    def _on_region_moved(self, item: pg.RectROI) -> None:
        pos, size = item.pos(), item.size()
        self.set_region((pos.x(), pos.y(), pos.x() + size.x(), pos.y() + size.y()))

    # ------------------------------------------------------------------------------ engine
    def engine_settings(self) -> EngineSettings:
        sampler = self.sampler_combo.currentText()
        return EngineSettings(model=self.model_combo.currentText().strip() or MODELS[0],
                              sampler=None if sampler == "default" else sampler,
                              steps=self.steps_spin.value() or None,
                              members=self.members_spin.value() or None)

    def despeckle(self, indices: list[int] | None = None) -> int | None:
        """Despeckle ``indices`` (default: the whole clip, in order, as ``usclean despeckle`` does);
        returns the job id."""
        s = self.session
        if s is None:
            self.show_message("Open a clip first.", "warning")
            return None
        settings = self.engine_settings()
        if s.settings is not None and s.settings != settings:
            s.clear_results()
        s.settings = settings
        if indices is None:
            indices = list(range(s.n_frames))
        if self._job is not None:
            self.engine.cancel(self._job)
        self.progress.setValue(0)
        self.eta_label.setText("loading model %s…" % settings.model)
        self._job = self.engine.submit(indices, s.engine_input, settings)
        self._job_session = s
        return self._job

    def cancel(self) -> None:
        self.engine.cancel()

    def _on_frame_ready(self, job: int, i: int, mean: np.ndarray, std: np.ndarray) -> None:
        s = self._job_session
        if job != self._job or s is None or s is not self.session:
            return
        s.store(i, mean, std)
        if i == self.cine.frame:
            self.show_frame(i)

    def _on_progress(self, job: int, frac: float, eta: float) -> None:
        if job != self._job:
            return
        if frac < 1.0 and self._progress_clock.elapsed() < PROGRESS_INTERVAL_MS:
            return
        self._progress_clock.restart()
        self.progress.setValue(int(round(1000 * frac)))
        self.eta_label.setText("%.0f %% — ETA %s" % (100 * frac, "…" if math.isnan(eta) else "%.0f s" % eta))

    def _on_job_end(self, job: int) -> None:
        if job == self._job:
            self._job = None
            done = len(self.session.means) if self.session else 0
            self.eta_label.setText("%d frame%s despeckled" % (done, "s" if done != 1 else ""))

    def _on_failed(self, job: int, message: str) -> None:
        self._on_job_end(job)
        self.eta_label.setText("failed")
        self.show_message(message, "error")

    def _on_model_loaded(self, name: str, members: int, description: str) -> None:
        self.members_spin.setMaximum(max(1, members))
        self.model_info.setText(description)

    def _on_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)

    # ------------------------------------------------------------------------------ exports
    def _save_path(self, title: str, suffix: str, filt: str) -> str | None:
        base = Path(self.session.path).with_suffix("") if self.session else Path.home() / "usclean"
        path, _ = QFileDialog.getSaveFileName(self, title, str(base) + suffix, filt)
        return path or None

    def _guard(self, fn: Callable[[], Path]) -> Path | None:
        try:
            out = fn()
        except (ValueError, OSError) as exc:
            self.show_message("Export failed:\n%s" % exc, "error")
            return None
        self.statusBar().showMessage("Wrote %s" % out, 10000)
        return out

    def _need_session(self) -> bool:
        if self.session is None:
            self.show_message("Open a clip first.", "warning")
            return False
        return True

    def export_dicom(self, path: str, include_uncertainty: bool = False) -> Path | None:
        """Write the despeckled clip as a derived DICOM series (all frames must be despeckled)."""
        if not self._need_session():
            return None
        return self._guard(lambda: export.derived_dicom(self.session, path, include_uncertainty))

    def export_png(self, path: str) -> Path | None:
        """Save the three panes as they are on screen."""
        return self._guard(lambda: export.snapshot_png(self.panes.grab_qimage(), path, self._protect()))

    def export_mp4(self, path: str) -> Path | None:
        """Write the side-by-side cine (original | despeckled | uncertainty) as MP4."""
        if not self._need_session():
            return None
        return self._guard(lambda: export.cine_mp4(self.session, path, 1000.0 / self.cine.frame_time_ms,
                                                   self.panes.colormap, self.panes.opacity.value() / 100.0))

    def export_csv(self, path: str) -> Path | None:
        """Write the measurements table with provenance."""
        if not self._need_session():
            return None
        return self._guard(lambda: export.measurements_csv(self.roi.rows, self.roi.shapes, self.session, path))

    def _protect(self) -> tuple[str, ...]:
        return (self.session.path,) if self.session else ()

    def _ask_export_dicom(self) -> None:
        if self._need_session() and (p := self._save_path("Export derived DICOM", "_despeckled.dcm",
                                                          "DICOM (*.dcm)")):
            self.export_dicom(p, self.export_unc_action.isChecked())

    def _ask_export_png(self) -> None:
        if p := self._save_path("Save PNG snapshot", "_panes.png", "PNG (*.png)"):
            self.export_png(p)

    def _ask_export_mp4(self) -> None:
        if self._need_session() and (p := self._save_path("Export MP4 cine", "_side_by_side.mp4", "MP4 (*.mp4)")):
            self.export_mp4(p)

    def _ask_export_csv(self) -> None:
        if self._need_session() and (p := self._save_path("Export measurements", "_roi.csv", "CSV (*.csv)")):
            self.export_csv(p)

    # ------------------------------------------------------------------------------ closing
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt API)
        self.cine.pause()
        if self._simulator is not None:
            self._simulator.shutdown()
        if not self.engine.shutdown(1000):
            self.engine.shutdown(10000)
        super().closeEvent(event)
