"""The statistics of ``usclean evaluate``: per-image metrics of a test set, summaries, paired differences,
uncertainty correlations and reliability (pure numpy / scipy)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

import numpy as np
from scipy import stats

from . import metrics

if TYPE_CHECKING:
    from .evaluate import EvalSet


def _has_lesion(ts: EvalSet, i: int) -> bool:
    return bool((ts.lesion_mask[i] & ts.mask[i]).any() and (ts.background_mask[i] & ts.mask[i]).any())


def set_metrics(out: np.ndarray, ts: EvalSet, idx: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Per-image PSNR, SSIM (inside ``mask``), CNR and gCNR (lesion vs background, NaN when the
    image has no lesion) of outputs ``out`` (aligned with ``idx``, default all images)."""
    idx = list(range(len(ts))) if idx is None else list(idx)
    res: dict[str, list] = {"psnr": [], "ssim": [], "cnr": [], "gcnr": []}
    for k, i in enumerate(idx):
        o, m = out[k], ts.mask[i]
        res["psnr"].append(metrics.psnr(o, ts.clean[i], mask=m))
        res["ssim"].append(metrics.ssim(o, ts.clean[i], mask=m))
        if _has_lesion(ts, i):
            t, b = o[ts.lesion_mask[i] & m], o[ts.background_mask[i] & m]
            res["cnr"].append(metrics.cnr(t, b))
            res["gcnr"].append(metrics.gcnr(t, b))
        else:
            res["cnr"].append(np.nan)
            res["gcnr"].append(np.nan)
    return {k: np.asarray(v, float) for k, v in res.items()}


def summarize(per_image: dict[str, np.ndarray]) -> dict[str, Any]:
    """Means over images (CNR/gCNR over the images with a lesion) plus the per-image values."""
    les = np.isfinite(per_image["cnr"])
    return {
        "psnr": float(np.mean(per_image["psnr"])),
        "ssim": float(np.mean(per_image["ssim"])),
        "cnr": float(np.mean(per_image["cnr"][les])) if les.any() else float("nan"),
        "gcnr": float(np.mean(per_image["gcnr"][les])) if les.any() else float("nan"),
        "n": int(len(per_image["psnr"])),
        "n_lesion": int(les.sum()),
        "psnr_per_image": [float(v) for v in per_image["psnr"]],
    }


def paired_diff(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean of a − b with a two-sided 95 % t confidence interval (NaN interval for n < 2)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    mean = float(d.mean())
    if d.size < 2:
        return {"diff": mean, "lo": float("nan"), "hi": float("nan"), "n": int(d.size)}
    half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
    return {"diff": mean, "lo": mean - half, "hi": mean + half, "n": int(d.size)}


def correlations(std: np.ndarray, err: np.ndarray, max_points: int = 400_000, seed: int = 0) -> dict[str, float]:
    """Pearson r of std and of variance with |error|, Spearman ρ of std with |error| (identical for
    the variance, a monotone transform).  Above ``max_points`` a fixed random subsample is used."""
    std, err = np.ravel(std), np.ravel(err)
    if std.size > max_points:
        sel = np.random.default_rng(seed).choice(std.size, max_points, replace=False)
        std, err = std[sel], err[sel]
    out = {}
    for key, fn, x in (("pearson_std", metrics.pearson, std), ("pearson_var", metrics.pearson, std ** 2),
                       ("spearman_std", metrics.spearman, std)):
        try:
            out[key] = fn(x, err)
        except ValueError:
            out[key] = float("nan")
    return out


def top_fraction_overlap(std: np.ndarray, err: np.ndarray, frac: float = 0.10) -> float:
    """Fraction of the ``frac`` most uncertain pixels that are among the ``frac`` largest errors
    (``frac`` is the chance level)."""
    std, err = np.ravel(std), np.ravel(err)
    k = max(1, int(round(frac * std.size)))
    top_s = np.argpartition(-std, k - 1)[:k]
    top_e = np.argpartition(-err, k - 1)[:k]
    return float(np.intersect1d(top_s, top_e).size / k)


def reliability(std: np.ndarray, err: np.ndarray, bins: int = 10) -> dict[str, list]:
    """Mean std and mean |error| in ``bins`` equal-count bins of the std."""
    std, err = np.ravel(std), np.ravel(err)
    order = np.argsort(std, kind="stable")
    parts = np.array_split(order, bins)
    return {"std_mean": [float(std[p].mean()) for p in parts if p.size],
            "err_mean": [float(err[p].mean()) for p in parts if p.size],
            "count": [int(p.size) for p in parts if p.size]}
