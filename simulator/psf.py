"""Transmit/receive set-up shared by both physics paths and the depth-dependent PSF banks.

Both paths use the same acquisition: one unfocused transmit per angle (see
:mod:`simulator.probes`), I/Q demodulation with ``pymust.rf2iq`` and delay-and-sum with
``pymust.dasmtx`` (linear interpolation, ``fnumber=None``: pymust's optimal receive f-number).

A :class:`PSFBank` holds complex point-spread functions measured with exactly that chain
(``simus`` of one point scatterer -> ``rf2iq`` -> ``dasmtx`` onto a small patch around it) at
``K`` depths spanning the probe's depth range.

* linear probes: kernels on the Cartesian output grid (axial ``dz`` x lateral ``dx`` in mm);
  the beamformed I/Q is kept as ``dasmtx`` returns it (the full path samples the same signal
  on the same pitch, so no demodulation is needed);
* convex / phased probes: kernels in beam space (radius from the polar origin x angle),
  sampled every ``dr`` mm and ``lateral_mm / r_k`` radians, and demodulated along the radius
  (the carrier is measured on a finely sampled axial line), so that they are smooth and can be
  resampled and interpolated.

Each kernel is normalised to unit energy (sum of |k|^2 = 1); ``energy`` keeps the physical
energy (integral of |h|^2 over the +-20 x +-48 px core of the patch, arbitrary units) which the full path uses as
its depth gain (a physics-derived TGC) so that a homogeneous medium has a flat mean level.

Shipped banks live in ``resources/psf/<key>.npz`` (float16 real/imag); banks for other settings are built
deterministically on first use (a few seconds: point targets are cheap) and cached in ``CACHE_DIR``.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import cast

import numpy as np
import pymust

from .probes import Probe

PSF_DIR = Path(__file__).resolve().parent.parent / "resources" / "psf"
# Banks built on demand (custom frequency, bandwidth, angles, pitch) go to a per-user cache,
# never into the shipped resources folder.
CACHE_DIR = Path(os.environ.get("USCLEAN_CACHE_DIR", Path.home() / ".cache" / "usclean")) / "psf"
N_KERNELS = 9
# Half sizes (output pixels) of the measured patch.  A single unfocused transmit has long
# edge-wave tails: for the L11-5v, 2-11 % of a point's energy (depending on depth) falls outside
# +-20 x +-48 px, and a fast path without it showed dark regions ~0.04 (2 dB at 50 dB DR) darker
# and a narrower speckle histogram than the full path (docs/experiments/fast_vs_full.md).  Linear banks are
# therefore measured on +-64 x +-128 px; polar banks keep +-20 x +-48 (their lateral axis is an
# angle: +-128 px would wrap around at shallow radii).
AXIAL_HALF_PX = {"cartesian": 64, "polar": 20}
LATERAL_HALF_PX = {"cartesian": 128, "polar": 48}
# The depth gain (full path, ``PSFBank.gain``) uses the energy inside the +-20 x +-48 px core: the
# window it always used, so full-path images are unchanged by the larger kernels.
GAIN_HALF_PX = (20, 48)
ENERGY_KEPT = {"cartesian": 0.999, "polar": 0.997}  # crop to the smallest centred box keeping this energy
POLAR_OVERSAMPLING = 1.5  # beam-space samples per output pixel, radially and laterally
FORMAT_VERSION = 4  # part of every bank key: raise it when the measurement changes (models record it)


# --------------------------------------------------------------------------- acquisition
def transmit_delays(probe: Probe, angle_deg: float) -> np.ndarray:
    """Transmit delays (1, Nelements) in s for one unfocused transmit steered by ``angle_deg``."""
    p = probe.param()
    tilt = np.radians(float(angle_deg))
    if probe.kind == "phased":
        d = pymust.txdelay(p, tilt, np.radians(probe.sector_deg))
    else:  # plane wave (linear) / natural diverging wave of the curved array (convex)
        d = pymust.txdelay(p, tilt)
    return np.atleast_2d(np.asarray(d, dtype=float))


def acquire_iq(probe: Probe, xs_m: np.ndarray, zs_m: np.ndarray, rc: np.ndarray,
               delays: np.ndarray) -> tuple[np.ndarray, pymust.utils.Param]:
    """Simulate one transmit with ``simus`` and demodulate with ``rf2iq``.

    Returns the element I/Q signals and the parameter structure (with ``TXdelay`` set and the
    receive f-number chosen) that :func:`beamform` needs.
    """
    p = probe.param()
    rf, _ = pymust.simus(np.asarray(xs_m, float).reshape(1, -1), np.asarray(zs_m, float).reshape(1, -1),
                         np.asarray(rc, float).reshape(1, -1), delays, p.copy())
    iq = pymust.rf2iq(rf, p)
    q = probe.param()
    q.TXdelay = delays
    q.fnumber = None
    return iq, q


def beamform(iq: np.ndarray, x_m: np.ndarray, z_m: np.ndarray, param) -> np.ndarray:
    """Delay-and-sum of element I/Q onto arbitrary points (same shape as ``x_m``)."""
    x_m = np.asarray(x_m, float)
    z_m = np.asarray(z_m, float)
    m = pymust.dasmtx(1j * np.array(iq.shape), x_m, z_m, param.copy())
    return pymust.utils.applyDasMTX(m, iq, x_m.shape)


# --------------------------------------------------------------------------- the bank
@dataclass
class PSFBank:
    """Unit-energy complex kernels at ``depths_mm`` (z for linear, radius for polar banks).

    ``kernels``: (K, kh, kw) complex64, centred; ``steps``: (axial mm, lateral) where lateral
    is mm (cartesian) or, for polar banks, mm at the kernel's own radius (its angular step is
    ``steps[1] / depths_mm[k]`` rad); ``energy``: (K,) physical kernel energy.
    """

    space: str  # "cartesian" | "polar"
    depths_mm: np.ndarray
    kernels: np.ndarray
    energy: np.ndarray
    steps: tuple[float, float]
    key: str

    def gain(self, depth_mm: np.ndarray) -> np.ndarray:
        """sqrt of the kernel energy interpolated (log-linearly) at ``depth_mm``."""
        d = np.clip(np.asarray(depth_mm, float), self.depths_mm[0], self.depths_mm[-1])
        return np.exp(0.5 * np.interp(d, self.depths_mm, np.log(self.energy)))

    @cached_property
    def bandwidth(self) -> tuple[np.ndarray, np.ndarray]:
        """Per kernel, the frequency below which 99 % of its energy lies: axially in cycles/mm
        and laterally in cycles/mm (cartesian) or cycles/rad (polar)."""
        k = self.kernels
        ax = np.array([_band_limit(np.sum(np.abs(np.fft.fft(kk, axis=0)) ** 2, axis=1), 0.99) for kk in k])
        lat = np.array([_band_limit(np.sum(np.abs(np.fft.fft(kk, axis=1)) ** 2, axis=0), 0.99) for kk in k])
        d_lat = self.steps[1] / self.depths_mm if self.space == "polar" else np.full(len(k), self.steps[1])
        return ax / self.steps[0], lat / d_lat

    def band_weights(self, depth_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each depth: index ``k`` of the band below and linear weight ``a`` of band ``k+1``."""
        d = np.clip(np.asarray(depth_mm, float), self.depths_mm[0], self.depths_mm[-1])
        k = np.clip(np.searchsorted(self.depths_mm, d, side="right") - 1, 0, len(self.depths_mm) - 2)
        a = (d - self.depths_mm[k]) / (self.depths_mm[k + 1] - self.depths_mm[k])
        return k, np.clip(a, 0.0, 1.0)


def kernel_depths(probe: Probe) -> np.ndarray:
    """Depths (z for linear, radius from the polar origin for convex/phased) of the kernels."""
    zmin, zmax = probe.depth_range_mm
    if probe.kind != "convex":
        return np.geomspace(max(zmin, 3.0), zmax, N_KERNELS)
    # convex: radius = array radius + depth below the array surface on the axis
    radius = probe.radius_mm
    surface = radius + probe.polar_origin_mm[1]  # z of the array apex
    return radius + np.geomspace(3.0, zmax - surface, N_KERNELS)


def bank_key(probe: Probe, angle_deg: float, pitch_mm: float) -> str:
    text = (f"v{FORMAT_VERSION}|{probe.name}|{probe.fc_hz:.1f}|{probe.bandwidth_pct:.3f}|{probe.c:.1f}|"
            f"{probe.sector_deg:.3f}|{float(angle_deg):.4f}|{float(pitch_mm):.5f}|{N_KERNELS}")
    return f"{probe.name}_{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def get_psf_bank(probe: Probe, angle_deg: float = 0.0, pitch_mm: float | None = None) -> PSFBank:
    """The PSF bank of ``probe`` for one transmit angle, sampled for output pitch ``pitch_mm``
    (default: the probe's pixel pitch).  Loaded from ``resources/psf`` (shipped) or the user cache, else built
    and cached."""
    pitch = float(probe.pixel_pitch_mm if pitch_mm is None else pitch_mm)
    return _cached_bank(probe, round(float(angle_deg), 4), round(pitch, 6))


@lru_cache(maxsize=32)
def _cached_bank(probe: Probe, angle_deg: float, pitch: float) -> PSFBank:
    key = bank_key(probe, angle_deg, pitch)
    for folder in (PSF_DIR, CACHE_DIR):
        path = folder / f"{key}.npz"
        if path.exists():
            try:
                return _load(path, key)
            except (OSError, ValueError, KeyError):
                pass  # unreadable cache: rebuild it
    bank = build_bank(probe, angle_deg, pitch)
    # Use the kernels at their stored (float16) precision, so that a fresh build and a later
    # cached load simulate bit-identically.
    bank.kernels = (bank.kernels.real.astype(np.float16).astype(np.float32)
                    + 1j * bank.kernels.imag.astype(np.float16).astype(np.float32)).astype(np.complex64)
    _save(bank, CACHE_DIR / f"{key}.npz")
    return bank


def _load(path: Path, key: str) -> PSFBank:
    with np.load(path) as f:
        kern = f["kernels_re"].astype(np.float32) + 1j * f["kernels_im"].astype(np.float32)
        return PSFBank(space=str(f["space"]), depths_mm=f["depths_mm"].astype(float),
                       kernels=kern.astype(np.complex64), energy=f["energy"].astype(float),
                       steps=cast(tuple[float, float], tuple(float(s) for s in f["steps"])), key=key)


def _save(bank: PSFBank, path: Path) -> None:
    """Atomic write; silently keeps the bank in memory only if the folder is read-only."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, space=bank.space, depths_mm=bank.depths_mm, energy=bank.energy,
                                steps=np.asarray(bank.steps), kernels_re=bank.kernels.real.astype(np.float16),
                                kernels_im=bank.kernels.imag.astype(np.float16))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError:
        return


def build_bank(probe: Probe, angle_deg: float, pitch: float) -> PSFBank:
    """Measure the kernels with pymust point-target simulations (deterministic)."""
    delays = transmit_delays(probe, angle_deg)
    polar = probe.kind != "linear"
    depths = kernel_depths(probe)
    if polar:
        ox, oz = probe.polar_origin_mm
        d_ax, d_lat = pitch / POLAR_OVERSAMPLING, pitch / POLAR_OVERSAMPLING
    else:
        ox, oz = 0.0, 0.0
        d_ax, d_lat = pitch, pitch
    space = "polar" if polar else "cartesian"
    n_ax = int(round(AXIAL_HALF_PX[space] * pitch / d_ax))
    n_lat = int(round(LATERAL_HALF_PX[space] * pitch / d_lat))
    g_ax, g_lat = int(round(GAIN_HALF_PX[0] * pitch / d_ax)), int(round(GAIN_HALF_PX[1] * pitch / d_lat))
    core = (slice(n_ax - g_ax, n_ax + g_ax + 1), slice(n_lat - g_lat, n_lat + g_lat + 1))
    ia = np.arange(-n_ax, n_ax + 1, dtype=float)
    il = np.arange(-n_lat, n_lat + 1, dtype=float)
    kernels, energy = [], []
    for dk in depths:
        if polar:
            th = 0.0  # the point on the axis: a steered transmit reaches it obliquely
            px, pz = ox + dk * np.sin(th), oz + dk * np.cos(th)
        else:
            px, pz = 0.0, dk
        iq, q = acquire_iq(probe, np.array([px * 1e-3]), np.array([pz * 1e-3]), np.ones(1), delays)
        if polar:
            rr, tt = np.meshgrid(dk + ia * d_ax, th + il * d_lat / dk, indexing="ij")
            x, z = ox + rr * np.sin(tt), oz + rr * np.cos(tt)
            k = beamform(iq, x * 1e-3, z * 1e-3, q)
            nu = _axial_carrier(iq, q, ox, oz, dk, th, probe.wavelength_mm)
            k = k * np.exp(-2j * np.pi * nu * (ia * d_ax))[:, None]
            e = float(np.sum(np.abs(k[core]) ** 2) * d_ax * d_lat)
        else:
            zz, xx = np.meshgrid(dk + ia * d_ax, px + il * d_lat, indexing="ij")
            k = beamform(iq, xx * 1e-3, zz * 1e-3, q)
            e = float(np.sum(np.abs(k[core]) ** 2) * d_ax * d_lat)
        kernels.append(k)
        energy.append(e)
    stack = _crop_common(np.stack(kernels), ENERGY_KEPT[space])
    stack = stack / np.sqrt(np.sum(np.abs(stack) ** 2, axis=(1, 2), keepdims=True))
    return PSFBank(space=space, depths_mm=np.asarray(depths, float),
                   kernels=stack.astype(np.complex64), energy=np.asarray(energy),
                   steps=(d_ax, d_lat), key=bank_key(probe, angle_deg, pitch))


def _axial_carrier(iq, q, ox, oz, r, th, lam) -> float:
    """Spatial carrier (cycles/mm) of the beamformed I/Q along the radius through a point."""
    dr = lam / 16
    s = np.arange(-32, 33) * dr
    x, z = ox + (r + s) * np.sin(th), oz + (r + s) * np.cos(th)
    line = beamform(iq, x * 1e-3, z * 1e-3, q)
    w = np.abs(line[1:] * line[:-1])
    dphi = np.angle(np.sum(line[1:] * np.conj(line[:-1])) if w.sum() > 0 else 1.0)
    return float(dphi / (2 * np.pi * dr))


def _band_limit(power: np.ndarray, fraction: float) -> float:
    """Frequency (cycles/sample) below which ``fraction`` of a 1-D power spectrum lies."""
    f = np.abs(np.fft.fftfreq(power.size))
    order = np.argsort(f, kind="stable")
    cum = np.cumsum(power[order]) / power.sum()
    return float(f[order][min(np.searchsorted(cum, fraction), power.size - 1)])


def _crop_common(k: np.ndarray, kept: float) -> np.ndarray:
    """Crop all kernels to the smallest centred box keeping the fraction ``kept`` of every kernel's energy."""
    _, h, w = k.shape
    e = np.abs(k) ** 2
    tot = e.sum(axis=(1, 2))
    ch, cw = h // 2, w // 2
    best_a, best_l = ch, cw
    for a in range(2, ch + 1):
        if np.all(e[:, ch - a:ch + a + 1].sum(axis=(1, 2)) >= kept ** 0.5 * tot):
            best_a = a
            break
    for b in range(2, cw + 1):
        if np.all(e[:, :, cw - b:cw + b + 1].sum(axis=(1, 2)) >= kept ** 0.5 * tot):
            best_l = b
            break
    return k[:, ch - best_a:ch + best_a + 1, cw - best_l:cw + best_l + 1]
