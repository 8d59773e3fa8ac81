"""Burned-in marks kept by the despeckling pipeline, per kind, on drawn marks over simulated speckle.

For each probe (L11-5v linear, C5-2v sector) a 6-frame simulated cine gets one of every kind of mark
(``usclean_gui.testing.draw_marks``: text of three fonts and five sizes, bitmap and anti-aliased;
lines 1-3 px; ticks; crosses; a dotted line; an ROI outline; a body mark; three grey levels), is
written as DICOM and run through ``usclean_gui.pipeline.despeckle_frames`` with a Gaussian blur
standing in for the network (it changes every pixel it is given).  Prints the fraction of changed
(mark) pixels kept byte-identical, in the cine and in its first frame alone (a still), and the
fraction of the other pixels of the field of view that were despeckled.

    python benchmarks/marks_kept.py [--seeds 3 4 5]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def blur_hook(k, crops):
    import cv2

    for j, c in enumerate(crops):
        yield j, cv2.GaussianBlur(c, (0, 0), 2.0), np.zeros_like(c)


def measure(probe: str, sector: bool, seed: int, folder: Path) -> list[str]:
    from usclean_gui.dicomio import open_image, write_cine
    from usclean_gui.pipeline import despeckle_frames
    from usclean_gui.testing import draw_marks, kept_fraction, speckle_cine

    clean = speckle_cine(6, 256, probe, seed=seed, sector=sector)
    drawn = []
    for f in clean:
        kinds: dict = {}
        marked, changed = draw_marks(f, seed=0, kinds=kinds)
        drawn.append((marked, changed, kinds))
    stack = np.stack([d[0] for d in drawn])
    lines = []
    for n, what in ((6, "cine"), (1, "still")):
        path = folder / ("%s_%d_%d.dcm" % (probe, seed, n))
        write_cine(stack[:n], (0.2, 0.2), 33.0, path)
        clip = open_image(path)
        results = list(despeckle_frames(clip, blur_hook, range(n)))
        kept = np.mean([kept_fraction(stack[r.index], r.pixels, drawn[r.index][1]) for r in results])
        per = {k: np.mean([kept_fraction(stack[r.index], r.pixels, drawn[r.index][2][k]) for r in results])
               for k in drawn[0][2]}
        fov = clip.masks.fov()
        tissue = np.mean([r.mask[fov & ~drawn[r.index][1]].mean() for r in results])
        lines.append("%-7s %-6s seed %d %-5s: kept %.4f (%s); other pixels despeckled %.3f" % (
            probe, "sector" if sector else "linear", seed, what, kept,
            ", ".join("%s %.3f" % kv for kv in per.items()), tissue))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[3])
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for probe, sector in (("L11-5v", False), ("C5-2v", True)):
                for line in measure(probe, sector, seed, Path(tmp)):
                    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
