"""Qt-free work of the simulator tab, as generators for :mod:`.workers`, and scoring.

:func:`fast_job` simulates with the fast path (a fraction of a second), :func:`shift_job` runs one
phantom through every probe and despeckles each image, and :func:`full_physics_job` wraps the
full-physics path (tens of seconds per image), which runs in a separate process (``multiprocessing``,
spawn context, :func:`process_job`) so it never competes with the GUI for the GIL: the generator
yields while it waits, and closing it (the worker's ``quit()``) terminates the process.  Every
failure is raised as :class:`SimulationError` with a message for the user.
"""
from __future__ import annotations

import multiprocessing as mp
import queue
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .engine_work import FrameResult, ModelCache, ModelInfo, despeckle_images
from .viewer_state import EngineSettings

POLL_S = 0.1  #: how often the full-physics wrapper looks at its process


class SimulationError(Exception):
    """A simulation failed; the message says why."""


@dataclass(frozen=True)
class SimRequest:
    """What to simulate: phantom, probe (with an optional centre frequency), size and seed."""

    phantom: str
    probe: str
    fc_mhz: float | None = None
    size: int = 128
    seed: int = 0
    path: str = "fast"


def simulate(req: SimRequest) -> Any:
    """Make the phantom on the probe's grid and simulate it; returns a ``SimResult``."""
    from simulator.phantoms import make_phantom
    from simulator.physics import simulate as run
    from simulator.probes import get_probe

    probe = get_probe(req.probe, fc_mhz=req.fc_mhz)
    phantom = make_phantom(req.phantom, probe, size=req.size, seed=req.seed, split="test")
    return run(phantom, probe, path=req.path, seed=req.seed)


def process_job(req: SimRequest, queue: Any) -> None:
    """Worker-process entry point: puts ``("ok", SimResult)`` or ``("error", message)`` on ``queue``."""
    try:
        queue.put(("ok", simulate(req)))
    except Exception as exc:  # reported to the GUI, which shows it
        traceback.print_exc()
        queue.put(("error", "%s: %s" % (exc.__class__.__name__, exc)))


def _checked(req: SimRequest) -> Any:
    try:
        return simulate(req)
    except Exception as exc:  # reported in the tab
        raise SimulationError("%s: %s" % (exc.__class__.__name__, exc)) from exc


def fast_job(req: SimRequest, *, aborted: Callable[[], bool] = lambda: False):
    """Generator: simulate ``req`` in this process; returns the ``SimResult``."""
    yield "simulating"
    return _checked(req)


def shift_job(cache: ModelCache, settings: EngineSettings, reqs: Sequence[SimRequest], *,
              aborted: Callable[[], bool] = lambda: False):
    """Generator for the domain-shift table: yields ``("simulated", probe)`` per simulation, then
    ``("model", ModelInfo)`` and ``("despeckled", probe, sim, FrameResult)`` per probe."""
    sims = []
    for r in reqs:
        sims.append(_checked(r))
        yield ("simulated", r.probe)
    for item in despeckle_images(cache, settings, [np.asarray(s.bmode, dtype=np.float32) for s in sims],
                                 aborted=aborted):
        if isinstance(item, ModelInfo):
            yield ("model", item)
        elif isinstance(item, FrameResult):
            yield ("despeckled", reqs[item.index].probe, sims[item.index], item)


def full_physics_job(req: SimRequest, *, aborted: Callable[[], bool] = lambda: False):
    """Generator: run ``req`` in a worker process, yielding ``(pid, seconds waited)`` every
    :data:`POLL_S`; returns the ``SimResult``.  Closing the generator terminates the process."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=process_job, args=(req, results), daemon=True)
    proc.start()
    t0 = time.monotonic()
    try:
        yield proc.pid, 0.0
        while True:
            try:
                kind, payload = results.get(timeout=POLL_S)
            except queue.Empty:
                if not proc.is_alive():
                    raise SimulationError("The simulation process stopped unexpectedly (exit code %s)."
                                          % proc.exitcode) from None
                yield proc.pid, time.monotonic() - t0
                continue
            if kind == "ok":
                return payload
            raise SimulationError(payload)
    finally:
        if proc.is_alive():  # cancelled, or its result is here already: do not wait for its teardown
            proc.terminate()
        proc.join(timeout=1.0)


def score(image: np.ndarray, sim: Any) -> dict[str, float]:
    """PSNR and SSIM of ``image`` against ``sim.clean`` inside ``sim.mask``, and CNR / gCNR of
    ``image`` between the phantom's lesion and background masks (display domain)."""
    from engine.metrics import cnr, gcnr, psnr, ssim

    img = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    mask = np.asarray(sim.mask, dtype=bool)
    out = {"PSNR (dB)": psnr(img, sim.clean, mask=mask), "SSIM": ssim(img, sim.clean, mask=mask)}
    les = np.asarray(sim.lesion_mask, dtype=bool) & mask
    bg = np.asarray(sim.background_mask, dtype=bool) & mask
    if les.any() and bg.any():
        out["CNR"] = cnr(img[les], img[bg])
        out["gCNR"] = gcnr(img[les], img[bg])
    else:
        out["CNR"] = out["gCNR"] = float("nan")
    return out
