"""``usclean bench``: time the despeckler against its 100-step references, BM3D and NLM."""
from __future__ import annotations

import argparse

HELP = "benchmark despeckling speed on every backend (ms per frame, ratios to BM3D, stages, FLOP/s, memory)"


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError("size must be N or HxW, e.g. 128 or 480x640") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 16 or max(parts) > 4096:
        raise argparse.ArgumentTypeError("size must be N or HxW with sides in 16..4096")
    return parts[0], parts[1]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu (default) or cuda (torch backend)")
    p.add_argument("--sizes", nargs="+", type=_size, metavar="HxW",
                   help="frame sizes (default 128 256 480x640; --quick: 128)")
    p.add_argument("--quick", action="store_true", help="one repeat, no references, no peaks")
    p.add_argument("--model", default="multiprobe", help="model name or folder (default multiprobe)")
    p.add_argument("--backend", nargs="+", choices=("openvino", "onnx", "torch"), default=None,
                   help="backends to compare (default: every installed one)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per backend (default: cores - 1)")


def run(args: argparse.Namespace) -> int:
    from engine.bench import DEFAULT_SIZES, run_bench

    sizes = args.sizes or ([(128, 128)] if args.quick else list(DEFAULT_SIZES))
    run_bench(sizes=sizes, quick=args.quick, model=args.model, backends=args.backend or ("openvino", "onnx", "torch"),
              threads=args.threads or "auto", device=args.device)
    return 0
