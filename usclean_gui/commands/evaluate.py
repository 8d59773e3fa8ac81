"""``usclean evaluate``: regenerate docs/RESULTS.md and its figures from the committed test sets."""
from __future__ import annotations

import argparse
import sys
import time

HELP = "evaluate the shipped models and the tuned classical filters; write a Markdown report with figures"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="a tiny subset (2 images per set, 1-image references, short steps curve): "
                             "minutes, not an hour")
    parser.add_argument("-o", "--output", default="docs/RESULTS.md", help="report path (default: docs/RESULTS.md)")
    parser.add_argument("--figures", default=None, help="figure folder (default: figures/ next to the report)")
    parser.add_argument("--max-images", type=int, default=None,
                        help="evaluate only the first N images of each test set")
    parser.add_argument("--ref-images", type=int, default=None,
                        help="images per set for the 100-step references (default 16; quick: 1)")
    parser.add_argument("--ref-kinds", nargs="+", choices=("fast", "full"), default=None,
                        help="test-set kinds that get the 100-step references (default: full)")
    parser.add_argument("--budget-min", type=float, default=None,
                        help="shrink the reference/steps subsets to finish within this many minutes "
                             "(default 90; quick: 5; 0 = never shrink)")
    parser.add_argument("--kinds", nargs="+", choices=("fast", "full"), default=None, help="test-set kinds to evaluate")
    parser.add_argument("--probes", nargs="+", default=None, help="probes to evaluate (default: all four)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every model call (default 0)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes for the classical filters (default 2; 1 = no worker processes)")
    parser.add_argument("--no-generalization", action="store_true",
                        help="skip the foreign full-physics sets and the real clips")


def run(args: argparse.Namespace) -> int:
    from engine.evaluate import PROBES, EvalConfig, run_evaluation

    cfg = EvalConfig.quick_config() if args.quick else EvalConfig()
    if args.max_images is not None:
        if args.max_images < 1:
            raise ValueError("--max-images must be at least 1")
        cfg.max_images = args.max_images
    if args.ref_images is not None:
        if args.ref_images < 1:
            raise ValueError("--ref-images must be at least 1")
        cfg.ref_images = args.ref_images
    if args.kinds:
        cfg.kinds = tuple(args.kinds)
    if args.probes:
        unknown = [p for p in args.probes if p not in PROBES]
        if unknown:
            raise ValueError("unknown probe(s) %s; valid probes: %s" % (", ".join(unknown), ", ".join(PROBES)))
        cfg.probes = tuple(args.probes)
    if args.budget_min is not None:
        if args.budget_min < 0:
            raise ValueError("--budget-min must be >= 0")
        cfg.budget_min = args.budget_min
    if args.ref_kinds and not args.quick:
        cfg.ref_sets = tuple((k, p) for k in args.ref_kinds for p in cfg.probes)
    if args.workers is not None:
        if args.workers < 1:
            raise ValueError("--workers must be at least 1")
        cfg.workers = args.workers
    cfg.seed = args.seed
    command = "usclean evaluate" + (" --quick" if args.quick else "") + " -o %s" % args.output
    t0 = time.time()
    from pathlib import Path

    fig_dir = Path(args.figures) if args.figures else Path(args.output).parent / "figures"
    results = run_evaluation(args.output, args.figures, config=cfg, command=command,
                             generalization=None if args.no_generalization else
                             _generalization(args.quick, fig_dir, Path(args.output).parent))
    print("wrote %s (%d figures) in %.1f min" % (args.output, len(results.get("figures", {})), (time.time() - t0) / 60))
    if results["missing"]:
        print("missing (listed in the report):", file=sys.stderr)
        for m in results["missing"]:
            print("  - %s" % m, file=sys.stderr)
    return 0


def _generalization(quick: bool, fig_dir, report_dir):
    """The foreign-set and real-clip stage for the shipped models (quick: two clips), with a full-size figure
    of every clip through the default model."""
    def run(models: dict):
        import os

        from engine.generalization import run_generalization
        from simulator.foreign import available
        from usclean_gui.realclips import load_real_clips

        clips = load_real_clips(names=("ybr_color", "demo") if quick else None)
        return run_generalization(models, available(), clips, log=lambda s: print(s, file=sys.stderr, flush=True),
                                  fig_dir=fig_dir, figure_model="multiprobe" if "multiprobe" in models else None,
                                  fig_link=lambda p: os.path.relpath(p, report_dir).replace(os.sep, "/"))
    return run
