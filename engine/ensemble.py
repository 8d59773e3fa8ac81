"""The despeckling ensemble: K independently trained members, their mean and their uncertainty.

``load_ensemble(name_or_folder)`` → :class:`Ensemble`; ``ens.despeckle(frames)`` returns the member mean
(the despeckled image) and the per-pixel uncertainty.  The members run on an inference backend
(:mod:`engine.backends`: OpenVINO, ONNX Runtime or torch, the fastest present unless ``backend=`` says
otherwise); everything else here is numpy, so serving a model needs no torch.  A step count is network
evaluations per member; ``progress(done, total)`` counts them and ``cancel()`` is polled after each one.
Frames larger than ``untiled_max_pixels`` are processed in overlapping ``tile``² tiles blended with
raised-cosine windows (no seams); frames above 4096 × 4096 are refused.

``members="preview"`` runs the model's **preview network** instead of the members: a smaller network
trained with the same recipe (data, target, schedule) that a model folder may ship in its ``preview/``
subfolder, for a live preview while a cine plays; it shares the ensemble's normalisation, brightness
window and sampler settings, so a preview and the ensemble frame that replaces it look alike.  Where a
model ships none, the preview is its first member.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import backends
from . import normalize as _norm
from .brightness import keep_local_mean, window_sigma
from .catalog import resolve_threads  # part of this module's API
from .samplers import SAMPLERS, get_sampler, start_state
from .schedule import Schedule, net_input, schedule_from_dict
from .catalog import DEFAULT_MODEL
from .weights import onnx_files, read_card, read_model, resolve

MIN_SIDE = 16
MAX_SIDE = 4096
MODES = ("irsde", "regression", "dncnn")
#: ``members=PREVIEW``: the preview network (or the first member where the model ships none)
PREVIEW = "preview"
PREVIEW_DIR = "preview"


class Cancelled(Exception):
    """Raised by :meth:`Ensemble.despeckle` when the ``cancel`` callable returned True."""


@dataclass
class DespeckleResult:
    """Member mean and per-pixel uncertainty, float32, same shape as the input frames.

    ``std`` is the uncertainty shown to the user: the calibrated total (see :class:`Ensemble`); for models
    with an uncertainty head ``aleatoric`` (each member's predicted error std, RMS over members) and
    ``epistemic`` (the std across members) are its uncalibrated parts, else None."""

    mean: np.ndarray
    std: np.ndarray
    aleatoric: np.ndarray | None = None
    epistemic: np.ndarray | None = None


def validate_frames(frames) -> np.ndarray:
    """Check and convert frames to a float32 (F, H, W) array in [0, 1]; ValueError with the reason."""
    if hasattr(frames, "detach") and hasattr(frames, "cpu"):  # a torch tensor
        frames = frames.detach().cpu().numpy()
    if not isinstance(frames, np.ndarray):
        raise ValueError("frames must be a numpy array, got %s" % type(frames).__name__)
    if frames.size == 0:
        raise ValueError("frames are empty (shape %s)" % (frames.shape,))
    if frames.ndim in (3, 4) and frames.shape[-1] in (3, 4) and frames.shape[-2] >= MIN_SIDE:
        raise ValueError("frames look like colour images (shape %s, last axis %d channels); convert to "
                         "grayscale (H, W) or (F, H, W) first" % (frames.shape, frames.shape[-1]))
    if frames.ndim not in (2, 3):
        raise ValueError("frames must be (H, W) or (F, H, W); got %d dimensions %s" % (frames.ndim, frames.shape))
    if not np.issubdtype(frames.dtype, np.floating):
        raise ValueError("frames must be floating point in [0, 1] (got dtype %s; for uint8 divide by 255)"
                         % frames.dtype)
    h, w = frames.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise ValueError("frames of %d x %d are too small: the minimum is %d x %d" % (h, w, MIN_SIDE, MIN_SIDE))
    if max(h, w) > MAX_SIDE:
        raise ValueError("frames of %d x %d are too large: the maximum is %d x %d" % (h, w, MAX_SIDE, MAX_SIDE))
    if not np.all(np.isfinite(frames)):
        raise ValueError("frames contain NaN or infinite values")
    lo, hi = float(frames.min()), float(frames.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise ValueError("frame values must lie in [0, 1] (got %.4g … %.4g)" % (lo, hi))
    out = np.clip(frames.astype(np.float32, copy=False), 0.0, 1.0)
    return out[None] if out.ndim == 2 else out


def _window_1d(n: int, start: int, stop: int, total: int, overlap: int) -> np.ndarray:
    """1 inside, raised-cosine ramps over ``overlap`` pixels at tile edges that are not image edges."""
    w = np.ones(n, dtype=np.float64)
    if overlap > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
        if start > 0:
            w[:overlap] = ramp
        if stop < total:
            w[-overlap:] = np.minimum(w[-overlap:], ramp[::-1])
    return w


def _tile_starts(total: int, tile: int, overlap: int) -> list[int]:
    if total <= tile:
        return [0]
    step = tile - overlap
    n = math.ceil((total - tile) / step) + 1
    return [int(round(i * (total - tile) / (n - 1))) for i in range(n)]


def checked_device(device):
    """``device`` as a torch device; ValueError for a kind other than cpu / cuda, or cuda without a GPU."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError("unknown --device %r (cpu or cuda)" % (device,)) from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError("unknown --device %r (cpu or cuda)" % (device,))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device %s requested but no CUDA device is available" % (device,))
    return dev


class Ensemble:
    """K-member despeckler (IR-SDE, direct regression or DnCNN) with mean and uncertainty output.

    ``network`` is a backend network (:mod:`engine.backends`) or a grouped torch module (wrapped on
    ``device``); ``mode`` says how it is used; ``schedule`` is required for ``irsde``.
    ``default_sampler``/``default_steps`` are what ``despeckle`` uses when its ``sampler``/``steps`` are
    None.  ``normalize`` ("auto" | "off"): real-frame gain / dynamic range / speckle-grain normalisation
    against ``reference`` (see :mod:`engine.normalize`).  ``backend`` names the runtime in use.
    """

    def __init__(self, network, mode: str = "irsde", schedule: Schedule | None = None,
                 name: str = "", card: dict | None = None, device=None,
                 threads: int | str | None = None, default_sampler: str = "posterior", default_steps: int = 1,
                 tile: int = 256, overlap: int = 48, untiled_max_pixels: int = 512 * 768,
                 normalize: str = "auto", reference: dict | None = None, preview=None):
        if mode not in MODES:
            raise ValueError("unknown ensemble mode %r" % mode)
        if mode == "irsde" and schedule is None:
            raise ValueError("an IR-SDE ensemble needs a schedule")
        if not callable(getattr(network, "subset", None)):  # a torch module: run it with torch
            import torch

            dev = checked_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            n = resolve_threads(threads)
            if n is not None:
                torch.set_num_threads(n)
            network = backends.TorchNetwork(network.to(dev).eval(), dev)
            if preview is not None and not callable(getattr(preview, "subset", None)):
                preview = backends.TorchNetwork(preview.to(dev).eval(), dev)
        if preview is not None and int(preview.members) != 1:
            raise ValueError("a preview network has one member (got %d)" % int(preview.members))
        self.network = network
        #: the preview network (one member, a backend network) or None: see ``members="preview"``
        self.preview_network = preview
        #: the preview network's model card (``load_ensemble`` fills it in)
        self.preview_card: dict = {}
        self.device = str(getattr(network, "device", "cpu"))
        self.mode, self.schedule, self.name, self.card = mode, schedule, name, card or {}
        self.default_sampler, self.default_steps = default_sampler, int(default_steps)
        self.tile, self.overlap, self.untiled_max_pixels = int(tile), int(overlap), int(untiled_max_pixels)
        self.normalize = normalize
        self.reference = reference
        #: restore the input's local mean grey level (engine.brightness); the card's "brightness": "keep"
        self.keep_brightness = self.card.get("brightness") == "keep"
        self._fits: dict[tuple, tuple] = {}  # fitted frames -> (plan, window sigma); see _fitted
        self._fits_lock = threading.Lock()
        self._subsets: dict[int, object] = {}

    @property
    def members(self) -> int:
        return int(self.network.members)

    @property
    def net(self):
        """The grouped torch network (torch backend only)."""
        if not isinstance(self.network, backends.TorchNetwork):
            raise AttributeError("the %s backend holds no torch network" % self.backend)
        return self.network.net

    @property
    def backend(self) -> str:
        """The runtime serving the members, e.g. "OpenVINO bf16" or "torch fp32 (cpu)"."""
        return str(self.network.label)

    def __repr__(self) -> str:
        return "Ensemble(%r, mode=%s, members=%d, backend=%s)" % (self.name, self.mode, self.members, self.backend)

    @property
    def has_preview(self) -> bool:
        """True when the model ships a preview network (else ``members="preview"`` is the first member)."""
        return self.preview_network is not None

    # ------------------------------------------------------------------ helpers
    def _member_net(self, members: int | str | None):
        if isinstance(members, str):
            if members != PREVIEW:
                raise ValueError("members must be a number or %r (got %r)" % (PREVIEW, members))
            return self.preview_network if self.preview_network is not None else self._member_net(1)
        if isinstance(members, bool):
            raise ValueError("members must be between 1 and %d (got %r)" % (self.members, members))
        if members is None or int(members) == self.members:
            return self.network
        k = int(members)
        if not 1 <= k <= self.members:
            raise ValueError("members must be between 1 and %d (got %r)" % (self.members, members))
        if k not in self._subsets:
            self._subsets[k] = self.network.subset(k)
        return self._subsets[k]

    def _settings(self, steps: int | None, sampler: str | None) -> tuple[int, str]:
        if self.mode != "irsde":
            if steps not in (None, 1):
                raise ValueError("a %s model takes exactly one network evaluation (steps=1)" % self.mode)
            return 1, "direct"
        assert self.schedule is not None  # __init__ refuses an irsde ensemble without one
        sampler = sampler or self.default_sampler
        if sampler not in SAMPLERS:
            raise ValueError("unknown sampler %r (choose from %s)" % (sampler, ", ".join(SAMPLERS)))
        steps = self.default_steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= self.schedule.T:
            raise ValueError("steps must be an integer between 1 and %d (got %r)" % (self.schedule.T, steps))
        return int(steps), sampler

    def _tiles(self, h: int, w: int) -> list[tuple[int, int, int, int]]:
        if h * w <= self.untiled_max_pixels:
            return [(0, h, 0, w)]
        t = self.tile
        return [(y, min(y + t, h), x, min(x + t, w))
                for y in _tile_starts(h, t, self.overlap) for x in _tile_starts(w, t, self.overlap)]

    def _run_tile(self, net, mu: np.ndarray, z: np.ndarray, steps: int, sampler: str,
                  rng: np.random.Generator, tick: Callable[[], None],
                  preview: Callable[[dict], None] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """mu (h, w), z (h, w) (x_T noise shared by all members) → member outputs (K, h, w) and, for a
        network with an uncertainty head, the members' predicted error variances (K, h, w) (else None)."""
        k = net.members
        mu5 = mu[None, None, None].astype(np.float32)  # (1, 1, 1, h, w)
        last: dict = {}

        def split(out: np.ndarray) -> np.ndarray:
            if out.shape[2] > 1:
                last["var"] = np.exp(np.clip(out[:, :, 1:], -14.0, 2.0))
            return np.clip(out[:, :, :1], 0.0, 1.0)

        if self.mode != "irsde":
            inp = np.broadcast_to(mu5, (1, k, 1) + mu.shape)
            if self.mode == "regression":
                inp = np.concatenate([np.zeros_like(inp), inp], axis=2)
            out = split(net(inp, 0))
            tick()
        else:
            schedule = self.schedule
            assert schedule is not None  # __init__ refuses an irsde ensemble without one

            def model(x: np.ndarray, t: int) -> np.ndarray:
                return split(net(net_input(schedule, x, mu5, t), t))

            def callback(info: dict) -> None:
                tick()
                if preview is not None:
                    preview(info)

            x_T = np.ascontiguousarray(np.broadcast_to(start_state(schedule, mu5, z[None, None, None]),
                                                       (1, k, 1) + mu.shape))
            out = get_sampler(sampler)(model, x_T, mu5, schedule, steps,
                                       noise=lambda shape: rng.standard_normal(shape, dtype=np.float32),
                                       callback=callback)
        var = last.get("var")
        return np.clip(out[0, :, 0], 0.0, 1.0), (None if var is None else var[0, :, 0])

    def uncertainty(self, outs: np.ndarray, var: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None,
                                                                             np.ndarray | None]:
        """(total, aleatoric, epistemic) from member outputs (K, H, W) and predicted variances.

        total = sqrt((a · aleatoric)² + (e · epistemic)²) with the card's calibration
        ``uncertainty: {"aleatoric_scale": a, "epistemic_scale": e}`` (both 1 when absent); without an
        uncertainty head the total is the (scaled) member spread."""
        k = outs.shape[0]
        epi = outs.std(axis=0) if k > 1 else np.zeros(outs.shape[1:], np.float32)
        cal = self.card.get("uncertainty") or {}
        a, e = float(cal.get("aleatoric_scale", 1.0)), float(cal.get("epistemic_scale", 1.0))
        if var is None:
            return (e * epi).astype(np.float32), None, None
        ale = np.sqrt(var.mean(axis=0))
        total = np.sqrt((a * ale) ** 2 + (e * epi) ** 2)
        return total.astype(np.float32), ale.astype(np.float32), epi.astype(np.float32)

    # ------------------------------------------------------------------ API
    def iter_despeckle(self, frames, steps: int | None = None, sampler: str | None = None,
                       members: int | str | None = None, seed: int = 0,
                       progress: Callable[[int, int], None] | None = None,
                       cancel: Callable[[], bool] | None = None,
                       normalize: str | None = None,
                       fit_frame: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Despeckle frame by frame, yielding ``(frame_index, mean, std)`` (float32 (H, W)) as each finishes.

        Arguments as :meth:`despeckle`; ``fit_frame`` (H, W): the frame the normalisation and the brightness
        window are fitted on (default: the first of ``frames``), so that a cine processed in chunks shares
        one fit without despeckling that frame again.  The input is validated before anything runs.
        """
        for fi, res in self.iter_results(frames, steps, sampler, members, seed, progress, cancel, normalize,
                                         fit_frame):
            yield fi, res.mean, res.std

    def iter_results(self, frames, steps: int | None = None, sampler: str | None = None,
                     members: int | str | None = None, seed: int = 0,
                     progress: Callable[[int, int], None] | None = None,
                     cancel: Callable[[], bool] | None = None,
                     normalize: str | None = None,
                     fit_frame: np.ndarray | None = None) -> Iterator[tuple[int, DespeckleResult]]:
        """Like :meth:`iter_despeckle`, yielding ``(frame_index, DespeckleResult)`` of (H, W) arrays."""
        arr = validate_frames(frames)
        fit = arr[0] if fit_frame is None else validate_frames(fit_frame)[0]
        if fit.shape != arr.shape[1:]:
            raise ValueError("fit_frame has shape %s but the frames are %s" % (fit.shape, arr.shape[1:]))
        steps, sampler = self._settings(steps, sampler)
        net = self._member_net(members)
        mode = self.normalize if normalize is None else normalize
        if mode not in ("auto", "off"):
            raise ValueError("normalize must be 'auto' or 'off' (got %r)" % (normalize,))
        plan, sigma, measured = self._fit_entry(fit, mode)
        # an anchor whose grain cannot be measured (a blank first frame) says nothing about the clip: then each
        # frame is fitted on its own
        fits = [(plan, sigma)] * len(arr) if measured else [self._fitted(f, mode) for f in arr]
        total = sum(len(self._tiles(*(p.work_shape if p is not None else arr.shape[1:])))
                    for p, _ in fits) * steps
        done = [0]

        def tick() -> None:
            done[0] += 1
            if progress is not None:
                progress(done[0], total)
            if cancel is not None and cancel():
                raise Cancelled("despeckling cancelled after %d of %d network evaluations" % (done[0], total))

        if cancel is not None and cancel():
            raise Cancelled("despeckling cancelled before it started")
        for fi, frame in enumerate(arr):
            yield fi, self._frame(net, frame, fits[fi][0], steps, sampler, seed, fi, tick, fits[fi][1])

    def clear_fits(self) -> None:
        """Forget the fits kept by :meth:`_fitted` (the next call measures its anchor frame again)."""
        with self._fits_lock:
            self._fits.clear()

    def _fitted(self, fit: np.ndarray, mode: str) -> tuple[Any, float | None]:
        """The normalisation plan and the brightness window fitted on ``fit``: one per call, fitted on the
        first frame (or fit_frame), since a cine loop comes from one scanner setting and a shared mapping
        keeps consecutive frames consistent (no flicker).  The grain is measured once for both.  The last
        few fits are kept by the frame's content, so a cine despeckled call by call against one anchor frame
        (the app, the CLI's chunks) measures it once (15–30 ms of a 480 × 640 frame)."""
        plan, sigma, _ = self._fit_entry(fit, mode)
        return plan, sigma

    def _fit_entry(self, fit: np.ndarray, mode: str) -> tuple[Any, float | None, bool]:
        """:meth:`_fitted`'s plan and window, and whether ``fit``'s speckle grain could be measured where the fit
        needs it (False for a blank frame)."""
        key = (hashlib.sha1(fit.tobytes(), usedforsecurity=False).digest(), fit.shape, str(fit.dtype), mode,
               self.keep_brightness, json.dumps(self.reference, sort_keys=True, default=str))
        with self._fits_lock:
            hit = self._fits.get(key)
        if hit is not None:
            return hit
        ref = self.reference if mode == "auto" else None
        grains = _norm.grain_size(fit) if ref or self.keep_brightness else None
        plan0 = _norm.fit(fit, ref, grains=grains) if ref else None
        plan = None if plan0 is None or plan0.identity else plan0
        sigma = window_sigma(fit, grains) if self.keep_brightness else None
        entry = (plan, sigma, grains is None or bool(np.all(np.isfinite(grains))))
        with self._fits_lock:
            while len(self._fits) >= 4:
                self._fits.pop(next(iter(self._fits)))
            self._fits[key] = entry
        return entry

    def _frame(self, net, frame: np.ndarray, plan, steps: int, sampler: str, seed: int, fi: int,
               tick: Callable[[], None], sigma: float | None = None) -> DespeckleResult:
        """One frame: normalise, run every tile, blend, map back, combine the members."""
        work = plan.forward(frame) if plan is not None else frame
        h, w = work.shape
        k = net.members
        rng = np.random.default_rng([int(seed), fi])
        z = rng.standard_normal((h, w), dtype=np.float32)
        tiles = self._tiles(h, w)
        if len(tiles) == 1:  # the whole frame in one pass: nothing to blend
            outs, var = self._run_tile(net, work, z, steps, sampler, rng, tick)
        else:
            acc = np.zeros((k, h, w), np.float32)
            vacc = None
            wsum = np.zeros((h, w), np.float32)
            for y0, y1, x0, x1 in tiles:
                out, v = self._run_tile(net, work[y0:y1, x0:x1], z[y0:y1, x0:x1], steps, sampler, rng, tick)
                win = np.outer(_window_1d(y1 - y0, y0, y1, h, self.overlap),
                               _window_1d(x1 - x0, x0, x1, w, self.overlap)).astype(np.float32)
                acc[:, y0:y1, x0:x1] += out * win
                if v is not None:
                    vacc = np.zeros((k, h, w), np.float32) if vacc is None else vacc
                    vacc[:, y0:y1, x0:x1] += v * win
                wsum[y0:y1, x0:x1] += win
            outs = acc / wsum
            var = None if vacc is None else vacc / wsum
        if plan is not None:
            outs = np.stack([plan.inverse(o) for o in outs])
            if var is not None:
                var = np.stack([plan.inverse_variance(v) for v in var])
        mean = np.clip(outs.mean(axis=0), 0.0, 1.0).astype(np.float32)
        if self.keep_brightness:
            mean = keep_local_mean(frame, mean, sigma=sigma)
        std, ale, epi = self.uncertainty(outs, var)
        return DespeckleResult(mean, std, ale, epi)

    def despeckle(self, frames, steps: int | None = None, sampler: str | None = None,
                  members: int | str | None = None, seed: int = 0,
                  progress: Callable[[int, int], None] | None = None,
                  cancel: Callable[[], bool] | None = None, normalize: str | None = None) -> DespeckleResult:
        """Despeckle ``frames`` (float32 (H, W) or (F, H, W) in [0, 1]).

        steps: network evaluations per member (None = the model's default); sampler: ``posterior`` |
        ``ddim`` | ``em`` (None = default); members: use the first K members (None = all; ``"preview"``:
        the preview network, see the module's notes); seed: all
        sampling noise (same seed → same result); progress(done, total): after every network
        evaluation; cancel(): polled after every evaluation, True raises :class:`Cancelled`;
        normalize: ``auto`` | ``off`` (None = the ensemble's setting).
        Returns :class:`DespeckleResult` with ``mean`` and ``std`` of the input's shape.
        """
        arr = validate_frames(frames)
        parts: dict[str, list] = {"mean": [], "std": [], "aleatoric": [], "epistemic": []}
        for _, res in self.iter_results(arr, steps, sampler, members, seed, progress, cancel, normalize):
            for key in parts:
                parts[key].append(getattr(res, key))
        out: dict[str, Any] = {key: (np.stack(v) if v[0] is not None else None) for key, v in parts.items()}
        if np.ndim(frames) == 2:
            out = {key: (v[0] if v is not None else None) for key, v in out.items()}
        return DespeckleResult(**out)


def ensemble_from_card(network, card: dict, device=None, threads=None, name: str = "", preview=None) -> Ensemble:
    """Wrap a backend network (or a torch module) and its model card in an :class:`Ensemble`."""
    sch = card.get("schedule")
    schedule = schedule_from_dict(sch) if sch else None
    return Ensemble(network, mode=card["mode"], schedule=schedule, name=name or card.get("name", ""), card=card,
                    device=device, threads=threads, default_sampler=card.get("default_sampler", "posterior"),
                    default_steps=int(card.get("default_steps", 1)), reference=card.get("reference"),
                    preview=preview)


def _runtime_network(folder, kind: str, threads: int | None):
    """The verified ONNX graphs of a model folder on ONNX Runtime or OpenVINO, and the folder's card."""
    paths, card, _ = onnx_files(folder)
    out_ch = int(card["network"].get("out_ch", 1))
    pad = backends.pad_multiple(card["network"])
    cls = backends.OpenVinoNetwork if kind == "openvino" else backends.OnnxNetwork
    return cls(paths, out_ch, threads=threads, pad=pad), card


def _preview(folder, card: dict, kind: str, threads: int | None) -> tuple[Any, dict]:
    """The preview network a model folder ships in ``preview/`` and its card ((None, {}) when it ships
    none), on ``kind``; ValueError when it is not a one-member network of the same mode and schedule."""
    sub = folder / PREVIEW_DIR
    if not (sub / "model.json").is_file():
        return None, {}
    pcard = read_card(sub)
    if (pcard.get("mode"), pcard.get("schedule"), int(pcard.get("members", 0))) != (
            card.get("mode"), card.get("schedule"), 1):
        raise ValueError("model %s: its preview network (%s) is not a one-member network of the same mode and "
                         "schedule; re-export it" % (folder, sub))
    if kind == "torch":
        return read_model(sub)[0], pcard
    return _runtime_network(sub, kind, threads)[0], pcard


def load_ensemble(name_or_folder: str | os.PathLike = DEFAULT_MODEL, device=None,
                  threads: int | str | None = None, backend: str = "auto", preview: bool = True) -> Ensemble:
    """Load a shipped model (``multiprobe`` (default), ``l11-5v``, ``baseline``) or a model
    folder from ``usclean train``; every file is checked against the model card's SHA-256 (ValueError if not).

    backend: ``auto`` (OpenVINO, else ONNX Runtime, else torch; torch on a GPU), ``openvino``, ``onnx`` or
    ``torch``; device (torch only): None = CUDA when available, else CPU; threads: CPU threads
    (``"auto"`` = cores − 1); preview: also load the preview network the folder ships (``preview/``), on the
    same backend.
    """
    folder = resolve(name_or_folder)
    card = read_card(folder)
    kind = backends.choose(backend, device, has_onnx=bool(card.get("onnx")))
    name = card.get("name", folder.name)
    if kind == "torch":
        net, card, folder = read_model(folder)
        prev, pcard = _preview(folder, card, kind, None) if preview else (None, {})
        ens = ensemble_from_card(net, card, device=device, threads=threads, name=name, preview=prev)
    else:
        n = resolve_threads(threads)
        network, card = _runtime_network(folder, kind, n)
        prev, pcard = _preview(folder, card, kind, n) if preview else (None, {})
        ens = ensemble_from_card(network, card, name=name, preview=prev)
    ens.preview_card = pcard
    return ens
