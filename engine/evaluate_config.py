"""What ``usclean evaluate`` evaluates: the models and their roles, the sets, the settings (:class:`EvalConfig`).

Shared by the runner (:mod:`engine.evaluate`) and the report (:mod:`engine.report`)."""
from __future__ import annotations

from dataclasses import dataclass

from . import classical
from .catalog import DEFAULT_MODEL, IRSDE_MODELS, LEARNED_BASELINES, PROBES  # noqa: F401  (re-exported)

KINDS: tuple[str, ...] = ("fast", "full")
REFERENCE_PROBE = "L11-5v"
NFE_GRID: tuple[int, ...] = (1, 2, 4, 5, 10, 20, 50, 100)
#: example figure panels, declared before any result was seen: (kind, probe, test index)
FIGURE_EXAMPLES: tuple[tuple[str, str, int], ...] = (
    ("full", "L11-5v", 0), ("full", "L11-5v", 1), ("full", "L12-3v", 0), ("full", "C5-2v", 0),
    ("full", "P4-2v", 0), ("fast", "L11-5v", 0),
)
VAL_SEED = 424242
BMODE_BM3D_GRID = (0.2, 0.3, 0.4, 0.5, 0.6)


@dataclass
class EvalConfig:
    """What to evaluate.  ``quick()`` gives the tiny-subset variant of ``usclean evaluate --quick``."""

    kinds: tuple[str, ...] = KINDS
    probes: tuple[str, ...] = PROBES
    max_images: int | None = None          # per test set (None = all)
    ref_images: int = 16                   # 100-step references on the first N images of each set
    ref_sets: tuple[tuple[str, str], ...] | None = tuple(("full", p) for p in PROBES)  # None = every set
    ref_steps: int = 100
    steps_set: tuple[str, str] = ("full", REFERENCE_PROBE)
    steps_images: int = 16
    nfe_grid: tuple[int, ...] = NFE_GRID
    val_per_probe: int = 4                 # validation pairs per probe for tuning the filters
    val_size: int = 128
    filters: tuple[str, ...] = tuple(classical.FILTERS)
    grids: dict[str, dict[str, list]] | None = None  # override a filter's tuning grid
    workers: int = 2                       # processes for the classical filters (1 = in-process)
    sample_seeds: int = 4                  # samples of one member (uncertainty analysis)
    reliability_bins: int = 10
    seed: int = 0
    quick: bool = False
    budget_min: float = 90.0               # shrink the reference/steps subsets to finish in time (0 = never)

    @classmethod
    def quick_config(cls) -> EvalConfig:
        return cls(max_images=2, ref_images=1, ref_sets=(("full", REFERENCE_PROBE),), steps_images=1,
                   nfe_grid=(1, 5, 100), val_per_probe=1, sample_seeds=2, quick=True, budget_min=5.0)


