"""Foreign full-physics validation sets: anatomy, acquisition and beamforming the training data never see.

Purpose: judge every model on speckle made *outside* the training pipeline.  Nothing here is shared
with training-data generation (:mod:`simulator.physics`, :mod:`simulator.psf`, :mod:`simulator.phantoms`,
:mod:`simulator.datasets`' pair code) beyond pymust itself and the Dask job runner:

* **anatomy**: procedural tissue scenes and held-out natural images (:mod:`simulator.anatomy`), not the
  MNI template;
* **scatterers**: a Poisson point process (uniform positions, count drawn from the density) with
  Gaussian reflection coefficients of random sign, ``density`` per square wavelength drawn per image
  from 0.4 to 1.6 (the sparse end gives non-Rayleigh, K-like speckle), echogenicity sampled bilinearly
  from the scene;
* **acquisition** (drawn per image): transmit frequency 0.85–1.12 × the preset's, bandwidth
  0.8–1.1 ×, pulse length 1–2 cycles, attenuation 0.3–0.7 dB/cm/MHz with a nominal TGC (the centre
  frequency's round-trip loss) and a ±3 dB operator TGC curve, 1–3 compounding angles, electronic noise
  on the RF (−45 … −30 dB re the RF's RMS), ``simus`` keeping spectral components down to −60 dB, one
  segment per element;
* **beamforming**: ``pymust.dasmtx`` with a fixed receive f-number (1.0–2.0) and quadratic or Lanczos
  interpolation, onto a grid finer than the output (Cartesian for linear arrays; polar — radius ×
  angle — for the convex and phased arrays), envelopes compounded in intensity;
* **resampling**: the envelope is area-averaged onto the output grid (block means over the supersampled
  grid; for sector probes the polar image is scan-converted at the sub-pixel positions, then averaged),
  whose pixel pitch is drawn independently on each axis (axial 0.28–0.7 λ, lateral 0.3–0.95 λ), so the
  speckle grain in pixels varies widely;
* **display**: log compression with DR 45–65 dB and a gain that puts the median tissue at display level
  0.45–0.65, 8-bit output, the same mapping for every draw of an image.

Each image is simulated ``n_draws`` (default 9) times with independent scatterers and noise.  Draw 0 is
the input; **the ground truth is the speckle-free B-mode: the mean of the other draws' displayed images**
(≥ 8 draws).  Its residual speckle is stated per image (``floor_mse``: the per-pixel variance across
those draws over their number, averaged; a perfect despeckler's expected MSE against this truth), and a
leave-one-out scheme lets any draw serve as input against the mean of the others.  The echogenicity map
(dB, area-averaged in intensity onto the output grid) is stored too.

Files: ``<root>/<probe>/<index:03d>.npz`` with ``draws`` (K, H, W) uint8, ``echo_db`` float32, ``mask``,
``lesion_mask``, ``background_mask`` (bool), ``spacing_mm``, ``dynamic_range_db`` and the acquisition as
JSON (``acquisition``); ``params.json`` records the generator.  Generation (``python -m simulator.foreign``)
runs on Dask, one task per image, and saves every draw as it finishes under ``<root>/.partial``: an
interrupted run resumes draw by draw.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from . import anatomy

PROBES: tuple[str, ...] = ("L11-5v", "L12-3v", "C5-2v", "P4-2v")
FOREIGN_DIR = Path(__file__).resolve().parent.parent / "resources" / "testsets" / "foreign"
BASE_SEED = 20261201
SIZE = (128, 128)
DEFAULT_N = 8
DEFAULT_DRAWS = 9
C = 1540.0
# depth of the image centre (mm) per probe: drawn uniformly in this range
_DEPTHS = {"L11-5v": (12.0, 26.0), "L12-3v": (12.0, 30.0), "C5-2v": (45.0, 85.0), "P4-2v": (45.0, 80.0)}
# the first half of each probe's images are tissue scenes, the second half natural images
_ANGLE_SETS = ((0.0,), (-5.0, 5.0), (-7.0, 0.0, 7.0))


@dataclass(frozen=True)
class Acquisition:
    """One image's acquisition, beamforming and display settings (drawn by :func:`draw_acquisition`)."""

    probe: str
    kind: str  # linear | convex | phased
    fc_hz: float
    bandwidth_pct: float
    tx_cycles: float
    attenuation: float  # dB/cm/MHz
    angles_deg: tuple[float, ...]
    density: float  # scatterers per square wavelength
    fnumber: float
    das_method: str
    das_per_wavelength: tuple[float, float]  # DAS grid samples per wavelength (axial / radial, lateral)
    spacing_mm: tuple[float, float]  # output pixel pitch (dz, dx)
    center_depth_mm: float
    dr_db: float
    display_level: float
    noise_db: float
    tgc_db: tuple[float, ...]  # operator TGC offsets (dB) at evenly spaced depths of the window
    scene: str
    shape: tuple[int, int] = SIZE

    @property
    def wavelength_mm(self) -> float:
        return C / self.fc_hz * 1e3

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def image_seed(probe: str, index: int, base_seed: int = BASE_SEED) -> int:
    ss = np.random.SeedSequence([base_seed, zlib.crc32(probe.encode()), int(index)])
    return int(ss.generate_state(1)[0])


def _param(acq: Acquisition):
    import pymust

    p = pymust.getparam(acq.probe)
    p.fc = float(acq.fc_hz)
    p.bandwidth = float(acq.bandwidth_pct)
    p.c = C
    p.fs = 4.0 * p.fc
    p.attenuation = float(acq.attenuation)
    p.TXnow = float(acq.tx_cycles)
    return p


def _kind(probe: str) -> str:
    import pymust

    p = pymust.getparam(probe)
    if np.isfinite(getattr(p, "radius", np.inf)):
        return "convex"
    return "phased" if probe.startswith("P") else "linear"


def draw_acquisition(probe: str, index: int, n_images: int = DEFAULT_N, base_seed: int = BASE_SEED) -> Acquisition:
    """The acquisition of image ``index`` of ``probe`` (all choices from :func:`image_seed`)."""
    import pymust

    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; valid probes: {', '.join(PROBES)}")
    rng = np.random.default_rng(image_seed(probe, index, base_seed))
    pre = pymust.getparam(probe)
    kind = _kind(probe)
    fc = float(pre.fc) * rng.uniform(0.85, 1.12)
    lam = C / fc * 1e3
    angles = _ANGLE_SETS[int(rng.choice(3, p=[0.35, 0.35, 0.3]))]
    n_tissue = max(1, n_images // 2)
    if index % n_images < n_tissue:
        scene = anatomy.SCENES[index % len(anatomy.SCENES)]
    else:
        scene = "natural:" + anatomy.NATURAL_IMAGES[(index + zlib.crc32(probe.encode())) % len(anatomy.NATURAL_IMAGES)]
    return Acquisition(
        probe=probe, kind=kind, fc_hz=fc,
        bandwidth_pct=float(np.clip(float(pre.bandwidth) * rng.uniform(0.8, 1.1), 40, 110)),
        tx_cycles=float(rng.uniform(1.0, 2.0)), attenuation=float(rng.uniform(0.3, 0.7)), angles_deg=angles,
        density=float(np.exp(rng.uniform(np.log(0.4), np.log(1.6)))), fnumber=float(rng.uniform(1.0, 2.0)),
        das_method=str(rng.choice(["quadratic", "lanczos3"])),
        das_per_wavelength=(float(rng.uniform(3.0, 4.5)), float(rng.uniform(2.0, 3.0))),
        spacing_mm=(float(lam * rng.uniform(0.28, 0.7)), float(lam * rng.uniform(0.3, 0.95))),
        center_depth_mm=float(rng.uniform(*_DEPTHS[probe])), dr_db=float(rng.uniform(45, 65)),
        display_level=float(rng.uniform(0.45, 0.65)), noise_db=float(rng.uniform(-45, -30)),
        tgc_db=tuple(float(v) for v in rng.uniform(-3, 3, 4)), scene=scene,
    )


# --------------------------------------------------------------------------- geometry
@dataclass
class Geometry:
    """Output grid, field-of-view mask and the supersampled beamforming grid of one image."""

    x: np.ndarray  # output pixel centres (mm)
    z: np.ndarray
    mask: np.ndarray
    sub: tuple[int, int]  # supersampling per output pixel (axial, lateral)
    xs: np.ndarray  # supersampled Cartesian points (mm), (H*sz, W*sx)
    zs: np.ndarray
    das_x: np.ndarray  # beamforming points (mm): the supersampled grid (linear) or a polar grid (sector)
    das_z: np.ndarray
    polar: dict | None  # origin, r0, dr, th0, dth, shape for sector probes


def _array(acq: Acquisition):
    """(origin z (mm) of the polar grid, radius of curvature (mm), half opening (rad), aperture (mm))."""
    p = _param(acq)
    xe, ze, the, h = p.getElementPositions()
    aperture = float(p.pitch * (p.Nelements - 1)) * 1e3
    if acq.kind == "convex":
        return -float(np.ravel(h)[0]) * 1e3, float(p.radius) * 1e3, float(np.abs(the).max()), aperture
    if acq.kind == "phased":
        return 0.0, 0.0, np.radians(40.0), aperture
    return 0.0, np.inf, 0.0, aperture


def geometry(acq: Acquisition) -> Geometry:
    h, w = acq.shape
    dz, dx = acq.spacing_mm
    lam = acq.wavelength_mm
    z0 = max(acq.center_depth_mm - (h - 1) / 2 * dz, 1.5)
    z = z0 + dz * np.arange(h)
    oz, radius, half, aperture = _array(acq)
    if acq.kind == "linear":
        half_w = min((w - 1) / 2 * dx, aperture / 2 * 0.9)
    else:  # keep the window's top corners inside the sector
        r_top = np.hypot(0.0, z0 - oz)
        half_w = min((w - 1) / 2 * dx, r_top * np.sin(half) * 1.1)
    dx = 2 * half_w / (w - 1)
    x = -half_w + dx * np.arange(w)
    sz = max(1, int(np.ceil(dz / (lam / acq.das_per_wavelength[0]))))
    sx = max(1, int(np.ceil(dx / (lam / acq.das_per_wavelength[1]))))
    xs = (x[:, None] + dx * ((np.arange(sx) + 0.5) / sx - 0.5)).ravel()
    zs = (z[:, None] + dz * ((np.arange(sz) + 0.5) / sz - 0.5)).ravel()
    XS, ZS = np.meshgrid(xs, zs)
    XX, ZZ = np.meshgrid(x, z)
    if acq.kind == "linear":
        mask = (np.abs(XX) <= aperture / 2) & (ZZ > 0)
        return Geometry(x, z, mask, (sz, sx), XS, ZS, XS, ZS, None)
    r = np.hypot(XX, ZZ - oz)
    th = np.arctan2(XX, ZZ - oz)
    mask = (np.abs(th) <= half) & (r > max(radius, 0) + lam) & (ZZ > 0)
    rs = np.hypot(XS, ZS - oz)
    ths = np.arctan2(XS, ZS - oz)
    dr = lam / acq.das_per_wavelength[0]
    r0, r1 = rs.min() - 2 * dr, rs.max() + 2 * dr
    dth = lam / acq.das_per_wavelength[1] / float(np.mean(rs))
    t0, t1 = ths.min() - 2 * dth, ths.max() + 2 * dth
    rr = np.arange(r0, r1 + dr, dr)
    tt = np.arange(t0, t1 + dth, dth)
    TT, RR = np.meshgrid(tt, rr)
    polar = {"origin_z": oz, "r0": float(r0), "dr": float(dr), "th0": float(t0), "dth": float(dth),
             "shape": (len(rr), len(tt))}
    return Geometry(x, z, mask, (sz, sx), XS, ZS, RR * np.sin(TT), oz + RR * np.cos(TT), polar)


def _to_output(env_das: np.ndarray, geo: Geometry) -> np.ndarray:
    """Area-average a beamformed envelope onto the output grid."""
    if geo.polar is None:
        sup = env_das.reshape(geo.xs.shape)
    else:
        p = geo.polar
        r = np.hypot(geo.xs, geo.zs - p["origin_z"])
        th = np.arctan2(geo.xs, geo.zs - p["origin_z"])
        coords = np.array([(r - p["r0"]) / p["dr"], (th - p["th0"]) / p["dth"]])
        sup = ndimage.map_coordinates(env_das.reshape(p["shape"]), coords, order=1, mode="nearest")
    h, w = geo.mask.shape
    sz, sx = geo.sub
    return sup.reshape(h, sz, w, sx).mean(axis=(1, 3))


# --------------------------------------------------------------------------- scene and scatterers
@dataclass
class Medium:
    """The scene on a fine grid around the window (dB), for sampling scatterer amplitudes."""

    db: np.ndarray
    x0: float
    z0: float
    step: float
    scene: anatomy.Scene  # the scene on the output grid (masks, echogenicity)
    echo_db: np.ndarray


def medium(acq: Acquisition, geo: Geometry, seed: int) -> Medium:
    lam = acq.wavelength_mm
    margin = max(2.0, 8 * lam)
    step = min(lam / 4, acq.spacing_mm[0] / 2, acq.spacing_mm[1] / 2)
    xf = np.arange(geo.x[0] - margin, geo.x[-1] + margin + step, step)
    zf = np.arange(max(geo.z[0] - margin, lam), geo.z[-1] + margin + step, step)
    XF, ZF = np.meshgrid(xf, zf)
    rng = np.random.default_rng([seed, 7])
    if acq.scene.startswith("natural:"):
        sc = anatomy.natural_scene(acq.scene.split(":", 1)[1], XF, ZF, rng)
    else:
        sc = anatomy.tissue_scene(acq.scene, XF, ZF, rng)
    # the scene on the output grid: intensity area-average of the fine map, nearest for masks
    lin = 10.0 ** (sc.db / 10.0)
    coords_x = (geo.xs - xf[0]) / step
    coords_z = (geo.zs - zf[0]) / step
    sup = ndimage.map_coordinates(lin, np.array([coords_z, coords_x]), order=1, mode="nearest")
    h, w = geo.mask.shape
    sz, sx = geo.sub
    echo_db = 10 * np.log10(np.maximum(sup.reshape(h, sz, w, sx).mean(axis=(1, 3)), 1e-12))
    XX, ZZ = np.meshgrid(geo.x, geo.z)
    cz, cx = (ZZ - zf[0]) / step, (XX - xf[0]) / step
    near = lambda m: ndimage.map_coordinates(m.astype(float), np.array([cz, cx]), order=0) > 0.5  # noqa: E731
    out_scene = anatomy.Scene(db=echo_db, lesion_mask=near(sc.lesion_mask) & geo.mask,
                              background_mask=near(sc.background_mask) & geo.mask, kind=sc.kind, meta=sc.meta)
    return Medium(sc.db, float(xf[0]), float(zf[0]), step, out_scene, echo_db.astype(np.float32))


def scatterers(acq: Acquisition, med: Medium, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisson scatterers over the medium's extent: positions (m) and reflection coefficients."""
    h, w = med.db.shape
    width, height = (w - 1) * med.step, (h - 1) * med.step
    lam = acq.wavelength_mm
    n = int(rng.poisson(acq.density * width * height / lam ** 2))
    xs = med.x0 + rng.uniform(0, width, n)
    zs = med.z0 + rng.uniform(0, height, n)
    oz, radius, _, _ = _array(acq)
    keep = zs > lam
    if acq.kind == "convex":
        keep &= np.hypot(xs, zs - oz) > radius + lam
    xs, zs = xs[keep], zs[keep]
    level = ndimage.map_coordinates(med.db, np.array([(zs - med.z0) / med.step, (xs - med.x0) / med.step]),
                                    order=1, mode="nearest")
    rc = rng.standard_normal(xs.size) * 10.0 ** (level / 20.0)
    # two silent anchors at the far corners: every draw's RF then has the same length
    xs = np.concatenate([xs, [med.x0, med.x0 + width]])
    zs = np.concatenate([zs, [med.z0 + height, med.z0 + height]])
    rc = np.concatenate([rc, [0.0, 0.0]])
    return xs * 1e-3, zs * 1e-3, rc


def _delays(acq: Acquisition, p, angle: float) -> np.ndarray:
    import pymust

    tilt = np.radians(angle)
    if acq.kind == "phased":
        d = pymust.txdelay(p, tilt, np.radians(80.0))
    else:
        d = pymust.txdelay(p, tilt)
    return np.atleast_2d(np.asarray(d, float))


def _tgc(acq: Acquisition, n_samples: int, fs: float, z_window: tuple[float, float]) -> np.ndarray:
    """Gain per fast-time sample: nominal attenuation compensation times the operator's TGC curve."""
    t = np.arange(n_samples) / fs
    depth_cm = C * t / 2 * 100
    nominal_db = acq.attenuation * acq.fc_hz / 1e6 * 2 * depth_cm
    knots = np.linspace(z_window[0], z_window[1], len(acq.tgc_db)) / 10.0
    op_db = np.interp(depth_cm, knots, acq.tgc_db)
    return 10.0 ** ((nominal_db + op_db) / 20.0)


class _Beamformer:
    """DAS matrices per angle (built once per image: they depend only on the geometry and RF size)."""

    def __init__(self, acq: Acquisition, geo: Geometry):
        self.acq, self.geo = acq, geo
        self.cache: dict[tuple, Any] = {}  # (angle, RF shape) -> DAS matrix

    def __call__(self, iq: np.ndarray, angle: float, delays: np.ndarray) -> np.ndarray:
        import pymust

        key = (angle, iq.shape)
        if key not in self.cache:
            q = _param(self.acq)
            q.TXdelay = delays
            q.fnumber = self.acq.fnumber
            self.cache = {k: v for k, v in self.cache.items() if k[1] == iq.shape}
            self.cache[key] = pymust.dasmtx(1j * np.array(iq.shape), self.geo.das_x * 1e-3, self.geo.das_z * 1e-3,
                                            q, self.acq.das_method)
        m = self.cache[key]
        return (m @ iq.flatten(order="F")).reshape(self.geo.das_x.shape, order="F")


def _options():
    import pymust

    opt = pymust.utils.Options()
    opt.dBThresh = -60.0  # spectral components 60 dB below the pulse's peak are left out (1.5x faster)
    opt.ElementSplitting = 1  # far field of each element from 12 mm on: one segment each (2x faster)
    return opt


def simulate_draw(acq: Acquisition, geo: Geometry, med: Medium, seed: int, bf: _Beamformer) -> np.ndarray:
    """One draw: the compounded envelope (arbitrary units) on the output grid."""
    import pymust

    rng = np.random.default_rng(seed)
    xs, zs, rc = scatterers(acq, med, rng)
    p = _param(acq)
    intensity = np.zeros(geo.das_x.shape)
    for angle in acq.angles_deg:
        delays = _delays(acq, p, angle)
        rf, _ = pymust.simus(xs.reshape(1, -1), zs.reshape(1, -1), rc.reshape(1, -1), delays, p.copy(), _options())
        rf = np.asarray(rf, float)
        rms = float(np.sqrt(np.mean(rf ** 2))) or 1.0
        rf = rf + rng.standard_normal(rf.shape) * rms * 10.0 ** (acq.noise_db / 20.0)
        rf = rf * _tgc(acq, rf.shape[0], p.fs, (geo.z[0], geo.z[-1]))[:, None]
        iq = pymust.rf2iq(rf, p.copy())
        intensity += np.abs(bf(iq, angle, delays)) ** 2
    env = np.sqrt(intensity / len(acq.angles_deg))
    return _to_output(env, geo)


def display(envs: np.ndarray, mask: np.ndarray, acq: Acquisition) -> np.ndarray:
    """8-bit log-compressed images of all draws with one gain: the median tissue at ``display_level``."""
    inside = envs[:, mask]
    med = float(np.median(inside[inside > 0])) if (inside > 0).any() else 1.0
    ref = med * 10.0 ** ((1.0 - acq.display_level) * acq.dr_db / 20.0)
    with np.errstate(divide="ignore"):
        d = (20.0 * np.log10(np.maximum(envs, 1e-30) / ref) + acq.dr_db) / acq.dr_db
    d = np.where(mask[None], np.clip(d, 0.0, 1.0), 0.0)
    return np.round(d * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------- one image (a Dask task)
def _atomic_npz(path: Path, **arrays) -> None:
    from .datasets import atomic_savez

    atomic_savez(path, **arrays)


def build_image(root: str, probe: str, index: int, n_images: int, n_draws: int, base_seed: int) -> tuple[str, float]:
    """Simulate (or finish) image ``index`` of ``probe``; returns (file, seconds).  Resumable per draw."""
    t0 = time.perf_counter()
    out = Path(root) / probe / f"{index:03d}.npz"
    if out.exists():
        return str(out), 0.0
    acq = draw_acquisition(probe, index, n_images, base_seed)
    seed = image_seed(probe, index, base_seed)
    geo = geometry(acq)
    med = medium(acq, geo, seed)
    partial = Path(root) / ".partial" / probe / f"{index:03d}"
    partial.mkdir(parents=True, exist_ok=True)
    bf = _Beamformer(acq, geo)
    envs = []
    for k in range(n_draws):
        f = partial / f"draw_{k}.npz"
        if f.exists():
            with np.load(f) as z:
                envs.append(z["env"])
            continue
        env = simulate_draw(acq, geo, med, int(np.random.SeedSequence([seed, 1000 + k]).generate_state(1)[0]), bf)
        _atomic_npz(f, env=env.astype(np.float32))
        envs.append(env.astype(np.float32))
    draws = display(np.stack(envs), geo.mask, acq)
    _atomic_npz(out, draws=draws, echo_db=med.echo_db.astype(np.float16), mask=geo.mask,
                lesion_mask=med.scene.lesion_mask, background_mask=med.scene.background_mask,
                spacing_mm=np.array([geo.z[1] - geo.z[0], geo.x[1] - geo.x[0]]),
                dynamic_range_db=np.float64(acq.dr_db), acquisition=np.str_(acq.to_json()),
                seconds=np.float64(time.perf_counter() - t0))
    for f in partial.glob("draw_*.npz"):
        f.unlink()
    partial.rmdir()
    return str(out), time.perf_counter() - t0


# --------------------------------------------------------------------------- reading
def load(probe: str, root: str | os.PathLike | None = None, input_draw: int = 0) -> dict[str, Any]:
    """A foreign set as arrays: ``bmode`` (draw ``input_draw``, float32 [0, 1]), ``clean`` (the mean of
    every other draw), ``floor_mse`` (N,) (the truth's residual speckle: variance across those draws
    over their number, averaged inside the mask), ``echo`` (the echogenicity in the image's display
    mapping, (echo_db + DR) / DR), masks, ``spacing_mm``, ``dynamic_range_db``, ``acquisition`` (dicts)."""
    base = Path(root) if root is not None else FOREIGN_DIR
    files = sorted((base / probe).glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"no foreign set for {probe} in {base} (generate it: python -m simulator.foreign)")
    cols: dict[str, list] = {}
    for f in files:
        with np.load(f) as z:
            d = z["draws"].astype(np.float32) / np.float32(255.0)
            k = int(input_draw) % len(d)
            rest = np.delete(d, k, axis=0)
            mask = z["mask"]
            cols.setdefault("bmode", []).append(d[k])
            cols.setdefault("clean", []).append(rest.mean(axis=0))
            cols.setdefault("floor_mse", []).append(float((rest.var(axis=0, ddof=1) / len(rest))[mask].mean()))
            dr = float(z["dynamic_range_db"])
            cols.setdefault("echo", []).append(
                np.where(mask, np.clip((z["echo_db"].astype(np.float32) + dr) / dr, 0, 1), 0).astype(np.float32))
            for key in ("mask", "lesion_mask", "background_mask", "spacing_mm", "dynamic_range_db"):
                cols.setdefault(key, []).append(z[key])
            cols.setdefault("acquisition", []).append(json.loads(str(z["acquisition"])))
            cols.setdefault("n_draws", []).append(len(d))
    out = {k: (np.stack(v) if k != "acquisition" else v) for k, v in cols.items()}
    return out


def available(root: str | os.PathLike | None = None) -> list[str]:
    """Probes that have a foreign set under ``root``."""
    base = Path(root) if root is not None else FOREIGN_DIR
    return [p for p in PROBES if any((base / p).glob("*.npz"))]


# --------------------------------------------------------------------------- generation
def generate(root: str | os.PathLike = FOREIGN_DIR, probes=PROBES, n: int = DEFAULT_N, n_draws: int = DEFAULT_DRAWS,
             workers: int = 1, base_seed: int = BASE_SEED, progress: bool = True) -> dict:
    """Build the missing images of the foreign sets on a Dask cluster of ``workers`` processes."""
    from .datasets import run_jobs

    if n_draws < 9:
        raise ValueError("n_draws must be at least 9 (one input and a truth averaged over >= 8 draws)")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    params = {"generator": "python -m simulator.foreign", "base_seed": base_seed, "n_per_probe": n,
              "n_draws": n_draws, "size": list(SIZE), "probes": list(probes),
              "truth": "mean of the displayed images of every draw but the input (draw 0 by default)",
              "layout": "<probe>/<index:03d>.npz"}
    man = root / "params.json"
    if man.exists():
        old = json.loads(man.read_text())
        if old.get("base_seed") != base_seed or old.get("n_draws") != n_draws:
            raise ValueError(f"{root} holds a foreign set with other settings ({old}); use another folder")
    tmp = man.with_suffix(".tmp")
    tmp.write_text(json.dumps(params, indent=1))
    os.replace(tmp, man)
    jobs = [(str(root), p, i, n, n_draws, base_seed) for i in range(n) for p in probes
            if not (root / p / f"{i:03d}.npz").exists()]
    summary = {"total": n * len(probes), "skipped": n * len(probes) - len(jobs), "written": 0, "failed": []}
    if jobs:
        run_jobs(build_image, jobs, key=lambda j: f"foreign-{j[1]}-{j[2]}", workers=workers, progress=progress,
                 summary=summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulator.foreign", description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=FOREIGN_DIR)
    ap.add_argument("--probe", action="append", choices=PROBES)
    ap.add_argument("--n", type=int, default=DEFAULT_N, help="images per probe (default %(default)s)")
    ap.add_argument("--draws", type=int, default=DEFAULT_DRAWS, help="draws per image (default %(default)s)")
    ap.add_argument("--workers", type=int, default=1, help="Dask worker processes (default 1)")
    ap.add_argument("--base-seed", type=int, default=BASE_SEED,
                    help="seed of every image's scene, acquisition and draws (default %(default)s); another seed "
                         "makes another set from the same generator, in its own --root")
    a = ap.parse_args(argv)
    s = generate(a.root, a.probe or PROBES, a.n, a.draws, a.workers, base_seed=a.base_seed)
    print(f"done: {s['written']} written, {s['skipped']} already there, {len(s['failed'])} failed", flush=True)
    for f in s["failed"]:
        print("failed:", f, flush=True)
    return 1 if s["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
