"""Can local image features lift the uncertainty's patch r?  An upper bound fitted on the foreign sets.

The shipped std tracks the error per 8 × 8 patch at r 0.37–0.56 on the foreign sets, against an oracle
ceiling of 0.52–0.64 (``docs/experiments/uncertainty_ceiling.md``).  A recalibration of the std by what the
frame itself shows — the output's brightness and edges, the input's local spread, depth — would be
cheap to ship.  This script measures the most any such recalibration could give: a regression of each
patch's RMS error on those features, **fitted on the foreign sets themselves** (so it is an upper bound,
not a shippable model), in-sample and with the images held out in turn (each image's 9 inputs predicted
by a fit on the other 7 images of its set).  Also measured: the std smoothed spatially (its 8 × 8 means
are noisy estimates from four members; a wider window trades detail for less noise), the std raised to
a power (Pearson r reads a linear relation), and ensembles of the first 1, 2 and 3 members (how r grows
with the number of members).

Features per patch, at the patch (8 × 8) and over its 24 × 24 neighbourhood: the shipped std, the output's
mean grey level and gradient magnitude, the input's local standard deviation, depth and lateral distance
from the centre line. The flexible fit takes those twelve, their squares and their pairwise products.

    python benchmarks/uncertainty_features.py [--model multiprobe] [--probe L11-5v ...]

Prints, per foreign set (9 inputs per image), r per patch for each variant next to the oracle and its
ceiling.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PATCH = 8
SMOOTH = (2, 4, 8)
POWERS = (0.5, 2.0)


def smoothed_std(std: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """The std with its variance averaged by a Gaussian of ``sigma`` pixels inside the mask."""
    from scipy.ndimage import gaussian_filter

    out = np.empty(std.shape, np.float64)
    for i, (s, m) in enumerate(zip(np.asarray(std, np.float64), np.asarray(mask, bool))):
        num = gaussian_filter(np.where(m, s * s, 0.0), sigma, mode="nearest")
        den = gaussian_filter(m.astype(np.float64), sigma, mode="nearest")
        out[i] = np.sqrt(num / np.maximum(den, 1e-6))
    return out


def feature_maps(std, out, inp) -> dict[str, np.ndarray]:
    """Per-pixel maps of what a frame shows (stacks (N, H, W))."""
    from scipy.ndimage import sobel, uniform_filter

    out, inp = np.asarray(out, np.float64), np.asarray(inp, np.float64)
    n, h, w = out.shape
    grad = np.stack([np.hypot(sobel(o, 0), sobel(o, 1)) for o in out])
    local_sd = np.stack([np.sqrt(np.maximum(uniform_filter(i * i, PATCH) - uniform_filter(i, PATCH) ** 2, 0.0))
                         for i in inp])
    depth = np.broadcast_to(np.arange(h, dtype=np.float64)[None, :, None] / h, out.shape)
    lateral = np.broadcast_to(np.abs(np.arange(w, dtype=np.float64) - w / 2)[None, None, :] / w, out.shape)
    return {"std": np.asarray(std, np.float64), "grey": out, "gradient": grad, "input local sd": local_sd,
            "depth": depth, "lateral": lateral}


def patch_design(maps: dict, mask: np.ndarray) -> np.ndarray:
    """One row per 8 × 8 patch (as ``engine.scoring.level_values`` orders them): each map's mean over the
    patch and over its 24 × 24 neighbourhood, then their squares and pairwise products."""
    from scipy.ndimage import uniform_filter

    from engine.scoring import level_values

    cols = []
    for m in maps.values():
        wide = np.stack([uniform_filter(x, 3 * PATCH, mode="nearest") for x in m])
        cols += [level_values(m, mask, PATCH)["patch"], level_values(wide, mask, PATCH)["patch"]]
    x = np.column_stack(cols)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-12)
    i, j = np.triu_indices(x.shape[1])
    return np.column_stack([np.ones(len(x)), x, x[:, i] * x[:, j]])


def fitted_r(x: np.ndarray, y: np.ndarray, group: np.ndarray) -> tuple[float, float]:
    """Pearson r of a least-squares fit of ``y`` on ``x``: in-sample, and with each group held out in turn."""
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    held = np.empty_like(y)
    for g in np.unique(group):
        out = group == g
        held[out] = x[out] @ np.linalg.lstsq(x[~out], y[~out], rcond=None)[0]
    return float(np.corrcoef(x @ beta, y)[0, 1]), float(np.corrcoef(held, y)[0, 1])


def patch_image(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Which image each patch (``level_values`` order) comes from."""
    from engine.scoring import level_values

    counts = [len(level_values(m[None], m[None], PATCH)["patch"]) for m in np.asarray(mask, bool)]
    return np.repeat(np.asarray(image), counts)


def measure(ens, fs) -> dict[str, float]:
    from engine.scoring import level_values, uncertainty_agreement, uncertainty_ceiling

    res = ens.despeckle(fs.bmode, seed=0)
    err = np.asarray(res.mean, np.float64) - fs.clean
    r = {"shipped std": uncertainty_agreement(res.std, err, fs.mask, PATCH)["patch"]}
    for k in range(1, ens.members):
        sub = ens.despeckle(fs.bmode, seed=0, members=k)
        r["first %d member(s), their own mean and std" % k] = uncertainty_agreement(
            sub.std, np.asarray(sub.mean, np.float64) - fs.clean, fs.mask, PATCH)["patch"]
    for s in SMOOTH:
        r["smoothed, sigma %g px" % s] = uncertainty_agreement(smoothed_std(res.std, fs.mask, s), err, fs.mask)["patch"]
    for p in POWERS:
        r["std ^ %g" % p] = uncertainty_agreement(np.asarray(res.std, np.float64) ** p, err, fs.mask)["patch"]
    y = np.sqrt(level_values(err * err, fs.mask, PATCH)["patch"])
    group = patch_image(fs.mask, fs.image)
    maps = feature_maps(res.std, res.mean, fs.bmode)
    x = patch_design(maps, fs.mask)
    lin = x[:, :1 + 2 * len(maps)]
    r["linear fit, in-sample"], r["linear fit, images held out"] = fitted_r(lin, y, group)
    r["quadratic fit, in-sample"], r["quadratic fit, images held out"] = fitted_r(x, y, group)
    c = uncertainty_ceiling(err, fs.mask, fs.image, PATCH)
    r["oracle"], r["ceiling"] = c["oracle"]["patch"], c["ceiling"]["patch"]
    return r


def main(argv=None) -> int:
    from simulator.foreign import PROBES

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="multiprobe")
    ap.add_argument("--probe", action="append", choices=PROBES)
    a = ap.parse_args(argv)
    from engine import load_ensemble
    from engine.generalization import load_foreign

    ens = load_ensemble(a.model)
    probes = a.probe or list(PROBES)
    table: dict[str, list[float]] = {}
    for probe in probes:
        t = time.time()
        fs = load_foreign(probe, inputs=9)
        for k, v in measure(ens, fs).items():
            table.setdefault(k, []).append(v)
        print("%s: %.0f s" % (probe, time.time() - t), flush=True)
    print("\nModel `%s`, r per 8 × 8 patch (9 inputs per image):\n" % a.model)
    print("| predictor | %s |\n| --- |%s" % (" | ".join(probes), " --- |" * len(probes)))
    for k, v in table.items():
        print("| %s | %s |" % (k, " | ".join("%.2f" % x for x in v)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
