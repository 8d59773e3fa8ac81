"""PNG figures of the evaluation report (matplotlib, Agg backend; no display needed).

Each function takes plain numbers/arrays, writes one PNG atomically (temporary file in the same
folder, then :func:`os.replace`) and returns its path.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after selecting the backend
import numpy as np

__all__ = ["example_panels", "steps_curve", "reliability_plot", "domain_shift_bars"]


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def example_panels(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str]) -> Path:
    """A grid of images: one row per example, one column per entry of ``columns``.

    Each row is ``{"title": str, "images": {column: (H, W) array}, "labels": {column: str}}``;
    display images are shown in grey on [0, 1]; a column named ``"uncertainty"`` is shown with
    the ``magma`` colormap scaled to its row's 99th percentile (with a colour bar).
    """
    n_r, n_c = len(rows), len(columns)
    fig, axes = plt.subplots(n_r, n_c, figsize=(2.4 * n_c, 2.5 * n_r), squeeze=False)
    for r, row in enumerate(rows):
        for c, col in enumerate(columns):
            ax = axes[r, c]
            img = row["images"].get(col)
            ax.set_xticks([])
            ax.set_yticks([])
            if img is None:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes)
                continue
            if col == "uncertainty":
                vmax = float(np.percentile(img, 99)) or 1e-6
                im = ax.imshow(img, cmap="magma", vmin=0.0, vmax=vmax)
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
            else:
                ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0)
            label = row.get("labels", {}).get(col, col)
            ax.set_title(label, fontsize=8)
        axes[r, 0].set_ylabel(row.get("title", ""), fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def steps_curve(path: str | os.PathLike, curves: dict[str, dict[int, dict[str, float]]],
                markers: dict[str, dict[str, float]] | None = None, title: str = "") -> Path:
    """PSNR and SSIM against network evaluations per member (log axis).

    ``curves[sampler][nfe] = {"psnr": ..., "ssim": ...}``; ``markers[label] = {"nfe", "psnr", "ssim"}``
    are single points (e.g. ``em`` at 100 steps).
    """
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for k, metric in enumerate(("psnr", "ssim")):
        ax = axes[k]
        for name, pts in curves.items():
            xs = sorted(pts)
            ax.plot(xs, [pts[x][metric] for x in xs], "o-", label=name)
        for name, pt in (markers or {}).items():
            ax.plot([pt["nfe"]], [pt[metric]], "s", ms=8, label=name)
        ax.set_xscale("log")
        ticks = sorted({x for pts in curves.values() for x in pts}
                       | {int(pt["nfe"]) for pt in (markers or {}).values()})
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("network evaluations per member")
        ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def reliability_plot(path: str | os.PathLike, std_bin_mean: Sequence[float], err_bin_mean: Sequence[float],
                     title: str = "") -> Path:
    """Mean absolute error per (equal-count) bin of predicted std, with the line
    E|e| = sqrt(2/π)·std that a calibrated Gaussian predictor would follow."""
    s = np.asarray(std_bin_mean, float)
    e = np.asarray(err_bin_mean, float)
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    ax.plot(s, e, "o-", label="measured (equal-count std bins)")
    xmax = float(s.max(initial=0.0)) * 1.1 or 1.0
    ax.plot([0, xmax], [0, xmax * np.sqrt(2 / np.pi)], "--", color="grey", label="calibrated Gaussian")
    ax.set_xlabel("ensemble std (bin mean)")
    ax.set_ylabel("mean |error|")
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, max(float(e.max(initial=0.0)), xmax * np.sqrt(2 / np.pi)) * 1.1 or 1.0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def domain_shift_bars(path: str | os.PathLike, values: dict[str, dict[str, float]], probes: Sequence[str],
                      ylabel: str = "PSNR (dB)", title: str = "") -> Path:
    """Grouped bars: one group per probe, one bar per method (``values[method][probe]``)."""
    methods = list(values)
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(probes), 3.6))
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(probes))
    for i, m in enumerate(methods):
        ys = [values[m].get(p, np.nan) for p in probes]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, ys, width, label=m)
    ax.set_xticks(x)
    ax.set_xticklabels(probes)
    ax.set_ylabel(ylabel)
    finite = [v for m in methods for v in values[m].values() if np.isfinite(v)]
    if finite:
        ax.set_ylim(min(finite) - 2.0, max(finite) + 1.0)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
