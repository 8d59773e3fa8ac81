"""The real clips of the generalization report: read the declared ROIs and the frames they refer to.

``resources/realclips/rois.json`` names each clip's source (pydicom's bundled ultrasound examples or a
file of this checkout), the crop the despecklers see, tissue boxes away from burned-in marks and a gCNR
pair, all chosen on the input frames before any model ran on them.  :func:`load_real_clips` turns them
into :class:`engine.generalization.RealClip` objects (frames cropped to the region, boxes shifted into the
crop).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROIS = Path(__file__).resolve().parent.parent / "resources" / "realclips" / "rois.json"


def _source(spec: str) -> Path:
    if spec.startswith("pydicom.examples:"):
        from pydicom import examples

        return Path(examples.get_path(spec.split(":", 1)[1]))
    return ROIS.parent.parent.parent / spec


def _shift(box, x0: int, y0: int) -> list[int]:
    return [box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0]


def load_real_clips(path: str | Path = ROIS, names=None) -> list:
    """The declared real clips (all, or those in ``names``)."""
    from engine.generalization import RealClip

    from .dicomio import open_image

    spec = json.loads(Path(path).read_text())
    clips = []
    for name, c in spec["clips"].items():
        if names and name not in names:
            continue
        clip = open_image(_source(c["source"]))
        x0, y0, x1, y1 = c["region"]
        n = min(int(c.get("frames", 1)), clip.n_frames)
        frames = np.stack([clip.gray_frame(i)[y0:y1, x0:x1] for i in range(n)]).astype(np.float32)
        tissue = np.zeros(frames.shape[1:], bool)
        for b in c["tissue"]:
            bx = _shift(b, x0, y0)
            tissue[bx[1]:bx[3], bx[0]:bx[2]] = True
        rois = {k: _shift(c[k], x0, y0) for k in ("target", "background") if k in c}
        clips.append(RealClip(name=name, frames=frames, tissue=tissue, rois=rois, dr_db=float(c.get("dr_db", 50.0))))
    return clips
