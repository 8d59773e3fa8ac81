"""The app's one concurrency idiom: superqt generator workers, one worker per job.

The work is a plain generator (Qt-free: :mod:`.engine_work`, :mod:`.sim_worker`).  :func:`start`
runs it in Qt's thread pool: each ``yield`` becomes the worker's ``yielded`` signal and the return
value ``returned`` (both delivered in the GUI thread), an exception ``errored(exc)``, and
``finished`` always comes last.  ``worker.quit()`` is the one way to cancel: the worker stops at the
generator's next yield and **closes** it, so the generator's ``finally`` blocks run (the full-physics
wrapper terminates its process there).  A generator that spends long inside one step (an engine
call) gets ``aborted``, a callable that turns True once ``quit()`` was called, to poll.  Values sent
with ``worker.send(v)`` arrive as the result of the generator's next ``yield``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThreadPool
from shiboken6 import isValid
from superqt.utils import GeneratorWorker, create_worker

MIN_POOL_THREADS = 8  #: jobs of the viewer and the simulator tab, plus short helpers, never queue


class ClosingWorker(GeneratorWorker):
    """A generator worker that closes its generator when it stops (so ``finally`` runs at once) and
    keeps a value sent before the generator started for its first ``yield``."""

    _started_gen = False

    def _next_value(self) -> Any:
        if not self._started_gen:  # a generator's first step takes None
            self._started_gen = True
            return None
        return super()._next_value()

    def work(self) -> Any:
        try:
            return super().work()
        finally:
            self._gen.close()


def _guarded(slot: Callable[..., Any], owner: QObject | None) -> Callable[..., Any]:
    """``slot``, skipped once ``owner`` (the widget it updates) has been deleted: a worker's last
    signals can arrive after its window closed."""
    if owner is None:
        return slot
    return lambda *a: slot(*a) if isValid(owner) else None


def start(gen_fn: Callable[..., Any], *args: Any, connect: dict[str, Any] | None = None,
          owner: QObject | None = None, **kwargs: Any) -> ClosingWorker:
    """Start ``gen_fn(*args, aborted=..., **kwargs)`` in a worker; ``connect`` maps signal names to
    slots, which are skipped once ``owner`` is deleted."""
    pool = QThreadPool.globalInstance()
    if pool.maxThreadCount() < MIN_POOL_THREADS:
        pool.setMaxThreadCount(MIN_POOL_THREADS)
    holder: list[ClosingWorker] = []
    worker = create_worker(gen_fn, *args, aborted=lambda: bool(holder) and holder[0].abort_requested,
                           _worker_class=ClosingWorker, _start_thread=False, _ignore_errors=True, **kwargs)
    holder.append(worker)
    for name, slot in (connect or {}).items():
        getattr(worker, name).connect(_guarded(slot, owner))
    worker.start()
    return worker


def running(worker: Any) -> bool:
    """True while ``worker`` (or None) has been started and not finished."""
    return worker is not None and worker in GeneratorWorker._worker_set


def wait_all(timeout_ms: int) -> bool:
    """Ask every worker to quit and wait up to ``timeout_ms``; True when all have ended."""
    for w in list(GeneratorWorker._worker_set):
        w.quit()
    return bool(QThreadPool.globalInstance().waitForDone(timeout_ms))
