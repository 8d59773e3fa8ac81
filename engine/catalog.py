"""The facts every layer shares, in one torch-free place: the shipped models and their roles, the default
model, the probes, and the CPU thread policy."""
from __future__ import annotations

import os

from simulator.probes import PROBE_NAMES

PROBES: tuple[str, ...] = PROBE_NAMES
#: models shipped in ``resources/weights`` (loadable by name)
SHIPPED: tuple[str, ...] = ("multiprobe", "l11-5v", "baseline")
#: the app's and the CLI's default model
DEFAULT_MODEL = "multiprobe"
#: the IR-SDE ensembles (name -> the probes whose physics they were trained on)
IRSDE_MODELS: dict[str, tuple[str, ...]] = {"l11-5v": ("L11-5v",), "multiprobe": PROBES}
#: learned baselines (name -> description)
LEARNED_BASELINES: dict[str, str] = {"baseline": "direct-regression UNet"}


def resolve_threads(threads: int | str | None) -> int | None:
    """The CPU thread policy: ``"auto"`` = cores − 1 (at least 1, so the GUI keeps a core), an int = that
    many, None = leave the runtime's own setting."""
    if threads is None:
        return None
    if threads == "auto":
        return max(1, (os.cpu_count() or 2) - 1)
    return max(1, int(threads))
