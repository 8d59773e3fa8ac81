"""``usclean train``: train a despeckling ensemble (IR-SDE, direct regression or DnCNN) on simulated pairs."""
from __future__ import annotations

import argparse

HELP = "train a despeckling ensemble on simulated pairs (resumable; writes a model folder)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--probe", action="append", dest="probes", metavar="NAME",
                   help="probe(s) to simulate: L11-5v, L12-3v, C5-2v, P4-2v (repeat for several; default L11-5v)")
    p.add_argument("--members", type=int, default=4, help="ensemble members K (default 4)")
    p.add_argument("--minutes", type=float, default=10.0, help="total training time budget in minutes (default 10)")
    p.add_argument("--arch", choices=("irsde", "regression", "dncnn"), default="irsde",
                   help="irsde (default), regression (same UNet, no diffusion) or dncnn")
    p.add_argument("-o", "--out", required=True, metavar="DIR",
                   help="run folder: checkpoints go here as training goes; an existing run is resumed")
    p.add_argument("--data", metavar="DIR", help="train from a `usclean simulate-dataset` folder instead of on the fly")
    p.add_argument("--seed", type=int, default=0, help="base seed (member k uses seed*1000+k)")
    p.add_argument("--lambda", dest="lam", type=float, default=30.0,
                   help="IR-SDE stationary std λ in grey levels out of 255 (default 30)")
    p.add_argument("--loss", choices=("x0", "ml"), default="x0", help="x0 L1 (default) or the IR-SDE ML loss")
    p.add_argument("--norm", choices=("l1", "l2"), default="l1",
                   help="per-pixel penalty of the loss: l1 (default, the reference's) or l2 (squared error: the "
                        "estimate of the mean, which is what PSNR scores)")
    p.add_argument("--patch", type=int, default=64, help="training crop size (default 64)")
    p.add_argument("--batch", type=int, default=8, help="crops per member per step (default 8)")
    p.add_argument("--base", type=int, default=32, help="UNet base channels (default 32, ~0.7 M parameters)")
    p.add_argument("--t-focus", type=float, default=0.0, metavar="F",
                   help="IR-SDE: share of each batch drawn from the last 20 timesteps, where 1-2 step sampling "
                        "starts (default 0: t uniform; may change when a run is resumed)")
    p.add_argument("--precond", choices=("none", "wiener"), default="none",
                   help="IR-SDE input scaling: none (reference: raw x_t - mu) or wiener (x_t - mu shrunk by its "
                        "signal-to-noise ratio, ~0 at t = T; see engine.sde)")
    p.add_argument("--init", metavar="MODEL",
                   help="start from a shipped model name or an exported model folder (same architecture; "
                        "its first --members members) instead of a random initialisation")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3; lower for --init)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]: where the optimiser steps run (the "
                   "simulator always runs on the CPU); may change when a run is resumed")
    p.add_argument("--data-kind", choices=("mri", "randomized"), default="mri",
                   help="pairs: mri (MNI phantoms through the probes' fast path, default) or randomized "
                        "(domain-randomised physics, simulator.randomized)")
    p.add_argument("--target", choices=("echo", "bmode"), default="echo",
                   help="what the network learns: echo (the echogenicity, default) or bmode (the speckle-free "
                        "B-mode; needs --data-kind randomized)")
    p.add_argument("--uncertainty", action="store_true",
                   help="members also predict the variance of their own error (an uncertainty head)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16 autocast (fast on CPUs with AMX / AVX512-BF16 and on GPUs) or fp32 (default)")
    p.add_argument("--max-steps", type=int, default=None, help="stop at this many optimiser steps in all")
    p.add_argument("--name", default="", help="model name written in the model card")
    p.add_argument("--export-to", metavar="DIR",
                   help="do not train: export the run's latest EMA checkpoint as a model folder DIR")


def run(args: argparse.Namespace) -> int:
    from engine.train import TrainConfig, export, train

    if args.export_to:
        export(args.out, args.export_to, name=args.name or None)
        return 0
    cfg = TrainConfig(probes=args.probes or ["L11-5v"], members=args.members, minutes=args.minutes, arch=args.arch,
                      seed=args.seed, lam=args.lam / 255.0, loss=args.loss, norm=args.norm, patch=args.patch,
                      batch=args.batch, base=args.base, data_dir=args.data, threads=args.threads, device=args.device,
                      name=args.name, t_focus=args.t_focus, precond=args.precond, init=args.init, lr=args.lr,
                      data=args.data_kind, target=args.target, uncertainty=args.uncertainty, precision=args.precision,
                      max_steps=args.max_steps)
    if cfg.data == "randomized":  # the pairs carry their own zoom, gain and dynamic-range variation
        cfg.zoom, cfg.gain, cfg.dr_ratio = (1.0, 1.0), 0.0, (1.0, 1.0)
    from simulator.probes import PROBE_NAMES
    bad = [p for p in cfg.probes if p not in PROBE_NAMES]
    if bad:
        raise ValueError("unknown probe(s) %s; choose from %s" % (", ".join(bad), ", ".join(PROBE_NAMES)))
    train(cfg, args.out)
    export(args.out, name=args.name or None)
    return 0
