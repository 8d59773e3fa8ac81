"""The per-frame despeckling pipeline shared by ``usclean despeckle`` and the app (no Qt).

For every frame ``i`` of a :class:`~usclean_gui.dicomio.Clip`:

1. **split** into the clip's enabled panes (``clip.layout``: every 2D tissue region of the file,
   each with its own spacing, or every pane detected on the displayed frame);
2. **fill marks**: the pane's displayed grey crop with its burned-in marks, colour pixels and kept
   regions inpainted from their surroundings (:func:`pane_input`), so the despeckler never sees a
   mark and leaves no halo around it;
3. **despeckle** the crops of a chunk of frames with a *hook*, ``hook(pane, crops)`` yielding
   ``(k, mean, std)`` per crop (:func:`ensemble_hook` wraps ``Ensemble.iter_despeckle``; tests
   pass any function);
4. **blend**: ``shown = original + strength * (despeckled - original)`` in the display domain
   (``strength`` in [0, 1]; the std is scaled by it too);
5. **composite** back: only ``clip.process_mask(i)`` pixels change (inside an enabled pane and
   its field of view, outside kept regions, grey, not a mark); every other pixel is the decoded
   source, byte for byte.

:func:`despeckle_frames` runs it as a generator, a chunk of frames at a time, so memory does not
grow with the clip; the app can call :func:`pane_input` and :func:`compose` frame by frame.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from usclean_gui.dicomio.marks import inpaint
from usclean_gui.dicomio.writer import paste

#: ``hook(pane_index, crops (n, h, w) float32 in [0, 1])`` -> ``(k, mean, std)`` for each crop.
Hook = Callable[[int, np.ndarray], Iterable[tuple[int, np.ndarray, np.ndarray]]]
#: Bytes of pane crops handed to the hook in one call (the engine's input for a chunk of frames).
CHUNK_BYTES = 32 * 1024 * 1024
MIN_PANE_SIDE = 16
#: Most frames per hook call (the clip's masks of a chunk stay cached between input and composite).
MAX_CHUNK_FRAMES = 16


def check_strength(strength: float) -> float:
    """``strength`` as a float in [0, 1] (ValueError otherwise)."""
    try:
        s = float(strength)
    except (TypeError, ValueError):
        raise ValueError("strength must be a number between 0 and 1, got %r" % (strength,)) from None
    if not (math.isfinite(s) and 0.0 <= s <= 1.0):
        raise ValueError("strength must lie between 0 (the original) and 1 (fully despeckled), got %r" % (strength,))
    return s


def active_panes(clip) -> list[int]:
    """Indices of the enabled panes large enough for the despeckler (>= 16 x 16 pixels)."""
    out = []
    for k in clip.layout.enabled():
        x0, y0, x1, y1 = clip.layout.panes[k].box
        if min(x1 - x0, y1 - y0) >= MIN_PANE_SIDE:
            out.append(k)
    return out


def require_panes(clip) -> list[int]:
    """:func:`active_panes`, or ValueError naming the file when there is none."""
    panes = active_panes(clip)
    if not panes:
        x0, y0, x1, y1 = clip.bmode_region
        raise ValueError("no B-mode pane of %s is enabled and at least %dx%d pixels (the region is %dx%d)"
                         % (clip.path.name, MIN_PANE_SIDE, MIN_PANE_SIDE, x1 - x0, y1 - y0))
    return panes


def box_input(clip, i: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Float32 (h, w) displayed grey of ``frame[y0:y1, x0:x1]`` with its marks, colour pixels and
    kept regions (inside the fields of view) inpainted: what the despeckler sees of that box."""
    x0, y0, x1, y1 = box
    crop = np.array(clip.gray_frame(i)[y0:y1, x0:x1], dtype=np.float32)
    return np.ascontiguousarray(inpaint(crop, clip.masks.fill_mask(i)[y0:y1, x0:x1]))


def pane_input(clip, i: int, k: int) -> np.ndarray:
    """The despeckler's input for pane ``k`` of frame ``i`` (:func:`box_input` of its box)."""
    return box_input(clip, i, clip.layout.panes[k].box)


@dataclass
class FrameResult:
    """One frame through the pipeline.

    ``pixels``: the composite as stored (dtype and layout of ``clip.frame(i)``); ``unit``: its
    displayed grey (float32 (H, W)); ``std``: strength x member std on processed pixels, 0
    elsewhere; ``mask``: the processed pixels; ``means``/``stds``: the hook's output per pane
    (crops of the pane boxes, before blending).
    """

    index: int
    pixels: np.ndarray
    unit: np.ndarray
    std: np.ndarray
    mask: np.ndarray
    means: dict[int, np.ndarray]
    stds: dict[int, np.ndarray]


def compose(clip, i: int, means: dict[int, np.ndarray], stds: dict[int, np.ndarray] | None = None,
            strength: float = 1.0) -> FrameResult:
    """Composite the despeckled pane crops ``means`` (pane index -> (h, w)) into frame ``i``."""
    s = check_strength(strength)
    frame = clip.frame(i)
    grey = clip.gray_frame(i)
    shown = np.zeros(clip.shape, np.float32)
    spread = np.zeros(clip.shape, np.float32)
    mask = np.zeros(clip.shape, bool)
    process = clip.process_mask(i)
    panes = clip.masks.pane_masks()
    for k, mean in means.items():
        x0, y0, x1, y1 = clip.layout.panes[k].box
        m = panes[k] & process
        shown[y0:y1, x0:x1] = mean
        if stds is not None and k in stds:
            spread[y0:y1, x0:x1] = stds[k]
        mask |= m
    if s == 0.0:
        mask[:] = False  # strength 0: the source, byte for byte
    unit = np.array(grey, dtype=np.float32)
    unit[mask] = grey[mask] + s * (shown[mask] - grey[mask])
    std = np.where(mask, s * spread, 0.0).astype(np.float32)
    pixels = paste(frame, mask, clip.from_unit(unit[mask])) if mask.any() else np.array(frame)
    return FrameResult(int(i), pixels, unit, std, mask, dict(means), dict(stds or {}))


def chunk_size(clip, panes: Sequence[int], chunk_bytes: int = CHUNK_BYTES) -> int:
    """Frames per hook call so that one call's crops stay under ``chunk_bytes``."""
    area = sum(max(1, (b[2] - b[0]) * (b[3] - b[1])) for b in (clip.layout.panes[k].box for k in panes))
    return max(1, min(MAX_CHUNK_FRAMES, int(chunk_bytes // (4 * max(1, area)))))


def despeckle_frames(clip, hook: Hook, indices: Sequence[int], strength: float = 1.0,
                     chunk_frames: int | None = None,
                     on_frame: Callable[[int, int], None] | None = None) -> Iterator[FrameResult]:
    """Run the pipeline over ``indices`` (in order), yielding one :class:`FrameResult` per frame.

    Frames go to ``hook`` a chunk at a time (``chunk_frames``, default :func:`chunk_size`), one
    call per pane; only a chunk's crops and results are in memory at once.

    Raises:
        ValueError: a bad strength, no enabled pane of at least 16 x 16 pixels, or a hook that
            returns fewer frames than it was given.
    """
    s = check_strength(strength)
    indices = [int(i) for i in indices]
    panes = require_panes(clip)
    step = chunk_frames or chunk_size(clip, panes)
    done = 0
    for c0 in range(0, len(indices), step):
        chunk = indices[c0:c0 + step]
        means: list[dict[int, np.ndarray]] = [{} for _ in chunk]
        stds: list[dict[int, np.ndarray]] = [{} for _ in chunk]
        for k in panes:
            crops = np.stack([pane_input(clip, i, k) for i in chunk])
            for j, m, sd in hook(k, crops):
                means[j][k], stds[j][k] = m, sd
        for j, i in enumerate(chunk):
            if len(means[j]) != len(panes):
                raise ValueError("the despeckler returned no result for frame %d" % i)
            done += 1
            result = compose(clip, i, means[j], stds[j], s)
            if on_frame is not None:
                on_frame(done, len(indices))
            yield result


def ensemble_hook(ensemble: Any, steps: int | None = None, sampler: str | None = None,
                  members: int | None = None, seed: int = 0,
                  progress: Callable[[int, int], None] | None = None,
                  cancel: Callable[[], bool] | None = None) -> Hook:
    """A :data:`Hook` over ``ensemble.iter_despeckle`` that keeps a cine consistent across chunks.

    The engine fits its intensity / grain normalisation and brightness window on one frame per call;
    every call after a pane's first passes that pane's first crop as ``fit_frame`` (it is not despeckled
    again), so the whole clip shares one normalisation, as in a single call.  Each call gets its own
    noise seed derived from ``seed`` (same seed, same chunking: same result).
    """
    anchors: dict[int, np.ndarray] = {}
    calls: dict[int, int] = {}

    def hook(pane: int, crops: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        n = calls.get(pane, 0)
        calls[pane] = n + 1
        fit = None
        if pane not in anchors:
            anchors[pane] = crops[0].copy()
        elif crops.shape[1:] == anchors[pane].shape:
            fit = anchors[pane]
        yield from ensemble.iter_despeckle(crops, steps=steps, sampler=sampler, members=members,
                                           seed=int(seed) + 104729 * n, progress=progress, cancel=cancel,
                                           fit_frame=fit)

    return hook
