"""Simulated cine loops: a phantom moving slightly under the probe, like a slow free-hand sweep.

The scene is a phantom built on a window larger than the image (so that tissue can move in
from the sides).  Frame ``f`` sees the tissue through a rigid motion ``T_f`` (probe coordinates
``p = R(theta_f) (q - c) + c + s_f`` of a tissue point ``q``, ``c`` the image centre): a lateral
sweep, a small axial oscillation (breathing / probe pressure) and a small rocking rotation, all
smooth in time and drawn from ``seed``.

Speckle is coherent from frame to frame because ONE scatterer realisation, fixed in tissue
coordinates, is drawn once and moved with the tissue:

* ``path="full"``: the full path's point scatterers (:func:`simulator.physics.scatterers`) are
  moved by ``T_f`` and every frame is simulated with ``pymust.simus`` -> ``rf2iq`` -> ``dasmtx``
  by the full path's own code (:func:`simulator.physics.full_envelope`);
* ``path="fast"``: point scatterers with fixed complex Gaussian amplitudes (variance following
  the echogenicity law of :mod:`simulator.physics`, :data:`FAST_DENSITY` per output pixel) are
  moved by ``T_f`` and splatted (bilinear) onto the fast path's field grid
  (:func:`simulator.physics.fast_grid`: Cartesian for linear probes, beam space for convex /
  phased), then rendered by the fast path's own code (:func:`simulator.physics.render_fast`:
  COLE-style, a scatterer map convolved with the probe's PSF bank).

Every frame uses the display mapping and clean target of :func:`simulator.physics.display`
(recalibrated per frame, like a scanner's fixed gain on a slowly changing view).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from . import physics, scanconvert
from .phantoms import PHANTOM_NAMES, make_phantom
from .probes import Probe
from .types import Phantom, SimResult

DEFAULT_FRAME_TIME_MS = 33.3
FAST_DENSITY = 2.0  # point scatterers per output pixel area in the fast cine renderer
MAX_FRAMES = 1000
SCENE_MARGIN = 0.18  # extra scene on each side, as a fraction of the image size
PHANTOM_HELP: dict[str, str] = {
    "mri": "oblique slice of the MNI152 T1 brain template with a random echogenicity mapping",
    "cyst": "anechoic cyst in homogeneous tissue",
    "lesions": "a -6 dB and a +6 dB lesion in homogeneous tissue",
    "points": "3 x 3 wire targets in an anechoic medium",
    "layers": "layered tissue with curved boundaries",
    "homogeneous": "uniform tissue (fully developed speckle)",
}


# --------------------------------------------------------------------------- motion
def sweep_motion(n_frames: int, frame_time_ms: float, span_mm: float, rng: np.random.Generator) -> np.ndarray:
    """(F, 3) per-frame ``(shift_x_mm, shift_z_mm, angle_rad)`` of the tissue, smooth in time.

    A slow lateral sweep (peak speed 6-12 % of the image width per second, turning back with a
    period of 3-5 s so that it stays bounded for any clip length), an axial oscillation of
    0.5-1.5 % of the image height (period 2.5-5 s: breathing, probe pressure) and a rocking
    rotation of 0.5-1.5 degrees (period 3-6 s), all centred on the middle of the clip.
    """
    t = np.arange(n_frames) * frame_time_ms / 1000.0
    t = t - t.mean()
    period = rng.uniform(3.0, 5.0)
    speed = rng.choice([-1.0, 1.0]) * rng.uniform(0.06, 0.12) * span_mm
    sx = speed * period / (2 * np.pi) * np.sin(2 * np.pi * t / period)
    sz = rng.uniform(0.005, 0.015) * span_mm * np.sin(2 * np.pi * t / rng.uniform(2.5, 5.0) + rng.uniform(0, 2 * np.pi))
    th = np.radians(rng.uniform(0.5, 1.5)) * np.sin(2 * np.pi * t / rng.uniform(3.0, 6.0) + rng.uniform(0, 2 * np.pi))
    return np.stack([sx, sz, th], axis=1)


def _to_probe(q_x, q_z, motion, centre):
    """Tissue -> probe coordinates for one frame's motion (sx, sz, theta)."""
    sx, sz, th = motion
    c, s = math.cos(th), math.sin(th)
    dx, dz = q_x - centre[0], q_z - centre[1]
    return centre[0] + c * dx + s * dz + sx, centre[1] - s * dx + c * dz + sz


def _to_tissue(p_x, p_z, motion, centre):
    """Probe -> tissue coordinates (inverse of :func:`_to_probe`)."""
    sx, sz, th = motion
    c, s = math.cos(th), math.sin(th)
    dx, dz = p_x - centre[0] - sx, p_z - centre[1] - sz
    return centre[0] + c * dx - s * dz, centre[1] + s * dx + c * dz


# --------------------------------------------------------------------------- scene
def _scene(name: str, probe: Probe, size: int, seed: int, split: str, **kw) -> Phantom:
    """The phantom on a window larger than the image, centred like it (smaller if the probe's
    depth range does not allow a larger window)."""
    big = size + 2 * int(math.ceil(SCENE_MARGIN * size))
    for s in (big, (big + size) // 2, size):
        try:
            probe.image_window(s)
        except ValueError:
            continue
        return make_phantom(name, probe, size=s, seed=seed, split=split, **kw)
    return make_phantom(name, probe, size=size, seed=seed, split=split, **kw)  # raises the size error


def _frame_phantom(scene: Phantom, probe: Probe, size: int, motion, centre) -> Phantom:
    x0, z0, (dz, dx) = probe.image_window(size)
    xx, zz = np.meshgrid(x0 + dx * np.arange(size), z0 + dz * np.arange(size))
    qx, qz = _to_tissue(xx, zz, motion, centre)
    args = (scene.x0_mm, scene.z0_mm, scene.spacing_mm, qx, qz)
    echo = np.clip(scanconvert.sample_image(scene.echo, *args, order=1), 0.0, 1.0)
    lesion = scanconvert.sample_image(scene.lesion_mask.astype(float), *args, order=0) > 0.5
    background = scanconvert.sample_image(scene.background_mask.astype(float), *args, order=0) > 0.5
    meta = {k: v for k, v in scene.meta.items() if not isinstance(v, np.ndarray)}
    meta["motion"] = [float(m) for m in motion]
    return Phantom(echo=echo.astype(np.float32), spacing_mm=(dz, dx), x0_mm=x0, z0_mm=z0, lesion_mask=lesion,
                   background_mask=background, name=scene.name, meta=meta)


# --------------------------------------------------------------------------- renderers
def _grid(ph: Phantom):
    h, w = ph.echo.shape
    x = ph.x0_mm + ph.spacing_mm[1] * np.arange(w)
    z = ph.z0_mm + ph.spacing_mm[0] * np.arange(h)
    xx, zz = np.meshgrid(x, z)
    return x, z, xx, zz


def _full_env(xs, zs, rc, probe: Probe, xx, zz, mask) -> np.ndarray:
    """The full path's acquisition of given scatterers (mm), keeping those near the image."""
    lam = probe.wavelength_mm
    margin = max(1.5, 8 * lam)
    keep = ((xs > xx.min() - margin) & (xs < xx.max() + margin) & (zs > max(zz.min() - margin, lam))
            & (zs < zz.max() + margin))
    if probe.kind == "convex":
        r, _ = scanconvert.polar_coords(probe.polar_origin_mm, xs, zs)
        keep &= r > probe.radius_mm + lam
    return physics.full_envelope(xs[keep], zs[keep], rc[keep], probe, xx, zz, mask)


def _splat(iz: np.ndarray, ix: np.ndarray, amp: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear splat of complex point amplitudes at fractional grid indices."""
    h, w = shape
    fz, fx = np.floor(iz), np.floor(ix)
    az, ax = iz - fz, ix - fx
    fz, fx = fz.astype(np.int64), fx.astype(np.int64)
    out = np.zeros(h * w, complex)
    for oz, wz in ((0, 1 - az), (1, az)):
        for ox, wx in ((0, 1 - ax), (1, ax)):
            r, c = fz + oz, fx + ox
            ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            idx = r[ok] * w + c[ok]
            wgt = (wz * wx * amp)[ok]
            out += np.bincount(idx, weights=wgt.real, minlength=h * w) + 1j * np.bincount(
                idx, weights=wgt.imag, minlength=h * w)
    return out.reshape(h, w)


_SPLAT_VARIANCE = (2.0 / 3.0) ** 2  # mean of (bilinear weight)^2 summed over the 4 cells


def _fast_env(px, pz, amp, probe: Probe, x, z, mask, spacing) -> np.ndarray:
    """The fast path's rendering (:func:`simulator.physics.render_fast`) of moved point
    scatterers (probe coordinates, mm): the complex field of variance 10^(DR (I - 1) / 10) is
    made of splatted points instead of independent per-sample draws."""
    grid = physics.fast_grid(probe, x, z, mask, spacing)
    density = FAST_DENSITY / (spacing[0] * spacing[0])  # points per mm^2
    noise = _splat(*grid.indices(px, pz), amp, grid.shape)
    noise /= np.sqrt(density * grid.cell_area_mm2() * _SPLAT_VARIANCE)
    return physics.render_fast(noise, grid)


def _fast_points(scene: Phantom, probe: Probe, rng: np.random.Generator, reach_mm: float):
    """Point scatterers (tissue coordinates) covering the scene plus ``reach_mm``, with fixed
    complex Gaussian amplitudes of variance 10^(DR (I - 1) / 10)."""
    d = min(scene.spacing_mm)
    (xmin, xmax, zmin, zmax) = scene.extent_mm
    xmin, xmax, zmin, zmax = xmin - reach_mm, xmax + reach_mm, zmin - reach_mm, zmax + reach_mm
    n = rng.poisson(FAST_DENSITY / (d * d) * (xmax - xmin) * (zmax - zmin))
    qx = rng.uniform(xmin, xmax, n)
    qz = rng.uniform(zmin, zmax, n)
    g = rng.standard_normal((n, 2))
    level = scanconvert.sample_image(scene.echo, scene.x0_mm, scene.z0_mm, scene.spacing_mm, qx, qz, order=1)
    amp = (g[:, 0] + 1j * g[:, 1]) * np.sqrt(physics.intensity_weight(level, probe.dynamic_range_db) / 2.0)
    return qx, qz, amp


# --------------------------------------------------------------------------- public API
def simulate_cine_results(phantom_name: str, probe: Probe, n_frames: int, seed: int = 0, path: str = "fast",
                          size: int = 128, frame_time_ms: float = DEFAULT_FRAME_TIME_MS, split: str = "test",
                          progress: Callable[[int, int], None] | None = None, **phantom_kw) -> list[SimResult]:
    """Simulate ``n_frames`` frames of phantom ``phantom_name`` moving under ``probe``.

    ``frame_time_ms`` sets the time between frames, hence how far the tissue moves per frame.
    Returns one :class:`SimResult` per frame (B-mode, envelope, clean target, masks; the frame's
    motion in ``meta["motion"]`` as (shift_x_mm, shift_z_mm, angle_rad)).  ``progress(done,
    total)`` is called after each frame.  MRI phantoms come from the ``split`` slabs (default
    "test", i.e. anatomy no training set has seen).
    """
    if path not in physics.PATHS:
        raise ValueError(f"unknown simulation path {path!r}; valid paths: {', '.join(physics.PATHS)}")
    if str(phantom_name).strip().lower() not in PHANTOM_NAMES:
        raise ValueError(f"unknown phantom {phantom_name!r}; valid phantoms: {', '.join(PHANTOM_NAMES)}")
    if not (np.isfinite(frame_time_ms) and frame_time_ms > 0):
        raise ValueError(f"frame time must be a positive number of ms, got {frame_time_ms!r}")
    if int(n_frames) != n_frames or not 1 <= n_frames <= MAX_FRAMES:
        raise ValueError(f"the number of frames must be an integer in 1..{MAX_FRAMES}, got {n_frames!r}")
    n_frames = int(n_frames)
    probe.image_window(size)  # validates the size
    ss = np.random.SeedSequence([int(seed), 0xC1E])
    scene_seed, motion_seed, scat_seed = (int(s.generate_state(1)[0]) for s in ss.spawn(3))
    scene = _scene(phantom_name, probe, int(size), scene_seed, split, **phantom_kw)
    x0, z0, (dz, dx) = probe.image_window(size)
    span = (size - 1) * dx
    centre = (x0 + span / 2, z0 + (size - 1) * dz / 2)
    motions = sweep_motion(n_frames, frame_time_ms, span, np.random.default_rng(motion_seed))
    rng = np.random.default_rng(scat_seed)
    if path == "full":
        xs_grid = scene.x0_mm + scene.spacing_mm[1] * np.arange(scene.echo.shape[1])
        zs_grid = scene.z0_mm + scene.spacing_mm[0] * np.arange(scene.echo.shape[0])
        qx, qz, rc = physics.scatterers(scene.echo.astype(float), xs_grid, zs_grid, probe, rng, scene.spacing_mm)
    else:
        reach = 0.25 * span  # psf support around the image is covered by the scene margin plus this
        qx, qz, amp = _fast_points(scene, probe, rng, reach)
    dr_db = float(probe.dynamic_range_db)
    results = []
    for f, motion in enumerate(motions):
        ph = _frame_phantom(scene, probe, int(size), motion, centre)
        x, z, xx, zz = _grid(ph)
        mask = probe.in_field(xx, zz)
        px, pz = _to_probe(qx, qz, motion, centre)
        if path == "full":
            env = _full_env(px, pz, rc, probe, xx, zz, mask)
        else:
            env = _fast_env(px, pz, amp, probe, x, z, mask, ph.spacing_mm)
        bmode, env_ref, ref = physics.display(env, ph.echo.astype(float), mask, dr_db)
        results.append(SimResult(
            bmode=bmode, envelope=env_ref, clean=np.where(mask, ph.echo, 0.0).astype(np.float32), mask=mask,
            lesion_mask=ph.lesion_mask & mask, background_mask=ph.background_mask & mask, spacing_mm=ph.spacing_mm,
            dynamic_range_db=dr_db, probe=probe.name, path=path, seed=int(seed),
            meta={"frame": f, "motion": [float(m) for m in motion], "ref": ref, "phantom": ph.name},
        ))
        if progress is not None:
            progress(f + 1, n_frames)
    return results


def simulate_cine(phantom_name: str, probe: Probe, n_frames: int, seed: int = 0, path: str = "fast",
                  size: int = 128, frame_time_ms: float = DEFAULT_FRAME_TIME_MS,
                  progress: Callable[[int, int], None] | None = None,
                  **phantom_kw) -> tuple[np.ndarray, tuple[float, float], float]:
    """Simulate a cine loop: ``(frames uint8 (F, H, W), spacing_mm (dz, dx), frame_time_ms)``.

    The 8-bit frames are the B-mode display (``round(255 * bmode)``, DR = the probe's dynamic
    range); see :func:`simulate_cine_results` for the arguments.
    """
    res = simulate_cine_results(phantom_name, probe, n_frames, seed=seed, path=path, size=size,
                                frame_time_ms=frame_time_ms, progress=progress, **phantom_kw)
    frames = np.stack([np.round(r.bmode * 255.0).astype(np.uint8) for r in res])
    return frames, res[0].spacing_mm, float(frame_time_ms)
