"""Classical despeckling filters (the baselines of the evaluation), each with its published formula.

Every filter takes a display image: (H, W) float in [0, 1], the log-compressed B-mode
``d = (20 log10(env / ref) + DR) / DR`` (DR = ``dr_db``, default 50 dB), and returns a float32
display image of the same shape in [0, 1].  Filters derived from the multiplicative speckle model
(Lee, Frost, SRAD) run in the envelope domain: the display is mapped back to the linear envelope
``env = 10^(DR (d − 1) / 20)`` (ref = 1), filtered, and log-compressed again with the same DR.
Median, OBNLM, NLM and BM3D run on the display (log-compressed) image itself, the domain their
authors targeted (OBNLM) or where speckle becomes approximately additive (NLM, BM3D).

``FILTERS`` maps a name to a :class:`Filter` (function, parameter grid, domain, reference) and
:func:`tune` grid-searches a filter's parameters for the best mean PSNR on validation pairs.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from engine import metrics

DEFAULT_DR_DB = 50.0
RAYLEIGH_CV = math.sqrt((4.0 - math.pi) / math.pi)  # envelope std/mean of fully developed speckle ≈ 0.523

__all__ = [
    "display_to_envelope", "envelope_to_display", "median", "lee", "frost", "srad", "srad_coefficient",
    "obnlm", "nlm", "bm3d", "Filter", "FILTERS", "get_filter", "tune", "apply_job", "format_grid_table",
]


# --------------------------------------------------------------------------------------------
# domain conversions and checks


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError("classical filters take one 2-D image, got shape %s" % (img.shape,))
    if min(img.shape) < 3:
        raise ValueError("image is too small to filter: %s" % (img.shape,))
    if not np.all(np.isfinite(img)):
        raise ValueError("image contains NaN or infinite values")
    return np.clip(img, 0.0, 1.0)


def _check_odd(size: int, name: str = "size") -> int:
    s = int(size)
    if s < 1 or s % 2 == 0:
        raise ValueError("%s must be a positive odd integer, got %r" % (name, size))
    return s


def display_to_envelope(display: np.ndarray, dr_db: float = DEFAULT_DR_DB) -> np.ndarray:
    """Linear envelope ``10^(DR (d − 1) / 20)`` (1 at d = 1, 10^(−DR/20) at d = 0)."""
    if not dr_db > 0:
        raise ValueError("dynamic range must be positive, got %r" % (dr_db,))
    return np.power(10.0, (np.clip(display, 0.0, 1.0) - 1.0) * float(dr_db) / 20.0)


def envelope_to_display(envelope: np.ndarray, dr_db: float = DEFAULT_DR_DB) -> np.ndarray:
    """Log compression ``(20 log10(env) + DR) / DR`` clipped to [0, 1] (inverse of the above)."""
    env = np.maximum(envelope, 1e-12)
    return np.clip((20.0 * np.log10(env) + float(dr_db)) / float(dr_db), 0.0, 1.0)


def _local_mean_var(x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    mean = ndimage.uniform_filter(x, size, mode="reflect")
    mean_sq = ndimage.uniform_filter(x * x, size, mode="reflect")
    return mean, np.maximum(mean_sq - mean * mean, 0.0)


def _out(display: np.ndarray) -> np.ndarray:
    return np.clip(display, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# filters


def median(image: np.ndarray, size: int = 5) -> np.ndarray:
    """Median filter over a ``size`` × ``size`` window (reflecting borders).

    y(x) = median{ d(s) : s ∈ W(x) }.  The median commutes with the monotone log compression,
    so the result is the same in the display and envelope domains.
    """
    img = _check_image(image)
    return _out(ndimage.median_filter(img, size=_check_odd(size), mode="reflect"))


def lee(image: np.ndarray, size: int = 7, cu: float = RAYLEIGH_CV, dr_db: float = DEFAULT_DR_DB) -> np.ndarray:
    """Lee filter (J.-S. Lee, IEEE TPAMI 1980), multiplicative-noise form (Lopes et al. 1990).

    Envelope domain.  With local mean μ and variance σ² over a ``size`` window,
    C_I² = σ²/μ² and the speckle coefficient of variation C_u (``cu``; 0.523 for a Rayleigh
    envelope):  ŷ = μ + W (z − μ),  W = (1 − C_u²/C_I²) / (1 + C_u²), clipped to [0, 1].
    In homogeneous speckle (C_I ≈ C_u) the output is the local mean; at edges (C_I ≫ C_u) the
    input is kept.
    """
    img = _check_image(image)
    if not cu > 0:
        raise ValueError("cu must be positive, got %r" % (cu,))
    env = display_to_envelope(img, dr_db)
    mean, var = _local_mean_var(env, _check_odd(size))
    ci2 = var / np.maximum(mean * mean, 1e-30)
    cu2 = float(cu) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(ci2 > 0, (1.0 - cu2 / ci2) / (1.0 + cu2), 0.0)
    w = np.clip(w, 0.0, 1.0)
    return _out(envelope_to_display(mean + w * (env - mean), dr_db))


def frost(image: np.ndarray, size: int = 5, damping: float = 2.0, dr_db: float = DEFAULT_DR_DB) -> np.ndarray:
    """Frost filter (Frost et al., IEEE TPAMI 1982): adaptive exponentially weighted mean.

    Envelope domain.  ŷ(x) = Σ_s m(s) z(x+s) / Σ_s m(s) over a ``size`` window, with
    m(s) = exp(−K C_I²(x) |s|), K = ``damping``, C_I² = σ²/μ² the local squared coefficient of
    variation and |s| the Euclidean distance to the centre.  Homogeneous areas (small C_I) get a
    near-uniform mean; edges (large C_I) keep the centre pixel.
    """
    img = _check_image(image)
    size = _check_odd(size)
    if damping < 0:
        raise ValueError("damping must be >= 0, got %r" % (damping,))
    env = display_to_envelope(img, dr_db)
    mean, var = _local_mean_var(env, size)
    alpha = float(damping) * var / np.maximum(mean * mean, 1e-30)
    r = size // 2
    padded = np.pad(env, r, mode="symmetric")  # = scipy.ndimage "reflect"
    h, w = env.shape
    num = np.zeros_like(env)
    den = np.zeros_like(env)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            m = np.exp(-alpha * math.hypot(dy, dx))
            num += m * padded[r + dy:r + dy + h, r + dx:r + dx + w]
            den += m
    return _out(envelope_to_display(num / den, dr_db))


def srad_coefficient(q2: np.ndarray, q0_2: float) -> np.ndarray:
    """SRAD diffusion coefficient c(q) = 1 / (1 + (q² − q0²) / (q0² (1 + q0²))), clipped to [0, 1].

    c = 1 where the instantaneous coefficient of variation q equals the speckle scale q0 (and
    below it: full smoothing), and c → 0 as q grows (edges stop the diffusion).
    """
    q0_2 = float(q0_2)
    if not q0_2 > 0:
        raise ValueError("q0² must be positive, got %r" % (q0_2,))
    c = 1.0 / (1.0 + (np.asarray(q2, dtype=np.float64) - q0_2) / (q0_2 * (1.0 + q0_2)))
    return np.clip(c, 0.0, 1.0)


def srad(image: np.ndarray, n_iter: int = 50, dt: float = 0.2, q0: float = RAYLEIGH_CV, rho: float = 1.0 / 6.0,
         dr_db: float = DEFAULT_DR_DB) -> np.ndarray:
    """Speckle-reducing anisotropic diffusion (Y. Yu and S. T. Acton, IEEE TIP 11(11), 2002).

    Envelope domain, the paper's discrete scheme (eqs. 56–58) with unit pixel spacing and
    Neumann borders.  For each pixel, with one-sided differences to the four neighbours,
      |∇I|²/I² = (Σ_k (I_k − I)²) / I²,  ∇²I/I = (Σ_k (I_k − I)) / I,
      q² = [½ |∇I|²/I² − (1/16)(∇²I/I)²] / [1 + ¼ ∇²I/I]²,
      c = 1 / (1 + (q² − q0²(t)) / (q0²(t)(1 + q0²(t)))) ∈ [0, 1],  q0(t) = q0 exp(−ρ t),
      I ← I + (Δt/4) [c_S (I_S − I) + c (I_N − I) + c_E (I_E − I) + c (I_W − I)],
    with c_S, c_E the coefficients of the south and east neighbours and t = n Δt.
    Stable for Δt ≤ 1.
    """
    img = _check_image(image)
    n_iter = int(n_iter)
    if n_iter < 0:
        raise ValueError("n_iter must be >= 0, got %r" % (n_iter,))
    if not 0 < dt <= 1.0:
        raise ValueError("dt must be in (0, 1] for stability, got %r" % (dt,))
    if not q0 > 0:
        raise ValueError("q0 must be positive, got %r" % (q0,))
    x = display_to_envelope(img, dr_db)
    for n in range(n_iter):
        p = np.pad(x, 1, mode="edge")
        d_n = p[:-2, 1:-1] - x
        d_s = p[2:, 1:-1] - x
        d_w = p[1:-1, :-2] - x
        d_e = p[1:-1, 2:] - x
        g2 = (d_n ** 2 + d_s ** 2 + d_w ** 2 + d_e ** 2) / (x * x)
        lap = (d_n + d_s + d_w + d_e) / x
        q2 = np.maximum(0.5 * g2 - lap ** 2 / 16.0, 0.0) / np.maximum((1.0 + 0.25 * lap) ** 2, 1e-12)
        q0_t = float(q0) * math.exp(-float(rho) * n * float(dt))
        c = srad_coefficient(q2, q0_t ** 2)
        cp = np.pad(c, 1, mode="edge")
        div = cp[2:, 1:-1] * d_s + c * d_n + cp[1:-1, 2:] * d_e + c * d_w
        x = np.maximum(x + 0.25 * float(dt) * div, 1e-12)
    return _out(envelope_to_display(x, dr_db))


def obnlm(image: np.ndarray, h: float = 0.1, search_radius: int = 5, block_radius: int = 1, step: int = 2,
          gamma: float = 0.5, mu1: float = 0.95, sigma1_2: float = 0.5) -> np.ndarray:
    """Optimized Bayesian non-local means for speckle (P. Coupé et al., IEEE TIP 18(10), 2009).

    Display (log-compressed) domain, the domain the authors modelled: u = v + v^γ η (γ = 0.5).
    Blocks B_i of (2a+1)² pixels (a = ``block_radius``) centred every ``step`` pixels are restored
    from the candidate blocks B_j whose centres lie in a (2M+1)² search area (M = ``search_radius``):
      NL(u)(B_i) = Σ_j w(B_i, B_j) u(B_j) / Σ_j w(B_i, B_j),
      w(B_i, B_j) = exp(−d_P(B_i, B_j) / (h² |B|)),
      d_P(B_i, B_j) = Σ_p (u_p(B_i) − u_p(B_j))² / u_p(B_j)^{2γ}   (Pearson distance),
    with the central weight set to the largest other weight, blocks preselected by
    μ1 < mean(B_i)/mean(B_j) < 1/μ1 and σ1² < var(B_i)/var(B_j) < 1/σ1², and each pixel the
    average of the estimates of all blocks covering it.  (h is expressed per block pixel: the
    paper's h² equals our h² |B|.)
    """
    img = _check_image(image)
    if not h > 0:
        raise ValueError("h must be positive, got %r" % (h,))
    m_r, a, step = int(search_radius), int(block_radius), int(step)
    if m_r < 1 or a < 0 or not 1 <= step <= 2 * a + 1:
        raise ValueError("need search_radius >= 1, block_radius >= 0 and 1 <= step <= 2*block_radius+1")
    u = img
    hh, ww = u.shape
    bsize = 2 * a + 1
    eps = 1.0 / 255.0  # floor for the Pearson denominator (anechoic pixels are 0 on the display)
    pad = m_r + a
    up = np.pad(u, pad, mode="symmetric")  # = scipy.ndimage "reflect"
    rows = np.unique(np.r_[np.arange(0, hh, step), hh - 1])
    cols = np.unique(np.r_[np.arange(0, ww, step), ww - 1])
    centre_idx = np.ix_(rows, cols)
    mean_i, var_i = _local_mean_var(u, bsize)
    mean_i, var_i = mean_i[centre_idx], var_i[centre_idx]
    offsets = [(dy, dx) for dy in range(-m_r, m_r + 1) for dx in range(-m_r, m_r + 1)]
    logw = np.empty((len(offsets),) + mean_i.shape)
    centre = offsets.index((0, 0))
    for k, (dy, dx) in enumerate(offsets):
        v = up[pad + dy:pad + dy + hh, pad + dx:pad + dx + ww]
        dp = ndimage.uniform_filter((u - v) ** 2 / np.maximum(v, eps) ** (2.0 * gamma), bsize, mode="reflect")
        logw[k] = -dp[centre_idx] / (h * h)  # mean over |B| pixels = d_P / |B|
        if k != centre:
            mean_j, var_j = _local_mean_var(v, bsize)
            mr = mean_i / np.maximum(mean_j[centre_idx], 1e-12)
            vr = var_i / np.maximum(var_j[centre_idx], 1e-12)
            keep = (mr > mu1) & (mr < 1.0 / mu1) & (vr > sigma1_2) & (vr < 1.0 / sigma1_2)
            logw[k][~keep] = -np.inf
    others = np.delete(logw, centre, axis=0)
    logw[centre] = np.max(others, axis=0) if len(others) else 0.0
    logw[centre] = np.where(np.isfinite(logw[centre]), logw[centre], 0.0)  # no candidate kept: w = 1
    logw -= logw.max(axis=0, keepdims=True)  # exact: weights are normalised per block
    w = np.exp(logw)
    w /= w.sum(axis=0, keepdims=True)
    scatter = np.zeros((hh, ww))
    num = np.zeros((hh, ww))
    box = float(bsize * bsize)
    for k, (dy, dx) in enumerate(offsets):
        scatter[centre_idx] = w[k]
        cover = ndimage.uniform_filter(scatter, bsize, mode="constant") * box
        num += cover * up[pad + dy:pad + dy + hh, pad + dx:pad + dx + ww]
    scatter[:] = 0.0
    scatter[centre_idx] = 1.0
    count = ndimage.uniform_filter(scatter, bsize, mode="constant") * box
    return _out(num / np.maximum(count, 1e-12))


def nlm(image: np.ndarray, h: float = 0.08, patch_size: int = 5, patch_distance: int = 6) -> np.ndarray:
    """Non-local means (Buades, Coll and Morel, CVPR 2005) in the log domain.

    The display image is already log-compressed (d is affine in log env), which turns the
    multiplicative speckle into approximately additive noise; scikit-image's
    ``denoise_nl_means`` (fast mode) then computes ŷ(x) = Σ_y w(x, y) d(y) / Σ_y w(x, y),
    w = exp(−‖P(x) − P(y)‖² / h²) over ``patch_size`` patches within ``patch_distance``.
    """
    from skimage.restoration import denoise_nl_means

    img = _check_image(image)
    if not h > 0:
        raise ValueError("h must be positive, got %r" % (h,))
    out = denoise_nl_means(img, h=float(h), patch_size=int(patch_size), patch_distance=int(patch_distance),
                           fast_mode=True, sigma=0.0)
    return _out(out)


def bm3d(image: np.ndarray, sigma: float = 0.1) -> np.ndarray:
    """BM3D (Dabov et al., IEEE TIP 16(8), 2007) on the log-compressed display, via the ``bm3d`` package.

    Block matching groups similar patches into 3-D stacks, which are hard-thresholded and then
    Wiener-filtered in a 3-D transform domain; ``sigma`` is the assumed additive noise std (the
    speckle std on the display is ≈ 5.57 dB / DR ≈ 0.11 at DR = 50 dB).
    """
    import bm3d as _bm3d

    img = _check_image(image)
    if not sigma > 0:
        raise ValueError("sigma must be positive, got %r" % (sigma,))
    return _out(_bm3d.bm3d(img, sigma_psd=float(sigma)))


# --------------------------------------------------------------------------------------------
# registry and tuning


@dataclass(frozen=True)
class Filter:
    """A classical filter with the grid its parameters are tuned over.

    Calling it accepts the filter's own keyword parameters plus ``offset``: a global additive
    display-intensity calibration (default 0) applied after the filter, see :func:`tune`.
    """

    name: str
    func: Callable[..., np.ndarray]
    grid: dict[str, list] = field(default_factory=dict)
    domain: str = "display"
    reference: str = ""

    def __call__(self, image: np.ndarray, offset: float = 0.0, **params) -> np.ndarray:
        out = self.func(image, **params)
        return out if offset == 0 else _out(out + float(offset))

    def combinations(self, grid: Mapping[str, Sequence] | None = None) -> list[dict]:
        """All parameter dicts of ``grid`` (default: this filter's grid)."""
        g = self.grid if grid is None else grid
        keys = list(g)
        return [dict(zip(keys, vals)) for vals in itertools.product(*(g[k] for k in keys))]


FILTERS: dict[str, Filter] = {
    "median": Filter("median", median, {"size": [3, 5, 7, 9, 11, 15, 19]}, "display (= envelope)", "median filter"),
    "lee": Filter("lee", lee, {"size": [5, 7, 9, 11, 15], "cu": [0.4, 0.523, 0.65, 0.8]}, "envelope",
                  "Lee, IEEE TPAMI 1980"),
    "frost": Filter("frost", frost, {"size": [5, 7, 9, 11, 15], "damping": [0.1, 0.25, 0.5, 1.0, 2.0]}, "envelope",
                    "Frost et al., IEEE TPAMI 1982"),
    "srad": Filter("srad", srad, {"n_iter": [25, 50, 100, 200, 400], "dt": [0.5], "q0": [0.3, 0.523, 0.8, 1.2]},
                   "envelope", "Yu & Acton, IEEE TIP 2002"),
    "obnlm": Filter("obnlm", obnlm, {"h": [0.15, 0.25, 0.4, 0.6, 0.9], "block_radius": [1, 2]}, "display",
                    "Coupé et al., IEEE TIP 2009"),
    "nlm": Filter("nlm", nlm, {"h": [0.05, 0.08, 0.12, 0.17, 0.25, 0.35, 0.5]}, "display (log)",
                  "Buades et al., CVPR 2005"),
    "bm3d": Filter("bm3d", bm3d, {"sigma": [0.06, 0.1, 0.15, 0.22, 0.32, 0.45, 0.6]}, "display (log)",
                   "Dabov et al., IEEE TIP 2007"),
}


def get_filter(filt: str | Filter) -> Filter:
    """The :class:`Filter` called ``filt`` (or ``filt`` itself); ValueError for an unknown name."""
    if isinstance(filt, Filter):
        return filt
    try:
        return FILTERS[filt]
    except KeyError:
        raise ValueError("unknown filter %r (choose from %s)" % (filt, ", ".join(FILTERS))) from None


def tune(filt: str | Filter, val_pairs: Iterable[tuple], grid: Mapping[str, Sequence] | None = None,
         calibrate: bool = True, fixed: dict | None = None, verbose: bool = True,
         print_fn: Callable[[str], None] = print, map_fn: Callable = map) -> tuple[dict, list[dict]]:
    """Grid-search ``filt``'s parameters for the best mean PSNR on validation pairs.

    ``val_pairs`` holds ``(noisy, clean)`` or ``(noisy, clean, mask)`` display images (metrics
    inside the mask when given).  With ``calibrate`` each grid point also gets the global additive
    ``offset`` that minimises the squared error over all validation pixels (closed form:
    mean(clean − output)); this removes the log-compression bias of speckle (≈ −2.5 dB for the
    log of a Rayleigh envelope) that a learned model absorbs from its training data but a
    published filter formula does not know about.  Returns ``(best_params, table)``:
    ``best_params`` includes ``offset`` when calibrating, and ``table`` lists one dict per grid
    point, ``{"params", "offset", "psnr", "ssim"}`` (means over the pairs); ties keep the first
    point.  ``fixed`` holds keyword arguments passed on every call but not tuned (e.g. ``dr_db``).
    The table is printed when ``verbose``.  ``map_fn`` (default the builtin ``map``) runs the
    filter calls, e.g. ``ProcessPoolExecutor.map`` to spread them over processes.
    """
    f = get_filter(filt)
    pairs = [tuple(p) for p in val_pairs]
    if not pairs:
        raise ValueError("tuning needs at least one validation pair")
    combos = f.combinations(grid)
    if not combos:
        raise ValueError("empty parameter grid for %s" % f.name)
    masks = [p[2] if len(p) > 2 and p[2] is not None else np.ones(np.shape(p[1]), bool) for p in pairs]
    jobs = [(f, p[0], {**params, **(fixed or {})}) for params in combos for p in pairs]
    flat = list(map_fn(apply_job, jobs))
    table: list[dict[str, Any]] = []
    for ci, params in enumerate(combos):
        outs = flat[ci * len(pairs):(ci + 1) * len(pairs)]
        offset = 0.0
        if calibrate:
            resid = np.concatenate([(np.asarray(p[1], np.float64) - o)[m] for p, o, m in zip(pairs, outs, masks)])
            offset = float(resid.mean())
            outs = [_out(o + offset) for o in outs]
        ps = [metrics.psnr(o, p[1], mask=m) for o, p, m in zip(outs, pairs, masks)]
        ss = [metrics.ssim(o, p[1], mask=m) for o, p, m in zip(outs, pairs, masks)]
        table.append({"params": params, "offset": offset, "psnr": float(np.mean(ps)), "ssim": float(np.mean(ss))})
    best = _best(table)
    if verbose:
        print_fn(format_grid_table(f.name, table, best))
    chosen = dict(table[best]["params"])
    if calibrate:
        chosen["offset"] = table[best]["offset"]
    return chosen, table


def apply_job(job: tuple[str | Filter, np.ndarray, dict]) -> np.ndarray:
    """``filter(image, **params)`` for a ``(filter, image, params)`` tuple (picklable, for process pools)."""
    filt, image, params = job
    return get_filter(filt)(image, **params)


def _best(table: list[dict]) -> int:
    return max(range(len(table)), key=lambda i: (table[i]["psnr"], -i))


def format_grid_table(name: str, table: list[dict], best: int | None = None) -> str:
    """A plain-text table of a tuning grid (``*`` marks the chosen point, with a note when a chosen
    parameter lies on the edge of its grid)."""
    best = _best(table) if best is None else best
    lines = ["grid search for %s (mean PSNR / SSIM on the validation pairs):" % name]
    for i, row in enumerate(table):
        p = ", ".join("%s=%s" % kv for kv in row["params"].items())
        lines.append("  %s %-40s offset %+.4f  PSNR %6.2f dB  SSIM %.4f"
                     % ("*" if i == best else " ", p, row.get("offset", 0.0), row["psnr"], row["ssim"]))
    chosen = table[best]["params"]
    for key, val in chosen.items():
        values = sorted({row["params"][key] for row in table})
        if len(values) > 1 and val in (values[0], values[-1]):
            lines.append("  note: %s=%s is at the edge of its grid %s" % (key, val, values))
    return "\n".join(lines)
