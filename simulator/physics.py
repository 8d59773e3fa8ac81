"""B-mode simulation of a phantom with a probe: full MUST physics or a fast PSF-convolution path.

``simulate(phantom, probe, path="fast" | "full", seed=0, angles_deg=None) -> SimResult``

Output grid
    The phantom's own grid when its pitch is square and at most the probe's pixel pitch
    (half a wavelength); otherwise the phantom is resampled (bilinear echo, nearest masks) to
    a square grid of pitch ``min(dz, dx, probe.pixel_pitch_mm)`` covering the same extent, so
    speckle is never aliased.  ``SimResult.spacing_mm`` states the pitch used.

Echogenicity law (both paths)
    A region of echogenicity ``I`` in [0, 1] scatters a mean intensity ``10^(DR (I - 1) / 10)``
    (DR = ``probe.dynamic_range_db``, 50 dB by default), i.e. pymust ``genscat``'s amplitude law
    with ``g = DR``.

Full path (``path="full"``)
    Scatterers on a jittered grid (genscat's scheme, twice genscat's default density: mean
    spacing ``c / (fc (1 + BW/200)) / sqrt(2)``) filling the image plus a margin of
    ``max(1.5 mm, 8 wavelengths)``, amplitudes ``10^(DR (I - 1) / 20)`` times a Rayleigh factor of
    unit mean square -> ``pymust.simus`` (one unfocused transmit per angle: plane wave for linear,
    diverging wave for convex/phased, see :mod:`simulator.psf`) -> ``rf2iq`` -> ``dasmtx``
    straight onto the Cartesian output pixels inside the field of view -> envelope ``|IQ|``,
    divided by the probe's depth gain (square root of the measured PSF energy at that depth or
    radius: a physics-derived TGC) -> average over angles (incoherent compounding).
    All randomness comes from ``numpy.random.default_rng(seed)``; numpy's global generator is
    not used.

Fast path (``path="fast"``)
    A circular complex Gaussian scatterer field of variance ``10^(DR (I - 1) / 10)`` per sample,
    convolved with the probe's measured complex PSFs (:mod:`simulator.psf`), piecewise in depth
    with linear blending between the kernel depths (variance-corrected for the kernels'
    correlation) -> envelope (averaged over angles when compounding, with the same scatterer
    field).  Linear probes: on the Cartesian output grid.  Convex / phased: in beam space
    (radius x angle, sampled at 1.3x the Nyquist rate of the kernels in use), then the complex
    field is interpolated (Keys cubic convolution) at the Cartesian pixel centres inside the
    sector (:mod:`simulator.scanconvert`).  The kernels are measured on the probe axis: the
    off-axis broadening and energy loss of sector probes is not modelled (see
    docs/experiments/fast_vs_full.md for the measured agreement).  A 128 x 128 image takes a few ms.
    Hooks for other renderers of the same model (:mod:`simulator.cine`): :func:`fast_grid` gives
    the grid the scatterer field lives on (:class:`FastGrid`), :func:`render_fast` turns a given
    complex field on it into the envelope; :func:`full_envelope` is the full path's acquisition of
    given point scatterers.  :func:`simulate` itself runs through them.

Display mapping and clean target (identical for both paths)
    ``mask`` = pixels inside the probe's field of view (``Probe.in_field``).
    ``ref`` is calibrated per image from the known echogenicity so that a region of ``I = 1``
    has RMS envelope ``ref``: ``ref^2 = sum_mask env^2 / sum_mask 10^(DR (I - 1) / 10)``.
    ``bmode = clip((20 log10(env / ref) + DR) / DR, 0, 1)`` inside the mask, 0 outside;
    ``envelope = env / ref`` (0 outside the mask);
    ``clean = I`` inside the mask, 0 outside: the echogenicity in the same display mapping
    (a region of RMS envelope ``ref 10^(DR (I - 1) / 20)`` is displayed at ``I``).  Fully developed
    speckle is displayed on average 2.51 dB / DR (0.05 at 50 dB) below ``clean`` with a standard
    deviation of 5.57 dB / DR (the log-Rayleigh statistics), plus the PSF's blur at edges.
"""
from __future__ import annotations

import dataclasses
import time
from typing import cast

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage, sparse

from . import scanconvert
from .probes import Probe, check_angles
from .psf import PSFBank, acquire_iq, beamform, get_psf_bank, transmit_delays
from .types import Phantom, SimResult

PATHS = ("fast", "full")
DENSITY_FACTOR = 2.0  # scatterers per genscat cell (genscat's default density = 1)
MIN_SIZE = 16
BEAM_OVERSAMPLING = 1.3  # beam-space samples per Nyquist interval of the kernels (convex / phased)


# --------------------------------------------------------------------------- public API
def simulate(phantom: Phantom, probe: Probe, path: str = "fast", seed: int = 0,
             angles_deg: tuple[float, ...] | list[float] | None = None) -> SimResult:
    """Simulate the B-mode image of ``phantom`` seen by ``probe`` (see the module docstring)."""
    if path not in PATHS:
        raise ValueError(f"unknown simulation path {path!r}; valid paths: {', '.join(PATHS)}")
    if not isinstance(phantom, Phantom):
        raise ValueError(f"expected a Phantom, got {type(phantom).__name__}")
    if not isinstance(probe, Probe):
        raise ValueError(f"expected a Probe (simulator.probes.get_probe), got {type(probe).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if angles_deg is not None:
        probe = dataclasses.replace(probe, angles_deg=check_angles(angles_deg))
    echo, lesion, background, x, z, spacing = _output_grid(phantom, probe)
    xx, zz = np.meshgrid(x, z)
    mask = probe.in_field(xx, zz)
    if not mask.any():
        raise ValueError(f"the phantom lies entirely outside the field of view of {probe.name}")
    dr = float(probe.dynamic_range_db)
    rng = np.random.default_rng(int(seed))
    t0 = time.perf_counter()
    if path == "full":
        env, meta = _full(echo, x, z, xx, zz, mask, probe, rng, spacing)
    else:
        env, meta = _fast(echo, x, z, mask, probe, rng, spacing)
    meta["seconds"] = time.perf_counter() - t0
    bmode, env_ref, ref = display(env, echo, mask, dr)
    meta.update(ref=ref, angles_deg=list(probe.angles_deg), fc_hz=probe.fc_hz,
                bandwidth_pct=probe.bandwidth_pct, x0_mm=float(x[0]), z0_mm=float(z[0]))
    return SimResult(
        bmode=bmode, envelope=env_ref, clean=np.where(mask, echo, 0.0).astype(np.float32), mask=mask,
        lesion_mask=lesion & mask, background_mask=background & mask, spacing_mm=spacing,
        dynamic_range_db=dr, probe=probe.name, path=path, seed=int(seed), meta=meta,
    )


def intensity_weight(echo: np.ndarray, dr_db: float) -> np.ndarray:
    """Mean scattered intensity of echogenicity ``echo``: 10^(DR (I - 1) / 10)."""
    return np.exp((np.log(10.0) * dr_db / 10.0) * (np.asarray(echo, float) - 1.0))


def display(env: np.ndarray, echo: np.ndarray, mask: np.ndarray, dr_db: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The shared display mapping: returns (bmode, env / ref, ref) — see the module docstring."""
    w = intensity_weight(echo, dr_db)
    ref = float(np.sqrt(np.sum(env[mask] ** 2) / np.sum(w[mask])))
    if not np.isfinite(ref) or ref <= 0:
        raise ValueError("the simulated envelope is empty inside the field of view")
    e = np.where(mask, env / ref, 0.0)
    with np.errstate(divide="ignore"):
        db = 20.0 * np.log10(e)
    bmode = np.where(mask, np.clip((db + dr_db) / dr_db, 0.0, 1.0), 0.0)
    return bmode.astype(np.float32), e.astype(np.float32), ref


# --------------------------------------------------------------------------- grid
def _output_grid(ph: Phantom, probe: Probe):
    echo = np.asarray(ph.echo, dtype=float)
    if echo.ndim != 2 or min(echo.shape) < MIN_SIZE:
        raise ValueError(f"phantom must be a 2-D image of at least {MIN_SIZE}x{MIN_SIZE} pixels, got {echo.shape}")
    if not np.all(np.isfinite(echo)) or echo.min() < -1e-6 or echo.max() > 1 + 1e-6:
        raise ValueError("phantom echogenicity must be finite and within [0, 1]")
    echo = np.clip(echo, 0.0, 1.0)
    dz, dx = (float(s) for s in ph.spacing_mm)
    if not (dz > 0 and dx > 0):
        raise ValueError(f"phantom spacing must be positive, got {ph.spacing_mm}")
    lesion = np.asarray(ph.lesion_mask, bool)
    background = np.asarray(ph.background_mask, bool)
    if lesion.shape != echo.shape or background.shape != echo.shape:
        raise ValueError("phantom masks must have the shape of its echogenicity map")
    h, w = echo.shape
    limit = probe.pixel_pitch_mm * (1 + 1e-6)
    if abs(dz - dx) <= 1e-9 * max(dz, dx) and dx <= limit:
        x: np.ndarray = ph.x0_mm + dx * np.arange(w)
        z: np.ndarray = ph.z0_mm + dz * np.arange(h)
        return echo, lesion, background, x, z, (dz, dx)
    d = min(dz, dx, probe.pixel_pitch_mm)
    x = ph.x0_mm + d * np.arange(int(np.floor((w - 1) * dx / d + 1e-9)) + 1)
    z = ph.z0_mm + d * np.arange(int(np.floor((h - 1) * dz / d + 1e-9)) + 1)
    xx, zz = np.meshgrid(x, z)
    args = (ph.x0_mm, ph.z0_mm, (dz, dx), xx, zz)
    echo_r = np.clip(scanconvert.sample_image(echo, *args, order=1), 0.0, 1.0)
    les_r = scanconvert.sample_image(lesion.astype(float), *args, order=0) > 0.5
    bg_r = scanconvert.sample_image(background.astype(float), *args, order=0) > 0.5
    return echo_r, les_r, bg_r, x, z, (d, d)


def _depth_of(probe: Probe, xx: np.ndarray, zz: np.ndarray) -> np.ndarray:
    """The depth variable of the PSF banks: z (linear) or radius from the polar origin."""
    if probe.kind == "linear":
        return zz
    return scanconvert.polar_coords(probe.polar_origin_mm, xx, zz)[0]


# --------------------------------------------------------------------------- full path
def scatterers(echo: np.ndarray, x: np.ndarray, z: np.ndarray, probe: Probe, rng: np.random.Generator,
               spacing: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scatterer positions (mm) and reflection coefficients for the full path."""
    lam = probe.wavelength_mm
    margin = max(1.5, 8 * lam)
    meandist = probe.c / (probe.fc_hz * (1 + probe.bandwidth_pct / 200)) * 1e3
    inc = meandist / np.sqrt(2 / 5) / np.sqrt(DENSITY_FACTOR)
    gx, gz = np.meshgrid(np.arange(x[0] - margin, x[-1] + margin, inc),
                         np.arange(z[0] - margin, z[-1] + margin, inc))
    xs = (gx + rng.uniform(-inc / 2, inc / 2, gx.shape)).ravel()
    zs = (gz + rng.uniform(-inc / 2, inc / 2, gz.shape)).ravel()
    amp = rng.rayleigh(1.0, xs.shape) / np.sqrt(2.0)  # unit mean square
    keep = zs > lam
    if probe.kind == "convex":
        r, _ = scanconvert.polar_coords(probe.polar_origin_mm, xs, zs)
        keep &= r > probe.radius_mm + lam
    xs, zs, amp = xs[keep], zs[keep], amp[keep]
    level = scanconvert.sample_image(echo, x[0], z[0], spacing, xs, zs, order=1)
    rc = amp * np.power(10.0, probe.dynamic_range_db * (level - 1.0) / 20.0)
    return xs, zs, rc


def full_envelope(xs: np.ndarray, zs: np.ndarray, rc: np.ndarray, probe: Probe, xx: np.ndarray, zz: np.ndarray,
                  mask: np.ndarray) -> np.ndarray:
    """The full path's envelope of given point scatterers (positions ``xs``, ``zs`` in mm,
    reflection coefficients ``rc``) at the pixels ``xx``, ``zz`` (mm) where ``mask`` is set (0
    elsewhere): per transmit angle ``simus`` -> ``rf2iq`` -> ``dasmtx``, ``|IQ|`` divided by the
    probe's depth gain, averaged over angles.  :func:`simulate` uses it with :func:`scatterers`;
    :mod:`simulator.cine` with scatterers moved with the tissue."""
    depth = _depth_of(probe, xx[mask], zz[mask])
    env = np.zeros(mask.shape)
    for angle in probe.angles_deg:
        delays = transmit_delays(probe, angle)
        iq, q = acquire_iq(probe, xs * 1e-3, zs * 1e-3, rc, delays)
        bf = beamform(iq, xx[mask] * 1e-3, zz[mask] * 1e-3, q)
        env[mask] += np.abs(bf) / get_psf_bank(probe, angle).gain(depth)
    env /= len(probe.angles_deg)
    return env


def _full(echo, x, z, xx, zz, mask, probe: Probe, rng, spacing):
    xs, zs, rc = scatterers(echo, x, z, probe, rng, spacing)
    return full_envelope(xs, zs, rc, probe, xx, zz, mask), {"n_scatterers": int(xs.size)}


# --------------------------------------------------------------------------- fast path
def _blend(fields: dict[int, np.ndarray], bank: PSFBank, kernels: dict[int, np.ndarray],
           row_depth: np.ndarray) -> np.ndarray:
    """Combine per-band convolutions (H, W) row by row (``row_depth`` (H,)), linearly between
    the kernel depths, normalised so that white input keeps unit variance."""
    k, a = bank.band_weights(row_depth)
    out = np.empty(fields[k[0]].shape, np.complex64)
    for b in np.unique(k):
        sel = k == b
        rho = float(np.real(np.vdot(kernels[b + 1], kernels[b])))  # E[c_b conj(c_b+1)], unit white noise
        ab = a[sel][:, None]
        norm = np.sqrt((1 - ab) ** 2 + ab ** 2 + 2 * ab * (1 - ab) * rho)
        out[sel] = ((1 - ab) / norm) * fields[b][sel] + (ab / norm) * fields[b + 1][sel]
    return out


def _needed_bands(bank: PSFBank, depth: np.ndarray) -> list[int]:
    """Indices of the kernels used to cover ``depth`` (every band between its extremes)."""
    k, _ = bank.band_weights(depth)
    return list(range(int(k.min()), int(k.max()) + 2))


def _noise(rng: np.random.Generator, weight: np.ndarray) -> np.ndarray:
    g = rng.standard_normal(weight.shape + (2,), dtype=np.float32).view(np.complex64)[..., 0]
    return g * np.sqrt(weight / 2.0).astype(np.float32)


_KERNEL_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _kernel_fft(bank: PSFBank, band: int, factors: tuple[float, float], shape: tuple[int, int],
                fshape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Kernel ``band`` of ``bank`` resampled by ``factors``, zero-padded (centred) to ``shape``,
    and its FFT of size ``fshape``; cached (the same probe and window recur)."""
    key = (bank.key, band, factors, shape, fshape)
    if key not in _KERNEL_CACHE:
        k = bank.kernels[band].astype(complex)
        if factors != (1.0, 1.0):
            k = _resample(k, *factors)
        k = np.pad(k, [((n - m) // 2,) * 2 for n, m in zip(shape, k.shape)]).astype(np.complex64)
        if len(_KERNEL_CACHE) > 256:
            _KERNEL_CACHE.clear()
        _KERNEL_CACHE[key] = (k, sp_fft.fft2(k, fshape))
    return _KERNEL_CACHE[key]


def _band_fields(noise: np.ndarray, bank: PSFBank, bands: list[int], factors: dict[int, tuple[float, float]],
                 shape: tuple[int, int]) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """'valid' convolutions of ``noise`` with each band's kernel (one forward FFT shared)."""
    fshape = tuple(sp_fft.next_fast_len(n) for n in noise.shape)
    spec = sp_fft.fft2(noise, fshape)
    kh, kw = shape
    h, w = noise.shape[0] - kh + 1, noise.shape[1] - kw + 1
    fields, kernels = {}, {}
    for b in bands:
        k, kf = _kernel_fft(bank, b, factors[b], shape, fshape)
        kernels[b] = k
        fields[b] = sp_fft.ifft2(spec * kf)[kh - 1:kh - 1 + h, kw - 1:kw - 1 + w]
    return fields, kernels


def _resampled_shape(shape: tuple[int, int], factors: tuple[float, float]) -> tuple[int, int]:
    return cast(tuple[int, int], tuple(2 * int(np.floor((n // 2) * f)) + 1 for n, f in zip(shape, factors)))


def _resample(kernel: np.ndarray, f_ax: float, f_lat: float) -> np.ndarray:
    """Resample a centred kernel to ``f_ax`` / ``f_lat`` times as many samples per unit length
    along each axis (cubic interpolation of a smooth baseband kernel), unit energy."""
    n_a, n_l = kernel.shape[0] // 2, kernel.shape[1] // 2
    m_a, m_l = int(np.floor(n_a * f_ax)), int(np.floor(n_l * f_lat))
    ia, il = np.meshgrid(np.arange(-m_a, m_a + 1) / f_ax + n_a, np.arange(-m_l, m_l + 1) / f_lat + n_l, indexing="ij")
    coords = np.stack([ia, il])
    out = (ndimage.map_coordinates(kernel.real, coords, order=3, mode="constant")
           + 1j * ndimage.map_coordinates(kernel.imag, coords, order=3, mode="constant"))
    return out / np.sqrt(np.sum(np.abs(out) ** 2))


@dataclasses.dataclass(frozen=True, eq=False)
class FastGrid:
    """The grid on which the fast path's complex scatterer field lives (made by :func:`fast_grid`,
    rendered by :func:`render_fast`).

    Linear probes (``beam`` is None): the Cartesian output grid padded by half the kernel support
    on every side, so that field sample ``(i, j)`` lies at ``z = z[0] + (i - kernel_shape[0] // 2) d``,
    ``x = x[0] + (j - kernel_shape[1] // 2) d``.  Convex / phased probes: the beam-space grid
    ``beam`` (radius x angle) covering the field of view plus half the kernel support.
    """

    x: np.ndarray  # output pixel centres (mm)
    z: np.ndarray
    spacing: tuple[float, float]  # output pitch (mm), square
    mask: np.ndarray  # output pixels inside the field of view
    banks: list[PSFBank]  # one per compounding angle
    bands: list[list[int]]  # the kernels in use, per bank
    factors: list[dict[int, tuple[float, float]]]  # kernel resampling (axial, lateral), per bank and band
    kernel_shape: tuple[int, int]  # common (odd) support of the resampled kernels
    beam: scanconvert.BeamGrid | None = None
    to_beam: sparse.csr_matrix | None = None  # image -> beam grid (bilinear), convex / phased only
    to_image: sparse.csr_matrix | None = None  # beam grid -> masked image pixels (cubic), convex / phased only

    @property
    def shape(self) -> tuple[int, int]:
        """The shape of the scatterer field :func:`render_fast` takes."""
        if self.beam is not None:
            return self.beam.shape
        return self.z.size + 2 * (self.kernel_shape[0] // 2), self.x.size + 2 * (self.kernel_shape[1] // 2)

    def indices(self, x_mm: np.ndarray, z_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (row, column) field indices of points given in probe coordinates (mm)."""
        if self.beam is None:
            d = self.spacing[0]
            ph, pw = self.kernel_shape[0] // 2, self.kernel_shape[1] // 2
            return (z_mm - (self.z[0] - ph * d)) / d, (x_mm - (self.x[0] - pw * d)) / d
        r, th = scanconvert.polar_coords(self.beam.origin, x_mm, z_mm)
        return (r - self.beam.r0) / self.beam.dr, (th - self.beam.th0) / self.beam.dth

    def cell_area_mm2(self) -> np.ndarray:
        """The area (mm^2) each field sample stands for, broadcastable to :attr:`shape`."""
        if self.beam is None:
            return np.asarray(self.spacing[0] * self.spacing[0])
        return (self.beam.dr * np.maximum(self.beam.r, 1e-6) * self.beam.dth)[:, None]


def fast_grid(probe: Probe, x: np.ndarray, z: np.ndarray, mask: np.ndarray, spacing: tuple[float, float]) -> FastGrid:
    """The fast path's field grid and kernels for the output pixels ``x``, ``z`` (mm, square
    pitch ``spacing``) inside ``mask`` (see the module docstring and :class:`FastGrid`)."""
    d = spacing[0]
    banks = [get_psf_bank(probe, a, d) for a in probe.angles_deg]
    if probe.kind == "linear":
        shape = tuple(max(b.kernels.shape[i] for b in banks) for i in (1, 2))
        bands = [_needed_bands(bank, z) for bank in banks]
        return FastGrid(x=x, z=z, spacing=spacing, mask=mask, banks=banks, bands=bands,
                        factors=[{k: (1.0, 1.0) for k in b} for b in bands], kernel_shape=shape)
    xx, zz = np.meshgrid(x, z)
    origin = probe.polar_origin_mm
    r_mask, _ = scanconvert.polar_coords(origin, xx[mask], zz[mask])
    r_span = np.array([r_mask.min(), r_mask.max()])
    # beam-grid steps from the band limits of the kernels in use (BEAM_OVERSAMPLING x Nyquist),
    # rounded so that the same window always gives the same grid (and cached kernel FFTs)
    bands = [_needed_bands(bank, r_span) for bank in banks]
    f_ax = max(bank.bandwidth[0][b].max() for bank, b in zip(banks, bands))
    f_lat = max(bank.bandwidth[1][b].max() for bank, b in zip(banks, bands))
    dr = float(np.round(1.0 / (2 * BEAM_OVERSAMPLING * f_ax), 4))
    dth = float(np.round(1.0 / (2 * BEAM_OVERSAMPLING * f_lat), 6))
    factors = [{k: (round(bank.steps[0] / dr, 6), round(bank.steps[1] / bank.depths_mm[k] / dth, 6)) for k in b}
               for bank, b in zip(banks, bands)]
    sizes = [_resampled_shape(bank.kernels.shape[1:], f[k]) for bank, b, f in zip(banks, bands, factors) for k in b]
    shape = (max(s[0] for s in sizes), max(s[1] for s in sizes))
    grid = scanconvert.covering_grid(origin, xx[mask], zz[mask], dr, dth, shape[0] // 2, shape[1] // 2)
    to_beam, to_image = _polar_maps(grid, x, z, spacing, mask)
    return FastGrid(x=x, z=z, spacing=spacing, mask=mask, banks=banks, bands=bands, factors=factors,
                    kernel_shape=shape, beam=grid, to_beam=to_beam, to_image=to_image)


def render_fast(field: np.ndarray, grid: FastGrid) -> np.ndarray:
    """The fast path's envelope (0 outside the mask) of a complex scatterer field on ``grid``
    (shape ``grid.shape``, converted to complex64): convolution with each band's kernel, depth
    blending, ``|.|`` (after scan conversion for convex / phased), averaged over the banks.

    :func:`simulate` draws the field from the echogenicity; :mod:`simulator.cine` splats
    scatterers that move with the tissue onto it.
    """
    noise = np.asarray(field, np.complex64)
    if noise.shape != grid.shape:
        raise ValueError(f"the scatterer field must have the grid's shape {grid.shape}, got {noise.shape}")
    env = np.zeros(grid.mask.shape)
    levels = zip(grid.banks, grid.bands, grid.factors)
    if grid.beam is None:
        for bank, b, f in levels:
            fields, kernels = _band_fields(noise, bank, b, f, grid.kernel_shape)
            env += np.abs(_blend(fields, bank, kernels, grid.z))
        return np.where(grid.mask, env / len(grid.banks), 0.0)
    beam_grid = grid.beam
    assert grid.to_image is not None  # fast_grid builds it with the beam grid
    pad_r, pad_t = grid.kernel_shape[0] // 2, grid.kernel_shape[1] // 2
    inner = (slice(pad_r, beam_grid.nr - pad_r), slice(pad_t, beam_grid.nth - pad_t))
    for bank, b, f in levels:
        fields, kernels = _band_fields(noise, bank, b, f, grid.kernel_shape)
        beam = np.zeros(beam_grid.shape, np.complex64)
        beam[inner] = _blend(fields, bank, kernels, beam_grid.r[inner[0]])
        env[grid.mask] += np.abs(grid.to_image @ beam.ravel())
    return np.where(grid.mask, env / len(grid.banks), 0.0)


def _fast(echo, x, z, mask, probe: Probe, rng, spacing):
    grid = fast_grid(probe, x, z, mask, spacing)
    if grid.beam is None:
        ph, pw = grid.kernel_shape[0] // 2, grid.kernel_shape[1] // 2
        level = np.pad(echo, ((ph, ph), (pw, pw)), mode="edge")  # scatterers beyond the edges
        meta = {}
    else:
        level = (grid.to_beam @ echo.ravel()).reshape(grid.beam.shape)
        meta = {"beam_grid": [grid.beam.nr, grid.beam.nth]}
    noise = _noise(rng, intensity_weight(level, probe.dynamic_range_db))
    return render_fast(noise, grid), meta


_MAP_CACHE: dict[tuple, tuple] = {}


def _polar_maps(grid: scanconvert.BeamGrid, x: np.ndarray, z: np.ndarray, spacing: tuple[float, float],
                mask: np.ndarray):
    """Sparse maps image -> beam grid (bilinear, edge-clamped: the echogenicity seen by the
    beam-space scatterers) and beam grid -> masked image pixels (cubic convolution); cached."""
    key = (grid, x.size, z.size, float(x[0]), float(z[0]), spacing, hash(mask.tobytes()))
    if key not in _MAP_CACHE:
        bx, bz = grid.cartesian()
        to_beam = scanconvert.interpolation_matrix(mask.shape, (bz - z[0]) / spacing[0], (bx - x[0]) / spacing[1],
                                                   order=1, edge="nearest")
        xx, zz = np.meshgrid(x, z)
        r, th = scanconvert.polar_coords(grid.origin, xx[mask], zz[mask])
        to_image = scanconvert.interpolation_matrix(grid.shape, (r - grid.r0) / grid.dr, (th - grid.th0) / grid.dth,
                                                    order=3, edge="constant").astype(np.complex64)
        if len(_MAP_CACHE) > 16:
            _MAP_CACHE.clear()
        _MAP_CACHE[key] = (to_beam, to_image)
    return _MAP_CACHE[key]
