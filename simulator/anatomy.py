"""Procedural anatomy for the foreign validation sets: echogenicity scenes that are not the MNI template.

Used only by :mod:`simulator.foreign` (never by training-data generation): each scene is drawn in
physical millimetres at whatever grid the caller gives, so structures keep realistic sizes whatever
the probe or pixel pitch.  A scene is an echogenicity map in **dB relative to the brightest tissue**
(``<= 0``; anechoic content sits at :data:`FLOOR_DB`) plus a lesion mask and a background mask
(homogeneous tissue around the lesions, for CNR / gCNR) when the scene has lesions.

Kinds (:data:`SCENES`):

``superficial``  skin, subcutaneous fat with bright septa, fascia, muscle with oblique fibre
                 striations, an in-plane vessel with bright walls, sometimes a bone surface with
                 its acoustic shadow.
``organ``        parenchyma with multi-scale texture behind a bright capsule, vessels (some with
                 bright walls), irregular hypo- or hyperechoic lesions, a cyst with posterior
                 enhancement, a calcification with a shadow.
``tendon``       a fibrillar tendon (dense wavy bright lines) between hypoechoic tissue, over a
                 cortical bone line.
``gland``        a fine-textured gland with nodules (halo, calcifications) and a vessel.

:func:`natural_scene` maps a held-out natural image (scikit-image's bundled ``brick``, ``gravel``,
``moon``, ``coins``, ``retina`` and ``cell``, none of which training uses) through a random
monotone curve to dB.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

FLOOR_DB = -60.0
SCENES: tuple[str, ...] = ("superficial", "organ", "tendon", "gland")
NATURAL_IMAGES: tuple[str, ...] = ("brick", "gravel", "moon", "coins", "retina", "cell")


@dataclass
class Scene:
    """An echogenicity scene on the caller's grid: ``db`` (H, W) <= 0, masks (H, W) bool."""

    db: np.ndarray
    lesion_mask: np.ndarray
    background_mask: np.ndarray
    kind: str
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- drawing helpers
def _noise(shape: tuple[int, int], sigma_px: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Smooth Gaussian noise of unit standard deviation."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_px, mode="reflect")
    return (n - n.mean()) / max(float(n.std()), 1e-12)


def _px(mm: float, step: float) -> float:
    return max(mm / step, 0.3)


def _curve(x: np.ndarray, rng: np.random.Generator, amp_mm: float, span_mm: float) -> np.ndarray:
    """A smooth random curve z(x) (mm) of amplitude about ``amp_mm``."""
    out = np.zeros_like(x, dtype=float)
    for k in range(1, 4):
        out += rng.normal(0, amp_mm / k) * np.sin(2 * np.pi * k * x / (span_mm * rng.uniform(0.8, 2.0))
                                                  + rng.uniform(0, 2 * np.pi))
    return out


def _band(dist_mm: np.ndarray, half_width_mm: float, step: float) -> np.ndarray:
    """Anti-aliased indicator of |dist| < half width (a line of that thickness)."""
    return np.clip(half_width_mm / step - np.abs(dist_mm) / step + 0.5, 0.0, 1.0)


def _blob(xx, zz, cx, cz, r_mm, rng, irregular: float, ratio: float = 1.0, angle: float = 0.0):
    """Normalised radius (1 on the edge) of an ellipse with a random lobed boundary."""
    c, s = np.cos(angle), np.sin(angle)
    u = (xx - cx) * c + (zz - cz) * s
    v = (-(xx - cx) * s + (zz - cz) * c) / ratio
    phi = np.arctan2(v, u)
    edge = np.ones_like(phi)
    for k in range(2, 7):
        edge += irregular * rng.normal(0, 1.0 / k) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    return np.hypot(u, v) / (r_mm * np.clip(edge, 0.5, 1.6))


def _paint(db: np.ndarray, mask: np.ndarray, level_db) -> np.ndarray:
    """Blend ``level_db`` into ``db`` with the soft mask (0..1)."""
    return db * (1 - mask) + np.asarray(level_db) * mask


def _soft(rho: np.ndarray, step: float, r_mm: float) -> np.ndarray:
    return np.clip((1.0 - rho) * r_mm / step + 0.5, 0.0, 1.0)


def _shadow(db: np.ndarray, xx, zz, cx, cz, half_w_mm, depth_db: float, step: float) -> np.ndarray:
    """Darken (depth_db < 0: shadow) or brighten (> 0: enhancement) the column below (cx, cz)."""
    below = (zz > cz) * np.clip(half_w_mm / step - np.abs(xx - cx) / step + 0.5, 0, 1)
    fade = np.exp(-np.clip(zz - cz, 0, None) / (40.0 * half_w_mm))
    return db + depth_db * below * fade


def _fibres(xx, zz, rng, spacing_mm: float, width_mm: float, angle: float, wave_mm: float, step: float):
    """Bright parallel fibres (0..1) at ``angle`` with random gaps and waviness."""
    s = -xx * np.sin(angle) + zz * np.cos(angle)
    along = xx * np.cos(angle) + zz * np.sin(angle)
    s = s + wave_mm * np.sin(2 * np.pi * along / rng.uniform(3.0, 9.0) + rng.uniform(0, 6.3))
    lo, hi = float(s.min()) - spacing_mm, float(s.max()) + spacing_mm
    centres = np.cumsum(rng.exponential(spacing_mm, int((hi - lo) / spacing_mm * 2) + 4)) + lo
    centres = centres[centres < hi]
    out = np.zeros_like(xx)
    strength = rng.uniform(0.4, 1.0, centres.size)
    for c0, a in zip(centres, strength):
        near = np.abs(s - c0) < 3 * width_mm + step
        if near.any():
            out[near] = np.maximum(out[near], a * _band(s[near] - c0, width_mm, step))
    # fibres are interrupted: modulate by a smooth random field along their length
    return out * np.clip(0.6 + 0.5 * _noise(xx.shape, (_px(0.6, step), _px(2.5, step)), rng), 0, 1)


def _rings(rhos: list[np.ndarray], inner: float = 1.5, outer: float = 2.3) -> np.ndarray:
    ring = np.zeros(rhos[0].shape, bool)
    halo = np.zeros_like(ring)
    for rho in rhos:
        ring |= (rho > inner) & (rho < outer)
        halo |= rho <= inner
    return ring & ~halo


# --------------------------------------------------------------------------- scenes
def _superficial(xx, zz, rng, step):
    x0, z0 = xx[0, 0], zz[0, 0]
    span_x, span_z = xx[0, -1] - x0, zz[-1, 0] - z0
    x = xx[0]
    db = np.full(xx.shape, -20.0)
    # layer boundaries (depth from the top of the window)
    t = np.sort(rng.uniform(0.05, 0.95, 3)) * span_z
    b_skin = z0 + t[0] * 0.35 + _curve(x, rng, 0.05 * span_z, span_x)
    b_fat = z0 + t[1] * 0.7 + _curve(x, rng, 0.06 * span_z, span_x)
    b_fascia = b_fat + rng.uniform(0.02, 0.08) * span_z
    zb = [b[None, :] * np.ones((xx.shape[0], 1)) for b in (b_skin, b_fat, b_fascia)]
    skin, fat = zz < zb[0], (zz >= zb[0]) & (zz < zb[1])
    db[skin] = rng.uniform(-8, -2)
    fat_db = rng.uniform(-32, -24)
    db[fat] = fat_db + 2.0 * _noise(xx.shape, (_px(0.8, step),) * 2, rng)[fat]
    septa = _fibres(xx, zz, rng, rng.uniform(1.0, 2.5), rng.uniform(0.05, 0.12), rng.uniform(-0.5, 0.5), 0.6, step)
    db = np.where(fat, _paint(db, septa * 0.9, fat_db + rng.uniform(14, 22)), db)
    muscle = zz >= zb[1]
    m_db = rng.uniform(-22, -14)
    fib = _fibres(xx, zz, rng, rng.uniform(0.4, 1.2), rng.uniform(0.06, 0.15), rng.uniform(-0.45, 0.45), 0.3, step)
    db = np.where(muscle, m_db - 3 + 9 * fib + 1.5 * _noise(xx.shape, (_px(1.0, step),) * 2, rng), db)
    for b in (zb[1], zb[2]):  # the fascia and an intermuscular septum: thin bright lines
        db = _paint(db, _band(zz - b, rng.uniform(0.12, 0.3), step) * 0.85, rng.uniform(-6, -1))
    meta = {"layers_mm": [float(np.mean(b)) for b in (b_skin, b_fat, b_fascia)]}
    lesion = np.zeros(xx.shape, bool)
    background = np.zeros(xx.shape, bool)
    if rng.random() < 0.8:  # an in-plane vessel in the muscle
        zc = float(np.mean(b_fascia)) + rng.uniform(0.25, 0.6) * (z0 + span_z - float(np.mean(b_fascia)))
        r = rng.uniform(0.04, 0.12) * span_z
        centre = zc + _curve(x, rng, 0.04 * span_z, span_x)[None, :] + rng.uniform(-0.1, 0.1) * (xx - xx.mean())
        d = zz - centre
        lumen = _band(d, r, step)
        wall = _band(np.abs(d) - r - 0.15, 0.15, step)
        db = _paint(db, lumen, FLOOR_DB)
        db = _paint(db, wall * 0.9, rng.uniform(-8, -2))
        meta["vessel_mm"] = [float(zc), float(r)]
    if rng.random() < 0.4:  # bone surface with its shadow
        zb_bone = z0 + span_z * rng.uniform(0.8, 0.92) + _curve(x, rng, 0.04 * span_z, span_x)
        dist = zz - zb_bone[None, :]
        db = _paint(db, _band(dist, 0.25, step), -1.0)
        db = np.where(dist > 0.25, FLOOR_DB + 10 + 3 * _noise(xx.shape, (_px(1, step),) * 2, rng), db)
    return db, lesion, background, meta


def _organ(xx, zz, rng, step):
    x0, z0 = xx[0, 0], zz[0, 0]
    span_x, span_z = xx[0, -1] - x0, zz[-1, 0] - z0
    x = xx[0]
    base = rng.uniform(-20, -12)
    tex = (2.5 * _noise(xx.shape, (_px(0.5, step),) * 2, rng) + 2.0 * _noise(xx.shape, (_px(2.5, step),) * 2, rng)
           + 1.5 * _noise(xx.shape, (_px(8, step),) * 2, rng))
    db = base + rng.uniform(0.5, 1.0) * tex
    cap = z0 + span_z * rng.uniform(0.08, 0.3) + _curve(x, rng, 0.08 * span_z, span_x)
    above = zz < cap[None, :]
    db = np.where(above, rng.uniform(-26, -18) + 3 * _noise(xx.shape, (_px(1.5, step),) * 2, rng), db)
    db = _paint(db, _band(zz - cap[None, :], rng.uniform(0.15, 0.35), step), rng.uniform(-4, 0))
    lesion = np.zeros(xx.shape, bool)
    rhos = []
    info = []
    occupied = np.zeros(xx.shape, bool)
    inside = ~above

    def place(r):
        for _ in range(60):
            cx = rng.uniform(x0 + 1.8 * r, x0 + span_x - 1.8 * r)
            cz = (rng.uniform(float(cap.max()) + 1.8 * r, z0 + span_z - 1.8 * r)
                  if z0 + span_z - 1.8 * r > cap.max() + 1.8 * r else z0 + span_z * 0.7)
            rho = np.hypot(xx - cx, zz - cz) / r
            if not occupied[rho < 2.4].any() and inside[rho < 1.2].all():
                return cx, cz
        return None

    for _ in range(int(rng.integers(1, 4))):  # vessels: anechoic cross-sections, some with bright walls
        r = rng.uniform(0.03, 0.09) * min(span_x, span_z)
        pos = place(r)
        if pos is None:
            continue
        cx, cz = pos
        rho = _blob(xx, zz, cx, cz, r, rng, 0.05, rng.uniform(0.6, 1.0), rng.uniform(0, np.pi))
        db = _paint(db, _soft(rho, step, r), FLOOR_DB)
        if rng.random() < 0.6:
            db = _paint(db, _band((rho - 1.0) * r - 0.15, 0.15, step) * 0.8, rng.uniform(-6, -1))
        occupied |= rho < 1.5
    for _k in range(int(rng.integers(1, 3))):  # solid lesions
        r = rng.uniform(0.08, 0.18) * min(span_x, span_z)
        pos = place(r)
        if pos is None:
            continue
        cx, cz = pos
        rho = _blob(xx, zz, cx, cz, r, rng, rng.uniform(0.1, 0.35), rng.uniform(0.7, 1.3), rng.uniform(0, np.pi))
        c_db = float(rng.choice([-1, 1]) * rng.uniform(4, 14))
        les_tex = 1.5 * _noise(xx.shape, (_px(0.7, step),) * 2, rng)
        db = _paint(db, _soft(rho, step, r), base + c_db + les_tex)
        if rng.random() < 0.4:  # hypoechoic halo
            db = _paint(db, _band((rho - 1.0) * r - 0.3, 0.3, step) * 0.8, base - 10)
        lesion |= rho <= 0.9
        rhos.append(rho)
        occupied |= rho < 1.6
        info.append({"center_mm": [float(cx), float(cz)], "radius_mm": float(r), "contrast_db": c_db})
    if rng.random() < 0.6:  # a cyst with posterior enhancement
        r = rng.uniform(0.06, 0.14) * min(span_x, span_z)
        pos = place(r)
        if pos is not None:
            cx, cz = pos
            rho = _blob(xx, zz, cx, cz, r, rng, 0.05)
            db = _shadow(db, xx, zz, cx, cz + r, r * 0.9, rng.uniform(2, 5), step)
            db = _paint(db, _soft(rho, step, r), FLOOR_DB)
            occupied |= rho < 1.5
    if rng.random() < 0.4:  # a calcification with a shadow
        r = rng.uniform(0.3, 0.8)
        pos = place(r)
        if pos is not None:
            cx, cz = pos
            db = _shadow(db, xx, zz, cx, cz, r, -rng.uniform(10, 25), step)
            db = _paint(db, _soft(np.hypot(xx - cx, zz - cz) / r, step, r), 0.0)
    background = _rings(rhos) & ~occupied if rhos else np.zeros(xx.shape, bool)
    return db, lesion, background, {"lesions": info}


def _tendon(xx, zz, rng, step):
    x0, z0 = xx[0, 0], zz[0, 0]
    span_x, span_z = xx[0, -1] - x0, zz[-1, 0] - z0
    x = xx[0]
    db = rng.uniform(-26, -18) + 2.5 * _noise(xx.shape, (_px(1.0, step),) * 2, rng)
    top = z0 + span_z * rng.uniform(0.15, 0.35) + _curve(x, rng, 0.05 * span_z, span_x)
    bottom = top + span_z * rng.uniform(0.3, 0.5) + _curve(x, rng, 0.04 * span_z, span_x)
    inside = (zz > top[None, :]) & (zz < bottom[None, :])
    angle = rng.uniform(-0.15, 0.15)
    fib = _fibres(xx, zz, rng, rng.uniform(0.2, 0.45), rng.uniform(0.04, 0.08), angle, 0.15, step)
    t_db = rng.uniform(-16, -10)
    db = np.where(inside, t_db - 6 + 12 * fib, db)
    for b in (top, bottom):
        db = _paint(db, _band(zz - b[None, :], 0.12, step) * 0.7, -4.0)
    bone = bottom + span_z * rng.uniform(0.1, 0.3)
    dist = zz - bone[None, :]
    db = _paint(db, _band(dist, 0.3, step), -0.5)
    db = np.where(dist > 0.3, FLOOR_DB + 8 + 3 * _noise(xx.shape, (_px(1, step),) * 2, rng), db)
    lesion = np.zeros(xx.shape, bool)
    return db, lesion, np.zeros(xx.shape, bool), {"tendon_mm": [float(top.mean()), float(bottom.mean())]}


def _gland(xx, zz, rng, step):
    x0, z0 = xx[0, 0], zz[0, 0]
    span_x, span_z = xx[0, -1] - x0, zz[-1, 0] - z0
    x = xx[0]
    base = rng.uniform(-14, -8)
    db = base + 1.5 * _noise(xx.shape, (_px(0.4, step),) * 2, rng) + 1.0 * _noise(xx.shape, (_px(3, step),) * 2, rng)
    muscle_top = z0 + span_z * rng.uniform(0.05, 0.2) + _curve(x, rng, 0.04 * span_z, span_x)
    strap = zz < muscle_top[None, :]
    fib = _fibres(xx, zz, rng, rng.uniform(0.5, 1.0), 0.08, rng.uniform(-0.2, 0.2), 0.2, step)
    db = np.where(strap, -24 + 8 * fib, db)
    lesion = np.zeros(xx.shape, bool)
    rhos, info = [], []
    for _ in range(int(rng.integers(1, 3))):
        r = rng.uniform(0.1, 0.2) * min(span_x, span_z)
        cx = rng.uniform(x0 + 1.7 * r, x0 + span_x - 1.7 * r)
        cz = rng.uniform(float(muscle_top.max()) + 1.7 * r,
                         max(z0 + span_z - 1.7 * r, float(muscle_top.max()) + 1.8 * r))
        rho = _blob(xx, zz, cx, cz, r, rng, rng.uniform(0.05, 0.25), rng.uniform(0.7, 1.2), rng.uniform(0, np.pi))
        if any(((rho < 2.3) & (o < 2.3)).any() for o in rhos):
            continue
        c_db = float(rng.uniform(-14, 4))
        db = _paint(db, _soft(rho, step, r), base + c_db + 2 * _noise(xx.shape, (_px(0.6, step),) * 2, rng))
        if rng.random() < 0.6:
            db = _paint(db, _band((rho - 1.0) * r, 0.25, step) * 0.9, base - 14)
        if rng.random() < 0.5:  # microcalcifications
            for _ in range(int(rng.integers(2, 7))):
                a, rr = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.7) * r
                px, pz = cx + rr * np.cos(a), cz + rr * np.sin(a)
                db = _paint(db, _soft(np.hypot(xx - px, zz - pz) / 0.15, step, 0.15), -1.0)
        lesion |= rho <= 0.9
        rhos.append(rho)
        info.append({"center_mm": [float(cx), float(cz)], "radius_mm": float(r), "contrast_db": c_db})
    if rng.random() < 0.7:  # a vessel (carotid-like) at one side
        r = rng.uniform(0.08, 0.14) * span_z
        cx = x0 + span_x * rng.choice([0.12, 0.88])
        cz = z0 + span_z * rng.uniform(0.45, 0.7)
        rho = np.hypot(xx - cx, zz - cz) / r
        db = _shadow(db, xx, zz, cx, cz + r, r, 3.0, step)
        db = _paint(db, _soft(rho, step, r), FLOOR_DB)
        db = _paint(db, _band((rho - 1.0) * r - 0.2, 0.2, step), -3.0)
    background = _rings(rhos) if rhos else np.zeros(xx.shape, bool)
    return db, lesion, background, {"nodules": info}


_SCENES = {"superficial": _superficial, "organ": _organ, "tendon": _tendon, "gland": _gland}


def tissue_scene(kind: str, xx_mm: np.ndarray, zz_mm: np.ndarray, rng: np.random.Generator) -> Scene:
    """Draw scene ``kind`` on the grid ``xx_mm``, ``zz_mm`` (meshgrid, mm; square pitch assumed
    only for anti-aliasing widths)."""
    if kind not in _SCENES:
        raise ValueError(f"unknown scene {kind!r}; valid scenes: {', '.join(SCENES)}")
    step = float(min(abs(xx_mm[0, 1] - xx_mm[0, 0]), abs(zz_mm[1, 0] - zz_mm[0, 0])))
    db, lesion, background, meta = _SCENES[kind](np.asarray(xx_mm, float), np.asarray(zz_mm, float), rng, step)
    db = np.clip(db, FLOOR_DB, 0.0)
    return Scene(db=db, lesion_mask=lesion, background_mask=background & ~lesion, kind=kind, meta=meta)


def _natural_gray(name: str) -> np.ndarray:
    from skimage import color, data

    img = getattr(data, name)()
    if img.ndim == 3:
        img = color.rgb2gray(img[..., :3])
    img = np.asarray(img, float)
    return (img - img.min()) / max(float(np.ptp(img)), 1e-12)


def natural_scene(name: str, xx_mm: np.ndarray, zz_mm: np.ndarray, rng: np.random.Generator) -> Scene:
    """A held-out natural image as echogenicity: random crop, scale and flip, mapped through a random
    monotone (possibly inverted) curve to -40..0 dB."""
    if name not in NATURAL_IMAGES:
        raise ValueError(f"unknown natural image {name!r}; valid: {', '.join(NATURAL_IMAGES)}")
    img = _natural_gray(name)
    h, w = xx_mm.shape
    H, W = img.shape
    frac = rng.uniform(0.35, 0.9)
    ch = int(max(16, frac * min(H, W * h / w)))
    cw = int(max(16, ch * w / h))
    cw, ch = min(cw, W), min(ch, H)
    y0, x0 = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
    crop = img[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    out = ndimage.zoom(crop, (h / crop.shape[0], w / crop.shape[1]), order=1, mode="nearest")[:h, :w]
    out = np.pad(out, ((0, h - out.shape[0]), (0, w - out.shape[1])), mode="edge")
    gamma = float(np.exp(rng.uniform(-0.6, 0.6)))
    v = out ** gamma
    if rng.random() < 0.3:
        v = 1.0 - v
    span = rng.uniform(20, 40)
    db = -span + span * v
    z = np.zeros((h, w), bool)
    return Scene(db=np.clip(db, FLOOR_DB, 0.0), lesion_mask=z, background_mask=z.copy(), kind="natural:" + name,
                 meta={"image": name, "crop": [y0, x0, ch, cw], "gamma": gamma, "span_db": float(span)})
