"""The speckle-free MRI volume behind the ``mri`` phantom (MNI ICBM152 2009a T1 template).

Run time needs only numpy: :func:`load_volume` reads ``resources/mri/mni152_t1.npz``
(uint8, 1 mm isotropic, axes (x: left->right, y: posterior->anterior, z: inferior->superior)).

:func:`build_resource` is the one-off extraction that produced that file from the NIfTI
template shipped with nilearn (``mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``); it needs
``nibabel`` and is kept here so the resource can be rebuilt and audited::

    /tmp/probe_venv/bin/python -c "from simulator.mri import build_resource; build_resource('<path to .nii.gz>')"

The template is Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre,
Montreal Neurological Institute, McGill University; the permission notice is in
``resources/mri/NOTICE``.

Data splits
-----------
The template is symmetric left/right, so splitting along x would put mirror-image anatomy in
two splits.  The volume is therefore split along y (posterior -> anterior) into slabs separated
by gaps of :data:`SLAB_GAP_VOXELS` voxels (wider than any interpolation kernel), BEFORE any
slicing: :func:`split_slab` returns a split's slabs and every MRI phantom samples only voxels
of one slab of its split.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

RESOURCE_DIR = Path(__file__).resolve().parent.parent / "resources" / "mri"
VOLUME_PATH = RESOURCE_DIR / "mni152_t1.npz"
SPLITS: tuple[str, ...] = ("train", "val", "test")
SLAB_GAP_VOXELS = 8
# Slabs along y as fractions of the head's extent (head = voxels above 8 % of full scale).
# train gets ~70 %, val ~10 %, test ~16 % of the extent; gaps separate neighbouring slabs.
_SLAB_FRACTIONS: dict[str, tuple[tuple[float, float], ...]] = {
    "train": ((0.00, 0.30), (0.54, 0.82)),
    "test": ((0.30, 0.54),),
    "val": ((0.82, 1.00),),
}


@functools.lru_cache(maxsize=1)
def load_volume() -> np.ndarray:
    """The T1 template as float32 in [0, 1], shape (X, Y, Z), read-only."""
    if not VOLUME_PATH.exists():
        raise FileNotFoundError(f"MRI resource missing: {VOLUME_PATH} (rebuild it with simulator.mri.build_resource)")
    with np.load(VOLUME_PATH) as f:
        vol = f["volume"].astype(np.float32) / 255.0
    vol.setflags(write=False)
    return vol


@functools.lru_cache(maxsize=1)
def head_extent_y() -> tuple[int, int]:
    """(first, last) y index holding head tissue."""
    vol = load_volume()
    ys = np.flatnonzero((vol > 0.08).any(axis=(0, 2)))
    return int(ys[0]), int(ys[-1])


def split_slabs(split: str) -> tuple[tuple[int, int], ...]:
    """Inclusive y-index ranges ``(lo, hi)`` of the slabs belonging to ``split``.

    Neighbouring slabs of different splits are at least :data:`SLAB_GAP_VOXELS` apart; the
    slabs of all splits together cover the head except for those gaps.
    """
    if split not in _SLAB_FRACTIONS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    y0, y1 = head_extent_y()
    n = y1 - y0 + 1
    half_gap = SLAB_GAP_VOXELS / 2
    out = []
    for a, b in _SLAB_FRACTIONS[split]:
        lo = y0 + a * n + (half_gap if a > 0 else 0)
        hi = y0 + b * n - 1 - (half_gap if b < 1 else 0)
        out.append((int(np.ceil(lo)), int(np.floor(hi))))
    return tuple(out)


def build_resource(nifti_path: str | Path, out_path: str | Path = VOLUME_PATH) -> Path:
    """Extract the template from NIfTI into the uint8 compressed ``.npz`` used at run time.

    Needs ``nibabel`` (not a run-time dependency).  The voxel grid is kept as is (1 mm
    isotropic, RAS axes as stored by the NIfTI file, whose affine is diagonal).
    """
    import nibabel as nib  # one-off build step only

    img = nib.load(str(nifti_path))
    aff = np.asarray(img.affine)
    if not np.allclose(aff[:3, :3], np.eye(3)):
        raise ValueError(f"expected a 1 mm RAS-aligned template, got affine\n{aff}")
    data = np.asanyarray(img.dataobj)
    if data.dtype != np.uint8:
        data = np.clip(np.rint(255.0 * data / float(data.max())), 0, 255).astype(np.uint8)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, volume=data, affine=aff.astype(np.float32))
    tmp.replace(out_path)
    return out_path
