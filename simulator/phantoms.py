"""Speckle-free echogenicity phantoms on a probe's image grid.

:func:`make_phantom` returns a :class:`~simulator.types.Phantom` whose grid is exactly the
probe's ``size`` x ``size`` output window (:meth:`Probe.image_window`).  ``echo`` is in [0, 1]
in the display mapping of the B-mode: a level ``e`` means ``(e - 1) * DR`` dB relative to the
brightest tissue (DR = the probe's display dynamic range, 50 dB by default), so a lesion of
``c`` dB contrast differs from its surroundings by ``c / DR`` in ``echo``; 0 is anechoic.

Phantoms (:data:`PHANTOM_NAMES`):

``mri``          an oblique slice of the MNI ICBM152 T1 template (``simulator.mri``) taken only
                 from the slabs of the requested ``split``, with random zoom, 3-D orientation,
                 position, in-plane elastic deformation, a random intensity -> echogenicity curve
                 (tissue classes get random echogenicities, monotone or not), optional smooth
                 gain variations and optional inserted lesions.
``cyst``         one anechoic disc in homogeneous tissue.
``lesions``      discs of chosen contrast(s) in dB (hypo- or hyperechoic) and radius.
``points``       wire targets (bright discs of about half a wavelength) in an anechoic medium;
                 their brightness varies like any scatterer's (the phantom is an echogenicity
                 map, not a set of deterministic reflectors).
``layers``       layered tissue with gently curved boundaries and random levels.
``homogeneous``  uniform tissue.

Masks: ``lesion_mask`` is the target region (union of lesions, the points, or the target
layer); ``background_mask`` is homogeneous tissue away from the targets (a ring around each
lesion, the medium around the wires, a neighbouring layer, or the whole field for
``homogeneous``) inside the probe's valid field of view, suitable for CNR / gCNR.  Per-target
labels (0 = none, k = target k) are in ``meta["labels"]``.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
from scipy import ndimage

from . import mri
from .types import Phantom

PHANTOM_NAMES: tuple[str, ...] = ("mri", "cyst", "lesions", "points", "layers", "homogeneous")
MIN_SIZE = 16
TISSUE_ECHO = 0.7  # default homogeneous tissue level (-15 dB at DR = 50 dB)


# --------------------------------------------------------------------------- helpers
def _grid(probe, size: int) -> tuple[np.ndarray, np.ndarray, float, float, tuple[float, float]]:
    """Pixel-centre coordinates (X, Z) in mm of the probe's window, plus x0, z0, spacing."""
    x0, z0, (dz, dx) = probe.image_window(size)
    x = x0 + dx * np.arange(size)
    z = z0 + dz * np.arange(size)
    xx, zz = np.meshgrid(x, z)
    return xx, zz, x0, z0, (dz, dx)


def _field(probe, xx: np.ndarray, zz: np.ndarray) -> np.ndarray:
    return np.asarray(probe.in_field(xx, zz), dtype=bool)


def _disc(xx, zz, cx, cz, r, ratio: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """Normalised elliptical radius (1 on the edge) of an ellipse of semi-axes r, r*ratio."""
    c, s = np.cos(angle), np.sin(angle)
    u = (xx - cx) * c + (zz - cz) * s
    v = -(xx - cx) * s + (zz - cz) * c
    return np.sqrt((u / r) ** 2 + (v / (r * ratio)) ** 2)


def _rings(rho_list: list[np.ndarray], inner: float = 1.4, outer: float = 2.1) -> np.ndarray:
    """Union of rings inner < rho < outer around every target, excluding all targets' halos."""
    ring = np.zeros(rho_list[0].shape, bool)
    halo = np.zeros_like(ring)
    for rho in rho_list:
        ring |= (rho > inner) & (rho < outer)
        halo |= rho <= inner
    return ring & ~halo


def _finish(name, echo, lesion_labels, background, field, x0, z0, spacing, meta) -> Phantom:
    labels = np.where(field, lesion_labels, 0).astype(np.int16)
    meta = dict(meta)
    meta["labels"] = labels
    return Phantom(
        echo=np.clip(echo, 0.0, 1.0).astype(np.float32),
        spacing_mm=(float(spacing[0]), float(spacing[1])),
        x0_mm=float(x0),
        z0_mm=float(z0),
        lesion_mask=labels > 0,
        background_mask=background & field & (labels == 0),
        name=name,
        meta=meta,
    )


def _contrast_to_level(base: float, contrast_db: float, dr_db: float) -> float:
    """Echo level of a target ``contrast_db`` above ``base`` (-inf dB = anechoic)."""
    if not np.isfinite(contrast_db):
        return 0.0
    return float(np.clip(base + contrast_db / dr_db, 0.0, 1.0))


# --------------------------------------------------------------------------- analytic phantoms
def _homogeneous(probe, size, rng, level: float = TISSUE_ECHO) -> Phantom:
    xx, zz, x0, z0, sp = _grid(probe, size)
    field = _field(probe, xx, zz)
    echo = np.full(xx.shape, float(level))
    return _finish("homogeneous", echo, np.zeros(xx.shape, int), field.copy(), field, x0, z0, sp,
                   {"level": float(level)})


def _lesion_phantom(name, probe, size, contrasts_db, radius_mm, level, centers_mm) -> Phantom:
    xx, zz, x0, z0, sp = _grid(probe, size)
    field = _field(probe, xx, zz)
    dr = float(probe.dynamic_range_db)
    contrasts = [float(c) for c in np.atleast_1d(contrasts_db)]
    span_x = xx[0, -1] - xx[0, 0]
    span_z = zz[-1, 0] - zz[0, 0]
    n = len(contrasts)
    if radius_mm is None:
        radius_mm = min(span_z * 0.18, span_x * 0.36 / n)
    radius_mm = float(radius_mm)
    if not radius_mm > 0:
        raise ValueError(f"lesion radius must be > 0 mm, got {radius_mm}")
    if centers_mm is None:
        cz = zz[0, 0] + span_z / 2
        centers_mm = [(xx[0, 0] + span_x * (k + 0.5) / n, cz) for k in range(n)]
    if len(centers_mm) != n:
        raise ValueError(f"got {len(centers_mm)} lesion centres for {n} contrasts")
    echo = np.full(xx.shape, float(level))
    labels = np.zeros(xx.shape, int)
    rhos = []
    lesions = []
    for k, (c_db, (cx, cz)) in enumerate(zip(contrasts, centers_mm), start=1):
        rho = _disc(xx, zz, cx, cz, radius_mm)
        inside = rho <= 1.0
        echo[inside] = _contrast_to_level(level, c_db, dr)
        labels[inside] = k
        rhos.append(rho)
        lesions.append({"center_mm": (float(cx), float(cz)), "radius_mm": radius_mm, "contrast_db": c_db})
    background = _rings(rhos)
    return _finish(name, echo, labels, background, field, x0, z0, sp, {"level": float(level), "lesions": lesions})


def _cyst(probe, size, rng, radius_mm: float | None = None, level: float = TISSUE_ECHO, center_mm=None) -> Phantom:
    centers = None if center_mm is None else [tuple(center_mm)]
    return _lesion_phantom("cyst", probe, size, [-np.inf], radius_mm, level, centers)


def _lesions(probe, size, rng, contrast_db: float | Sequence[float] = (-6.0, 6.0), radius_mm: float | None = None,
             level: float = TISSUE_ECHO, centers_mm=None) -> Phantom:
    return _lesion_phantom("lesions", probe, size, contrast_db, radius_mm, level, centers_mm)


def _points(probe, size, rng, n_lateral: int = 3, n_depth: int = 3, level: float = 1.0,
            background_level: float = 0.0, radius_mm: float | None = None) -> Phantom:
    xx, zz, x0, z0, sp = _grid(probe, size)
    field = _field(probe, xx, zz)
    if radius_mm is None:  # about one full-path scatterer cell, so that every wire echoes
        radius_mm = max(0.75 * max(sp), 0.5 * probe.wavelength_mm)
    span_x = xx[0, -1] - xx[0, 0]
    span_z = zz[-1, 0] - zz[0, 0]
    echo = np.full(xx.shape, float(background_level))
    labels = np.zeros(xx.shape, int)
    rhos, wires = [], []
    k = 0
    for i in range(n_depth):
        for j in range(n_lateral):
            k += 1
            cx = xx[0, 0] + span_x * (j + 0.5) / n_lateral
            cz = zz[0, 0] + span_z * (i + 0.5) / n_depth
            rho = _disc(xx, zz, cx, cz, radius_mm)
            inside = rho <= 1.0
            echo[inside] = level
            labels[inside] = k
            rhos.append(rho)
            wires.append((float(cx), float(cz)))
    # background: the medium at least 4 wire radii (and 3 pixels) from any wire
    min_px = 3.0 * max(sp) / radius_mm
    background = _rings(rhos, inner=max(4.0, min_px), outer=np.inf)
    return _finish("points", echo, labels, background, field, x0, z0, sp,
                   {"wires_mm": wires, "radius_mm": float(radius_mm)})


def _layers(probe, size, rng, n_layers: int | None = None, levels: Sequence[float] | np.ndarray | None = None,
            target_layer: int | None = None) -> Phantom:
    xx, zz, x0, z0, sp = _grid(probe, size)
    field = _field(probe, xx, zz)
    n = int(n_layers if n_layers is not None else (len(levels) if levels is not None else rng.integers(3, 6)))
    if n < 2:
        raise ValueError(f"layers needs at least 2 layers, got {n}")
    if levels is None:
        levels = rng.uniform(0.3, 0.95, n)
    levels = np.asarray(levels, float)
    if levels.shape != (n,):
        raise ValueError(f"got {levels.size} levels for {n} layers")
    span_x = xx[0, -1] - xx[0, 0]
    span_z = zz[-1, 0] - zz[0, 0]
    # boundaries: sorted random depths, each gently tilted and curved
    thickness_frac = 0.5 / n + 0.5 * rng.dirichlet(np.full(n, 2.0))
    fracs = np.cumsum(thickness_frac)[:-1]
    labels_layer = np.zeros(xx.shape, int)
    xn = (xx - xx[0, 0]) / max(span_x, 1e-9) - 0.5
    for k, f in enumerate(fracs):
        tilt = rng.uniform(-0.08, 0.08)
        bend = rng.uniform(-0.05, 0.05)
        zb = zz[0, 0] + span_z * (f + tilt * xn + bend * (xn ** 2 - 1 / 12))
        labels_layer[zz > zb] = k + 1
    echo = levels[labels_layer]
    thickness = np.array([(labels_layer == k).sum() for k in range(n)])
    if target_layer is None:
        target_layer = int(np.argmin(levels + 10.0 * (thickness < 0.05 * size * size)))
    if not 0 <= target_layer < n:
        raise ValueError(f"target_layer must be in 0..{n - 1}, got {target_layer}")
    erode = max(2, size // 32)
    target = ndimage.binary_erosion(labels_layer == target_layer, iterations=erode)
    neighbours = [k for k in (target_layer - 1, target_layer + 1) if 0 <= k < n]
    bg_layer = max(neighbours, key=lambda k: thickness[k])
    background = ndimage.binary_erosion(labels_layer == bg_layer, iterations=erode)
    return _finish("layers", echo, target.astype(int), background, field, x0, z0, sp,
                   {"levels": levels.tolist(), "layer_index": labels_layer.astype(np.int16),
                    "target_layer": target_layer, "background_layer": int(bg_layer)})


# --------------------------------------------------------------------------- MRI phantom
@functools.lru_cache(maxsize=8)
def _slab_coefficients(lo: int, hi: int) -> np.ndarray:
    """Cubic-spline coefficients of the MRI slab y in [lo, hi], computed from that slab only."""
    sub = np.ascontiguousarray(mri.load_volume()[:, lo:hi + 1, :])
    return ndimage.spline_filter(sub, order=3, mode="nearest", output=np.float32)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix drawn uniformly from SO(3) (columns: row axis, column axis, normal)."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
    ])


def _elastic_field(rng: np.random.Generator, size: int, amplitude_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random in-plane displacement (rows, cols) in pixels, max |d| <= amplitude_px."""
    if amplitude_px <= 0:
        z = np.zeros((size, size))
        return z, z
    n = 6
    coarse = rng.normal(size=(2, n, n))
    zoom = size / n
    out = []
    for k in range(2):
        d = ndimage.zoom(coarse[k], zoom, order=3, mode="nearest")[:size, :size]
        d = np.pad(d, ((0, size - d.shape[0]), (0, size - d.shape[1])), mode="edge")
        d *= amplitude_px / max(np.abs(d).max(), 1e-9)
        out.append(d)
    return out[0], out[1]


def _echo_curve(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random intensity -> echogenicity curve (knots): monotone up/down or non-monotone."""
    k = int(rng.integers(4, 9))
    t = np.concatenate([[0.0], np.sort(rng.uniform(0.05, 0.95, k - 2)), [1.0]])
    e = rng.uniform(0.1, 1.0, k)
    mode = rng.choice(["up", "down", "free"], p=[0.35, 0.2, 0.45])
    if mode == "up":
        e = np.sort(e)
    elif mode == "down":
        e = np.sort(e)[::-1]
    lo = rng.uniform(0.0, 0.45)
    hi = rng.uniform(max(lo + 0.3, 0.6), 1.0)
    e = lo + (e - e.min()) / max(np.ptp(e), 1e-9) * (hi - lo)
    return t, e


def _mri(probe, size, rng, split: str = "train", lesions: int | None = None,
         fov_vox: float | tuple[float, float] = (24.0, 90.0), elastic_px: float | None = None,
         lesion_contrast_db: float | None = None, dr_db: float | None = None) -> Phantom:
    xx, zz, x0, z0, sp = _grid(probe, size)
    field = _field(probe, xx, zz)
    dr = float(dr_db or probe.dynamic_range_db)
    slabs = mri.split_slabs(split)
    thick = np.array([hi - lo + 1 for lo, hi in slabs], float)
    slab_idx = int(rng.choice(len(slabs), p=thick / thick.sum()))
    lo, hi = slabs[slab_idx]
    vol = mri.load_volume()
    X, Y, Z = vol.shape
    if np.ndim(fov_vox):  # a (min, max) range to draw from
        fov = float(rng.uniform(*cast(tuple[float, float], fov_vox)))
    else:
        fov = float(cast(float, fov_vox))
    if elastic_px is None:
        elastic_px = float(rng.uniform(0.0, size / 24))
    dr_rows, dr_cols = _elastic_field(rng, size, elastic_px)
    margin_y = 1.0
    for _attempt in range(400):
        step = fov / size  # voxels per pixel
        rot = _random_rotation(rng)
        u, v = rot[:, 0], rot[:, 1]  # row (depth) axis, column (lateral) axis
        half = (size / 2 + elastic_px) * step
        ext_y = half * (abs(u[1]) + abs(v[1]))
        room = (hi - lo) / 2 - ext_y - margin_y
        if room < 0:
            if _attempt % 20 == 19:
                fov *= 0.85  # zoom in until an oblique plane fits in the slab
            continue
        cy = (lo + hi) / 2 + rng.uniform(-room, room)
        ext_x = half * (abs(u[0]) + abs(v[0]))
        ext_z = half * (abs(u[2]) + abs(v[2]))
        cx = rng.uniform(ext_x, X - 1 - ext_x) if X - 1 > 2 * ext_x else (X - 1) / 2
        cz = rng.uniform(ext_z, Z - 1 - ext_z) if Z - 1 > 2 * ext_z else (Z - 1) / 2
        # reject planes that are mostly outside the head (coarse check on a 16 x 16 grid)
        g = (np.arange(16) - 7.5) * (size / 16) * step
        pts = np.array([cx, cy, cz])[:, None, None] + u[:, None, None] * g[:, None] + v[:, None, None] * g[None, :]
        pts[1] = np.clip(pts[1], lo, hi)
        inside = ndimage.map_coordinates(vol, pts.reshape(3, -1), order=0, mode="nearest") > 0.12
        if inside.mean() >= 0.85:
            break
    else:
        raise RuntimeError("could not place an MRI slice inside the slab")  # pragma: no cover
    rows = (np.arange(size) - (size - 1) / 2)[:, None] + dr_rows
    cols = (np.arange(size) - (size - 1) / 2)[None, :] + dr_cols
    coords = np.array([cx, cy, cz])[:, None, None] + step * (u[:, None, None] * rows + v[:, None, None] * cols)
    coords[1] = np.clip(coords[1], lo, hi)  # guaranteed inside the slab, whatever the deformation
    y_range = (float(coords[1].min()), float(coords[1].max()))
    coords[1] -= lo
    t1 = ndimage.map_coordinates(_slab_coefficients(lo, hi), coords.reshape(3, -1), order=3,
                                 mode="nearest", prefilter=False).reshape(size, size)
    t1 = np.clip(t1, 0.0, 1.0)
    knots_t, knots_e = _echo_curve(rng)
    echo = np.interp(t1, knots_t, knots_e)
    if rng.random() < 0.5:  # smooth gain inhomogeneity of a few dB
        gain_db = _elastic_field(rng, size, 1.0)[0] * rng.uniform(1.0, 4.0)
        echo = echo + gain_db / dr
    echo = np.clip(echo, 0.0, 1.0)

    n_les = int(lesions) if lesions is not None else int(rng.choice([0, 1, 2], p=[0.5, 0.35, 0.15]))
    labels = np.zeros((size, size), int)
    rhos, info = [], []
    span = xx[0, -1] - xx[0, 0]
    for k in range(1, n_les + 1):
        for _ in range(100):
            r = rng.uniform(0.05, 0.14) * span
            ratio = rng.uniform(0.7, 1.3)
            ang = rng.uniform(0, np.pi)
            cxm = rng.uniform(xx[0, 0] + 1.6 * r, xx[0, -1] - 1.6 * r)
            czm = rng.uniform(zz[0, 0] + 1.6 * r, zz[-1, 0] - 1.6 * r)
            rho = _disc(xx, zz, cxm, czm, r, ratio, ang)
            ok = field[rho <= 1.0].all() and not (labels[rho <= 2.0] > 0).any()
            if ok:
                break
        else:
            break
        if lesion_contrast_db is not None:
            c_db = float(lesion_contrast_db)
        elif rng.random() < 0.2:
            c_db = -np.inf
        else:
            c_db = float(rng.choice([-1, 1]) * rng.uniform(3.0, 12.0))
        ring = (rho > 1.4) & (rho < 2.1)
        base = float(echo[ring].mean())
        level = _contrast_to_level(base, c_db, dr)
        inside = rho <= 1.0
        edge = np.clip((1.0 - rho) * r / max(sp) + 0.5, 0.0, 1.0)  # ~1 pixel anti-aliased edge
        echo = echo * (1 - edge) + level * edge
        labels[inside] = k
        rhos.append(rho)
        info.append({"center_mm": (float(cxm), float(czm)), "radius_mm": float(r), "axis_ratio": float(ratio),
                     "angle_rad": float(ang), "contrast_db": c_db, "level": level})
    background = _rings(rhos) if rhos else np.zeros((size, size), bool)
    meta = {"split": split, "slab": (int(lo), int(hi)), "y_range_vox": y_range, "fov_vox": float(fov),
            "center_vox": (float(cx), float(cy), float(cz)), "row_axis": u.tolist(), "col_axis": v.tolist(),
            "elastic_px": float(elastic_px), "curve_t": knots_t.tolist(), "curve_e": knots_e.tolist(),
            "lesions": info}
    return _finish("mri", echo, labels, background, field, x0, z0, sp, meta)


_BUILDERS: dict[str, Callable[..., Phantom]] = {
    "mri": _mri,
    "cyst": _cyst,
    "lesions": _lesions,
    "points": _points,
    "layers": _layers,
    "homogeneous": _homogeneous,
}


def make_phantom(name: str, probe, size: int = 128, seed: int = 0, split: str = "train", **kw: Any) -> Phantom:
    """Build phantom ``name`` covering ``probe.image_window(size)``; all randomness from ``seed``.

    ``split`` ("train" | "val" | "test") selects the MRI slabs (ignored by analytic phantoms).
    Extra keywords go to the phantom (e.g. ``radius_mm``, ``contrast_db``, ``level``,
    ``lesions``, ``fov_vox``).  Raises ValueError for an unknown name, a size below 16 or
    invalid keywords.
    """
    key = str(name).strip().lower()
    if key not in _BUILDERS:
        raise ValueError(f"unknown phantom {name!r}; valid phantoms: {', '.join(PHANTOM_NAMES)}")
    if int(size) != size or size < MIN_SIZE:
        raise ValueError(f"phantom size must be an integer >= {MIN_SIZE} pixels, got {size!r}")
    if split not in mri.SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(mri.SPLITS)}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x9A47]))
    if key == "mri":
        kw["split"] = split
    allowed = list(inspect.signature(_BUILDERS[key]).parameters)[3:]
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise ValueError(f"phantom {key!r} has no option(s) {', '.join(unknown)}; options: {', '.join(allowed)}")
    ph = _BUILDERS[key](probe, int(size), rng, **kw)
    ph.meta.setdefault("seed", int(seed))
    return ph
