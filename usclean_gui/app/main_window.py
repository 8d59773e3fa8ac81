"""The main window: menus, file opening (dialog, drag and drop, recent files), the viewer tab
(panes, cine controller, despeckling box, B-mode region, ROI tools) and the simulator tab.

Opening a clip starts despeckling at once (the "Despeckle on open" setting turns that off): the
frame on screen first, previews ahead of the playhead while the loop plays, the ensemble behind.
Bad input never escapes as a traceback: every failure becomes a message through
:meth:`MainWindow.show_message`, which by default opens a non-modal message box and can be
replaced (``window.message_sink = callable``) so tests and headless runs never block on a dialog.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QUrl, Signal
from PySide6.QtGui import (QAction, QCloseEvent, QDesktopServices, QDragEnterEvent, QDropEvent, QGuiApplication,
                           QIcon, QKeySequence, QShortcut)
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QMainWindow, QMenu,
                               QMessageBox, QScrollArea, QTabWidget, QVBoxLayout, QWidget)

from . import export, export_dirs, workers
from .cine import CineController
from .despeckle_runner import DespeckleRunner
from .engine_panel import MODELS, EnginePanel
from .engine_work import Focus, FrameResult, ModelCache, ModelInfo
from .panes import LAYOUT_NAMES, LAYOUTS, PaneSet
from .region_box import RegionBox
from .roi import RoiPanel
from .shortcuts import ShortcutsDialog
from .viewer_state import ClipSession, EngineSettings

MAX_RECENT = 8
OPEN_FILTER = "Images (*.dcm *.dicom *.DCM *.png *.npy *.jpg *.tif *.tiff);;All files (*)"
ROOT = Path(__file__).resolve().parents[2]
ICON = ROOT / "resources" / "icons" / "usclean.svg"
USER_GUIDE = ROOT / "docs" / "USER_GUIDE.md"
SIMULATOR_MODULES = ("simulator.probes", "simulator.phantoms", "simulator.physics")
DEFAULT_SIZE = (1500, 860)  #: on screens large enough; otherwise the window fills the screen's free area
SIDE_WIDTH = 370
CLOSE_WAIT_MS = 3000


def import_simulator(*, aborted: Callable[[], bool] = lambda: False):
    """Generator (a worker): import the simulator's modules (seconds, for pymust) before the tab is built."""
    for name in SIMULATOR_MODULES:
        importlib.import_module(name)
        yield name


class MainWindow(QMainWindow):
    """The USClean window.  ``engine_loader(name) -> Ensemble`` replaces the shipped loader (tests)."""

    frame_stored = Signal(object)  #: a FrameResult of the open clip was stored
    despeckle_ended = Signal(bool)  #: the despeckling job stopped (True: every frame has its ensemble)

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
        self.model_info: ModelInfo | None = None
        self.cache = ModelCache(engine_loader)
        self.runner = DespeckleRunner(self.cache, self)
        self.undespeckled_shown = 0  #: frames shown while playing without any despeckled result
        self._sim_worker: Any = None
        self._simulator: Any = None
        self._shortcuts_dialog: ShortcutsDialog | None = None

        self.panes = PaneSet()
        # the strength shown is the one exports and CSV rows record
        self.panes.strength_slider.valueChanged.connect(
            lambda v: self.session.set_strength(v / 100.0) if self.session is not None else None)
        self.cine = CineController()
        self.cine.frame_changed.connect(self.show_frame)
        self.cine.playing_changed.connect(self._on_playing)
        self.cine.install_shortcuts(self)
        self.roi = RoiPanel(self.panes.views)
        self.roi.on_error = lambda msg: self.show_message(msg, "warning")
        self.roi.export_requested.connect(self._ask_export_csv)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self).activated.connect(self.roi.cancel_drawing)
        for vb in self.panes.views:
            vb.on_double = self.panes.keeper.fit
            vb.on_context = self._pane_menu
        self.engine_panel = EnginePanel()
        self.engine_panel.auto_check.setChecked(self.settings.value("auto_despeckle", True, type=bool))
        self.engine_panel.auto_check.toggled.connect(lambda on: self.settings.setValue("auto_despeckle", on))
        self.engine_panel.start_requested.connect(lambda: self.despeckle())
        self.engine_panel.cancel_requested.connect(self.cancel)
        self.engine_panel.settings_changed.connect(self._on_settings_changed)
        self._build_tabs()
        self._build_menus()
        self._build_status()
        self._connect_runner()
        self.panes.set_layout(str(self.settings.value("layout", "three")))
        self.panes.layout_changed.connect(lambda name: self.settings.setValue("layout", name))
        self._fit_to_screen()

    # ------------------------------------------------------------------------------ building
    def _build_tabs(self) -> None:
        left = QVBoxLayout()
        left.setContentsMargins(0, 0, 0, 0)
        left.addWidget(self.panes, 1)
        left.addWidget(self.cine)
        left_w = QWidget()
        left_w.setLayout(left)
        side = QVBoxLayout()
        side.addWidget(self.engine_panel)
        self.region_box = RegionBox(self.panes.views[0])
        self.region_box.moved.connect(self.set_region)
        self.region_box.pane_toggled.connect(lambda k, on: self._regions_changed())
        side.addWidget(self.region_box)
        side.addWidget(self.roi)
        side.addStretch(1)
        side_w = QWidget()
        side_w.setLayout(side)
        scroll = QScrollArea()
        scroll.setWidget(side_w)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFixedWidth(SIDE_WIDTH)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.side_panel = scroll
        viewer = QWidget()
        row = QHBoxLayout(viewer)
        row.setContentsMargins(4, 4, 4, 4)
        row.addWidget(left_w, 1)
        row.addWidget(scroll)
        self.tabs = QTabWidget()
        self.tabs.addTab(viewer, "Viewer")
        # The simulator tab needs pymust, whose import takes seconds: a worker imports it the first
        # time the tab is shown, and the tab is built when that is done.
        placeholder = QLabel("Loading the simulator…")
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.tabs.addTab(placeholder, "Simulator")
        self.tabs.currentChanged.connect(self._on_tab)
        self.setCentralWidget(self.tabs)

    def _build_status(self) -> None:
        self.file_label = QLabel("Open a DICOM clip (File ▸ Open or drop a file here)")
        self.statusBar().addWidget(self.file_label, 1)
        self.dropped_label = QLabel("")
        self.dropped_label.setToolTip("Frames playback skipped to keep the clip's frame rate, and frames shown "
                                      "while playing before any despeckled result was ready")
        self.dropped_label.setFixedWidth(self.dropped_label.fontMetrics().horizontalAdvance(
            "playback: 99999 frames dropped · 99999 shown before despeckling") + 8)
        self.statusBar().addPermanentWidget(self.dropped_label)

    def _fit_to_screen(self) -> None:
        screen = self.screen() or QGuiApplication.primaryScreen()
        avail = screen.availableGeometry() if screen is not None else None
        w, h = DEFAULT_SIZE
        if avail is not None:
            w, h = min(w, avail.width() - 16), min(h, avail.height() - 40)
        self.resize(max(w, 640), max(h, 480))

    def _action(self, menu: QMenu, text: str, slot: Callable[[], Any], keys: Any = None) -> QAction:
        a = QAction(text, self)
        if keys is not None:
            a.setShortcuts(keys if isinstance(keys, list) else [QKeySequence(keys)])
        a.triggered.connect(lambda _=False: slot())
        menu.addAction(a)
        return a

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Open…", self._ask_open, QKeySequence.StandardKey.Open)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self._refresh_recent()
        file_menu.addSeparator()
        for text, slot in (("Export derived &DICOM…", self._ask_export_dicom),
                           ("Export &PNG snapshot…", self._ask_export_png),
                           ("Export &MP4 cine…", self._ask_export_mp4),
                           ("Export measurements &CSV…", self._ask_export_csv)):
            self._action(file_menu, text, slot)
        self.export_unc_action = QAction("Also export the uncertainty series with DICOM", self)
        self.export_unc_action.setCheckable(True)
        file_menu.addAction(self.export_unc_action)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        self._build_view_menu(self.menuBar().addMenu("&View"))
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts", self.show_shortcuts, QKeySequence.StandardKey.HelpContents)
        self._action(help_menu, "&User guide", self._open_user_guide)
        self._action(help_menu, "&About USClean", lambda: self.show_message(
            "USClean: ultrasound despeckling with an IR-SDE diffusion ensemble.\n"
            "Mean of the ensemble = image; spread of its members = uncertainty.", "info"))

    def _build_view_menu(self, menu: QMenu) -> None:
        self.view_menu = menu
        keeper = self.panes.keeper
        self._action(menu, "&Fit to pane", keeper.fit, "F")
        self._action(menu, "1:&1 (one image pixel per screen pixel)", keeper.one_to_one, "1")
        self._action(menu, "&Reset view", keeper.fit, "Ctrl+0")
        menu.addSeparator()
        for name, keys in zip(LAYOUTS, ("Ctrl+3", "Ctrl+2", "Ctrl+1")):
            self._action(menu, LAYOUT_NAMES[name], lambda name=name: self.panes.set_layout(name), keys)
        self._action(menu, "Next &layout", self.panes.cycle_layout, "L")
        self._action(menu, "&Toggle original ⇄ despeckled (one pane)", self._toggle_compare, "T")
        menu.addSeparator()
        self.side_action = self._action(menu, "&Side panel", lambda: self.side_panel.setVisible(
            self.side_action.isChecked()), "Ctrl+B")
        self.side_action.setCheckable(True)
        self.side_action.setChecked(True)

    def _toggle_compare(self) -> None:
        if self.panes.layout_name != "one":
            self.panes.set_layout("one")
        self.panes.toggle_compare()

    def _pane_menu(self, screen_pos: Any) -> None:
        """The right-click menu of a pane: the View menu's entries."""
        menu = QMenu(self)
        for a in self.view_menu.actions():
            menu.addAction(a)
        menu.addSeparator()
        self._action(menu, "Save PNG snapshot…", self._ask_export_png)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.popup(screen_pos.toPoint() if hasattr(screen_pos, "toPoint") else screen_pos)

    def show_shortcuts(self) -> ShortcutsDialog:
        """Help ▸ Keyboard shortcuts (non-modal)."""
        if self._shortcuts_dialog is None:
            self._shortcuts_dialog = ShortcutsDialog(self)
        self._shortcuts_dialog.show()
        self._shortcuts_dialog.raise_()
        return self._shortcuts_dialog

    def _open_user_guide(self) -> None:
        if USER_GUIDE.exists():
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(USER_GUIDE)))
        else:
            self.show_message("The user guide is docs/USER_GUIDE.md in the USClean sources.", "info")

    # ------------------------------------------------------------------------------ simulator tab
    def _on_tab(self, index: int) -> None:
        if index != 1 or self._simulator is not None or self._sim_worker is not None:
            return

        def failed(exc: BaseException) -> None:
            self.tabs.widget(1).setText("The simulator is not available: %s" % exc)

        self._sim_worker = workers.start(import_simulator, owner=self, connect={"errored": failed,
                                                                   "returned": lambda _: self.simulator})

    @property
    def simulator(self) -> Any:
        """The simulator tab (:class:`~.simulator_tab.SimulatorTab`), built on first use."""
        if self._simulator is None:
            from .simulator_tab import SimulatorTab

            self._simulator = SimulatorTab(self.cache, self.engine_panel.model(), self.show_message)
            current = self.tabs.currentIndex()
            self.tabs.blockSignals(True)
            old = self.tabs.widget(1)
            self.tabs.removeTab(1)
            old.deleteLater()
            self.tabs.insertTab(1, self._simulator, "Simulator")
            self.tabs.setCurrentIndex(current)
            self.tabs.blockSignals(False)
        return self._simulator

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
        start = str(self.settings.value("last_dir", str(export_dirs.documents_dir())))
        path, _ = QFileDialog.getOpenFileName(self, "Open image or clip", start, OPEN_FILTER)
        if path:
            self.open_file(path)

    def open_file(self, path: str | os.PathLike) -> bool:
        """Open a DICOM / PNG / NPY file; on failure show why and keep the current clip."""
        from usclean_gui.dicomio import open_image

        p = Path(path)
        QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            if not p.exists():
                raise FileNotFoundError("%s does not exist" % p)
            if p.is_dir():
                raise IsADirectoryError("%s is a folder; open a file" % p)
            session = ClipSession(open_image(p), str(p))
        except (ValueError, OSError, IndexError) as exc:
            self.show_message("Cannot open %s:\n%s" % (p.name, exc), "error")
            return False
        except Exception as exc:  # a decoder bug must not take the window down
            self.show_message("Cannot open %s:\n%s: %s" % (p.name, exc.__class__.__name__, exc), "error")
            return False
        finally:
            QGuiApplication.restoreOverrideCursor()
        self.set_session(session)
        self._add_recent(str(p.resolve()))
        self.settings.setValue("last_dir", str(p.resolve().parent))
        return True

    def set_session(self, session: ClipSession) -> None:
        """Show a newly opened clip (stops work on the previous one; starts despeckling if set to)."""
        self.runner.stop()
        self.session = session
        session.set_strength(self.panes.strength)
        self.undespeckled_shown = 0
        self.dropped_label.setText("")
        self.roi.set_session(session)
        self.cine.set_clip(session.n_frames, session.frame_time_ms)
        h, w = session.shape
        self.panes.new_clip(w, h)
        self.region_box.show_session(session)
        self.show_frame(0)
        self._update_info()
        self.engine_panel.show_clip(session, force=True)
        self.setWindowTitle("USClean — %s" % Path(session.path).name)
        if self.engine_panel.auto_check.isChecked():
            self.despeckle()

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

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # Qt API name
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # Qt API name
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.open_file(files[0])

    # ------------------------------------------------------------------------------ display
    def show_frame(self, i: int) -> None:
        """Draw frame ``i`` in the panes, re-measure the ROIs and point the engine at it."""
        s = self.session
        if s is None:
            return
        try:
            orig = s.original_frame(i)
            desp = s.despeckled_frame(i)
            kind = s.result_kind(i)
            std = s.std_frame(i) if kind == "ensemble" else None
            mask = s.paste_mask(i) if std is not None else None
        except (ValueError, OSError) as exc:
            self.cine.pause()
            self.show_message("Cannot decode frame %d:\n%s" % (i + 1, exc), "error")
            return
        self.panes.set_images(orig, desp, std, mask, kind, self._members(),
                              self.model_info.preview if self.model_info is not None else "1 member")
        self.roi.set_frame(i)
        if self.cine.playing:
            self.undespeckled_shown += kind is None
            self._show_dropped()
        self.runner.focus(self._focus())

    def _members(self) -> int:
        st = self.session.settings if self.session is not None else None
        if st is not None and st.members:
            return int(st.members)
        return self.model_info.members if self.model_info is not None else 0

    def _focus(self) -> Focus:
        return Focus(self.cine.frame, self.cine.playing, self.cine.frame_time_ms / 1000.0)

    def _on_playing(self, playing: bool) -> None:
        if playing:
            self.undespeckled_shown = 0
        self._show_dropped()
        self.runner.focus(self._focus())

    def _show_dropped(self) -> None:
        self.dropped_label.setText("playback: %d frame%s dropped · %d shown before despeckling" % (
            self.cine.dropped, "" if self.cine.dropped == 1 else "s", self.undespeckled_shown))

    # ------------------------------------------------------------------------------ region
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
            self._regions_changed()

    def _regions_changed(self) -> None:
        """The despeckled region or panes changed (results were dropped): redraw, and despeckle again."""
        restart = self.runner.busy or self.engine_panel.auto_check.isChecked()
        self.runner.stop()
        self.region_box.show_session(self.session)
        self._update_info()
        self.show_frame(self.cine.frame)
        if restart:
            self.despeckle()

    # ------------------------------------------------------------------------------ engine
    def set_model(self, name: str) -> None:
        """Choose the viewer's model (a shipped name or a folder)."""
        self.engine_panel.set_model(name)

    def engine_settings(self) -> EngineSettings:
        return self.engine_panel.settings()

    def despeckle(self) -> bool:
        """Despeckle the open clip: the frame on screen first, then outwards (see the module docstring)."""
        if self.session is None:
            self.show_message("Open a clip first.", "warning")
            return False
        self.runner.start(self.session, self.engine_settings(), self._focus())
        self.engine_panel.show_clip(self.session, running=True, force=True)
        return True

    def cancel(self) -> None:
        self.runner.stop()

    def _on_settings_changed(self) -> None:
        s = self.session
        if s is None or s.settings is None or s.settings == self.engine_settings():
            return
        restart = self.runner.busy or self.engine_panel.auto_check.isChecked()
        self.runner.stop()
        s.clear_results()
        self.show_frame(self.cine.frame)
        self.engine_panel.show_clip(s, force=True)
        if restart:
            self.despeckle()

    def _connect_runner(self) -> None:
        r = self.runner
        r.stored.connect(self._on_stored)
        r.model_ready.connect(self._on_model)
        r.failed.connect(lambda msg: self.show_message(msg, "error"))
        r.ended.connect(self._on_ended)
        r.busy_changed.connect(self.engine_panel.set_busy)

    def _on_stored(self, res: FrameResult) -> None:
        if res.index == self.cine.frame:
            self.show_frame(res.index)
        self.engine_panel.show_clip(self.session, self.runner.eta_s(), running=True)
        self.frame_stored.emit(res)

    def _on_model(self, info: ModelInfo) -> None:
        self.model_info = info
        self.engine_panel.on_model(info)
        from . import uncertainty

        self.panes.set_uncertainty_label(uncertainty.label(info.card))

    def _on_ended(self, complete: bool) -> None:
        self.engine_panel.show_clip(self.session, running=False, force=True)
        self.despeckle_ended.emit(complete)

    # ------------------------------------------------------------------------------ exports
    def save_path(self, kind: str, title: str, suffix: str, filt: str) -> str | None:
        """Ask where to save; the dialog opens in the folder remembered for ``kind`` (documents first)."""
        stem = Path(self.session.path).stem if self.session else "usclean"
        start = export_dirs.start_dir(self.settings, kind) / (stem + suffix)
        path, _ = QFileDialog.getSaveFileName(self, title, str(start), filt)
        return path or None

    def _guard(self, kind: str, fn: Callable[[], Path]) -> Path | None:
        try:
            out = fn()
        except (ValueError, OSError) as exc:
            self.show_message("Export failed:\n%s" % exc, "error")
            return None
        export_dirs.remember(self.settings, kind, out)
        self.statusBar().showMessage("Wrote %s" % out, 10000)
        return out

    def _need_session(self) -> bool:
        if self.session is None:
            self.show_message("Open a clip first.", "warning")
            return False
        return True

    def export_dicom(self, path: str, include_uncertainty: bool = False) -> Path | None:
        """Write the despeckled clip as a derived DICOM series (ensemble frames only)."""
        if not self._need_session():
            return None
        return self._guard("dicom", lambda: export.derived_dicom(self.session, path, include_uncertainty))

    def export_png(self, path: str) -> Path | None:
        """Save the panes as they are on screen."""
        return self._guard("png", lambda: export.snapshot_png(self.panes.grab_qimage(), path, self._protect()))

    def export_mp4(self, path: str) -> Path | None:
        """Write the labelled side-by-side cine (original | despeckled | uncertainty, colour bar) as MP4."""
        if not self._need_session():
            return None
        from . import uncertainty

        label = uncertainty.label(self.model_info.card if self.model_info else None)
        return self._guard("mp4", lambda: export.cine_mp4(self.session, path, 1000.0 / self.cine.frame_time_ms,
                                                          self.panes.opacity.value() / 100.0, label))

    def export_csv(self, path: str) -> Path | None:
        """Write the measurements table with provenance."""
        if not self._need_session():
            return None
        return self._guard("csv", lambda: export.measurements_csv(self.roi.rows, self.roi.shapes, self.session, path))

    def _protect(self) -> tuple[str, ...]:
        return (self.session.path,) if self.session else ()

    def _ask_export_dicom(self) -> None:
        if self._need_session() and (p := self.save_path("dicom", "Export derived DICOM", "_despeckled.dcm",
                                                         "DICOM (*.dcm)")):
            self.export_dicom(p, self.export_unc_action.isChecked())

    def _ask_export_png(self) -> None:
        if p := self.save_path("png", "Save PNG snapshot", "_panes.png", "PNG (*.png)"):
            self.export_png(p)

    def _ask_export_mp4(self) -> None:
        if self._need_session() and (p := self.save_path("mp4", "Export MP4 cine", "_side_by_side.mp4",
                                                         "MP4 (*.mp4)")):
            self.export_mp4(p)

    def _ask_export_csv(self) -> None:
        if self._need_session() and (p := self.save_path("csv", "Export measurements", "_roi.csv", "CSV (*.csv)")):
            self.export_csv(p)

    # ------------------------------------------------------------------------------ closing
    def closeEvent(self, event: QCloseEvent) -> None:  # Qt API name
        self.cine.pause()
        self.runner.stop()
        if self._simulator is not None:
            self._simulator.shutdown()
        workers.wait_all(CLOSE_WAIT_MS)
        super().closeEvent(event)


__all__ = ["MainWindow", "MODELS"]
