"""Which factors of the domain randomisation matter: short equal-step runs scored on the foreign sets.

Each variant trains one direct-regression UNet member (the shipped size, bf16 where native, the same seed, learning
rate schedule and number of optimiser steps) on pairs drawn on the fly from ``simulator.randomized`` with
one factor (or group) held at its typical value, or with the echogenicity as the target, or on the legacy
MRI pipeline; then every finished variant is scored on every foreign set (affine-fitted PSNR against the
speckle-free B-mode, and against the echogenicity) and on the real clips (tissue mean shift).  Finished
runs in ``--runs`` are reused; a part-way run resumes.  On two cores, train halves in parallel with
``--only … --train-only`` and score all of them with ``--score-only``.

    python benchmarks/factor_ablation.py --runs runs/ablation -o docs/experiments/factor_ablation.md --steps 1500
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ALL = ("L11-5v", "L12-3v", "C5-2v", "P4-2v")
#: name -> (description, TrainConfig overrides)
VARIANTS = {
    "all": ("every factor randomised, speckle-free B-mode target", {}),
    "all-reseeded": ("as `all`, another seed (run-to-run noise)", {"seed_offset": 1}),
    "echo-target": ("every factor randomised, echogenicity target", {"target": "echo"}),
    "no-grain": ("grain held at the PSF's native size", {"disable": ("grain",)}),
    "no-psf": ("one PSF (L11-5v bank, mid depth), no compounding", {"disable": ("psf",)}),
    "no-scatterers": ("dense Rayleigh scatterers only", {"disable": ("scatterers",)}),
    "no-scanner": ("no scanner resampling, post-processing or sector", {"disable": ("resampling", "postprocessing",
                                                                                   "sector")}),
    "no-greymap": ("identity grey map", {"disable": ("greymap",)}),
    "mri-only": ("MNI echogenicity only", {"disable": ("sources",)}),
    "no-noise-gain": ("no noise, haze, gain or dynamic-range variation", {"disable": ("noise", "gain")}),
    "legacy": ("the legacy pipeline: MNI phantoms through the probes' fast path, echogenicity target",
               {"data": "mri", "target": "echo", "zoom": (0.75, 1.33), "gain": 0.08, "dr_ratio": (0.75, 1.35)}),
}


def config(name: str, steps: int, seed: int, precision: str = "fp32"):
    from engine.train import TrainConfig

    over = dict(VARIANTS[name][1])
    seed += over.pop("seed_offset", 0)
    base = dict(probes=list(ALL), members=1, minutes=1e6, arch="regression", seed=seed, data="randomized",
                target="bmode", precision=precision, base=16, batch=16, patch=64, size=128, lr=1e-3, max_steps=steps,
                norm="l2", zoom=(1.0, 1.0), gain=0.0, dr_ratio=(1.0, 1.0), pool=128, refresh=1, val_frames=8,
                checkpoint_minutes=10.0, threads=1, name="ablation-" + name)
    base.update(over)
    return TrainConfig(**base)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--only", nargs="+", choices=list(VARIANTS))
    ap.add_argument("--score-only", action="store_true", help="do not train: score the finished runs")
    ap.add_argument("--train-only", action="store_true", help="train, do not score (parallel trainers)")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                    help="auto (default): bf16 where the CPU has it natively (AMX / AVX512-BF16), else fp32")
    a = ap.parse_args(argv)
    if a.precision == "auto":
        from engine.backends import openvino_bf16

        a.precision = "bf16" if openvino_bf16() else "fp32"
    import numpy as np

    from engine.generalization import evaluate_clips, evaluate_foreign, model_method
    from engine.train import export, run_steps, train
    from simulator.foreign import available
    from usclean_gui.realclips import load_real_clips

    names = a.only or list(VARIANTS)
    for name in names:
        run = a.runs / name
        if not a.score_only and run_steps(run) < a.steps:
            t = time.time()
            train(config(name, a.steps, a.seed, a.precision), run,
                  log=lambda m: print(m, flush=True) if "checkpoint" in m else None)
            print(f"{name}: trained in {(time.time() - t) / 60:.1f} min", flush=True)
    if a.train_only:
        return 0
    from engine import load_ensemble
    methods, done = {}, []
    for name in names:
        run = a.runs / name
        if run_steps(run) < a.steps:
            continue
        if not (run / "model.json").exists():
            export(run, test_sets=False, log=lambda s: None)
        ens = load_ensemble(run)
        methods[name] = model_method(ens)
        done.append(name)
    foreign = evaluate_foreign(methods, available(), log=lambda s: print(s, flush=True))
    clips = evaluate_clips(methods, load_real_clips(), 0.3, log=lambda s: None)
    probes = list(foreign["sets"])
    lines = ["# Domain-randomisation factors: which ones matter on the foreign sets", "",
             "One direct-regression UNet member per variant (base 16, %s, seed %d, %d optimiser steps of 16 "
             "64² crops, peak lr 1e-3 with cosine decay, L2), pairs drawn on the fly; every variant differs from "
             "`all` in one factor only.  Scores: affine-fitted PSNR (dB) against the speckle-free B-mode of each "
             "foreign full-physics set (`simulator.foreign`), the mean over the four probes, the PSNR against the "
             "echogenicity (mean over probes), and the mean |tissue grey shift| over the real clips "
             "(grey levels).  Command: `python benchmarks/factor_ablation.py --steps %d`." % (
                 a.precision, a.seed, a.steps, a.steps),
             "", "| variant | what | " + " | ".join(probes) + " | mean | Δ vs all | vs echo | tissue shift (abs) |",
             "| --- | --- | " + " | ".join("---" for _ in probes) + " | --- | --- | --- | --- |"]
    mean = {}
    for name in ["input", "BM3D (tuned on this set)"] + done:
        vals = [float(np.mean(foreign["sets"][p]["rows"][name]["psnr_affine"])) for p in probes]
        mean[name] = float(np.mean(vals))
    for name in ["input", "BM3D (tuned on this set)"] + done:
        vals = [float(np.mean(foreign["sets"][p]["rows"][name]["psnr_affine"])) for p in probes]
        echo = float(np.mean([np.mean(foreign["sets"][p]["rows"][name]["psnr_echo"]) for p in probes]))
        shift = "–" if name not in done else "%.1f" % np.mean(
            [abs(c["rows"][name]["tissue_shift"]) for c in clips["clips"].values()])
        what = VARIANTS[name][0] if name in VARIANTS else ""
        delta = "%+.2f" % (mean[name] - mean["all"]) if "all" in mean and name in done else ""
        lines.append("| %s | %s | %s | %.2f | %s | %.2f | %s |" % (name, what, " | ".join("%.2f" % v for v in vals),
                                                                  mean[name], delta, echo, shift))
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
