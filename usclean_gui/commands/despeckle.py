"""``usclean despeckle IN -o OUT``: despeckle a DICOM clip, PNG or NPY with an IR-SDE ensemble.

Only the B-mode region crop of each selected frame is sent to the engine; the result is pasted
back through :meth:`usclean_gui.dicomio.Clip.process_mask`, so burned-in text, calipers, colour
Doppler and everything outside the region stay exactly as decoded.  Outputs by suffix:

* ``.dcm``: a derived series of the source (see :func:`usclean_gui.dicomio.write_derived`);
* ``.png``: one frame, in the source's decoded colour model (8/16 bit as the source);
* ``.npy``: float32 grey in [0, 1], (F, H, W) (or (H, W) for a still), unprocessed pixels as the
  source's grey values.

``--uncertainty OUT_STD`` writes the member std the same way (DICOM / PNG: 8 bit,
``255 * std / UNCERTAINTY_FULL_SCALE``; NPY: float32 std, 0 where nothing was processed).
The core is :func:`despeckle_clip`, which takes the ensemble object (tests inject a tiny one).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from usclean_gui.dicomio import (
    Clip,
    compose_frame,
    open_image,
    uncertainty_frame,
    write_derived,
    write_npy,
    write_png,
)

HELP = "despeckle a DICOM clip, PNG or NPY with the IR-SDE ensemble (optional uncertainty map)"
SUFFIXES = (".dcm", ".png", ".npy")
DEFAULT_MODEL = "multiprobe"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN", help="input .dcm (any suffix read as DICOM), .png or .npy")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output .dcm, .png or .npy")
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|DIR",
                        help="shipped model (multiprobe, l11-5v, baseline) or a `usclean train` folder "
                             "(default: %(default)s)")
    parser.add_argument("--steps", type=int, default=None, help="network evaluations per member (default: the model's)")
    parser.add_argument("--sampler", default=None, help="posterior | ddim | em (default: the model's)")
    parser.add_argument("--members", type=int, default=None, help="use the first K ensemble members (default: all)")
    parser.add_argument("--frames", default=None, metavar="START:STOP",
                        help="frames to process, Python slice style (e.g. 0:10, 5:, 7; negative starts as --frames=-3:); "
                             "default: all")
    parser.add_argument("--uncertainty", default=None, metavar="OUT_STD",
                        help="also write the per-pixel ensemble std (.dcm, .png or .npy)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (same seed, same result; default 0)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_frames(spec: Optional[str], n_frames: int) -> list[int]:
    """Frame indices for ``START:STOP`` (slice semantics, negatives from the end) or ``N``.

    Raises:
        ValueError: malformed, or selecting no frame.
    """
    if spec is None or spec.strip() in ("", ":"):
        return list(range(n_frames))
    text = spec.strip()
    try:
        if ":" in text:
            start_s, stop_s = text.split(":", 1)
            start = int(start_s) if start_s.strip() else None
            stop = int(stop_s) if stop_s.strip() else None
            indices = list(range(n_frames))[slice(start, stop)]
        else:
            i = int(text)
            if not -n_frames <= i < n_frames:
                raise IndexError
            indices = [i % n_frames]
    except ValueError:
        raise ValueError("--frames %r: expected START:STOP or a frame number, e.g. 0:10" % spec) from None
    except IndexError:
        raise ValueError("--frames %s: the input has %d frame(s) (0..%d)" % (spec, n_frames, n_frames - 1)) from None
    if not indices:
        raise ValueError("--frames %s selects no frame of the %d in the input" % (spec, n_frames))
    return indices


def _check_output(path: str, what: str, source: Path) -> Path:
    out = Path(path)
    if out.suffix.lower() not in SUFFIXES:
        raise ValueError("%s %s: the file name must end in .dcm, .png or .npy" % (what, out))
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise ValueError("%s %s is the input file; the source is never overwritten" % (what, out))
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError("%s %s: folder %s does not exist" % (what, out, parent))
    return out


@dataclass
class Settings:
    """What actually ran (defaults resolved), for provenance."""

    model: str
    sampler: str
    steps: int
    members: int
    seed: int

    def describe(self) -> str:
        return "USClean despeckling: model %s; sampler %s; steps %d; members %d; seed %d" % (
            self.model, self.sampler, self.steps, self.members, self.seed)


def resolve_settings(ensemble: Any, steps: Optional[int], sampler: Optional[str], members: Optional[int],
                     seed: int) -> Settings:
    """The settings ``ensemble.iter_despeckle`` will use for these arguments."""
    if getattr(ensemble, "mode", "irsde") != "irsde":
        eff_sampler, eff_steps = "direct (%s)" % ensemble.mode, 1
    else:
        eff_sampler = sampler or ensemble.default_sampler
        eff_steps = int(ensemble.default_steps if steps is None else steps)
    return Settings(model=str(getattr(ensemble, "name", "") or "unnamed"), sampler=eff_sampler, steps=eff_steps,
                    members=int(ensemble.members if members is None else members), seed=int(seed))


@dataclass
class ClipResult:
    """Despeckled B-mode crops of the selected frames."""

    indices: list[int]
    mean: np.ndarray  # (F, h, w) float32 in [0, 1]
    std: np.ndarray  # (F, h, w) float32
    settings: Settings
    seconds: float


def despeckle_clip(clip: Clip, ensemble: Any, indices: Sequence[int], steps: Optional[int] = None,
                   sampler: Optional[str] = None, members: Optional[int] = None, seed: int = 0,
                   progress: Optional[Callable[[int, int], None]] = None,
                   on_frame: Optional[Callable[[int, int], None]] = None) -> ClipResult:
    """Run ``ensemble.iter_despeckle`` on the B-mode crops of ``clip``'s frames ``indices``.

    Args:
        clip: the opened input.
        ensemble: an :class:`engine.Ensemble` (or anything with its ``iter_despeckle`` API).
        indices: source frame indices.
        steps, sampler, members, seed: passed to the engine (None = the model's defaults).
        progress: ``progress(done, total)`` network evaluations (from the engine).
        on_frame: ``on_frame(k, n)`` after the k-th of n frames has finished.

    Raises:
        ValueError: a B-mode region smaller than the engine accepts, or the engine's own
            ValueError for bad settings.
    """
    x0, y0, x1, y1 = clip.bmode_region
    if min(x1 - x0, y1 - y0) < 16:
        raise ValueError("the B-mode region %s of %s is %dx%d pixels; at least 16x16 are needed"
                         % (clip.bmode_region, clip.path.name, x1 - x0, y1 - y0))
    crops = np.stack([clip.gray_frame(i)[y0:y1, x0:x1] for i in indices]).astype(np.float32)
    settings = resolve_settings(ensemble, steps, sampler, members, seed)
    mean = np.zeros_like(crops)
    std = np.zeros_like(crops)
    seen = np.zeros(len(indices), dtype=bool)
    t0 = time.perf_counter()
    for k, m, s in ensemble.iter_despeckle(crops, steps=steps, sampler=sampler, members=members, seed=seed,
                                           progress=progress):
        mean[k], std[k], seen[k] = m, s, True
        if on_frame is not None:
            on_frame(int(seen.sum()), len(indices))
    if not seen.all():
        raise RuntimeError("the engine returned %d of %d frames" % (int(seen.sum()), len(indices)))
    return ClipResult(list(indices), mean, std, settings, time.perf_counter() - t0)


def _grey_composite(clip: Clip, index: int, crop: np.ndarray) -> np.ndarray:
    g = np.array(clip.gray_frame(index))
    x0, y0, x1, y1 = clip.bmode_region
    m = clip.process_mask(index)
    full = np.zeros(clip.shape, np.float32)
    full[y0:y1, x0:x1] = crop
    g[m] = full[m]
    return g


def _std_full(clip: Clip, index: int, crop: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = clip.bmode_region
    out = np.zeros(clip.shape, np.float32)
    m = clip.process_mask(index)
    full = np.zeros(clip.shape, np.float32)
    full[y0:y1, x0:x1] = crop
    out[m] = full[m]
    return out


def write_result(clip: Clip, result: ClipResult, out: Path, uncertainty: bool = False) -> Path:
    """Write the mean (or, with ``uncertainty``, the std) of ``result`` to ``out`` by its suffix."""
    frames = result.std if uncertainty else result.mean
    suffix = out.suffix.lower()
    if suffix == ".dcm":
        return write_derived(clip, frames, out, result.settings.describe(), frame_indices=result.indices,
                             uncertainty=uncertainty)
    if suffix == ".png":
        if len(result.indices) != 1:
            raise ValueError("%s: a PNG holds one frame but %d were processed; choose one with --frames N "
                             "or write .dcm / .npy" % (out, len(result.indices)))
        i = result.indices[0]
        img = uncertainty_frame(clip, i, frames[0]) if uncertainty else compose_frame(clip, i, frames[0])
        if img.dtype.kind == "f":
            img = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
        elif img.dtype not in (np.uint8, np.uint16):
            img = clip.to_unit(img)  # signed DICOM data: store the grey image
        return write_png(out, img, protect=(clip.path,))
    build = _std_full if uncertainty else _grey_composite
    stack = np.stack([build(clip, i, f) for i, f in zip(result.indices, frames)])
    if clip.n_frames == 1 and len(result.indices) == 1:
        stack = stack[0]
    return write_npy(out, stack, protect=(clip.path,))


def run(args: argparse.Namespace, ensemble: Any = None) -> int:
    """Run the command; ``ensemble`` injects a loaded model (else ``--model`` is loaded)."""
    source = Path(args.input)
    out = _check_output(args.output, "output", source)
    std_out = _check_output(args.uncertainty, "--uncertainty", source) if args.uncertainty else None
    if std_out is not None and std_out.resolve() == out.resolve():
        raise ValueError("--uncertainty %s is the same file as the output" % std_out)
    clip = open_image(source)
    indices = parse_frames(args.frames, clip.n_frames)
    if out.suffix.lower() == ".png" and len(indices) != 1:
        raise ValueError("%s: a PNG holds one frame but %d are selected; choose one with --frames N or write "
                         ".dcm / .npy" % (out, len(indices)))
    if ensemble is None:
        from engine import load_ensemble

        ensemble = load_ensemble(args.model, device=args.device)
    settings = resolve_settings(ensemble, args.steps, args.sampler, args.members, args.seed)

    from tqdm import tqdm

    bar = tqdm(total=None, unit="eval", desc="despeckle", disable=args.quiet, file=sys.stderr,
               dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    def on_frame(k: int, n: int) -> None:
        bar.set_postfix_str("frame %d/%d" % (k, n))

    try:
        result = despeckle_clip(clip, ensemble, indices, steps=args.steps, sampler=args.sampler,
                                members=args.members, seed=args.seed, progress=progress, on_frame=on_frame)
    finally:
        bar.close()
    written = [write_result(clip, result, out)]
    if std_out is not None:
        written.append(write_result(clip, result, std_out, uncertainty=True))
    per_frame = 1000.0 * result.seconds / len(indices)
    print("despeckled %d frame(s) of %s in %.1f s (%.0f ms/frame): %s; sampler %s, steps %d, members %d"
          % (len(indices), source.name, result.seconds, per_frame, settings.model, settings.sampler,
             settings.steps, settings.members))
    for path in written:
        print("wrote %s" % path)
    return 0
