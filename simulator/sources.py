"""Echogenicity sources for domain-randomised training pairs (:mod:`simulator.randomized`).

Every source returns an echogenicity map ``I`` in [0, 1] of a requested shape (1 = brightest tissue,
0 = anechoic), all randomness from the caller's generator:

* ``mri``: an MNI-template slice of the requested split (:func:`simulator.phantoms.make_phantom`);
* ``natural``: a scikit-image bundled picture from :data:`TRAIN_IMAGES` (the foreign validation sets
  use a disjoint list, :data:`simulator.anatomy.NATURAL_IMAGES`), random crop, zoom, flip, rotation by
  a multiple of 90 degrees and a random monotone or folded intensity curve;
* ``procedural``: layered random shapes (soft-edged ellipses and polygons, bright and dark curves,
  oriented gratings, cellular Voronoi texture, smooth multi-scale noise, points), drawn with code of
  its own (not :mod:`simulator.anatomy`).

:func:`draw_source` picks one by the weights given (a mix of two sources is also drawn).
"""
from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

SOURCES: tuple[str, ...] = ("mri", "natural", "procedural")
DEFAULT_WEIGHTS = {"mri": 0.3, "natural": 0.3, "procedural": 0.4}
TRAIN_IMAGES: tuple[str, ...] = ("astronaut", "camera", "chelsea", "coffee", "grass", "horse", "hubble_deep_field",
                                 "immunohistochemistry", "microaneurysms", "page", "rocket", "text", "clock",
                                 "logo", "shepp_logan_phantom")


@functools.lru_cache(maxsize=len(TRAIN_IMAGES))
def _picture(name: str) -> np.ndarray:
    from skimage import color, data

    img = np.asarray(getattr(data, name)(), float)
    if img.ndim == 3:
        img = color.rgb2gray(img[..., :3]) if img.shape[-1] >= 3 else img[..., 0]
    img = (img - img.min()) / max(float(np.ptp(img)), 1e-12)
    img.setflags(write=False)
    return img


def _curve(rng: np.random.Generator, v: np.ndarray) -> np.ndarray:
    """A random intensity curve: monotone (up or down) or folded, mapped to a random sub-range."""
    k = int(rng.integers(3, 7))
    t = np.concatenate([[0.0], np.sort(rng.uniform(0.05, 0.95, k - 2)), [1.0]])
    e = rng.uniform(0, 1, k)
    mode = rng.choice(3, p=[0.45, 0.2, 0.35])
    if mode == 0:
        e = np.sort(e)
    elif mode == 1:
        e = np.sort(e)[::-1]
    lo = rng.uniform(0.0, 0.4)
    hi = rng.uniform(max(lo + 0.3, 0.65), 1.0)
    e = lo + (e - e.min()) / max(float(np.ptp(e)), 1e-9) * (hi - lo)
    return np.interp(v, t, e)


def _fit(img: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, zoom=(0.25, 1.0)) -> np.ndarray:
    """Random crop of ``img`` at a random scale, resized to ``shape``."""
    h, w = shape
    H, W = img.shape
    frac = rng.uniform(*zoom)
    ch = int(np.clip(frac * min(H, W * h / w), 8, H))
    cw = int(np.clip(ch * w / h * np.exp(rng.uniform(-0.3, 0.3)), 8, W))
    y0, x0 = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
    crop = img[y0:y0 + ch, x0:x0 + cw]
    out = ndimage.zoom(crop, (h / crop.shape[0], w / crop.shape[1]), order=1, mode="nearest")
    out = np.pad(out[:h, :w], ((0, max(0, h - out.shape[0])), (0, max(0, w - out.shape[1]))), mode="edge")
    return out


def natural(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    img = _picture(TRAIN_IMAGES[int(rng.integers(len(TRAIN_IMAGES)))])
    img = np.rot90(img, int(rng.integers(4)))
    out = _fit(img, shape, rng)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.clip(_curve(rng, out), 0, 1)


def mri(shape: tuple[int, int], rng: np.random.Generator, split: str = "train") -> np.ndarray:
    from .phantoms import make_phantom
    from .probes import get_probe

    size = int(max(shape))
    size = max(32, min(size, 192))
    ph = make_phantom("mri", get_probe("L11-5v"), size=size, seed=int(rng.integers(2 ** 31)), split=split)
    echo = np.asarray(ph.echo, float)
    return np.clip(ndimage.zoom(echo, (shape[0] / size, shape[1] / size), order=1)[:shape[0], :shape[1]], 0, 1)


def _smooth(shape, sigma, rng):
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (n - n.mean()) / max(float(n.std()), 1e-12)


def _shape_mask(yy, xx, rng, h, w):
    """A soft-edged ellipse or polygon (0..1) somewhere in the frame."""
    cy, cx = rng.uniform(-0.1, 1.1) * h, rng.uniform(-0.1, 1.1) * w
    r = rng.uniform(0.04, 0.35) * min(h, w)
    soft = rng.uniform(0.3, 4.0)
    if rng.random() < 0.6:
        ratio, ang = np.exp(rng.uniform(-0.8, 0.8)), rng.uniform(0, np.pi)
        c, s = np.cos(ang), np.sin(ang)
        u = (xx - cx) * c + (yy - cy) * s
        v = (-(xx - cx) * s + (yy - cy) * c) * ratio
        d = np.hypot(u, v) - r
    else:
        n = int(rng.integers(3, 8))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = r * rng.uniform(0.6, 1.3, n)
        px, py = cx + rad * np.cos(ang), cy + rad * np.sin(ang)
        d = np.full(yy.shape, -np.inf)
        for i in range(n):  # signed distance to a convex-ish polygon: max over edge half-planes
            x1, y1, x2, y2 = px[i], py[i], px[(i + 1) % n], py[(i + 1) % n]
            nx, ny = y2 - y1, -(x2 - x1)
            norm = np.hypot(nx, ny) + 1e-9
            d = np.maximum(d, ((xx - x1) * nx + (yy - y1) * ny) / norm)
    return np.clip(0.5 - d / soft, 0, 1)


def _curve_line(yy, xx, rng, h, w):
    """A thin bright or dark smooth curve (0..1)."""
    t = np.linspace(0, 1, 200)
    pts_y = rng.uniform(0, h) + np.cumsum(rng.normal(0, h / 60, 200))
    pts_x = rng.uniform(-0.2, 0.2) * w + t * w * rng.uniform(0.5, 1.4) + np.cumsum(rng.normal(0, w / 120, 200))
    if rng.random() < 0.5:
        pts_y, pts_x = pts_x * h / w, pts_y * w / h
    mask = np.zeros(yy.shape)
    iy = np.clip(pts_y.astype(int), 0, h - 1)
    ix = np.clip(pts_x.astype(int), 0, w - 1)
    ok = (pts_y >= 0) & (pts_y < h) & (pts_x >= 0) & (pts_x < w)
    mask[iy[ok], ix[ok]] = 1.0
    width = rng.uniform(0.4, 3.0)
    m = ndimage.gaussian_filter(mask, width)
    return np.clip(m / max(float(m.max()), 1e-9), 0, 1)


def _grating(yy, xx, rng):
    ang = rng.uniform(0, np.pi)
    period = rng.uniform(2.0, 14.0)
    phase = (xx * np.cos(ang) + yy * np.sin(ang)) / period * 2 * np.pi
    warp = _smooth(yy.shape, rng.uniform(5, 20), rng) * rng.uniform(0, 3)
    g = 0.5 + 0.5 * np.sin(phase + warp)
    return g ** rng.uniform(1, 6)


def _voronoi(shape, rng):
    h, w = shape
    n = int(rng.integers(8, 80))
    seeds = rng.uniform(0, 1, (n, 2)) * [h, w]
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.stack([np.hypot(yy - sy, xx - sx) for sy, sx in seeds])
    part = np.sort(d, axis=0)
    levels = rng.uniform(0, 1, n)
    cell = levels[np.argmin(d, axis=0)]
    border = np.clip(1.0 - (part[1] - part[0]) / rng.uniform(0.8, 3.0), 0, 1)
    return cell, border


def procedural(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Layered random drawing (see the module docstring)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    base = rng.uniform(0.3, 0.9)
    img = base + rng.uniform(0, 0.15) * _smooth(shape, rng.uniform(2, 30), rng)
    if rng.random() < 0.5:  # multi-scale texture
        for s in (rng.uniform(0.7, 2), rng.uniform(3, 8)):
            img = img + rng.uniform(0, 0.08) * _smooth(shape, s, rng)
    if rng.random() < 0.35:
        cell, border = _voronoi(shape, rng)
        img = img * (1 - 0.6 * rng.random()) + rng.uniform(0.1, 0.5) * (cell - 0.5)
        if rng.random() < 0.5:
            img = img + rng.choice([-1, 1]) * rng.uniform(0.1, 0.4) * border
    if rng.random() < 0.4:
        img = img + rng.choice([-1, 1]) * rng.uniform(0.05, 0.3) * _grating(yy, xx, rng)
    if rng.random() < 0.5:  # layers with smooth boundaries
        n = int(rng.integers(1, 4))
        for _ in range(n):
            z0 = rng.uniform(0, h)
            bnd = z0 + rng.uniform(0, h / 6) * _smooth((1, w), rng.uniform(5, 40), rng)[0]
            below = np.clip((yy - bnd[None, :]) / rng.uniform(0.3, 3), -0.5, 0.5) + 0.5
            img = img * (1 - below) + (img + rng.uniform(-0.4, 0.4)) * below
    for _ in range(int(rng.integers(0, 6))):
        m = _shape_mask(yy, xx, rng, h, w)
        level = 0.0 if rng.random() < 0.2 else rng.uniform(0.05, 1.0)
        img = img * (1 - m) + level * m
    for _ in range(int(rng.integers(0, 4))):
        m = _curve_line(yy, xx, rng, h, w)
        img = img * (1 - m) + (1.0 if rng.random() < 0.7 else rng.uniform(0, 0.2)) * m
    if rng.random() < 0.3:  # point targets
        for _ in range(int(rng.integers(1, 12))):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            r = rng.uniform(0.5, 2.5)
            img = np.maximum(img, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) * rng.uniform(0.8, 1.0))
    return np.clip(img, 0, 1)


def draw_source(shape: tuple[int, int], rng: np.random.Generator, weights: dict[str, float] | None = None,
                split: str = "train") -> tuple[np.ndarray, str]:
    """An echogenicity map of ``shape`` from a source drawn by ``weights`` (default
    :data:`DEFAULT_WEIGHTS`); one time in five two sources are blended through a smooth mask."""
    weights = dict(weights or DEFAULT_WEIGHTS)
    names = [k for k in SOURCES if weights.get(k, 0) > 0]
    if not names:
        raise ValueError(f"no echogenicity source enabled (weights {weights})")
    p = np.array([weights[k] for k in names], float)
    p /= p.sum()

    def one() -> tuple[np.ndarray, str]:
        name = str(rng.choice(names, p=p))
        if name == "mri":
            return mri(shape, rng, split), name
        if name == "natural":
            return natural(shape, rng), name
        return procedural(shape, rng), name

    a, na = one()
    if len(names) > 1 and rng.random() < 0.2:
        b, nb = one()
        m = np.clip(0.5 + _smooth(shape, rng.uniform(8, 30), rng) * rng.uniform(0.5, 3), 0, 1)
        return a * m + b * (1 - m), f"{na}+{nb}"
    return a, na
