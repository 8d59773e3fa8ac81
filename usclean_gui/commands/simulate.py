"""``usclean simulate``: simulate a cine loop of a phantom and write it as ultrasound DICOM."""
from __future__ import annotations

import argparse
import sys

HELP = "simulate a B-mode cine loop of a phantom (speckle moving with the tissue) as DICOM"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--probe", default="C5-2v", help="probe preset: L11-5v, L12-3v, C5-2v, P4-2v (default C5-2v)")
    parser.add_argument("--phantom", default="cyst", help="phantom name (see --list-phantoms; default cyst)")
    parser.add_argument("--n-frames", type=int, default=20, help="number of frames (default 20)")
    parser.add_argument("--path", choices=("fast", "full"), default="fast",
                        help="physics: fast PSF convolution or full MUST simulation (~1 min per frame)")
    parser.add_argument("--size", type=int, default=128, help="image size in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (phantom, scatterers, motion)")
    parser.add_argument("--lesions", type=int, default=None, metavar="N",
                        help="mri phantom: number of inserted lesions (default: random 0-2)")
    parser.add_argument("--frame-time", type=float, default=33.3, metavar="MS", help="ms between frames (default 33.3)")
    parser.add_argument("-o", "--out", metavar="FILE.dcm", help="output DICOM file")
    parser.add_argument("--list-phantoms", action="store_true", help="list the phantom names and exit")


def run(args: argparse.Namespace) -> int:
    from simulator.phantoms import PHANTOM_NAMES

    if args.list_phantoms:
        from simulator.cine import PHANTOM_HELP

        for name in PHANTOM_NAMES:
            print(f"{name:12s} {PHANTOM_HELP.get(name, '')}")
        return 0
    if not args.out:
        print("usclean simulate: error: -o/--out FILE.dcm is required (or use --list-phantoms)", file=sys.stderr)
        return 2
    from simulator.cine import simulate_cine
    from simulator.probes import get_probe
    from usclean_gui.dicomio import write_cine

    probe = get_probe(args.probe)
    phantom_kw = {}
    if args.lesions is not None:
        if args.phantom.strip().lower() != "mri":
            raise ValueError("--lesions applies to the mri phantom only")
        if not 0 <= args.lesions <= 5:
            raise ValueError(f"--lesions must be between 0 and 5, got {args.lesions}")
        phantom_kw["lesions"] = args.lesions
    progress = _ProgressBar(args.n_frames)
    try:
        frames, spacing, frame_time = simulate_cine(args.phantom, probe, args.n_frames, seed=args.seed,
                                                    path=args.path, size=args.size, frame_time_ms=args.frame_time,
                                                    progress=progress, **phantom_kw)
    finally:
        progress.close()
    out = write_cine(frames, spacing, frame_time, args.out,
                     description=f"USClean simulation: {args.phantom} phantom, {probe.name}, {args.path} physics",
                     Manufacturer="USClean simulator", TransducerData=[probe.name])
    print(f"wrote {out}: {frames.shape[0]} frames {frames.shape[1]}x{frames.shape[2]}, "
          f"{spacing[0]:.3f} x {spacing[1]:.3f} mm/pixel, {probe.dynamic_range_db:g} dB dynamic range")
    return 0


class _ProgressBar:
    """A tqdm bar on stderr fed by ``progress(done, total)`` callbacks."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=max(int(total), 0), unit="frame", desc="simulating", file=sys.stderr,
                         disable=None, dynamic_ncols=True)

    def __call__(self, done: int, total: int) -> None:
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()
