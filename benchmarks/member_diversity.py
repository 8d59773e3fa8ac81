"""Two free sources of member diversity, measured on the foreign sets: pixel phase and sampler noise.

The members of ``multiprobe`` work at half resolution (each 2 × 2 pixel block as channels), so a member is
not exactly shift-equivariant: shifted by one pixel, a frame falls on other blocks.  Giving each member
another block phase costs no network time.  If the members' errors depended on the phase, the ensemble mean
would gain and the spread across members would track more of the error, as lateral flips were hoped to do
(``docs/experiments/uncertainty_ceiling.md``).  To shift a frame by a pixel it has to be padded, so padding
alone (every member at phase 0) is the control.

The IR-SDE sampler's noise is the other source: the default is one posterior step from x_T = mu + noise,
and the spread of the ensemble mean over sampler seeds is a variance the shipped uncertainty does not use.

    python benchmarks/member_diversity.py [--model multiprobe] [--inputs 9] [--pad 8]

Prints, per foreign set, the affine-fitted PSNR against the speckle-free B-mode (mean over all inputs) and
the shipped uncertainty's Pearson r with |error| per pixel / 8 × 8 patch / image for each variant, then the
sampler seeds' spread beside the shipped std.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: member k's (row, column) offset within the 2 x 2 block
PHASES = ((0, 0), (1, 1), (0, 1), (1, 0))


class Phased:
    """A backend network whose member k sees the frame padded by ``pad`` (reflected) and shifted by
    ``phases[k]`` pixels; each member's output is cropped back onto the frame's own grid."""

    def __init__(self, inner, phases, pad: int = 8):
        self.inner, self.phases, self.pad = inner, list(phases), int(pad)
        self.label, self.out_ch = inner.label, inner.out_ch

    @property
    def members(self) -> int:
        return int(self.inner.members)

    def subset(self, k: int) -> Phased:
        return Phased(self.inner.subset(k), self.phases[:k], self.pad)

    def __call__(self, x: np.ndarray, t: int) -> np.ndarray:
        h, w = x.shape[-2:]
        p = self.pad
        ph = [self.phases[k % len(self.phases)] for k in range(x.shape[1])]
        parts = [np.pad(x[:, k], [(0, 0), (0, 0), (p + dy, p - dy), (p + dx, p - dx)], mode="reflect")
                 for k, (dy, dx) in enumerate(ph)]
        out = self.inner(np.stack(parts, axis=1), t)
        return np.stack([out[:, k, :, p + dy:p + dy + h, p + dx:p + dx + w] for k, (dy, dx) in enumerate(ph)], axis=1)


def _scores(ens, fs, seeds=(0,)):
    """Mean PSNR, uncertainty agreement, and (with several seeds) the seeds' spread of the ensemble mean."""
    from engine import scoring

    means, stds, spread = [], [], []
    for b in fs.bmode:
        res = [ens.despeckle(b, seed=s) for s in seeds]
        means.append(res[0].mean)
        stds.append(res[0].std)
        spread.append(np.std([r.mean for r in res], axis=0))
    mean, std = np.stack(means), np.stack(stds)
    psnr = float(np.mean([scoring.psnr_affine(o, c, m) for o, c, m in zip(mean, fs.clean, fs.mask)]))
    return psnr, scoring.uncertainty_agreement(std, mean - fs.clean, fs.mask), std, np.stack(spread)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="multiprobe")
    ap.add_argument("--inputs", type=int, default=9, help="leave-one-out inputs per foreign image")
    ap.add_argument("--pad", type=int, default=8, help="reflected padding of the phase variants (pixels)")
    a = ap.parse_args(argv)
    from engine import load_ensemble
    from engine.generalization import load_foreign
    from simulator.foreign import PROBES

    ens = load_ensemble(a.model)
    plain = ens.network
    variants = {"shipped (no padding)": plain,
                f"padded {a.pad} px, every member at phase (0, 0)": Phased(plain, [(0, 0)], a.pad),
                f"padded {a.pad} px, every member at phase (1, 1)": Phased(plain, [(1, 1)], a.pad),
                f"padded {a.pad} px, member k at phase {', '.join(map(str, PHASES))}[k]": Phased(plain, PHASES, a.pad)}
    print(f"{a.model}, {ens.backend}, {a.inputs} inputs per image; PSNR (dB) / r pixel / r patch / r image\n")
    print("| set | " + " | ".join(variants) + " |")
    print("| --- |" + " --- |" * len(variants))
    seed_rows = []
    t0 = time.time()
    for probe in PROBES:
        fs = load_foreign(probe, a.inputs)
        cells = []
        for net in variants.values():
            ens.network, ens._subsets = net, {}
            seeds = (0, 1, 2, 3) if net is plain else (0,)
            psnr, ag, std, spread = _scores(ens, fs, seeds)
            cells.append(f"{psnr:.2f} / {ag['pixel']:.2f} / {ag['patch']:.2f} / {ag['image']:.2f}")
            if net is plain:
                m = fs.mask
                seed_rows.append((probe, float(np.sqrt(np.mean(spread[m] ** 2))), float(np.sqrt(np.mean(std[m] ** 2)))))
        ens.network, ens._subsets = plain, {}
        print(f"| {probe} | " + " | ".join(cells) + " |", flush=True)
    print("\nSampler noise: RMS spread of the ensemble mean over seeds 0-3, beside the shipped std (grey levels)\n")
    print("| set | seeds' spread | shipped std | ratio |")
    print("| --- | --- | --- | --- |")
    for probe, sp, st in seed_rows:
        print(f"| {probe} | {255 * sp:.3f} | {255 * st:.2f} | {sp / st:.4f} |")
    print(f"\n{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
