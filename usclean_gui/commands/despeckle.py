"""``usclean despeckle IN -o OUT``: despeckle a DICOM clip, PNG or NPY with an IR-SDE ensemble.

Frames stream through :func:`usclean_gui.pipeline.despeckle_frames` (every B-mode pane, marks
filled before the network sees them, ``--strength`` blend, composite through the clip's process
mask) a chunk at a time and are written as they come, so memory stays flat with clip length:
burned-in marks, colour, kept regions (bars, traces, spectra) and everything outside the panes'
fields of view stay exactly as decoded.  Outputs by suffix:

* ``.dcm``: a derived series of the source (see :class:`usclean_gui.dicomio.DerivedWriter`);
* ``.png``: one frame, in the source's decoded colour model (8/16 bit as the source);
* ``.npy``: float32 grey in [0, 1], (F, H, W) (or (H, W) for a still), unprocessed pixels as the
  source's grey values.

``--uncertainty OUT_STD`` writes the member std the same way (DICOM / PNG: 8 bit,
``255 * std / UNCERTAINTY_FULL_SCALE``; NPY: float32 std, 0 where nothing was processed).
All outputs are written to temporary files and moved into place together at the end.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from usclean_gui.dicomio import DerivedWriter, atomic_path, open_image, uncertainty_pixels, write_png
from usclean_gui.pipeline import FrameResult, check_strength, despeckle_frames, ensemble_hook

from engine.catalog import DEFAULT_MODEL

HELP = "despeckle a DICOM clip, PNG or NPY with the IR-SDE ensemble (optional uncertainty map)"
SUFFIXES = (".dcm", ".png", ".npy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN", help="input .dcm (any suffix read as DICOM), .png or .npy")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output .dcm, .png or .npy")
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|DIR",
                        help="shipped model (multiprobe, l11-5v, baseline) or a `usclean train` folder "
                             "(default: %(default)s)")
    parser.add_argument("--steps", type=int, default=None, help="network evaluations per member (default: the model's)")
    parser.add_argument("--sampler", default=None, help="posterior | ddim | em (default: the model's)")
    parser.add_argument("--members", type=int, default=None, help="use the first K ensemble members (default: all)")
    parser.add_argument("--strength", type=float, default=1.0, metavar="S",
                        help="how much of the despeckled image is shown, 0 (the original) to 1 (default: 1)")
    parser.add_argument("--frames", default=None, metavar="START:STOP",
                        help="frames to process, Python slice style (e.g. 0:10, 5:, 7; "
                             "negative starts as --frames=-3:); default: all")
    parser.add_argument("--uncertainty", default=None, metavar="OUT_STD",
                        help="also write the per-pixel ensemble std (.dcm, .png or .npy)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (same seed, same result; default 0)")
    parser.add_argument("--device", default=None, help="cpu or cuda (torch backend; default: cuda when available)")
    parser.add_argument("--backend", choices=("auto", "openvino", "onnx", "torch"), default="auto",
                        help="inference runtime (default auto: OpenVINO, else ONNX Runtime, else torch; torch on "
                             "a GPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_frames(spec: str | None, n_frames: int) -> list[int]:
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
    strength: float = 1.0

    def describe(self) -> str:
        return "USClean despeckling: model %s; sampler %s; steps %d; members %d; seed %d; strength %.2f" % (
            self.model, self.sampler, self.steps, self.members, self.seed, self.strength)


def resolve_settings(ensemble: Any, steps: int | None, sampler: str | None, members: int | None,
                     seed: int, strength: float = 1.0) -> Settings:
    """The settings ``ensemble.iter_despeckle`` will use for these arguments."""
    if getattr(ensemble, "mode", "irsde") != "irsde":
        eff_sampler, eff_steps = "direct (%s)" % ensemble.mode, 1
    else:
        eff_sampler = sampler or ensemble.default_sampler
        eff_steps = int(ensemble.default_steps if steps is None else steps)
    return Settings(model=str(getattr(ensemble, "name", "") or "unnamed"), sampler=eff_sampler, steps=eff_steps,
                    members=int(ensemble.members if members is None else members), seed=int(seed),
                    strength=check_strength(strength))


class _Sink:
    """Where one output's frames go, by its suffix (written into ``tmp``, a temporary file)."""

    def __init__(self, clip, out: Path, tmp: Path, indices: list[int], description: str, uncertainty: bool) -> None:
        self.clip, self.out, self.tmp, self.uncertainty = clip, out, tmp, uncertainty
        self.kind = out.suffix.lower()
        self.dicom = (DerivedWriter(clip, tmp, description, indices, uncertainty=uncertainty)
                      if self.kind == ".dcm" else None)
        self.stack = None
        if self.kind == ".npy":
            shape = clip.shape if clip.n_frames == 1 and len(indices) == 1 else (len(indices),) + clip.shape
            self.stack = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        self.k = 0

    def add(self, r: FrameResult) -> None:
        if self.dicom is not None:
            self.dicom.add(uncertainty_pixels(r.std, r.mask) if self.uncertainty else r.pixels)
        elif self.stack is not None:
            frame = r.std if self.uncertainty else r.unit
            if self.stack.ndim == 2:
                self.stack[...] = frame
            else:
                self.stack[self.k] = frame
        else:
            img = uncertainty_pixels(r.std, r.mask) if self.uncertainty else r.pixels
            if img.dtype.kind == "f":
                img = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
            elif img.dtype not in (np.uint8, np.uint16):
                img = r.unit  # signed DICOM data: store the grey image
            write_png(self.tmp, img, protect=(self.clip.path,))
        self.k += 1

    def close(self) -> None:
        if self.dicom is not None:
            self.dicom.close()
        elif self.stack is not None:
            self.stack.flush()
            del self.stack

    def abort(self) -> None:
        if self.dicom is not None:
            self.dicom.abort()
        self.stack = None


def run(args: argparse.Namespace, ensemble: Any = None) -> int:
    """Run the command; ``ensemble`` injects a loaded model (else ``--model`` is loaded)."""
    source = Path(args.input)
    out = _check_output(args.output, "output", source)
    std_out = _check_output(args.uncertainty, "--uncertainty", source) if args.uncertainty else None
    if std_out is not None and std_out.resolve() == out.resolve():
        raise ValueError("--uncertainty %s is the same file as the output" % std_out)
    strength = check_strength(getattr(args, "strength", 1.0))
    clip = open_image(source)
    indices = parse_frames(args.frames, clip.n_frames)
    for path in (out, std_out):
        if path is not None and path.suffix.lower() == ".png" and len(indices) != 1:
            raise ValueError("%s: a PNG holds one frame but %d are selected; choose one with --frames N or write "
                             ".dcm / .npy" % (path, len(indices)))
    if ensemble is None:
        from engine import load_ensemble

        ensemble = load_ensemble(args.model, device=args.device, backend=getattr(args, "backend", "auto"))
    settings = resolve_settings(ensemble, args.steps, args.sampler, args.members, args.seed, strength)
    hook = ensemble_hook(ensemble, steps=args.steps, sampler=args.sampler, members=args.members, seed=args.seed)

    from tqdm import tqdm

    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        sinks = []
        for path, unc in ((out, False), (std_out, True)):
            if path is not None:
                tmp = stack.enter_context(atomic_path(path, protect=(clip.path,), suffix=path.suffix))
                sinks.append(_Sink(clip, path, tmp, indices, settings.describe(), unc))
                stack.callback(sinks[-1].abort)
        bar = stack.enter_context(tqdm(total=len(indices), unit="frame", desc="despeckle", disable=args.quiet,
                                       file=sys.stderr, dynamic_ncols=True))
        for result in despeckle_frames(clip, hook, indices, strength=strength):
            for sink in sinks:
                sink.add(result)
            bar.update(1)
        for sink in sinks:
            sink.close()
    seconds = time.perf_counter() - t0
    print("despeckled %d frame(s) of %s in %.1f s (%.0f ms/frame): %s on %s; sampler %s, steps %d, members %d, "
          "strength %.2f" % (len(indices), source.name, seconds, 1000.0 * seconds / len(indices), settings.model,
                             getattr(ensemble, "backend", "?"), settings.sampler, settings.steps, settings.members,
                             settings.strength))
    for path in (out, std_out):
        if path is not None:
            print("wrote %s" % path)
    return 0
