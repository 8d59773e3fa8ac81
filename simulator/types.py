"""Plain data types shared by the simulator modules (numpy only)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Phantom:
    """A speckle-free echogenicity map on a physical Cartesian grid.

    ``echo`` is (H, W) float32 in [0, 1] (1 = brightest tissue, 0 = anechoic), row 0 at
    depth ``z0_mm``, column 0 at lateral position ``x0_mm``; ``spacing_mm`` is the (dz, dx)
    pitch of this grid.  Masks are boolean (H, W) on the same grid.
    """

    echo: np.ndarray
    spacing_mm: tuple[float, float]
    x0_mm: float
    z0_mm: float
    lesion_mask: np.ndarray
    background_mask: np.ndarray
    name: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.echo.shape)

    @property
    def extent_mm(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, z_min, z_max) of pixel centres."""
        h, w = self.echo.shape
        dz, dx = self.spacing_mm
        return (self.x0_mm, self.x0_mm + (w - 1) * dx, self.z0_mm, self.z0_mm + (h - 1) * dz)


@dataclass
class SimResult:
    """What :func:`simulator.physics.simulate` returns.

    bmode     (H, W) float32 in [0, 1]: log-compressed display, (20 log10(env/ref) + DR) / DR, clipped
    envelope  (H, W) float32: linear envelope before log compression (same grid, same ref units)
    clean     (H, W) float32 in [0, 1]: the training target (echogenicity in the display mapping)
    mask      (H, W) bool: valid imaging region (the sector for convex/phased probes)
    lesion_mask, background_mask: (H, W) bool on the output grid
    spacing_mm: (dz, dx) pixel pitch of the output grid
    dynamic_range_db: display dynamic range DR
    """

    bmode: np.ndarray
    envelope: np.ndarray
    clean: np.ndarray
    mask: np.ndarray
    lesion_mask: np.ndarray
    background_mask: np.ndarray
    spacing_mm: tuple[float, float]
    dynamic_range_db: float
    probe: str
    path: str
    seed: int
    meta: dict = field(default_factory=dict)
