"""Exports from the viewer: derived DICOM series, PNG snapshots, labelled side-by-side MP4 and ROI CSV.

Every file is written atomically (a temporary file in the destination folder, then
``os.replace``) and the source clip is never a valid destination.  The derived DICOM goes
through :func:`usclean_gui.dicomio.write_derived`, the same code ``usclean despeckle`` uses.
"""
from __future__ import annotations

import csv
import io
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import uncertainty
from .viewer_state import MEASURE_DOMAIN, ClipSession, Measurement, RoiShape


def _check_dest(path: str | os.PathLike, protect: tuple[str, ...]) -> Path:
    out = Path(path)
    for p in protect:
        if p and Path(p).exists() and out.exists() and out.resolve() == Path(p).resolve():
            raise ValueError("refusing to overwrite the source file %s; choose another name" % out)
    if not out.parent.is_dir():
        raise ValueError("folder %s does not exist" % out.parent)
    return out


def _require_all(session: ClipSession) -> None:
    missing = [i for i in range(session.n_frames) if i not in session.means]
    if missing:
        raise ValueError("despeckle the whole clip first: %d of %d frame(s) are not done yet"
                         % (len(missing), session.n_frames))


def derived_dicom(session: ClipSession, path: str | os.PathLike, include_uncertainty: bool = False) -> Path:
    """Write the despeckled frames (and optionally their std, as a second series) as derived DICOM.

    Frames not despeckled yet are left out (the series lists its source frames); the
    uncertainty series goes next to ``path`` with ``_uncertainty`` added to its name.
    """
    from usclean_gui.dicomio import write_derived

    done = sorted(session.means)
    if not done:
        raise ValueError("nothing to export yet: despeckle the clip first")
    out = _check_dest(path, (session.path,))
    desc = "USClean despeckling, %s strength=%.2f" % (
        session.settings.describe() if session.settings else "unknown settings", session.strength)
    written = write_derived(session.clip, [session.shown(i) for i in done], out, desc, frame_indices=done)
    if include_uncertainty:
        unc = out.with_name(out.stem + "_uncertainty" + out.suffix)
        write_derived(session.clip, [session.strength * session.stds[i] for i in done], unc,
                      desc + " (ensemble std x strength)", frame_indices=done, uncertainty=True)
    return Path(written)


def snapshot_png(image: Any, path: str | os.PathLike, protect: tuple[str, ...] = ()) -> Path:
    """Save a QImage (the rendered panes) as PNG, atomically."""
    out = _check_dest(path, protect)
    with _temp_next_to(out, ".png") as tmp:
        if not image.save(str(tmp), "PNG"):
            raise ValueError("could not write PNG %s" % out)
    return out


def _temp_next_to(out: Path, suffix: str):
    """A temporary file beside ``out`` (with ``suffix``, for writers that go by extension) that
    replaces it on success: :func:`usclean_gui.dicomio.atomic_path`, the one atomic write."""
    from usclean_gui.dicomio import atomic_path

    return atomic_path(out, suffix=suffix)




PANE_LABELS = ("Original", "Despeckled", "Uncertainty")
HEADER_PX = 28  #: the label strip above the panes
BAR_PX = 54  #: the colour bar strip below them


def side_by_side(session: ClipSession, i: int, opacity: float) -> np.ndarray:
    """(H, 3W, 3) uint8 RGB: original | despeckled | std overlay on the despeckled frame, on the
    app's fixed uncertainty scale (:mod:`.uncertainty`)."""
    def rgb(a: np.ndarray) -> np.ndarray:
        a = np.clip(a, 0.0, 1.0)
        return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a

    orig = rgb(session.original_frame(i))
    desp = rgb(session.despeckled_frame(i))
    std = session.std_frame(i)
    mask = session.paste_mask(i)
    over = desp.copy()
    if std is not None and mask.any():
        over[mask] = (1.0 - opacity) * over[mask] + opacity * uncertainty.colours(std[mask])
    return np.rint(np.concatenate([orig, desp, over], axis=1) * 255.0).astype(np.uint8)


def _text(img: np.ndarray, text: str, x: int, y: int, scale: float = 0.5, centre: bool = False) -> None:
    import cv2

    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.putText(img, text, (int(x - tw / 2) if centre else int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (235, 235, 235), 1, cv2.LINE_AA)


def colour_bar(width: int, label: str) -> np.ndarray:
    """(BAR_PX, width, 3) uint8 RGB: the fixed uncertainty scale with its ticks and ``label``."""
    bar = np.zeros((BAR_PX, width, 3), np.uint8)
    x0, x1 = 12, max(width - 12, 13)
    table = uncertainty.lut()
    idx = np.clip(((np.arange(x1 - x0) / max(x1 - x0 - 1, 1)) * (len(table) - 1)).round().astype(int), 0,
                  len(table) - 1)
    bar[4:16, x0:x1] = table[idx][None]
    lo, hi = uncertainty.levels()
    for v in uncertainty.TICKS_GREY:
        x = x0 + (np.log2(v) - lo) / (hi - lo) * (x1 - x0 - 1)
        bar[16:20, int(round(x))] = 235
        _text(bar, "1/2" if v == 0.5 else "%g" % v, x, 32, 0.38, centre=True)
    _text(bar, label, width / 2, 48, 0.4, centre=True)
    return bar


def labelled_frame(session: ClipSession, i: int, opacity: float, label: str) -> np.ndarray:
    """The side-by-side frame with a label strip above each pane and the colour bar under the third."""
    panes = side_by_side(session, i, opacity)
    h, w3 = panes.shape[:2]
    w = w3 // 3
    out = np.zeros((HEADER_PX + h + BAR_PX, w3, 3), np.uint8)
    out[HEADER_PX:HEADER_PX + h] = panes
    kind = session.result_kind(i)
    for k, name in enumerate(PANE_LABELS):
        if k == 1 and kind != "ensemble":
            name += " (preview)" if kind == "preview" else " (not yet)"
        _text(out, name, k * w + w / 2, 19, 0.5, centre=True)
    out[HEADER_PX + h:, 2 * w:3 * w] = colour_bar(w, label)
    return out


def cine_mp4(session: ClipSession, path: str | os.PathLike, fps: float, opacity: float = 0.6,
             label: str = uncertainty.SPREAD_LABEL) -> Path:
    """Write the labelled side-by-side cine as MP4 (MPEG-4 part 2, OpenCV's VideoWriter)."""
    import cv2

    _require_all(session)
    out = _check_dest(path, (session.path,))
    first = labelled_frame(session, 0, opacity, label)
    h, w = first.shape[:2]
    size = (w + w % 2, h + h % 2)  # even dimensions for the encoder
    with _temp_next_to(out, ".mp4") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(max(fps, 0.1)), size)
        if not writer.isOpened():
            raise ValueError("OpenCV cannot write MP4 video on this system")
        try:
            for i in range(session.n_frames):
                frame = np.zeros((size[1], size[0], 3), dtype=np.uint8)
                frame[:h, :w] = first if i == 0 else labelled_frame(session, i, opacity, label)
                writer.write(np.ascontiguousarray(frame[..., ::-1]))
        finally:
            writer.release()
    return out


CSV_FIELDS = ("file", "frame", "time_ms", "domain", "image", "cnr", "gcnr", "mean_target", "std_target",
              "mean_background", "std_background", "area_target", "area_background", "area_unit",
              "target_roi", "background_roi", "roi_mode", "bmode_region", "model", "sampler", "steps", "members",
              "seed", "strength", "exported_utc")


def measurements_csv(rows: list[Measurement], shapes: dict[str, RoiShape], session: ClipSession,
                     path: str | os.PathLike) -> Path:
    """Write one line per (frame, image) with the ROI geometry and engine provenance."""
    if not rows:
        raise ValueError("nothing to export: draw a target and a background ROI first")
    out = _check_dest(path, (session.path,))
    st = session.settings
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_FIELDS)
    for m in sorted(rows, key=lambda r: r.frame):
        for name, s in (("original", m.original), ("despeckled", m.despeckled)):
            if s is None:
                continue
            desp = name == "despeckled"
            w.writerow([session.path, m.frame, "%.3f" % m.time_ms, MEASURE_DOMAIN, name, "%.6g" % s.cnr,
                        "%.6g" % s.gcnr, "%.6g" % s.mean_t, "%.6g" % s.std_t, "%.6g" % s.mean_b, "%.6g" % s.std_b,
                        "%.6g" % m.area_t, "%.6g" % m.area_b, m.area_unit,
                        m.target_roi or (shapes["target"].describe() if "target" in shapes else ""),
                        m.background_roi or (shapes["background"].describe() if "background" in shapes else ""),
                        m.roi_mode,
                        "%d,%d,%d,%d" % session.box,
                        st.model if (desp and st) else "", (st.sampler or "default") if (desp and st) else "",
                        (st.steps or "default") if (desp and st) else "",
                        (st.members or "all") if (desp and st) else "",
                        st.seed if (desp and st) else "", "%.2f" % session.strength if desp else "", now])
    with _temp_next_to(out, ".csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return out
