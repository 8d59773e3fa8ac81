"""One cine controller for all panes: play/pause, frame slider with time, fps, loop, stepping.

Playback is driven by wall-clock time: each timer tick shows the frame that *should* be on
screen now (``start + elapsed / frame_time``), so a slow render drops frames instead of slowing
the clip down.  Keyboard: Space play/pause, Left/Right step, Home/End first/last frame.
"""
from __future__ import annotations

from PySide6.QtCore import QElapsedTimer, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QCheckBox, QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QSlider,
                               QStyle, QWidget)


class CineController(QWidget):
    """Frame navigation; emits :attr:`frame_changed` whenever the current frame changes."""

    frame_changed = Signal(int)
    playing_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._n = 1
        self._frame = 0
        self._frame_time_ms = 1000.0 / 30.0
        self._clock = QElapsedTimer()
        self._start_frame = 0
        self.dropped = 0  #: frames skipped by playback since it last started
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._tick)

        st = self.style()
        self.play_button = QPushButton(st.standardIcon(QStyle.StandardPixmap.SP_MediaPlay), "")
        self.play_button.setToolTip("Play / pause (Space)")
        self.play_button.clicked.connect(self.toggle)
        self.prev_button = QPushButton(st.standardIcon(QStyle.StandardPixmap.SP_MediaSeekBackward), "")
        self.prev_button.setToolTip("Previous frame (Left)")
        self.prev_button.clicked.connect(lambda: self.step(-1))
        self.next_button = QPushButton(st.standardIcon(QStyle.StandardPixmap.SP_MediaSeekForward), "")
        self.next_button.setToolTip("Next frame (Right)")
        self.next_button.clicked.connect(lambda: self.step(1))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.valueChanged.connect(self._on_slider)
        self.label = QLabel()
        self.label.setFixedWidth(self.label.fontMetrics().horizontalAdvance("frame 9999 / 9999   999999 ms") + 8)
        self.fps = QDoubleSpinBox()
        self.fps.setRange(0.1, 500.0)
        self.fps.setDecimals(1)
        self.fps.setSuffix(" fps")
        self.fps.setToolTip("Playback rate (from the file's FrameTime / FrameTimeVector / CineRate; editable)")
        self.fps.valueChanged.connect(self._on_fps)
        self.loop = QCheckBox("Loop")
        self.loop.setChecked(True)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.prev_button, self.play_button, self.next_button):
            lay.addWidget(w)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.label)
        lay.addWidget(self.fps)
        lay.addWidget(self.loop)
        self.set_clip(1, self._frame_time_ms)

    # -- state --------------------------------------------------------------------------------
    @property
    def frame(self) -> int:
        return self._frame

    @property
    def n_frames(self) -> int:
        return self._n

    @property
    def playing(self) -> bool:
        return self._timer.isActive()

    @property
    def frame_time_ms(self) -> float:
        return self._frame_time_ms

    def set_clip(self, n_frames: int, frame_time_ms: float) -> None:
        """Reset for a clip of ``n_frames`` frames shown every ``frame_time_ms`` ms."""
        self.pause()
        self._n = max(1, int(n_frames))
        self._frame_time_ms = float(frame_time_ms)
        self.fps.blockSignals(True)
        self.fps.setValue(1000.0 / self._frame_time_ms)
        self.fps.blockSignals(False)
        self.slider.blockSignals(True)
        self.slider.setRange(0, self._n - 1)
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        multi = self._n > 1
        for w in (self.play_button, self.prev_button, self.next_button, self.slider, self.fps, self.loop):
            w.setEnabled(multi)
        self._frame = 0
        self._update_label()

    def set_frame(self, i: int) -> None:
        """Show frame ``i`` (clamped)."""
        i = min(max(int(i), 0), self._n - 1)
        if i == self._frame and self.slider.value() == i:
            return
        self._frame = i
        self.slider.blockSignals(True)
        self.slider.setValue(i)
        self.slider.blockSignals(False)
        self._update_label()
        self.frame_changed.emit(i)

    def _update_label(self) -> None:
        t = self._frame * self._frame_time_ms
        self.label.setText("frame %d / %d   %.0f ms" % (self._frame + 1, self._n, t))

    # -- user actions -------------------------------------------------------------------------
    def step(self, delta: int) -> None:
        self.pause()
        i = self._frame + int(delta)
        if self.loop.isChecked():
            i %= self._n
        self.set_frame(i)

    def first(self) -> None:
        self.pause()
        self.set_frame(0)

    def last(self) -> None:
        self.pause()
        self.set_frame(self._n - 1)

    def play(self) -> None:
        if self._n < 2 or self.playing:
            return
        if self._frame >= self._n - 1 and not self.loop.isChecked():
            self.set_frame(0)
        self._start_frame = self._frame
        self.dropped = 0
        self._clock.start()
        self._timer.start(max(5, int(self._frame_time_ms / 2)))
        self.play_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPause))
        self.playing_changed.emit(True)

    def pause(self) -> None:
        if not self._timer.isActive():
            return
        self._timer.stop()
        self.play_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.playing_changed.emit(False)

    def toggle(self) -> None:
        self.pause() if self.playing else self.play()

    def _on_slider(self, value: int) -> None:
        if self.playing:  # dragging the slider restarts the clock from there
            self._start_frame = value
            self._clock.restart()
        self.set_frame(value)

    def _on_fps(self, fps: float) -> None:
        self._frame_time_ms = 1000.0 / float(fps)
        if self.playing:
            self._start_frame = self._frame
            self._clock.restart()
            self._timer.setInterval(max(5, int(self._frame_time_ms / 2)))
        self._update_label()

    def _tick(self) -> None:
        target = self._start_frame + int(self._clock.elapsed() / self._frame_time_ms)
        if target >= self._n:
            if self.loop.isChecked():
                target %= self._n
            else:  # the frames between here and the last were never shown: they were dropped too
                self.dropped += max(0, self._n - 2 - self._frame)
                self.set_frame(self._n - 1)
                self.pause()
                return
        ahead = (target - self._frame) % self._n
        if ahead > 1:
            self.dropped += ahead - 1
        if ahead:
            self.set_frame(target)

    def install_shortcuts(self, window: QWidget) -> None:
        """Space / Left / Right / Home / End on ``window``."""
        for key, fn in ((Qt.Key.Key_Space, self.toggle), (Qt.Key.Key_Left, lambda: self.step(-1)),
                        (Qt.Key.Key_Right, lambda: self.step(1)), (Qt.Key.Key_Home, self.first),
                        (Qt.Key.Key_End, self.last)):
            sc = QShortcut(QKeySequence(key), window)
            sc.setContext(Qt.ShortcutContext.WindowShortcut)
            sc.activated.connect(fn)
