"""Qt-free helpers of the simulator tab: run a simulation (in this process or a worker process)
and score a despeckled image against the simulator's ground truth.

The full-physics path takes tens of seconds per image, so the tab runs :func:`process_job`
in a separate process (``multiprocessing``, spawn context): it can be cancelled at any moment
by terminating that process, and it never competes with the GUI thread for the GIL.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np


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
