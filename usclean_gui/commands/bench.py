"""``usclean bench``: time the despeckler against its 100-step references, BM3D and NLM, then the whole per-frame
path of ``usclean despeckle`` on a DICOM clip, stage by stage."""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEMO_CLIP = Path(__file__).resolve().parents[2] / "resources" / "demo" / "demo_clip.dcm"
#: the stages of one frame of ``usclean despeckle``, in order
STAGES = ("decode", "marks", "fill", "despeckle", "composite", "write")

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
    p.add_argument("--clip", default=str(DEMO_CLIP), metavar="DICOM",
                   help="clip for the per-frame stages of usclean despeckle (default: the demo clip)")
    p.add_argument("--clip-frames", type=int, default=None, metavar="N",
                   help="frames of --clip to time after the first (default 20; --quick: 3)")


def pipeline_stages(clip, ensemble: Any, frames: int) -> dict[str, float]:
    """Median ms per frame of each stage of ``usclean despeckle`` (:data:`STAGES`) over ``frames`` frames of
    ``clip`` after its first, which is run untimed (it compiles the network for the pane's shape and fits the
    clip's normalisation, once per clip): decode (read the frame, map it to grey), marks (burned-in marks and the
    processed pixels), fill (the pane crops with their marks inpainted), despeckle (the engine: network, resampling,
    mean and uncertainty, brightness), composite (blend and write the stored values back) and write (append to a
    derived series, discarded at the end)."""
    from usclean_gui.dicomio import DerivedWriter
    from usclean_gui.pipeline import box_input, compose, ensemble_hook, require_panes

    panes = require_panes(clip)
    hook = ensemble_hook(ensemble)
    indices = [i % clip.n_frames for i in range(frames + 1)]
    times: dict[str, list[float]] = {k: [] for k in STAGES}
    with tempfile.TemporaryDirectory() as tmp:
        writer = DerivedWriter(clip, Path(tmp) / "bench.dcm", "usclean bench", indices)
        try:
            for n, i in enumerate(indices):
                clip.forget_frames()  # every frame decoded and measured afresh, as in a first pass over the clip
                row, t0 = {}, time.perf_counter()
                clip.gray_frame(i)
                row["decode"], t0 = time.perf_counter() - t0, time.perf_counter()
                clip.masks.fill_mask(i)
                row["marks"], t0 = time.perf_counter() - t0, time.perf_counter()
                crops = {k: box_input(clip, i, clip.layout.panes[k].box) for k in panes}
                row["fill"], t0 = time.perf_counter() - t0, time.perf_counter()
                means, stds = {}, {}
                for k in panes:
                    for _, m, sd in hook(k, crops[k][None]):
                        means[k], stds[k] = m, sd
                row["despeckle"], t0 = time.perf_counter() - t0, time.perf_counter()
                result = compose(clip, i, means, stds)
                row["composite"], t0 = time.perf_counter() - t0, time.perf_counter()
                writer.add(result.pixels)
                row["write"] = time.perf_counter() - t0
                if n:  # the first frame compiles and fits: not a cine's per-frame cost
                    for k, v in row.items():
                        times[k].append(1000.0 * v)
        finally:
            writer.abort()
    return {k: float(np.median(v)) for k, v in times.items()}


def print_pipeline(clip, model: str, threads, frames: int) -> dict[str, float]:
    from engine import load_ensemble

    ens = load_ensemble(model, threads=threads, preview=False)
    st = pipeline_stages(clip, ens, frames)
    total = sum(st.values())
    print("")
    print("usclean despeckle, per frame of %s (%dx%d, %d frame(s); %s on %s, threads: %s; median of %d frames "
          "after the first):" % (clip.path.name, clip.shape[0], clip.shape[1], clip.n_frames, model, ens.backend,
                                 threads or "the runtime's", frames))
    print("  " + " | ".join("%s %.1f ms" % (k, v) for k, v in st.items()))
    print("  total %.1f ms = %.1f frames/s; the despeckler %.0f %%, the rest of the path %.1f ms"
          % (total, 1000.0 / total, 100.0 * st["despeckle"] / total, total - st["despeckle"]))
    return st


def run(args: argparse.Namespace) -> int:
    from engine.bench import DEFAULT_SIZES, run_bench

    sizes = args.sizes or ([(128, 128)] if args.quick else list(DEFAULT_SIZES))
    clip = None
    if args.device == "cpu":  # the clip is opened first: a bad file is reported before the long run
        from usclean_gui.dicomio import open_image
        from usclean_gui.pipeline import require_panes

        frames = args.clip_frames if args.clip_frames is not None else (3 if args.quick else 20)
        if frames < 1:
            raise ValueError("--clip-frames must be at least 1 (got %d)" % frames)
        clip = open_image(args.clip)
        require_panes(clip)
    run_bench(sizes=sizes, quick=args.quick, model=args.model, backends=args.backend or ("openvino", "onnx", "torch"),
              threads=args.threads or "auto", device=args.device)
    if clip is not None:
        print_pipeline(clip, args.model, args.threads, frames)  # threads as the CLI has them (the runtime's)
    return 0
