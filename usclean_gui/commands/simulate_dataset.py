"""``usclean simulate-dataset``: simulate paired training data on Dask (resumable)."""
from __future__ import annotations

import argparse
import sys

HELP = "simulate (B-mode, clean) training pairs from MRI phantoms on Dask (resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--probe", action="append", required=True, metavar="NAME",
                        help="probe preset (repeat for several): L11-5v, L12-3v, C5-2v, P4-2v")
    parser.add_argument("--n", type=int, required=True, help="number of pairs per probe")
    parser.add_argument("--size", type=int, default=128, help="image size in pixels (default 128)")
    parser.add_argument("--path", choices=("fast", "full"), default="fast",
                        help="physics: fast PSF convolution or full MUST simulation (default fast)")
    parser.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder (re-run to resume)")
    parser.add_argument("--scheduler", default=None, metavar="ADDR",
                        help="address of an existing Dask scheduler (default: a local cluster on all cores)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; each sample's seed derives from it")
    parser.add_argument("--val", type=float, default=0.1, help="fraction of validation samples (default 0.1)")
    parser.add_argument("--test", type=float, default=0.1, help="fraction of test samples (default 0.1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from simulator.datasets import generate_dataset

    if not (0 <= args.val < 1 and 0 <= args.test < 1 and args.val + args.test < 1):
        raise ValueError(f"--val and --test must be fractions in [0, 1) summing below 1, got {args.val}, {args.test}")
    fractions = {"train": 1.0 - args.val - args.test, "val": args.val, "test": args.test}
    try:
        summary = generate_dataset(args.probe, args.n, size=args.size, path=args.path, out_dir=args.out,
                                   seed=args.seed, scheduler=args.scheduler, progress=not args.no_progress,
                                   split_fractions=fractions)
    except RuntimeError as exc:  # some samples failed; the others are written
        print(f"usclean simulate-dataset: {exc}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError) as exc:
        if args.scheduler is None:
            raise
        print(f"usclean simulate-dataset: error: cannot use the Dask scheduler {args.scheduler!r}: {exc}",
              file=sys.stderr)
        return 2
    print(f"{summary['written']} written, {summary['skipped']} already present, "
          f"{summary['total']} total in {summary['out_dir']} ({summary['seconds']:.1f} s)")
    return 0
