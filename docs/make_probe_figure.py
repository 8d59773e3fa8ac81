"""Make docs/images/probes.png: one MRI phantom imaged by the four probes (fast path and full physics).

The phantom is the same map (same MNI slice, echogenicity mapping and seed) laid over each probe's
size x size image window, whose pixel pitch is half that probe's wavelength, so the field of view
grows as the frequency falls; what changes is the physics of the probe (centre frequency, bandwidth,
aperture, geometry): the domain shift a user sees between probes.

    .venv/bin/python docs/make_probe_figure.py [--full]

``--full`` adds a row of full MUST (``simus``) images (about 2-4 CPU-minutes).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from simulator.phantoms import make_phantom
from simulator.physics import simulate
from simulator.probes import PROBE_NAMES, get_probe

OUT = Path(__file__).resolve().parent / "images" / "probes.png"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="add a row of full-physics images")
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    paths = ["fast"] + (["full"] if args.full else [])
    fig, axes = plt.subplots(len(paths) + 1, 4, figsize=(12, 3.2 * (len(paths) + 1)), squeeze=False)
    for j, name in enumerate(PROBE_NAMES):
        probe = get_probe(name)
        ph = make_phantom("mri", probe, size=args.size, seed=args.seed, split="test", lesions=1)
        axes[0, j].imshow(ph.echo, cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"{name}: ground truth", fontsize=9)
        for i, path in enumerate(paths, start=1):
            res = simulate(ph, probe, path=path, seed=args.seed)
            axes[i, j].imshow(res.bmode, cmap="gray", vmin=0, vmax=1)
            axes[i, j].set_title(f"{name} {probe.fc_hz / 1e6:.2f} MHz, {path} "
                                 f"({res.spacing_mm[1]:.2f} mm/px, {res.dynamic_range_db:.0f} dB)", fontsize=8)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
