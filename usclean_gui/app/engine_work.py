"""The engine's work as plain generators (Qt-free); :mod:`.workers` runs each one in a worker thread.

:func:`despeckle_clip` despeckles a cine loop frame by frame in the order a viewer needs: the frame
on screen first, then outwards; while the loop plays, one-member **previews** of the frames the
playhead is about to reach come first, and the full **ensemble** (mean + uncertainty) fills in
behind.  The viewer sends it the frame on screen (``worker.send(Focus(...))``); each step plans
again (:func:`next_task`), so scrubbing moves the work to the frames being looked at within one
frame's computation.  :func:`despeckle_images` despeckles unrelated images (the simulator tab).

Each frame goes to the engine on its own (``Ensemble.iter_despeckle`` of one frame, seed
``settings.seed + frame``), so a frame's result does not depend on the order of the work; the
normalisation to the training statistics and the brightness window are the clip's, fitted once on its
first frame (``fit_frame``, as ``usclean despeckle`` does: one scanner setting, no flicker from frame to
frame, and no 10-30 ms of fitting per frame).  Long engine calls poll ``aborted``
(the worker's quit flag) between network evaluations.
"""
from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .viewer_state import EngineSettings

PREVIEW = "preview"
ENSEMBLE = "ensemble"


def torch_threads() -> int:
    """Threads the inference runtime may use: the engine's policy, all cores but one (the GUI keeps one)."""
    from engine.catalog import resolve_threads

    return int(resolve_threads("auto"))


def default_loader(name: str) -> Any:
    """Load a shipped ensemble (or a folder) with the engine's own loader."""
    from engine import load_ensemble

    return load_ensemble(name, threads=torch_threads())


class EngineError(Exception):
    """An engine failure with a message for the user (never a RuntimeError: the worker would drop it)."""


@dataclass(frozen=True)
class ModelInfo:
    """What the panels show about a loaded model."""

    name: str
    members: int
    sampler: str
    steps: int
    probes: tuple[str, ...] = ()
    card: dict = field(default_factory=dict, compare=False, repr=False)
    #: what a preview is made with: the model's fast preview network, or its first member
    preview: str = "1 member"

    def describe(self) -> str:
        trained = ("; trained on %s" % ", ".join(self.probes)) if self.probes else ""
        return "%s: %d member%s, %s sampler, %s step(s) by default%s" % (
            self.name, self.members, "s" if self.members != 1 else "", self.sampler, self.steps, trained)


def model_info(ens: Any, name: str) -> ModelInfo:
    card = dict(getattr(ens, "card", {}) or {})
    probes = tuple((card.get("training") or {}).get("probes") or ())
    return ModelInfo(getattr(ens, "name", "") or name, int(getattr(ens, "members", 1)),
                     str(getattr(ens, "default_sampler", "?")), int(getattr(ens, "default_steps", 1) or 1),
                     probes, card, "fast network" if getattr(ens, "has_preview", False) else "1 member")


class ModelCache:
    """Loaded ensembles by name, shared by every worker (a lock guards loading); keeps two at most."""

    def __init__(self, loader: Callable[[str], Any] | None = None, keep: int = 2) -> None:
        self.loader = loader or default_loader
        self.keep = keep
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Any:
        with self._lock:
            if name not in self._models:
                while len(self._models) >= self.keep:
                    self._models.pop(next(iter(self._models)))
                self._models[name] = self.loader(name)
                # after loading: a torch-served model has imported torch by now (an OpenVINO or ONNX Runtime
                # one has not, and torch stays unimported); any loader's model gets the same thread policy
                if "torch" in sys.modules:
                    sys.modules["torch"].set_num_threads(torch_threads())
            return self._models[name]


@dataclass(frozen=True)
class Focus:
    """What the viewer shows: the frame on screen, whether the loop plays, and its frame time."""

    frame: int = 0
    playing: bool = False
    frame_time_s: float = 1.0 / 30.0


@dataclass
class FrameResult:
    """One despeckled frame: ``kind`` is :data:`PREVIEW` (one member, std all zero) or :data:`ENSEMBLE`."""

    kind: str
    index: int
    mean: np.ndarray
    std: np.ndarray
    seconds: float


# ------------------------------------------------------------------------------------ planning
def outward(focus: int, n: int) -> Iterator[int]:
    """focus, focus + 1, focus − 1, focus + 2, … inside [0, n)."""
    yield focus
    for d in range(1, n):
        for j in (focus + d, focus - d):
            if 0 <= j < n:
                yield j


def ahead(start: int, n: int) -> Iterator[int]:
    """start, start + 1, … wrapping round the loop: every frame once."""
    for d in range(n):
        yield (start + d) % n


def lead(seconds: float, frame_time_s: float) -> int:
    """Frames the playhead moves while one such frame is computed (at least 1)."""
    return max(1, int(math.ceil(seconds / max(frame_time_s, 1e-3))))


def next_task(n: int, focus: Focus, previews: set[int], ensembles: set[int], use_preview: bool,
              preview_s: float, ensemble_s: float) -> tuple[str, int] | None:
    """The next (kind, frame) to compute, or None when every frame has its ensemble result.

    Paused: a preview of the frame on screen (if it has nothing yet), then the ensemble from the
    frame on screen outwards.  Playing: previews of the frames the playhead reaches next (skipping
    those it passes before a preview could be ready), then the ensemble likewise.
    """
    f = min(max(int(focus.frame), 0), n - 1)
    if use_preview and f not in previews and f not in ensembles and not focus.playing:
        return PREVIEW, f
    if focus.playing and n > 1:
        if use_preview:
            start = (f + lead(preview_s, focus.frame_time_s)) % n
            for j in ahead(start, n):
                if j not in previews and j not in ensembles:
                    return PREVIEW, j
        start = (f + lead(ensemble_s, focus.frame_time_s)) % n
        for j in ahead(start, n):
            if j not in ensembles:
                return ENSEMBLE, j
        return None
    for j in outward(f, n):
        if j not in ensembles:
            return ENSEMBLE, j
    return None


# ------------------------------------------------------------------------------------ running
def _run(ens: Any, frame: np.ndarray, settings: EngineSettings, members: int | str | None, seed: int,
         aborted: Callable[[], bool], fit_frame: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    s = settings
    for _, mean, std in ens.iter_despeckle(np.asarray(frame, dtype=np.float32)[None], steps=s.steps,
                                           sampler=s.sampler, members=members, seed=seed, cancel=aborted,
                                           fit_frame=fit_frame):
        return np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    raise EngineError("the engine returned no frame")


def _as_engine_error(exc: BaseException) -> EngineError:
    if isinstance(exc, MemoryError):
        return EngineError("The engine ran out of memory. Try fewer members or a smaller region.")
    return EngineError("Despeckling failed: %s" % (str(exc) or exc.__class__.__name__))


def load(cache: ModelCache, settings: EngineSettings) -> tuple[Any, ModelInfo]:
    try:
        ens = cache.get(settings.model)
    except Exception as exc:  # bad weights, missing model: the message says why
        raise _as_engine_error(exc) from exc
    return ens, model_info(ens, settings.model)


def despeckle_clip(cache: ModelCache, settings: EngineSettings, fetch: Callable[[int], np.ndarray],
                   n_frames: int, focus: Focus = Focus(), done: Sequence[int] = (), *,
                   aborted: Callable[[], bool] = lambda: False):
    """Generator: yields a :class:`ModelInfo`, then a :class:`FrameResult` per computed frame.

    ``fetch(i)`` returns frame ``i`` (H, W) float32 in [0, 1]; ``done``: frames whose ensemble result
    exists already.  A :class:`Focus` sent in (``generator.send``) replans the work.
    """
    from engine.ensemble import Cancelled

    ens, info = load(cache, settings)
    members = settings.members or info.members
    use_preview = members > 1
    previews: set[int] = set()
    ensembles: set[int] = set(int(i) for i in done)
    times = {PREVIEW: float("nan"), ENSEMBLE: float("nan")}
    sent = yield info
    anchor: np.ndarray | None = None  # the clip's first frame: every frame shares its fit
    while True:
        if isinstance(sent, Focus):
            focus = sent
        guess = times[ENSEMBLE] if math.isfinite(times[ENSEMBLE]) else 1.0
        task = next_task(n_frames, focus, previews, ensembles, use_preview,
                         times[PREVIEW] if math.isfinite(times[PREVIEW]) else guess / members, guess)
        if task is None or aborted():
            return len(ensembles)
        kind, i = task
        t0 = time.perf_counter()
        try:
            frame = np.asarray(fetch(i), dtype=np.float32)
            if anchor is None:
                anchor = frame if i == 0 else np.asarray(fetch(0), dtype=np.float32)
            mean, std = _run(ens, frame, settings, PREVIEW if kind == PREVIEW else settings.members,
                             settings.seed + i, aborted, anchor)
        except Cancelled:
            return len(ensembles)
        except Exception as exc:
            raise _as_engine_error(exc) from exc
        dt = time.perf_counter() - t0
        times[kind] = dt if not math.isfinite(times[kind]) else 0.7 * times[kind] + 0.3 * dt
        (previews if kind == PREVIEW else ensembles).add(i)
        sent = yield FrameResult(kind, i, mean, std, dt)


def despeckle_images(cache: ModelCache, settings: EngineSettings, images: Sequence[np.ndarray], *,
                     aborted: Callable[[], bool] = lambda: False):
    """Generator: yields a :class:`ModelInfo`, then one ensemble :class:`FrameResult` per image
    (unrelated images: each is normalised and despeckled on its own)."""
    from engine.ensemble import Cancelled

    ens, info = load(cache, settings)
    yield info
    for i, img in enumerate(images):
        t0 = time.perf_counter()
        try:
            mean, std = _run(ens, img, settings, settings.members, settings.seed, aborted)
        except Cancelled:
            return
        except Exception as exc:
            raise _as_engine_error(exc) from exc
        yield FrameResult(ENSEMBLE, i, mean, std, time.perf_counter() - t0)
