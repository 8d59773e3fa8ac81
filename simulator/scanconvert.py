"""Beam-space (radius x angle) grids and scan conversion to the Cartesian output grid.

Convex and phased probes image a sector.  Their fast simulation works in beam space, a
regular grid in radius ``r`` (mm from the polar origin of the probe) and angle ``theta``
(rad from the probe axis, positive towards +x), where the point-spread function is nearly
shift-invariant.  Scan conversion interpolates the (complex) beam-space field at the Cartesian
pixel centres with a sparse interpolation matrix (:func:`interpolation_matrix`, Keys cubic
convolution), built once per geometry and reused; pixels outside the sector are masked by
``Probe.in_field``; :func:`to_cartesian` does the same for a one-off geometry with
``scipy.ndimage.map_coordinates``.  :func:`sample_image` samples a Cartesian image anywhere
(``scipy.ndimage.map_coordinates``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse


@dataclass(frozen=True)
class BeamGrid:
    """A regular (r, theta) grid: ``nr`` radii from ``r0`` step ``dr`` (mm), ``nth`` angles
    from ``th0`` step ``dth`` (rad), around the polar origin ``origin`` = (x, z) mm."""

    origin: tuple[float, float]
    r0: float
    dr: float
    nr: int
    th0: float
    dth: float
    nth: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.nr, self.nth

    @property
    def r(self) -> np.ndarray:
        return self.r0 + self.dr * np.arange(self.nr)

    @property
    def theta(self) -> np.ndarray:
        return self.th0 + self.dth * np.arange(self.nth)

    def cartesian(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, z) in mm of every beam-space sample, each of shape (nr, nth)."""
        rr, tt = np.meshgrid(self.r, self.theta, indexing="ij")
        return self.origin[0] + rr * np.sin(tt), self.origin[1] + rr * np.cos(tt)


def polar_coords(origin: tuple[float, float], x_mm: np.ndarray, z_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radius (mm) and angle (rad) of Cartesian points about ``origin``."""
    dx = np.asarray(x_mm, float) - origin[0]
    dz = np.asarray(z_mm, float) - origin[1]
    return np.hypot(dx, dz), np.arctan2(dx, dz)


def covering_grid(origin: tuple[float, float], x_mm: np.ndarray, z_mm: np.ndarray, dr: float, dth: float,
                  pad_r: int, pad_th: int) -> BeamGrid:
    """The beam grid of steps ``dr`` (mm) and ``dth`` (rad) covering the points (x_mm, z_mm),
    padded by ``pad_r`` / ``pad_th`` samples on each side."""
    r, th = polar_coords(origin, x_mm, z_mm)
    if r.size == 0:
        raise ValueError("no point of the image lies in the probe's field of view")
    r0 = float(r.min()) - pad_r * dr
    th0 = float(th.min()) - pad_th * dth
    nr = int(np.ceil((float(r.max()) - float(r.min())) / dr)) + 2 * pad_r + 1
    nth = int(np.ceil((float(th.max()) - float(th.min())) / dth)) + 2 * pad_th + 1
    return BeamGrid(origin=(float(origin[0]), float(origin[1])), r0=r0, dr=dr, nr=nr, th0=th0, dth=dth, nth=nth)


def to_cartesian(field: np.ndarray, grid: BeamGrid, x_mm: np.ndarray, z_mm: np.ndarray,
                 order: int = 3) -> np.ndarray:
    """Interpolate a beam-space field (real or complex, shape ``grid.shape``) at Cartesian
    points (any shape) with ``scipy.ndimage.map_coordinates``; points outside the grid get 0."""
    r, th = polar_coords(grid.origin, x_mm, z_mm)
    coords = np.stack([(r - grid.r0) / grid.dr, (th - grid.th0) / grid.dth])
    if np.iscomplexobj(field):
        re = ndimage.map_coordinates(field.real, coords, order=order, mode="constant", cval=0.0)
        im = ndimage.map_coordinates(field.imag, coords, order=order, mode="constant", cval=0.0)
        return re + 1j * im
    return ndimage.map_coordinates(field, coords, order=order, mode="constant", cval=0.0)


def sample_image(image: np.ndarray, x0: float, z0: float, spacing: tuple[float, float], x_mm: np.ndarray,
                 z_mm: np.ndarray, order: int = 1) -> np.ndarray:
    """Sample a Cartesian image (row 0 at depth ``z0``, column 0 at ``x0``, pitch ``spacing`` =
    (dz, dx)) at arbitrary points; outside the image the nearest edge value is used."""
    dz, dx = spacing
    coords = np.stack([(np.asarray(z_mm, float) - z0) / dz, (np.asarray(x_mm, float) - x0) / dx])
    return ndimage.map_coordinates(np.asarray(image, float), coords, order=order, mode="nearest")


def _keys_weights(t: np.ndarray) -> np.ndarray:
    """Keys (a = -0.5) cubic convolution weights of the 4 taps at offsets -1, 0, 1, 2 for
    fractional positions ``t`` in [0, 1); shape (4, N)."""
    a = -0.5
    d = np.stack([1 + t, t, 1 - t, 2 - t])
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, far)


def interpolation_matrix(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, order: int = 3,
                         edge: str = "constant") -> sparse.csr_matrix:
    """Sparse (N, H*W) matrix interpolating an (H, W) array at fractional (``rows``, ``cols``).

    ``order`` 1 (bilinear) or 3 (Keys cubic convolution); ``edge`` "constant" (zero outside)
    or "nearest" (clamp to the edge).
    """
    h, w = shape
    rows = np.asarray(rows, float).ravel()
    cols = np.asarray(cols, float).ravel()
    if edge == "nearest":
        rows, cols = np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)
    r0, c0 = np.floor(rows), np.floor(cols)
    tr, tc = rows - r0, cols - c0
    if order == 1:
        offs = np.array([0, 1])
        wr, wc = np.stack([1 - tr, tr]), np.stack([1 - tc, tc])
    elif order == 3:
        offs = np.array([-1, 0, 1, 2])
        wr, wc = _keys_weights(tr), _keys_weights(tc)
    else:
        raise ValueError("order must be 1 or 3")
    ri = r0.astype(int)[None, :] + offs[:, None]
    ci = c0.astype(int)[None, :] + offs[:, None]
    if edge == "nearest":
        ri, ci = np.clip(ri, 0, h - 1), np.clip(ci, 0, w - 1)
    n = rows.size
    rr = ri[:, None, :]
    cc = ci[None, :, :]
    weight = wr[:, None, :] * wc[None, :, :]
    valid = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w) & (weight != 0)
    point = np.broadcast_to(np.arange(n), weight.shape)
    flat = np.broadcast_to(rr, weight.shape) * w + np.broadcast_to(cc, weight.shape)
    return sparse.csr_matrix((weight[valid], (point[valid], flat[valid])), shape=(n, h * w))
