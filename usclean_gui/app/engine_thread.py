"""The background engine: one long-lived QThread that owns the model and streams results.

:class:`EngineController` lives in the GUI thread; its :class:`_EngineWorker` lives in a
QThread for the whole session, loads ensembles on demand (cached by name) and turns
``Ensemble.iter_despeckle`` into Qt signals.  Frames are fetched lazily through a callable, so
a clip larger than :data:`MAX_CALL_BYTES` is never stacked whole in memory; results reach the
panes frame by frame as the engine yields them.  Cancelling sets a flag that the engine polls between network
evaluations (well under a second), and :meth:`EngineController.shutdown` is what the window
calls when it closes.
"""
from __future__ import annotations

import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

from .viewer_state import EngineSettings

#: Most bytes of input frames handed to the engine in one ``iter_despeckle`` call.  A clip that
#: fits goes in one call, exactly as ``usclean despeckle`` does it (one normalisation plan for the
#: clip, the same per-frame noise seeds, hence the same result); results still stream per frame.
MAX_CALL_BYTES = 256 * 1024 * 1024


def default_loader(name: str) -> Any:
    """Load a shipped ensemble (or a folder) with the engine's own loader."""
    from engine.ensemble import load_ensemble

    return load_ensemble(name, threads=torch_threads())


def torch_threads() -> int:
    """Threads torch may use: all cores but one, so the GUI thread keeps a core."""
    return max(1, (os.cpu_count() or 2) - 1)


@dataclass
class Job:
    """One despeckling request: ``fetch(i)`` returns frame ``i`` (H, W) float32 in [0, 1].

    ``independent``: the frames are unrelated images (not a cine loop), so each goes to the
    engine on its own and gets its own normalisation.
    """

    job_id: int
    indices: Sequence[int]
    fetch: Callable[[int], np.ndarray]
    settings: EngineSettings
    independent: bool = False
    cancel_event: threading.Event = field(default_factory=threading.Event)


class _EngineWorker(QObject):
    """Runs in the engine thread; never touches widgets."""

    frame_ready = Signal(int, int, object, object)  # job, frame index, mean, std
    progress = Signal(int, float)  # job, fraction done in [0, 1]
    finished = Signal(int)
    cancelled = Signal(int)
    failed = Signal(int, str)
    model_loaded = Signal(str, int, str)  # name, members, description

    def __init__(self, loader: Callable[[str], Any]) -> None:
        super().__init__()
        self._loader = loader
        self._models: dict[str, Any] = {}

    def _model(self, name: str) -> Any:
        if name not in self._models:
            import torch

            torch.set_num_threads(torch_threads())
            self._models.clear()  # keep one ensemble in memory
            ens = self._loader(name)
            self._models[name] = ens
            members = int(getattr(ens, "members", 1))
            self.model_loaded.emit(name, members, "%s: %d member%s, %s sampler, %s step(s) by default" % (
                getattr(ens, "name", "") or name, members, "s" if members != 1 else "",
                getattr(ens, "default_sampler", "?"), getattr(ens, "default_steps", "?")))
        return self._models[name]

    @Slot()
    def warm(self) -> None:
        """Import torch and the engine now (seconds, holding the GIL in bursts) rather than when the
        user first asks for a result; any import error is reported by the first job instead."""
        try:
            import torch

            import engine.ensemble  # noqa: F401
        except ImportError:
            return
        torch.set_num_threads(torch_threads())

    @Slot(object)
    def run(self, job: Job) -> None:
        from engine.ensemble import Cancelled

        n = len(job.indices)
        try:
            if job.cancel_event.is_set():
                raise Cancelled()
            ens = self._model(job.settings.model)
            s = job.settings
            first = np.asarray(job.fetch(job.indices[0]), dtype=np.float32)
            chunk = 1 if job.independent else max(1, MAX_CALL_BYTES // max(1, first.nbytes))
            for c0 in range(0, n, chunk):
                idx = list(job.indices[c0:c0 + chunk])
                shape = first.shape if not job.independent else np.shape(job.fetch(idx[0]))
                frames = np.empty((len(idx),) + tuple(shape), dtype=np.float32)
                for k, i in enumerate(idx):
                    frames[k] = first if c0 + k == 0 else job.fetch(i)
                    if job.cancel_event.is_set():
                        raise Cancelled()

                def progress(done: int, total: int, c0: int = c0, k: int = len(idx)) -> None:
                    frac = (c0 + k * (done / max(total, 1))) / n
                    self.progress.emit(job.job_id, float(frac))

                for j, mean, std in ens.iter_despeckle(
                        frames, steps=s.steps, sampler=s.sampler, members=s.members, seed=s.seed,
                        progress=progress, cancel=job.cancel_event.is_set):
                    self.frame_ready.emit(job.job_id, idx[int(j)], np.asarray(mean), np.asarray(std))
                self.progress.emit(job.job_id, min(1.0, (c0 + len(idx)) / n))
                if job.cancel_event.is_set():
                    raise Cancelled()
        except Cancelled:
            self.cancelled.emit(job.job_id)
        except MemoryError:
            self.failed.emit(job.job_id, "The engine ran out of memory. Try fewer members or a smaller region.")
        except (ValueError, OSError) as exc:  # bad weights, missing model, bad frames: the message says why
            self.failed.emit(job.job_id, "Despeckling failed: %s" % exc)
        except Exception as exc:  # an engine error must reach the user, not kill the thread
            msg = str(exc) or exc.__class__.__name__
            traceback.print_exc()
            self.failed.emit(job.job_id, "Despeckling failed: %s" % msg)
        else:
            self.finished.emit(job.job_id)


class EngineController(QObject):
    """GUI-side handle on the engine thread (submit, cancel, ETA, shutdown)."""

    frame_ready = Signal(int, int, object, object)
    progress = Signal(int, float, float)  # job, fraction, ETA seconds (nan until known)
    finished = Signal(int)
    cancelled = Signal(int)
    failed = Signal(int, str)
    busy_changed = Signal(bool)
    model_loaded = Signal(str, int, str)  # name, members, description
    _submit = Signal(object)
    _warm = Signal()

    def __init__(self, loader: Callable[[str], Any] | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("usclean-engine")
        self._worker = _EngineWorker(loader or default_loader)
        self._worker.moveToThread(self._thread)
        self._submit.connect(self._worker.run)
        self._warm.connect(self._worker.warm)
        self._worker.frame_ready.connect(self.frame_ready)
        self._worker.model_loaded.connect(self.model_loaded)
        self._worker.progress.connect(self._on_progress)
        self._worker.finished.connect(self._on_end)
        self._worker.cancelled.connect(self._on_end)
        self._worker.failed.connect(self._on_end)
        self._worker.finished.connect(self.finished)
        self._worker.cancelled.connect(self.cancelled)
        self._worker.failed.connect(self.failed)
        self._thread.start()
        self._jobs: dict[int, tuple[Job, float]] = {}
        self._next_id = 1
        self._warm.emit()

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def submit(self, indices: Sequence[int], fetch: Callable[[int], np.ndarray], settings: EngineSettings,
               independent: bool = False) -> int:
        """Queue a job; returns its id (signals carry it).  See :class:`Job` for ``independent``."""
        job = Job(self._next_id, list(indices), fetch, settings, independent)
        self._next_id += 1
        was_busy = self.busy
        self._jobs[job.job_id] = (job, time.monotonic())
        self._submit.emit(job)
        if not was_busy:
            self.busy_changed.emit(True)
        return job.job_id

    def cancel(self, job_id: int | None = None) -> None:
        """Cancel one job, or every queued and running job."""
        for jid, (job, _) in list(self._jobs.items()):
            if job_id is None or jid == job_id:
                job.cancel_event.set()

    def _on_progress(self, job_id: int, frac: float) -> None:
        entry = self._jobs.get(job_id)
        eta = float("nan")
        if entry is not None and frac > 0.0:
            elapsed = time.monotonic() - entry[1]
            eta = elapsed * (1.0 - frac) / frac
        self.progress.emit(job_id, frac, eta)

    def _on_end(self, job_id: int, *_: Any) -> None:
        self._jobs.pop(job_id, None)
        if not self._jobs:
            self.busy_changed.emit(False)

    def shutdown(self, timeout_ms: int = 1000) -> bool:
        """Cancel everything and stop the thread; True when it stopped within ``timeout_ms``."""
        self.cancel()
        self._thread.quit()
        return bool(self._thread.wait(timeout_ms))
