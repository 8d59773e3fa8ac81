"""The viewer's despeckling job: :func:`.engine_work.despeckle_clip` for the open clip, in one worker.

:class:`DespeckleRunner` starts one worker per job (a clip with its region and engine settings)
and stops it when the clip, the region or the settings change.  Results are stored into the
session the job was started for, unless its results were dropped meanwhile (the session's
``generation`` moved on); the frame on screen is sent into the running job (``focus``), so the
work follows playback and scrubbing.
"""
from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QObject, Signal

from . import workers
from .engine_work import ENSEMBLE, Focus, FrameResult, ModelCache, ModelInfo, despeckle_clip
from .viewer_state import ClipSession, EngineSettings


class _Job:
    """One despeckling job: the session and results generation it works for, its worker and timing."""

    def __init__(self, session: ClipSession, settings: EngineSettings) -> None:
        self.session = session
        self.generation = session.generation
        self.settings = settings
        self.worker: Any = None
        self.ensemble_s = float("nan")  #: running mean of one ensemble frame's time

    @property
    def valid(self) -> bool:
        return self.session.generation == self.generation

    def eta_s(self) -> float:
        left = self.session.n_frames - len(self.session.means)
        return left * self.ensemble_s if math.isfinite(self.ensemble_s) else float("nan")


class DespeckleRunner(QObject):
    """Despeckles the open clip in the background; see the module docstring."""

    stored = Signal(object)  #: a FrameResult was stored in the current session
    model_ready = Signal(object)  #: ModelInfo of the job's model
    failed = Signal(str)  #: a message for the user
    ended = Signal(bool)  #: the job stopped: True when every frame has its ensemble result
    busy_changed = Signal(bool)

    def __init__(self, cache: ModelCache, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.cache = cache
        self.job: _Job | None = None

    @property
    def busy(self) -> bool:
        return self.job is not None

    def start(self, session: ClipSession, settings: EngineSettings, focus: Focus) -> None:
        """(Re)start despeckling ``session`` with ``settings``, the frame ``focus`` first."""
        self.stop()
        if session.settings is not None and session.settings != settings:
            session.clear_results()
        session.settings = settings
        job = _Job(session, settings)
        job.worker = workers.start(
            despeckle_clip, self.cache, settings, session.engine_input, session.n_frames, focus,
            sorted(session.means), owner=self,
            connect={"yielded": lambda r: self._on_yielded(job, r), "errored": lambda e: self._on_error(job, e),
                     "finished": lambda: self._on_finished(job)})
        self.job = job
        self.busy_changed.emit(True)

    def focus(self, focus: Focus) -> None:
        """Tell the running job which frame is on screen (and whether the loop plays)."""
        if self.job is not None:
            self.job.worker.send(focus)

    def stop(self) -> None:
        """Cancel the running job (its worker ends at its next network evaluation)."""
        job, self.job = self.job, None
        if job is not None:
            job.worker.quit()
            self.busy_changed.emit(False)
            self.ended.emit(False)

    def eta_s(self) -> float:
        return self.job.eta_s() if self.job is not None else float("nan")

    def _on_yielded(self, job: _Job, item: Any) -> None:
        if isinstance(item, ModelInfo):
            if job is self.job:
                self.model_ready.emit(item)
            return
        if not isinstance(item, FrameResult) or not job.valid:
            return
        job.session.store(item.index, item.mean, item.std, item.kind)
        if item.kind == ENSEMBLE:
            s = job.ensemble_s
            job.ensemble_s = item.seconds if not math.isfinite(s) else 0.8 * s + 0.2 * item.seconds
        if job is self.job:
            self.stored.emit(item)

    def _on_error(self, job: _Job, exc: BaseException) -> None:
        if job is self.job:
            self.failed.emit(str(exc) or exc.__class__.__name__)

    def _on_finished(self, job: _Job) -> None:
        if job is not self.job:
            return
        self.job = None
        self.busy_changed.emit(False)
        self.ended.emit(len(job.session.means) == job.session.n_frames and job.valid)
