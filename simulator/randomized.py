"""Domain-randomised training pairs on the fast path, with the speckle-free B-mode as the target.

:func:`random_pair` draws every factor per sample (all randomness from one seed):

1. **Echogenicity** ``I`` in [0, 1] from :mod:`simulator.sources` (MNI slices, natural pictures,
   procedural drawings) on a simulation grid; the scatterers' mean intensity is
   ``σ²(x) = 10^(DR₀ (I − 1) / 10)`` with a source dynamic range DR₀ of 30–60 dB, a smooth haze floor
   (clutter / reverberation, −35 … −15 dB) and a smooth depth-gain curve (±6 dB) multiplied in.
2. **PSF** (per compounding angle, one kernel at the top of the frame and one at the bottom, blended
   linearly in depth with a variance-preserving weight): either a kernel of a pymust-measured bank
   (:mod:`simulator.psf`: the four probes, at their preset frequency or 0.85 / 1.15 of it, a random
   depth band) or an analytic one (Gaussian envelope, random carrier, axial skew, lateral sidelobes),
   resampled so that the speckle grain on the simulation grid is 1.6–4 px.  Compounding (1, 2, 3 or 5
   angles) steers the kernel: its phase ramps with the angle, so the speckle of the angles decorrelates.
3. **Scatterer statistics**: dense circular Gaussian (Rayleigh envelope); a product-model texture
   ``G`` (Gamma-distributed with shape 0.5–8, smooth at the PSF scale) for sparse, K-distributed
   regions; deterministic specular reflectors (lines and points with a coherent phase, a Rician
   envelope); white electronic noise (−45 … −20 dB re the median tissue).
4. **Log compression** with a display range DR of 40–80 dB and a **gain knob** that puts the median
   tissue at display level 0.3–0.75 (never calibrated from the echogenicity), angles compounded in the
   display domain.
5. **Scanner resampling**: zoom to the output grid independently per axis, so that the grain is
   0.8–6 px on *each* axis, with nearest, linear, cubic or area interpolation; one frame in three is
   scan-converted to a fan (a sector mask, black outside).
6. **Post-processing**: mild Gaussian smoothing, unsharp-mask edge enhancement, persistence (a second,
   partially correlated speckle draw blended in).
7. **Grey map**: gamma, S-curve or a random monotone curve, offset and contrast.
8. 8-bit quantisation of the input.

**The target** (``target``) is the speckle-free B-mode: the expectation over scatterer draws of the
displayed image, at the PSF's resolution and the scanner's brightness.  It is exact where the chain is
linear and closed form where it is not: per pixel, with mean intensity ``M = |h|² ⊛ σ²`` (blended
kernels contribute their cross term ``Re(h_top h_bot*) ⊛ σ²``) and coherent term ``c = h ⊛ r``,
``E[ln I] = E_G[ln(G M + N₀) − γ + ln K + E₁(K) + γ]`` with ``K = |c|² / (G M + N₀)`` (Rice; the
Rayleigh case ``K = 0`` gives the 2.51 dB log-Rayleigh bias), the Gamma texture integrated over
its quantiles; resampling, smoothing, edge enhancement and persistence are linear and
applied to the expectation; the two non-linear steps (clipping at log compression, the grey map) are
integrated over the pixel's fluctuation with its local residual standard deviation (log-Rayleigh-shaped
nodes for the clip, Gaussian nodes after the linear chain).  ``echo`` is the echogenicity itself
through the same display chain (no PSF, no speckle bias): the paper-faithful target.

``disable`` switches factors off (an ablation, see ``FACTORS``): each then takes a fixed
typical value (the L11-5v bank kernel at mid depth, no zoom beyond the native grain, dense Rayleigh
scatterers, linear interpolation, no post-processing, an identity grey map, MRI echogenicity only, no
noise or haze, a fixed gain).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, cast

import cv2
import numpy as np
from scipy import ndimage, special
from scipy import fft as sp_fft

from . import sources

FACTORS: tuple[str, ...] = ("psf", "grain", "scatterers", "resampling", "postprocessing", "greymap", "noise",
                            "sources", "gain", "sector")
TARGETS: tuple[str, ...] = ("bmode", "echo")
EULER = float(np.euler_gamma)
DB = 10.0 / np.log(10.0)  # dB per neper of intensity
# standardized log-Rayleigh nodes: Y = ln E, E ~ Exp(1) (mean -γ, std π/√6), at 24 equal-probability points
_U = (np.arange(24) + 0.5) / 24
_LOGRAY = (np.log(-np.log1p(-_U)) + EULER) / (np.pi / np.sqrt(6.0))
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(9)
_GH_W = _GH_W / _GH_W.sum()
GAMMA_NODES = 64


@dataclass
class RandomPair:
    """One domain-randomised sample (float32 (H, W) images in [0, 1])."""

    bmode: np.ndarray   # the speckled input (8-bit quantised)
    target: np.ndarray  # the speckle-free B-mode (expectation of the displayed image over scatterer draws)
    echo: np.ndarray    # the echogenicity through the same display chain
    mask: np.ndarray    # field of view (bool)
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- PSFs
def kernel_grain(h: np.ndarray) -> tuple[float, float]:
    """(axial, lateral) FWHM in pixels of the intensity autocorrelation of speckle made with kernel ``h``."""
    pad = [(0, n) for n in h.shape]
    f = sp_fft.fft2(np.pad(h, pad))
    r = np.abs(sp_fft.ifft2(np.abs(f) ** 2)) ** 2
    r = r / r[0, 0]

    def fwhm(p):
        i = int(np.argmax(p < 0.5))
        if i == 0:
            return float(len(p))
        return 2.0 * ((i - 1) + (p[i - 1] - 0.5) / max(p[i - 1] - p[i], 1e-12))

    return fwhm(r[: h.shape[0], 0]), fwhm(r[0, : h.shape[1]])


def _unit(h: np.ndarray) -> np.ndarray:
    return (h / np.sqrt(np.sum(np.abs(h) ** 2))).astype(np.complex64)


def _resample_kernel(h: np.ndarray, fz: float, fx: float) -> np.ndarray:
    """Resample a complex kernel by factors (fz, fx) (> 1 enlarges), odd size, unit energy."""
    hz, hx = h.shape
    nz = max(3, int(np.ceil(hz * fz)) | 1)
    nx = max(3, int(np.ceil(hx * fx)) | 1)
    cz, cx = (hz - 1) / 2, (hx - 1) / 2
    zz, xx = np.meshgrid((np.arange(nz) - (nz - 1) / 2) / fz + cz, (np.arange(nx) - (nx - 1) / 2) / fx + cx,
                         indexing="ij")
    if fz < 1 or fx < 1:  # band-limit before shrinking
        h = ndimage.gaussian_filter(h.real, (0.4 / min(fz, 1), 0.4 / min(fx, 1))) + 1j * ndimage.gaussian_filter(
            h.imag, (0.4 / min(fz, 1), 0.4 / min(fx, 1)))
    re = ndimage.map_coordinates(h.real, [zz, xx], order=3, mode="constant")
    im = ndimage.map_coordinates(h.imag, [zz, xx], order=3, mode="constant")
    return _unit(re + 1j * im)


@functools.lru_cache(maxsize=64)
def _bank(name: str, fc_factor: float, angle: float):
    from .probes import get_probe
    from .psf import get_psf_bank

    probe = get_probe(name)
    if fc_factor != 1.0:
        probe = get_probe(name, fc_mhz=probe.fc_hz * fc_factor / 1e6)
    return get_psf_bank(probe, angle)


FC_FACTORS = (0.85, 1.0, 1.15)


def _bank_kernel(rng, probes, band=None, fc_factor=None, fc_factors=FC_FACTORS):
    """A measured kernel of a random probe, frequency variant (``fc_factors``) and depth band."""
    name = str(rng.choice(list(probes)))
    f = float(rng.choice(list(fc_factors))) if fc_factor is None else fc_factor
    bank = _bank(name, f, 0.0)
    k = int(rng.integers(1, len(bank.depths_mm) - 1)) if band is None else band
    return bank.kernels[k].astype(np.complex64), {"bank": name, "fc_factor": f, "band": k}


def _analytic_kernel(rng, grain: tuple[float, float], angle_deg: float,
                     params: dict | None = None) -> tuple[np.ndarray, dict]:
    """Gaussian-envelope complex PSF with the given speckle grain (px), steered by ``angle_deg``."""
    p = params or {
        "carrier": float(rng.uniform(0.0, 0.35)),    # cycles / px of residual axial carrier
        "skew": float(rng.uniform(0.0, 0.6)),         # axial tail after the pulse
        "sidelobe": float(rng.uniform(0.0, 0.35)),    # lateral sidelobe level (sinc-like)
        "chirp": float(rng.uniform(-0.02, 0.02)),
    }
    sz, sx = grain[0] / 2.355, grain[1] / 2.355
    hz, hx = int(np.ceil(4 * sz * (1 + p["skew"]))) + 2, int(np.ceil(5 * sx)) + 2
    zz, xx = np.meshgrid(np.arange(-hz, hz + 1, dtype=float), np.arange(-hx, hx + 1, dtype=float), indexing="ij")
    tail = np.where(zz > 0, zz * p["skew"] / max(sz, 1e-6), 0.0)
    env = np.exp(-zz ** 2 / (2 * sz ** 2) + np.minimum(tail, 3.0) * 0.5 - np.maximum(tail - 3, 0)
                 ) * np.exp(-xx ** 2 / (2 * sx ** 2))
    if p["sidelobe"] > 0:
        env = env * (1 - p["sidelobe"]) + p["sidelobe"] * np.exp(-zz ** 2 / (2 * sz ** 2)) * np.abs(
            np.sinc(xx / (2.5 * sx)))
    phase = 2 * np.pi * (p["carrier"] * zz + p["chirp"] * zz ** 2)
    return steer(_unit(env * np.exp(1j * phase)), angle_deg, grain[1]), dict(p, kind="analytic")


MAX_STEER_DEG = 10.0


def steer(k: np.ndarray, angle_deg: float, grain_lat: float) -> np.ndarray:
    """Emulate a steered transmit: shift the kernel's lateral spectrum by ``sin θ / sin 10°`` × half its
    bandwidth (≈ 1 / lateral grain), so the speckle of different angles decorrelates."""
    if angle_deg == 0:
        return k
    x = np.arange(k.shape[1]) - (k.shape[1] - 1) / 2
    shift = np.sin(np.radians(angle_deg)) / np.sin(np.radians(MAX_STEER_DEG)) * 0.5 / max(grain_lat, 0.5)
    return (k * np.exp(2j * np.pi * shift * x)[None, :]).astype(np.complex64)


# --------------------------------------------------------------------------- convolution helpers
def _conv_valid(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """'valid' convolution (FFT) of an image padded by the kernel's half-size on every side."""
    kh, kw = k.shape
    real = not (np.iscomplexobj(img) or np.iscomplexobj(k))
    shape = [sp_fft.next_fast_len(n + m - 1, real=real) for n, m in zip(img.shape, k.shape)]
    if real:
        out = sp_fft.irfft2(sp_fft.rfft2(img, shape) * sp_fft.rfft2(k, shape), shape)
    else:
        out = sp_fft.ifft2(sp_fft.fft2(img, shape) * sp_fft.fft2(k, shape))
    return out[kh - 1:img.shape[0], kw - 1:img.shape[1]]


def _pad_to(k: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.pad(k, [((n - m) // 2, (n - m) - (n - m) // 2) for n, m in zip(shape, k.shape)])


def _blend_weights(alpha: np.ndarray, rho: float) -> tuple[np.ndarray, np.ndarray]:
    norm = np.sqrt((1 - alpha) ** 2 + alpha ** 2 + 2 * alpha * (1 - alpha) * rho)
    return (1 - alpha) / norm, alpha / norm


# --------------------------------------------------------------------------- the expectation
def expected_log_intensity(M: np.ndarray, coherent: np.ndarray | None, n0: float, alpha: float | None) -> np.ndarray:
    """E[ln I] per pixel for I = |sqrt(G) d + c + n|², d ~ CN(0, M), n ~ CN(0, n0), c = ``coherent``,
    G ~ Gamma(alpha, 1/alpha) (None: G = 1); see the module docstring.

    Given G the field is CN(c, s) with s = G M + n0, and E[ln I | G] = ln|c|² + E1(|c|²/s) (Rice), which
    is ln s − γ when c = 0.  Each form is bounded near G = 0 — ln n0 + ln(1 + G M / n0) − γ without a
    coherent term, ln|c|² + E1(|c|² / s) with one — and is averaged over 64 equal-probability quantiles of
    the Gamma law (accurate to ~0.003 nepers); with neither noise nor coherent term the exact
    ln M + ψ(α) − ln α − γ."""
    M = np.maximum(np.asarray(M, float), 1e-30)
    c2 = np.zeros_like(M) if coherent is None else np.abs(coherent) ** 2
    ic = np.nonzero(c2 > 1e-30 * M)  # pixels with a coherent (specular) term
    Mc, cc = M[ic], c2[ic]

    def given(g):
        out = (np.log(n0) + np.log1p(g * M / n0) if n0 > 0 else np.log(g * M)) - EULER
        if cc.size:
            out[ic] = np.log(cc) + special.exp1(cc / (g * Mc + n0))
        return out

    if alpha is None:
        return given(1.0)
    nodes = special.gammaincinv(alpha, (np.arange(GAMMA_NODES) + 0.5) / GAMMA_NODES) / alpha
    out = sum(given(g) for g in nodes) / GAMMA_NODES
    if n0 <= 0:  # ln(G M) integrated exactly where there is no coherent term
        exact = np.log(M) - EULER + special.digamma(alpha) - np.log(alpha)
        exact[ic] = out[ic]
        out = exact
    return out


def _clip_expectation(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """E[clip(m + s Y, 0, 1)] with Y standardized log-Rayleigh."""
    return np.mean(np.clip(m[..., None] + s[..., None] * _LOGRAY, 0.0, 1.0), axis=-1)


def _map_expectation(g, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """E[g(m + s Z)], Z ~ N(0, 1), by 9-node Gauss–Hermite quadrature."""
    return sum(wi * g(m + s * xi) for xi, wi in zip(_GH_X, _GH_W))


def _local_std(resid: np.ndarray, sigma: float = 2.5) -> np.ndarray:
    return np.sqrt(np.maximum(ndimage.gaussian_filter(resid ** 2, sigma), 0.0))


# --------------------------------------------------------------------------- grey maps and resampling
def grey_map(rng, disabled: bool = False):
    """A scanner grey map drawn from ``rng`` (gamma, S-curve, knots or identity, then contrast and offset):
    ``(map, meta)``; ``disabled``: the identity."""
    if disabled:
        return (lambda v: v), {"kind": "identity"}
    kind = str(rng.choice(["gamma", "s-curve", "knots", "identity"], p=[0.35, 0.25, 0.25, 0.15]))
    off, con = float(rng.uniform(-0.08, 0.08)), float(np.exp(rng.uniform(-0.2, 0.25)))
    if kind == "gamma":
        gam = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
        f = lambda v: np.clip(v, 0, 1) ** gam  # noqa: E731
        meta = {"gamma": gam}
    elif kind == "s-curve":
        slope, mid = float(rng.uniform(3, 9)), float(rng.uniform(0.35, 0.65))
        lo, hi = 1 / (1 + np.exp(slope * mid)), 1 / (1 + np.exp(-slope * (1 - mid)))
        f = lambda v: (1 / (1 + np.exp(-slope * (np.clip(v, 0, 1) - mid))) - lo) / (hi - lo)  # noqa: E731
        meta = {"slope": slope, "mid": mid}
    elif kind == "knots":
        t = np.concatenate([[0], np.sort(rng.uniform(0.1, 0.9, 3)), [1]])
        e = np.concatenate([[0], np.sort(rng.uniform(0.05, 0.95, 3)), [1]])
        f = lambda v: np.interp(np.clip(v, 0, 1), t, e)  # noqa: E731
        meta = {"t": t.tolist(), "e": e.tolist()}
    else:
        f = lambda v: v  # noqa: E731
        meta = {}
    return (lambda v: np.clip(con * (f(v) - 0.5) + 0.5 + off, 0, 1)), dict(meta, kind=kind, offset=off, contrast=con)


_INTERP = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}


def _fan_maps(out_shape, sim_shape, rng):
    """cv2.remap maps from an output fan (sector) to the simulation grid read as (depth, angle), and the mask."""
    h, w = out_shape
    sh, sw = sim_shape
    half = np.radians(rng.uniform(20, 40))
    r0 = rng.uniform(0.0, 0.6) * h  # apex distance above the top row (0: phased-like)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x = xx - (w - 1) / 2
    z = yy + r0
    r = np.hypot(x, z)
    th = np.arctan2(x, z)
    r_top = r0 if r0 > 0 else 0.0
    span = np.sqrt((h - 1 + r0) ** 2 + ((w - 1) / 2) ** 2) - r_top
    mapy = ((r - r_top) / span * (sh - 1)).astype(np.float32)
    mapx = ((th / half + 1) / 2 * (sw - 1)).astype(np.float32)
    mask = (np.abs(th) <= half) & (r >= r_top) & (mapy <= sh - 1)
    if r0 > 0:
        mask &= r >= r0 * 1.0
    return mapy, mapx, mask, {"half_angle_deg": float(np.degrees(half)), "apex_px": float(r0)}


# --------------------------------------------------------------------------- one pair
def random_pair(seed: int, size: int | tuple[int, int] = 128, probes=None, disable=(), split: str = "train",
                source_weights: dict[str, float] | None = None, speckle_seed: int = 0,
                fc_factors: tuple[float, ...] = FC_FACTORS, analytic_share: float = 0.5) -> RandomPair:
    """One domain-randomised pair (see the module docstring).

    ``probes``: the banks to draw PSFs from (default all four), ``fc_factors`` their frequency variants
    (banks other than the shipped 1.0 are measured once and cached, :mod:`simulator.psf`); ``disable``:
    factors held at a typical value; ``analytic_share``: the share of analytic PSFs (0: measured banks
    only); ``speckle_seed``: the scatterer draw — the scene, acquisition and display come from ``seed``
    alone, so pairs with the same ``seed`` and other ``speckle_seed`` are independent draws of one
    medium (their mean converges to ``target``: :func:`monte_carlo_target`)."""
    from .probes import PROBE_NAMES

    off = set(disable)
    bad = off - set(FACTORS)
    if bad:
        raise ValueError(f"unknown factor(s) {sorted(bad)}; valid: {', '.join(FACTORS)}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    srng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5BEC, int(speckle_seed)]))
    shape = (size, size) if np.isscalar(size) else tuple(int(s) for s in cast(tuple[int, int], size))
    meta: dict = {"seed": int(seed)}
    psf = _draw_psfs(rng, off, tuple(probes or PROBE_NAMES), fc_factors, analytic_share, meta)
    med = _draw_medium(rng, off, shape, psf["zoom"], split, source_weights, meta)
    sim = _simulate(rng, srng, off, psf, med, meta)
    x_in, t2, e2, mask = _scanner(rng, off, shape, psf["zoom"], med["sector"], sim, meta)
    g, gmeta = grey_map(rng, "greymap" in off)
    target = _map_expectation(g, t2, _local_std(x_in - t2))
    bmode, target, echo = (np.where(mask, np.clip(v, 0, 1), 0).astype(np.float32) for v in (g(x_in), target, g(e2)))
    meta["grey_map"] = gmeta
    return RandomPair(bmode=(np.round(bmode * 255) / 255).astype(np.float32), target=target, echo=echo, mask=mask,
                      meta=meta)


def _draw_psfs(rng, off: set, probes: tuple, fc_factors, analytic_share: float, meta: dict) -> dict:
    """Compounding angles, output grain, and per angle a (top, bottom) kernel pair on the simulation grid."""
    n_ang = 1 if "psf" in off else int(rng.choice([1, 2, 3, 5], p=[0.45, 0.2, 0.25, 0.1]))
    spread = float(rng.uniform(3, MAX_STEER_DEG)) if n_ang > 1 else 0.0
    angles = np.linspace(-spread, spread, n_ang) if n_ang > 1 else np.zeros(1)
    analytic = "psf" not in off and rng.random() < analytic_share
    g_out = None if "grain" in off else tuple(float(np.exp(rng.uniform(np.log(0.8), np.log(6.0)))) for _ in range(2))
    k0 = None
    if "psf" in off:
        k0, kmeta = _bank_kernel(rng, ("L11-5v",) if "L11-5v" in probes else probes, band=4, fc_factor=1.0)
        native = kernel_grain(k0)
    elif analytic:
        native = (float(rng.uniform(1.6, 4.0)), float(rng.uniform(1.6, 4.0)))
    else:
        k0, kmeta = _bank_kernel(rng, probes, fc_factors=fc_factors)
        native = kernel_grain(k0)
    g_out = g_out or native
    g_sim = tuple(float(np.clip(min(max(g, 1.6), 4.0) * rng.uniform(0.85, 1.15), 1.6, 4.0)) for g in g_out)
    zoom = (g_out[0] / g_sim[0], g_out[1] / g_sim[1])
    depth_scale = (float(rng.uniform(0.9, 1.25)), float(rng.uniform(0.9, 1.6)))  # bottom kernel / top kernel
    kernels, aparams = [], None
    for a in angles:
        pair = []
        for j, scale in enumerate(((1.0, 1.0), depth_scale)):
            g = (g_sim[0] * scale[0], g_sim[1] * scale[1])
            if analytic:
                k, km = _analytic_kernel(rng, g, float(a), aparams)
                if aparams is None:
                    kmeta, aparams = km, {k2: v for k2, v in km.items() if k2 != "kind"}
            else:
                if "psf" not in off:
                    kb = _bank_kernel(rng, [kmeta["bank"]], band=kmeta["band"] + j, fc_factor=kmeta["fc_factor"])[0]
                else:
                    assert k0 is not None  # drawn above when the PSF factor is off
                    kb = k0
                ng = kernel_grain(kb)
                k = steer(_resample_kernel(kb, g[0] / ng[0], g[1] / ng[1]), float(a), g[1])
            pair.append(k)
        kernels.append(pair)
    meta.update({"angles_deg": angles.tolist(), "psf": kmeta, "grain_out_px": list(g_out),
                 "grain_sim_px": list(g_sim), "zoom": list(zoom)})
    return {"kernels": kernels, "g_sim": g_sim, "zoom": zoom}


def _draw_medium(rng, off: set, shape, zoom, split, source_weights, meta: dict) -> dict:
    """The simulation grid, the scatterers' mean intensity (echogenicity, depth gain, haze), the noise
    level, the product texture's shape and the specular reflectors."""
    H, W = shape
    sector = "sector" not in off and rng.random() < 0.33
    sh = int(np.ceil(H / zoom[0] * (1.15 if sector else 1.0))) + 2
    sw = int(np.ceil(W / zoom[1] * (1.15 if sector else 1.0))) + 2
    if "sources" in off:
        echo_src, src_name = sources.mri((sh, sw), rng, split), "mri"
    else:
        echo_src, src_name = sources.draw_source((sh, sw), rng, source_weights, split)
    dr0 = float(rng.uniform(30, 60)) if "gain" not in off else 50.0
    sigma2 = np.exp(np.log(10) / 10 * dr0 * (echo_src - 1.0))
    if "gain" not in off:
        tgc_db = np.interp(np.linspace(0, 1, sh)[:, None], np.linspace(0, 1, 4), rng.uniform(-6, 6, 4))
        sigma2 = sigma2 * 10 ** (tgc_db / 10)
    med_tissue = float(np.median(sigma2))
    n0 = 0.0
    if "noise" not in off:
        haze_db = float(rng.uniform(-35, -15))
        haze = med_tissue * 10 ** (haze_db / 10) * np.exp(
            ndimage.gaussian_filter(rng.standard_normal((sh, sw)), (sh / 6, sw / 6), mode="wrap") * 8)
        sigma2 = sigma2 + haze * (rng.random() < 0.6)
        n0 = med_tissue * 10 ** (float(rng.uniform(-45, -20)) / 10) if rng.random() < 0.7 else 0.0
        meta["haze_db"], meta["noise_rel"] = haze_db, n0 / med_tissue
    alpha = None
    if "scatterers" not in off and rng.random() < 0.35:
        alpha = float(np.exp(rng.uniform(np.log(0.5), np.log(8.0))))
    coherent = _reflectors((sh, sw), rng, sigma2) if "scatterers" not in off and rng.random() < 0.4 else None
    meta.update({"k_shape": alpha, "specular": coherent is not None, "source": src_name, "dr0_db": dr0,
                 "sector": sector})
    return {"sector": sector, "grid": (sh, sw), "sigma2": sigma2, "n0": n0, "alpha": alpha, "coherent": coherent}


def _texture(r, alpha, grid, g_sim) -> np.ndarray:
    """The product model's Gamma(alpha) texture, smooth at the PSF scale (ones without one)."""
    if alpha is None:
        return np.ones(grid)
    z = ndimage.gaussian_filter(r.standard_normal(grid), (g_sim[0] / 2.355, g_sim[1] / 2.355), mode="wrap")
    z = z / max(float(z.std()), 1e-9)
    return special.gammaincinv(alpha, special.ndtr(z)) / alpha


def _simulate(rng, srng, off: set, psf: dict, med: dict, meta: dict) -> dict:
    """One speckle draw displayed (``y_in``), its closed-form expectation (``t1``) and the echogenicity in the
    same display (``e_disp``), on the simulation grid (persistence blended into ``y_in`` when drawn)."""
    sh, sw = med["grid"]
    sigma2, n0, alpha = med["sigma2"], med["n0"], med["alpha"]
    alpha_row = np.clip((np.arange(sh) / max(sh - 1, 1)), 0, 1)[:, None]
    # the scatterers fill the frame plus a margin of the kernels' half-size ('valid' convolutions)
    kern = psf["kernels"]
    kshape = (max(k.shape[0] for pr in kern for k in pr) | 1, max(k.shape[1] for pr in kern for k in pr) | 1)
    kernels = [(_pad_to(top, kshape), _pad_to(bot, kshape)) for top, bot in kern]
    weights = [_blend_weights(alpha_row, float(np.real(np.vdot(kb, kt)))) for kt, kb in kernels]
    pad = ((kshape[0] // 2,) * 2, (kshape[1] // 2,) * 2)
    sigma2_p = np.pad(sigma2, pad, mode="symmetric")
    coh_p = None if med["coherent"] is None else np.pad(med["coherent"], pad)

    def scatter_field(r):
        return (r.standard_normal(sigma2_p.shape) + 1j * r.standard_normal(sigma2_p.shape)) * np.sqrt(sigma2_p / 2)

    def image_fields(field, gtex):
        return [(wt * _conv_valid(field, kt) + wb * _conv_valid(field, kb)) * np.sqrt(gtex)
                for (kt, kb), (wt, wb) in zip(kernels, weights)]

    s = scatter_field(srng)
    gtex = _texture(srng, alpha, (sh, sw), psf["g_sim"])
    dr = float(rng.uniform(40, 80)) if "gain" not in off else 50.0
    level = float(rng.uniform(0.35, 0.7)) if "gain" not in off else 0.55
    fields = image_fields(s, gtex)
    means = [np.maximum(wt ** 2 * _conv_valid(sigma2_p, np.abs(kt) ** 2)
                        + wb ** 2 * _conv_valid(sigma2_p, np.abs(kb) ** 2)
                        + 2 * wt * wb * _conv_valid(sigma2_p, np.real(kt * np.conj(kb))), 1e-30)
             for (kt, kb), (wt, wb) in zip(kernels, weights)]
    coh = [None if coh_p is None else wt * _conv_valid(coh_p, kt) + wb * _conv_valid(coh_p, kb)
           for (kt, kb), (wt, wb) in zip(kernels, weights)]
    ref = float(np.median(np.mean(means, axis=0))) * 10 ** (-(level - 1.0) * dr / 10)

    def to_display(i):
        return (DB * np.log(np.maximum(i, 1e-30) / ref) + dr) / dr

    def draw_display(r, flds):
        """One displayed draw (before clipping), angles compounded in the display domain."""
        out = np.zeros((sh, sw))
        for fa, ca in zip(flds, coh):
            noise = (r.standard_normal((sh, sw)) + 1j * r.standard_normal((sh, sw))) * np.sqrt(n0 / 2)
            out += to_display(np.abs(fa + noise + (0 if ca is None else ca)) ** 2)
        return out / len(flds)

    d_draw = draw_display(srng, fields)
    e_log = np.mean([expected_log_intensity(m, c, n0, alpha) for m, c in zip(means, coh)], axis=0)
    m1 = (DB * (e_log - np.log(ref)) + dr) / dr
    y_in = np.clip(d_draw, 0, 1)
    if "postprocessing" not in off and rng.random() < 0.25:  # persistence: a partially correlated draw blended in
        rho_p, wp = float(rng.uniform(0.3, 0.9)), float(rng.uniform(0.2, 0.5))
        s2 = rho_p * s + np.sqrt(1 - rho_p ** 2) * scatter_field(srng)
        y_in = (1 - wp) * y_in + wp * np.clip(draw_display(srng, image_fields(s2, gtex)), 0, 1)
        meta["persistence"] = {"rho": rho_p, "weight": wp}
    meta.update({"dr_db": dr, "display_level": level})
    return {"y_in": y_in, "t1": _clip_expectation(m1, _local_std(d_draw - m1)),
            "e_disp": np.clip((DB * np.log(np.maximum(sigma2, 1e-30) / ref) + dr) / dr, 0, 1)}


def _scanner(rng, off: set, shape, zoom, sector: bool, sim: dict, meta: dict):
    """Scanner resampling (zoom or fan scan conversion) and post-processing, applied alike to the input, the
    expectation and the echogenicity (all linear); returns them on the output grid and the field of view."""
    H, W = shape
    mode = "linear"
    if "resampling" not in off:
        mode = str(rng.choice(["nearest", "linear", "cubic", "area"], p=[0.15, 0.4, 0.25, 0.2]))
        if mode == "area" and (zoom[0] > 1 or zoom[1] > 1):
            mode = "linear"
    if sector:
        mapy, mapx, mask, meta["fan"] = _fan_maps((H, W), sim["y_in"].shape, rng)
        interp = {"nearest": cv2.INTER_NEAREST, "cubic": cv2.INTER_CUBIC}.get(mode, cv2.INTER_LINEAR)

        def resample(img):
            return np.where(mask, cv2.remap(img.astype(np.float32), mapx, mapy, interp,
                                            borderMode=cv2.BORDER_REFLECT), 0.0)
    else:
        mask = np.ones((H, W), bool)

        def resample(img):
            crop = img[1:1 + int(np.ceil(H / zoom[0])), 1:1 + int(np.ceil(W / zoom[1]))]
            return cv2.resize(crop.astype(np.float32), (W, H), interpolation=_INTERP[mode])
    out = [resample(sim[k]) for k in ("y_in", "t1", "e_disp")]
    meta["interpolation"] = mode
    if "postprocessing" not in off:
        if rng.random() < 0.35:
            sg = float(rng.uniform(0.3, 0.8))
            out = [ndimage.gaussian_filter(v, sg) for v in out]
            meta["smoothing_px"] = sg
        if rng.random() < 0.3:
            amt, sg = float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.8, 2.0))
            out = [v + amt * (v - ndimage.gaussian_filter(v, sg)) for v in out]
            meta["unsharp"] = {"amount": amt, "sigma": sg}
    return out[0], out[1], out[2], mask


def _reflectors(shape, rng, sigma2):
    """Deterministic specular reflectors (lines and points) with a coherent phase, relative to the local tissue."""
    h, w = shape
    r = np.zeros(shape, np.complex64)
    med = float(np.median(sigma2))
    for _ in range(int(rng.integers(1, 4))):
        y0, y1 = rng.uniform(0, h, 2)
        x0, x1 = 0, w - 1
        n = int(max(h, w) * 2)
        t = np.linspace(0, 1, n)
        ys = y0 + (y1 - y0) * t + rng.normal(0, h / 40) * np.sin(np.pi * t * rng.uniform(1, 3))
        xs = x0 + (x1 - x0) * t
        ok = (ys >= 0) & (ys < h)
        amp = np.sqrt(med * 10 ** (rng.uniform(5, 20) / 10))
        phase = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.05, n))
        r[ys[ok].astype(int), xs[ok].astype(int)] += (amp * np.exp(1j * phase[ok])).astype(np.complex64)
    for _ in range(int(rng.integers(0, 6))):
        y, x = int(rng.integers(h)), int(rng.integers(w))
        r[y, x] += np.complex64(np.sqrt(med * 10 ** (rng.uniform(10, 30) / 10)) * np.exp(1j * rng.uniform(0, 6.3)))
    return r


def monte_carlo_target(seed: int, n: int, **kw) -> np.ndarray:
    """The mean displayed input over ``n`` independent speckle draws of sample ``seed`` (a check of the
    closed-form target, used by the tests)."""
    return np.mean([random_pair(seed, speckle_seed=k + 1, **kw).bmode for k in range(n)], axis=0)


# --------------------------------------------------------------------------- datasets
SPLIT_KEYS = {"train": 1, "val": 2, "test": 3}


def pair_seed(seed: int, split: str, index: int) -> int:
    """Seed of pair ``index`` of ``split`` in a randomized stream / dataset made with ``seed``."""
    if split not in SPLIT_KEYS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLIT_KEYS)}")
    return int(np.random.SeedSequence([int(seed), SPLIT_KEYS[split], int(index)]).generate_state(1)[0])


def pair_arrays(p: RandomPair) -> dict:
    """Storage of one pair: the input as the 8-bit image it is, targets as uint16."""
    return {"bmode_u8": np.round(p.bmode * 255).astype(np.uint8),
            "target_u16": np.round(np.clip(p.target, 0, 1) * 65535).astype(np.uint16),
            "echo_u16": np.round(np.clip(p.echo, 0, 1) * 65535).astype(np.uint16), "mask": p.mask}


def _write_pair(path: str, seed: int, size: int, probes, disable, split, source_weights,
                analytic_share: float = 0.5) -> tuple[str, float]:
    import os
    import time

    from .datasets import atomic_savez

    t0 = time.perf_counter()
    if os.path.exists(path):
        return path, 0.0
    p = random_pair(seed, size=size, probes=probes, disable=disable, split=split, source_weights=source_weights,
                    analytic_share=analytic_share)
    atomic_savez(path, **pair_arrays(p))
    return path, time.perf_counter() - t0


def generate_pairs(out_dir, n_train: int, n_val: int = 256, size: int = 128, seed: int = 0, probes=None, disable=(),
                   source_weights=None, workers: int | None = None, progress: bool = True,
                   analytic_share: float = 0.5) -> dict:
    """Write a randomized dataset (``<split>/<index:06d>.npz``); resumable (existing pairs are skipped);
    ``manifest.json`` records the parameters and a different job in the same folder is refused.

    ``workers=1`` runs in this process (a pair takes ~0.2 s: a scheduler would cost more than it saves);
    more workers, or ``workers=None`` (all cores), run on a Dask cluster."""
    import json
    import os
    from pathlib import Path

    from .datasets import run_jobs
    from .probes import PROBE_NAMES

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = {"generator": "simulator.randomized.generate_pairs", "size": int(size), "seed": int(seed),
              "probes": list(probes or PROBE_NAMES), "disable": sorted(disable), "source_weights": source_weights,
              "analytic_share": float(analytic_share), "n": {"train": int(n_train), "val": int(n_val)}}
    man = out / "manifest.json"
    if man.exists():
        old = json.loads(man.read_text())
        keys = ("size", "seed", "probes", "disable", "source_weights", "analytic_share")
        if {k: old.get(k, 0.5 if k == "analytic_share" else None) for k in keys} != {k: params[k] for k in keys}:
            raise ValueError(f"{out} already holds a different randomized dataset; use another folder")
    tmp = man.with_suffix(".tmp")
    tmp.write_text(json.dumps(params, indent=1))
    os.replace(tmp, man)
    jobs = []
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(int(n)):
            f = out / split / f"{i:06d}.npz"
            if not f.exists():
                jobs.append((str(f), pair_seed(seed, split, i), int(size), params["probes"], tuple(disable), split,
                             source_weights, float(analytic_share)))
    summary: dict[str, Any] = {"written": 0, "failed": [], "skipped": int(n_train) + int(n_val) - len(jobs)}
    if jobs and workers == 1:
        from tqdm import tqdm
        for job in tqdm(jobs, unit="pair", desc="pairs", disable=not progress, mininterval=30):
            _write_pair(*job)
            summary["written"] += 1
    elif jobs:
        run_jobs(_write_pair, jobs, key=lambda j: f"randomized-{j[5]}-{Path(j[0]).stem}", workers=workers,
                 progress=progress, summary=summary, desc="pairs")
    return summary


def load_pairs(out_dir, split: str = "train", raw: bool = False) -> dict[str, np.ndarray]:
    """Stack a randomized dataset's split: ``bmode``, ``target``, ``echo`` float32 (N, H, W) in [0, 1] and
    ``mask``; ``raw=True`` keeps the stored uint8 / uint16 arrays (a quarter of the memory) — scale them by
    :data:`SCALES`."""
    from pathlib import Path

    files = sorted((Path(out_dir) / split).glob("*.npz"))
    if not files:
        raise ValueError(f"no {split} pairs in {out_dir}")
    cols: dict[str, list] = {"bmode": [], "target": [], "echo": [], "mask": []}
    for f in files:
        with np.load(f) as z:
            cols["bmode"].append(z["bmode_u8"])
            cols["target"].append(z["target_u16"])
            cols["echo"].append(z["echo_u16"])
            cols["mask"].append(z["mask"])
    out = {k: np.stack(v) for k, v in cols.items()}
    if not raw:
        for k, scale in SCALES.items():
            out[k] = out[k].astype(np.float32) / np.float32(scale)
    return out


SCALES = {"bmode": 255.0, "target": 65535.0, "echo": 65535.0}
