"""Ultrasound probe presets (pymust / Verasonics) with user overrides and image geometry.

Four presets are available (``PROBE_NAMES``): two linear arrays (L11-5v, L12-3v), one convex
array (C5-2v) and one phased array (P4-2v).  :func:`get_probe` returns an immutable
:class:`Probe` that knows

* its acoustics: centre frequency, fractional bandwidth, speed of sound, wavelength;
* its transmit scheme (one unfocused transmit per compounding angle): a plane wave for
  linear arrays, the natural diverging wave of the curved surface for the convex array and
  a circular (diverging) wave spanning ``sector_deg`` for the phased array;
* its image geometry: the B-mode pixel pitch (at most half the wavelength at the centre
  frequency, rounded down to 0.01 mm, so speckle is never aliased), the depth range, the
  default depth of the image centre, the valid field of view (``in_field``) and where a
  ``size`` x ``size`` output image sits (:meth:`Probe.image_window`).

Coordinates follow pymust: x lateral (0 at the array centre), z depth (0 at the array face,
or at the chord of a convex array), both reported here in millimetres.
"""
from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pymust

PROBE_NAMES: tuple[str, ...] = ("L11-5v", "L12-3v", "C5-2v", "P4-2v")

SPEED_OF_SOUND = 1540.0  # m/s
DEFAULT_DR_DB = 50.0
MIN_IMAGE_SIZE = 16
MAX_ANGLE_DEG = 20.0

# name -> (kind, depth range mm, default depth of the image centre mm, phased sector width deg)
def _getparam(name: str) -> pymust.utils.Param:
    """pymust's preset for ``name``, imported on first use: the despeckling path (the app, the CLI) needs
    only the probe names and loads no physics."""
    import pymust

    return pymust.getparam(name)


_GEOMETRY: dict[str, tuple[str, tuple[float, float], float, float]] = {
    "L11-5v": ("linear", (2.0, 60.0), 18.0, 0.0),
    "L12-3v": ("linear", (2.0, 60.0), 20.0, 0.0),
    "C5-2v": ("convex", (5.0, 200.0), 60.0, 0.0),
    "P4-2v": ("phased", (5.0, 160.0), 50.0, 80.0),
}


@dataclass(frozen=True)
class Probe:
    """One probe configuration (preset plus overrides).  Build it with :func:`get_probe`."""

    name: str
    kind: str  # "linear" | "convex" | "phased"
    fc_hz: float
    bandwidth_pct: float
    c: float
    pixel_pitch_mm: float
    depth_range_mm: tuple[float, float]
    center_depth_mm: float
    angles_deg: tuple[float, ...]
    sector_deg: float  # phased arrays: width of the transmitted circular wave / imaged sector
    dynamic_range_db: float = DEFAULT_DR_DB

    @property
    def wavelength_mm(self) -> float:
        return self.c / self.fc_hz * 1e3

    def param(self) -> pymust.utils.Param:
        """A fresh pymust parameter structure for this probe (safe to mutate)."""
        p = _getparam(self.name)
        p.fc = float(self.fc_hz)
        p.bandwidth = float(self.bandwidth_pct)
        p.c = float(self.c)
        p.fs = 4.0 * p.fc
        return p

    # ------------------------------------------------------------------ geometry
    @property
    def radius_mm(self) -> float:
        """Radius of curvature of the array (inf for linear and phased arrays)."""
        r = _getparam(self.name).radius
        return float(r) * 1e3 if np.isfinite(r) else float("inf")

    @property
    def aperture_mm(self) -> float:
        p = _getparam(self.name)
        return float(p.pitch * (p.Nelements - 1)) * 1e3

    @property
    def polar_origin_mm(self) -> tuple[float, float]:
        """(x, z) of the apex of the beam-space (depth x angle) grid: the centre of curvature of
        a convex array, the array centre of a phased array.  Linear arrays have none."""
        if self.kind == "convex":
            p = _getparam(self.name)
            _, _, _, h = p.getElementPositions()
            return 0.0, -float(h.ravel()[0]) * 1e3
        if self.kind == "phased":
            return 0.0, 0.0
        raise ValueError(f"a {self.kind} probe has no polar origin")

    @property
    def half_angle_deg(self) -> float:
        """Half opening of the imaged sector (convex / phased)."""
        if self.kind == "convex":
            p = _getparam(self.name)
            _, _, the, _ = p.getElementPositions()
            return float(np.degrees(np.abs(the).max()))
        if self.kind == "phased":
            return self.sector_deg / 2.0
        raise ValueError(f"a {self.kind} probe has no sector")

    def in_field(self, x_mm: np.ndarray, z_mm: np.ndarray) -> np.ndarray:
        """Boolean mask of points inside the probe's valid field of view.

        Linear: below the array face and laterally within the aperture.  Convex / phased:
        inside the sector (angle from the polar origin within the half opening, radius beyond
        the array surface) and within the depth range.
        """
        x = np.asarray(x_mm, dtype=float)
        z = np.asarray(z_mm, dtype=float)
        zmax = self.depth_range_mm[1]
        if self.kind == "linear":
            return (np.abs(x) <= self.aperture_mm / 2) & (z > 0) & (z <= zmax)
        x0, z0 = self.polar_origin_mm
        r = np.hypot(x - x0, z - z0)
        th = np.degrees(np.arctan2(x - x0, z - z0))
        rmin = self.radius_mm if self.kind == "convex" else 0.0
        return (np.abs(th) <= self.half_angle_deg) & (r > rmin) & (z > 0) & (z <= zmax)

    def image_window(self, size: int) -> tuple[float, float, tuple[float, float]]:
        """Where a ``size`` x ``size`` output image sits: ``(x0_mm, z0_mm, (dz, dx))``.

        The grid pitch is :attr:`pixel_pitch_mm` in both directions; the image is centred
        laterally on the probe axis and in depth on :attr:`center_depth_mm` (moved down to the
        shallowest allowed depth if it would start above it).  For the default depths the
        window of a 128 x 128 image lies entirely inside the sector of convex / phased probes.
        Raises ValueError when the image would not fit in the probe's depth range.
        """
        size = _check_size(size)
        d = self.pixel_pitch_mm
        span = (size - 1) * d
        zmin, zmax = self.depth_range_mm
        z0 = max(self.center_depth_mm - span / 2, zmin)
        if z0 + span > zmax:
            raise ValueError(
                f"a {size}x{size} image at {d:.2f} mm/pixel spans {span:.1f} mm of depth, which does "
                f"not fit between {zmin:g} and {zmax:g} mm for {self.name}; use a smaller size"
            )
        return -span / 2, z0, (d, d)

    def grid_mm(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """1-D lateral and depth coordinates (mm) of the pixel centres of :meth:`image_window`."""
        x0, z0, (dz, dx) = self.image_window(size)
        return x0 + dx * np.arange(size), z0 + dz * np.arange(size)


def _check_size(size: int) -> int:
    if int(size) != size or size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size must be an integer >= {MIN_IMAGE_SIZE} pixels, got {size!r}")
    return int(size)


def check_angles(angles_deg) -> tuple[float, ...]:
    """Validate compounding angles (degrees): a non-empty sequence, each within +-MAX_ANGLE_DEG."""
    try:
        angles = tuple(float(a) for a in np.atleast_1d(np.asarray(angles_deg, dtype=float)))
    except (TypeError, ValueError):
        angles = ()
    if len(angles) == 0 or not all(np.isfinite(a) and abs(a) <= MAX_ANGLE_DEG for a in angles):
        raise ValueError(
            f"compounding angles must be a non-empty list of values within +-{MAX_ANGLE_DEG:g} deg, got {angles_deg!r}"
        )
    return angles


def _half_wavelength_pitch(c: float, fc_hz: float) -> float:
    """Half the wavelength in mm, rounded down to 0.01 mm."""
    return float(np.floor(c / fc_hz * 1e3 / 2 * 100 + 1e-9) / 100)


def get_probe(
    name: str,
    fc_mhz: float | None = None,
    bandwidth: float | None = None,
    depth_mm: float | None = None,
    angles_deg: tuple[float, ...] | list[float] | None = None,
) -> Probe:
    """Return the probe ``name`` with optional overrides.

    Parameters
    ----------
    name: one of :data:`PROBE_NAMES` (case-insensitive).
    fc_mhz: centre frequency in MHz (0.5 .. 30).
    bandwidth: pulse-echo -6 dB fractional bandwidth in % (10 .. 150).
    depth_mm: depth of the image centre in mm, inside the probe's depth range.
    angles_deg: transmit angles for compounding (each within +-20 deg); default (0,).

    Raises ValueError naming the valid choices or the allowed range.
    """
    lookup = {n.lower(): n for n in PROBE_NAMES}
    key = str(name).strip().lower()
    if key not in lookup:
        raise ValueError(f"unknown probe {name!r}; valid probes: {', '.join(PROBE_NAMES)}")
    name = lookup[key]
    kind, depth_range, default_depth, sector = _GEOMETRY[name]
    preset = _getparam(name)

    fc = float(preset.fc) if fc_mhz is None else float(fc_mhz) * 1e6
    if not np.isfinite(fc) or not 0.5e6 <= fc <= 30e6:
        raise ValueError(f"centre frequency must be between 0.5 and 30 MHz, got {fc_mhz!r} MHz")
    bw = float(preset.bandwidth) if bandwidth is None else float(bandwidth)
    if not np.isfinite(bw) or not 10.0 <= bw <= 150.0:
        raise ValueError(f"fractional bandwidth must be between 10 and 150 %, got {bandwidth!r}")
    depth = default_depth if depth_mm is None else float(depth_mm)
    if not np.isfinite(depth) or not depth_range[0] <= depth <= depth_range[1]:
        raise ValueError(
            f"depth must be between {depth_range[0]:g} and {depth_range[1]:g} mm for {name}, got {depth_mm!r}"
        )
    angles = (0.0,) if angles_deg is None else check_angles(angles_deg)
    pitch = _half_wavelength_pitch(SPEED_OF_SOUND, fc)
    return Probe(
        name=name,
        kind=kind,
        fc_hz=fc,
        bandwidth_pct=bw,
        c=SPEED_OF_SOUND,
        pixel_pitch_mm=pitch,
        depth_range_mm=depth_range,
        center_depth_mm=depth,
        angles_deg=angles,
        sector_deg=sector,
    )
