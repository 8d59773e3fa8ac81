"""The one fixed scale on which the app shows uncertainty (viewer, simulator tab, MP4 export).

The engine's ``std`` is in display units (0..1); the app shows it in **grey levels** of the 8-bit
display (× 255) on a **log₂ scale from ½ to 32 grey levels**: every doubling of the uncertainty is one
step of the colour map, and the same colour means the same uncertainty in every clip and every frame
(nothing is rescaled per frame).  Below ½ grey level a pixel gets the darkest colour, above 32 the
brightest.  The member spread of the shipped models is about 1 grey level in tissue and up to 10–20 at
edges; a calibrated model (whose card holds an ``uncertainty`` calibration) predicts the RMS error of
the despeckled image (the shipped models' 23–27 dB PSNR is an RMS error of 11–18 grey levels), which
stays inside the scale.  Qt-free (the colours come from matplotlib).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

LOW_GREY = 0.5  #: bottom of the scale (grey levels)
HIGH_GREY = 32.0  #: top of the scale (grey levels)
TICKS_GREY = (0.5, 1, 2, 4, 8, 16, 32)
CMAP = "inferno"
SPREAD_LABEL = "uncertainty: member spread, grey levels"
CALIBRATED_LABEL = "uncertainty: predicted RMS error, grey levels"


def levels() -> tuple[float, float]:
    """The (low, high) of :func:`encode`'s output: log₂ of the scale's ends."""
    return math.log2(LOW_GREY), math.log2(HIGH_GREY)


def encode(std_unit: np.ndarray) -> np.ndarray:
    """float32 log₂(grey levels), clipped to :func:`levels`; NaN (no uncertainty there) stays NaN."""
    grey = np.asarray(std_unit, dtype=np.float32) * 255.0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.log2(np.clip(grey, LOW_GREY, HIGH_GREY))
    return out.astype(np.float32)


def fraction(std_unit: np.ndarray) -> np.ndarray:
    """Position on the colour map, 0..1 (NaN stays NaN)."""
    lo, hi = levels()
    return (encode(std_unit) - lo) / (hi - lo)


def lut(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 RGB colour table of the scale (matplotlib's ``inferno``)."""
    from matplotlib import colormaps

    return np.rint(colormaps[CMAP](np.linspace(0.0, 1.0, n))[:, :3] * 255.0).astype(np.uint8)


def colours(std_unit: np.ndarray) -> np.ndarray:
    """(..., 3) float RGB in [0, 1] of each value on the fixed scale (NaN → the darkest colour)."""
    table = lut().astype(np.float32) / 255.0
    f = np.nan_to_num(fraction(std_unit), nan=0.0)
    return table[np.clip(np.rint(f * (len(table) - 1)).astype(int), 0, len(table) - 1)]


def is_calibrated(card: Mapping[str, Any] | None) -> bool:
    """True when a model card carries an uncertainty calibration (the generalization issue's)."""
    cal = (card or {}).get("uncertainty")
    return isinstance(cal, Mapping) and bool(cal)


def label(card: Mapping[str, Any] | None = None) -> str:
    """The colour bar's title for a model card: calibrated error or raw member spread."""
    return CALIBRATED_LABEL if is_calibrated(card) else SPREAD_LABEL


def describe(card: Mapping[str, Any] | None = None) -> str:
    """One line for the engine panel: what the uncertainty of this model means."""
    if is_calibrated(card):
        cal = card["uncertainty"]
        parts = ", ".join("%s %.3g" % (k.replace("_", " "), float(v)) for k, v in sorted(cal.items())
                          if isinstance(v, (int, float)))
        return "Uncertainty: predicted RMS error of the despeckled image (calibrated%s)." % (
            ": " + parts if parts else "")
    return "Uncertainty: spread of the ensemble's members (not calibrated as an error)."


def tick_text(v: float) -> str:
    return "½" if v == 0.5 else "%g" % v
