"""Score models on the foreign full-physics sets and the real clips (the generalization section alone).

    python benchmarks/generalization.py -o docs/experiments/generalization_check.md \
        --model multiprobe --model l11-5v --model /path/to/exported_folder [--inputs 3] [--probe L11-5v] [--root DIR]

Each ``--model`` is a shipped name or a model folder; ``NAME:brightness=off`` scores it without the
brightness correction (engine.brightness), ``NAME:normalize=off`` without the real-frame normalisation
(engine.normalize); options combine with commas.  The full report (``usclean evaluate``) contains the same section.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--probe", action="append")
    ap.add_argument("--root", type=Path, help="another foreign set's folder (default: the committed sets), e.g. "
                                              "resources/testsets/foreign_replication")
    ap.add_argument("--inputs", type=int, default=1, help="leave-one-out inputs per foreign image (default 1)")
    ap.add_argument("--no-clips", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the numbers as JSON")
    ap.add_argument("--workers", type=int, default=1, help="processes for BM3D (default 1: this process)")
    a = ap.parse_args(argv)
    import numpy as np

    from engine import load_ensemble
    from engine.generalization import run_generalization
    from simulator.foreign import available

    models = {}
    for spec in a.model:
        name, _, opt = spec.partition(":")
        ens = load_ensemble(name)
        for o in filter(None, opt.split(",")):
            key, _, val = o.partition("=")
            if key == "brightness" and val in ("on", "off"):
                ens.keep_brightness = val == "on"
            elif key == "normalize" and val in ("auto", "off"):
                ens.normalize = val
            else:
                raise SystemExit("unknown model option %r (brightness=on|off, normalize=auto|off)" % o)
        models[Path(name).name + (" (%s)" % opt if opt else "")] = ens
    clips = []
    if not a.no_clips:
        from usclean_gui.realclips import load_real_clips
        clips = load_real_clips()
    t = time.time()
    from engine.evaluate import filter_pool

    pool = filter_pool(a.workers)
    try:
        res, md = run_generalization(models, a.probe or available(a.root), clips, inputs=a.inputs, root=a.root,
                                     map_fn=pool.map if pool else map, log=lambda s: print(s, flush=True))
    finally:
        if pool:
            pool.shutdown()
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(md + "\n(%s, %.1f min)\n" % (" ".join(sys.argv[1:]) if argv is None else " ".join(argv),
                                                     (time.time() - t) / 60))
    if a.json:
        def clean(o):
            if isinstance(o, dict):
                return {k: clean(v) for k, v in o.items() if k != "outputs"}
            if isinstance(o, (list, tuple)):
                return [clean(v) for v in o]
            if isinstance(o, np.ndarray):
                return o.tolist()
            if isinstance(o, np.generic):
                return o.item()
            return o
        a.json.write_text(json.dumps(clean(res), indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
