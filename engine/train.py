"""Supervised training of despeckling ensembles (IR-SDE, direct regression, DnCNN) on simulated pairs.

All K members are trained *jointly* as one grouped network (:mod:`engine.network`): one optimiser
step updates every member, each on its own mini-batch (own crops, order, t and noise from its own
seed) and from its own initialisation seed, so the members stay independent while the cost per step
is one batched forward/backward pass.

Data: pairs from the fast simulator on the fly (``simulator.datasets.PairStream``) or from a
``generate_dataset`` folder (``data_dir``), kept in a replay pool refreshed every step.  Frames enter
the pool resampled by a random pixel-spacing factor; every crop gets a random lateral flip, gain
(display offset) and dynamic-range change (``x' = 1 − (1 − x)·DR/DR'``), applied identically to input
and target.  Losses: ``x0`` (L1 on x̂_0, the default) or ``ml`` (the reference maximum-likelihood L1
on the one-step mean, :func:`engine.sde.ml_loss`).  EMA weights are what gets exported.

A run folder holds ``state.json`` (config, step, elapsed time, stream position, losses),
``checkpoint.safetensors`` (weights, EMA weights, Adam moments); it is saved every
``checkpoint_minutes`` and at the end, and training with the same folder resumes where it stopped
until the total ``minutes`` are used.  At the end :func:`export` writes ``model.safetensors`` (fp16
EMA weights), ``model.json`` and ``MODEL_CARD.md`` into the same folder (or elsewhere).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from . import normalize
from .ensemble import Ensemble, checked_device
from .network import DnCNN, UNet, init_members, param_count, select_members
from .sde import NORMS, PRECONDS, make_schedule, marginal_sample, ml_loss, net_input, penalty, x0_to_eps
from .weights import read_model, save_model

ARCHS = ("irsde", "regression", "dncnn")
DATA = ("mri", "randomized")
STATE = "state.json"
CKPT = "checkpoint.safetensors"
FOCUS_STEPS = 20  # t_focus draws t from the last FOCUS_STEPS trained steps (a_t < 0.035 there: x_t is nearly mu)


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in ``state.json`` and the model card)."""

    probes: list[str] = field(default_factory=lambda: ["L11-5v"])
    members: int = 4
    minutes: float = 10.0
    arch: str = "irsde"
    seed: int = 0
    lam: float = 30.0 / 255.0
    loss: str = "x0"
    norm: str = "l1"
    patch: int = 64
    batch: int = 8
    size: int = 128
    base: int = 32
    lr: float = 1e-3
    ema: float = 0.999
    pool: int = 96
    refresh: int = 1
    zoom: tuple[float, float] = (0.75, 1.33)
    gain: float = 0.08
    dr_ratio: tuple[float, float] = (0.75, 1.35)
    data_dir: str | None = None
    val_frames: int = 8
    checkpoint_minutes: float = 3.0
    threads: int | None = 1
    device: str = "cpu"
    name: str = ""
    t_focus: float = 0.0
    precond: str = "none"
    init: str | None = None
    init_member: int = 0  # with init: the first of its members to copy (a single-member run copies member k)
    data: str = "mri"  # "mri" (MNI phantoms, simulator.datasets) or "randomized" (simulator.randomized)
    target: str = "echo"  # "echo" (echogenicity) or "bmode" (the speckle-free B-mode; randomized data only)
    disable: tuple = ()  # randomized data: factors held at a typical value (simulator.randomized.FACTORS)
    source_weights: dict | None = None  # randomized data: echogenicity source weights (simulator.sources)
    precision: str = "fp32"  # "fp32" or "bf16" (autocast: AMX / tensor cores)
    uncertainty: bool = False  # a second output channel: the log-variance of the member's own error
    max_steps: int | None = None  # stop at this many optimiser steps (the cosine decay runs over them)
    uncertainty_weight: float = 0.1
    analytic_share: float = 0.5  # randomized data: share of analytic PSFs (0: the probes' measured banks only)
    levels: int = 2  # UNet down-sampling levels (2 or 3)
    warmup: int = 100  # optimiser steps of linear learning-rate warm-up before the cosine decay
    logvar_floor: float = -14.0  # uncertainty head: the least log-variance the likelihood sees
    nll_beta: float = 0.0  # uncertainty head: beta-NLL, the likelihood weighted by the detached variance^beta
    unshuffle: int = 1  # UNet run at 1/unshuffle of the resolution, s x s pixel blocks as channels (1, 2 or 4)
    train_only: str = ""  # "uncertainty_head": with init, only the head learns; the image output stays bit for bit
    head: int = 0  # the uncertainty head's own layers (their width; 0: the head is the last convolution's channel 1)

    #: fields that may change when a run is resumed (a t_focus change is recorded in ``RunState.stages``)
    RESUMABLE = ("minutes", "threads", "device", "name", "t_focus", "max_steps")

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the first bad setting; returns self."""
        for name, value, choices in (("--arch", self.arch, ARCHS), ("loss", self.loss, ("x0", "ml")),
                                     ("--norm", self.norm, NORMS), ("--precond", self.precond, PRECONDS),
                                     ("--data-kind", self.data, DATA), ("--target", self.target, ("echo", "bmode")),
                                     ("--precision", self.precision, ("fp32", "bf16"))):
            if value not in choices:
                raise ValueError("unknown %s %r (choose from %s)" % (name, value, ", ".join(choices)))
        if self.members < 1:
            raise ValueError("--members must be at least 1")
        if not self.minutes > 0:
            raise ValueError("--minutes must be positive")
        if not self.probes:
            raise ValueError("give at least one --probe")
        if not 0.0 <= self.t_focus <= 1.0:
            raise ValueError("--t-focus must be in [0, 1]")
        checked_device(self.device)
        self._validate_data()
        if self.patch > self.size * self.zoom[0]:
            raise ValueError("patch %d does not fit a %d frame shrunk by %.2f" % (self.patch, self.size, self.zoom[0]))
        return self

    def _validate_data(self) -> None:
        if self.target == "bmode" and self.data != "randomized":
            raise ValueError("the speckle-free B-mode target needs randomized data (--data-kind randomized)")
        if self.uncertainty and self.arch == "dncnn":
            raise ValueError("the uncertainty head needs the UNet (arch irsde or regression)")
        if self.train_only not in ("", "uncertainty_head"):
            raise ValueError("unknown train_only %r (choose from uncertainty_head)" % (self.train_only,))
        if self.train_only and not (self.uncertainty and self.init):
            raise ValueError("train_only uncertainty_head needs a model with an uncertainty head to start from "
                             "(uncertainty and --init)")
        if self.data == "randomized":
            from simulator.randomized import FACTORS
            bad = sorted(set(self.disable) - set(FACTORS))
            if bad:
                raise ValueError("unknown factor(s) %s (choose from %s)" % (", ".join(bad), ", ".join(FACTORS)))

    def member_seeds(self) -> list[int]:
        return [self.seed * 1000 + k for k in range(self.members)]

    def schedule(self):
        """The IR-SDE schedule of this run (None for the regression and DnCNN architectures)."""
        return make_schedule(self.lam, precond=self.precond) if self.arch == "irsde" else None


def make_network(cfg: TrainConfig) -> UNet | DnCNN:
    """A fresh grouped network with member k initialised from seed ``member_seeds()[k]``."""
    if cfg.arch == "dncnn":
        config = DnCNN(1, width=2 * cfg.base).config()
    else:
        config = UNet(1, base=cfg.base, out_ch=2 if cfg.uncertainty else 1, levels=cfg.levels,
                      unshuffle=cfg.unshuffle, head=cfg.head if cfg.uncertainty else 0).config()
    return init_members(config, cfg.member_seeds())


HEAD_LAYERS = ("var1.", "var2.", "var_out.")  # the uncertainty head's own layers (UNet with head > 0)


def head_rows(net: UNet) -> dict[str, torch.Tensor]:
    """The uncertainty head's share of the network, as row masks: for the last convolution's weight and bias
    the output rows that give the log-variance (channel 1 of every member, all its s × s block positions),
    and all of the head's own layers.  Nothing else feeds the log-variance alone."""
    k, s2 = net.members, net.unshuffle ** 2
    rows = torch.zeros(k, net.out_ch, s2, dtype=torch.bool)
    rows[:, 1:] = True
    rows = rows.reshape(-1)
    masks = {"out.weight": rows, "out.bias": rows}
    for name, p in net.named_parameters():
        if name.startswith(HEAD_LAYERS):
            masks[name] = torch.ones(p.shape[0], dtype=torch.bool)
    return masks


def trainable(net: torch.nn.Module, cfg: TrainConfig) -> tuple[list[torch.nn.Parameter], dict | None]:
    """The parameters the optimiser updates and, with ``train_only``, the row masks of the tensors that
    hold the trained part (everything else is frozen: no gradient, no EMA drift)."""
    if not cfg.train_only:
        return list(net.parameters()), None
    assert isinstance(net, UNet)  # validate() refuses an uncertainty head on another network
    masks = head_rows(net)
    for name, p in net.named_parameters():
        p.requires_grad_(name in masks)
    return [p for name, p in net.named_parameters() if name in masks], masks


def ensemble_for(net: torch.nn.Module, cfg: TrainConfig, default_steps: int = 1,
                 default_sampler: str = "posterior") -> Ensemble:
    """Wrap a (training) network as an :class:`Ensemble` for validation (normalisation off)."""
    mode = cfg.arch
    return Ensemble(net, mode=mode, schedule=cfg.schedule(), name=cfg.name, device="cpu", default_steps=default_steps,
                    default_sampler=default_sampler, normalize="off")


# --------------------------------------------------------------------------- data
def pair_source(cfg: TrainConfig, split: str = "train", start: int = 0, seed: int | None = None) -> Iterator:
    """Endless (bmode, target) float32 pairs: the fast simulator (MRI phantoms or domain-randomised),
    or a dataset folder."""
    seed = cfg.seed if seed is None else seed
    if cfg.data_dir and cfg.data == "randomized":
        from simulator.randomized import SCALES, load_pairs
        arrays = load_pairs(cfg.data_dir, split, raw=True)
        key = "echo" if cfg.target == "echo" else "target"
        bm, cl = arrays["bmode"], arrays[key]
        order = np.random.default_rng(seed).permutation(len(bm))
        i = start
        while True:
            j = order[i % len(bm)]
            i += 1
            yield (bm[j].astype(np.float32) / np.float32(SCALES["bmode"]),
                   cl[j].astype(np.float32) / np.float32(SCALES[key]))
    if cfg.data == "randomized":
        from simulator.randomized import pair_seed, random_pair
        i = start
        while True:
            pr = random_pair(pair_seed(seed, split, i), size=cfg.size, probes=cfg.probes, disable=cfg.disable,
                             split=split, source_weights=cfg.source_weights, analytic_share=cfg.analytic_share)
            i += 1
            yield pr.bmode, (pr.target if cfg.target == "bmode" else pr.echo)
    if cfg.data_dir:
        from simulator.datasets import load_dataset
        per_probe = [load_dataset(cfg.data_dir, split=split, probe=p) for p in cfg.probes]
        bm = np.concatenate([a["bmode"] for a in per_probe])
        cl = np.concatenate([a["clean"] for a in per_probe])
        if len(bm) == 0:
            raise ValueError("dataset %s has no %s samples for %s" % (cfg.data_dir, split, cfg.probes))
        order = np.random.default_rng(seed).permutation(len(bm))
        i = start
        while True:
            j = order[i % len(bm)]
            i += 1
            yield bm[j].astype(np.float32), cl[j].astype(np.float32)
    from simulator.datasets import PairStream
    stream = PairStream(cfg.probes, cfg.size, split=split, seed=seed, start=start)
    for res in stream:
        yield res.bmode.astype(np.float32), res.clean.astype(np.float32)


class Pool:
    """Replay pool of spacing-resampled frames from which every member draws its own crops."""

    def __init__(self, cfg: TrainConfig, source: Iterator, rng: np.random.Generator):
        self.cfg, self.source, self.rng = cfg, source, rng
        self.frames: list[tuple[np.ndarray, np.ndarray]] = []
        self.next_slot = 0
        self.consumed = 0

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        bm, cl = next(self.source)
        self.consumed += 1
        z = math.exp(self.rng.uniform(math.log(self.cfg.zoom[0]), math.log(self.cfg.zoom[1])))
        if self.cfg.zoom == (1.0, 1.0):
            return bm, cl
        h, w = bm.shape
        size = (max(self.cfg.patch, int(round(w * z))), max(self.cfg.patch, int(round(h * z))))
        interp = cv2.INTER_AREA if z < 1 else cv2.INTER_CUBIC
        return (np.clip(cv2.resize(bm, size, interpolation=interp), 0, 1),
                np.clip(cv2.resize(cl, size, interpolation=interp), 0, 1))

    def fill(self) -> None:
        while len(self.frames) < self.cfg.pool:
            self.frames.append(self._load())

    def refresh(self) -> None:
        for _ in range(self.cfg.refresh):
            self.frames[self.next_slot] = self._load()
            self.next_slot = (self.next_slot + 1) % len(self.frames)

    def batch(self, rngs: Sequence[np.random.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, 1, p, p) speckled and clean crops, member k drawing with ``rngs[k]``."""
        cfg, p = self.cfg, self.cfg.patch
        mus = np.empty((cfg.batch, len(rngs), 1, p, p), np.float32)
        x0s = np.empty_like(mus)
        for k, rng in enumerate(rngs):
            for b in range(cfg.batch):
                bm, cl = self.frames[int(rng.integers(len(self.frames)))]
                y = int(rng.integers(bm.shape[0] - p + 1))
                x = int(rng.integers(bm.shape[1] - p + 1))
                m, c = bm[y:y + p, x:x + p], cl[y:y + p, x:x + p]
                if rng.random() < 0.5:
                    m, c = m[:, ::-1], c[:, ::-1]
                ratio = rng.uniform(*cfg.dr_ratio)
                g = rng.uniform(-cfg.gain, cfg.gain)
                mus[b, k, 0] = np.clip(1.0 - (1.0 - m) / ratio + g, 0, 1)
                x0s[b, k, 0] = np.clip(1.0 - (1.0 - c) / ratio + g, 0, 1)
        return torch.from_numpy(mus), torch.from_numpy(x0s)


def val_set(cfg: TrainConfig, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A fixed validation set (``val`` split, seed 12345): (n, H, W) speckled and clean frames."""
    n = cfg.val_frames if n is None else n
    src = pair_source(cfg, split="val", seed=12345)
    pairs = [next(src) for _ in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


# --------------------------------------------------------------------------- loss
def loss_fn(net: torch.nn.Module, cfg: TrainConfig, mu: torch.Tensor, x0: torch.Tensor,
            gen: torch.Generator) -> torch.Tensor:
    """The training loss of one joint batch (B, K, 1, p, p) (under bf16 autocast when ``cfg.precision``
    says so).  With the uncertainty head, ``uncertainty_weight`` × the Gaussian negative log-likelihood
    of the (detached) error under the predicted log-variance is added: the head learns the expected
    squared error, the image head keeps its own penalty.  With ``train_only`` the likelihood is the whole
    loss (the image output is frozen)."""
    with torch.autocast(mu.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        pred, err_target = _predict(net, cfg, mu, x0, gen)
    pred = pred.float()
    x0_hat = pred[:, :, :1]
    if cfg.train_only:  # the image output is frozen: its penalty would only move the last layer's image rows
        loss = x0_hat.new_zeros(())
    elif cfg.arch == "irsde" and cfg.loss == "ml":
        sched, xt, t = err_target
        loss = ml_loss(sched, xt, x0, mu, t, x0_to_eps(sched, xt, mu, x0_hat, t), norm=cfg.norm)
    else:
        loss = penalty(x0_hat - x0, cfg.norm)
    if cfg.uncertainty:
        logvar = pred[:, :, 1:].clamp(cfg.logvar_floor, 2.0)
        e2 = (x0_hat - x0).detach() ** 2
        nll = 0.5 * (e2 * torch.exp(-logvar) + logvar)
        if cfg.nll_beta:  # beta-NLL (Seitzer et al. 2022): a confident pixel's huge weight is scaled back
            nll = nll * torch.exp(cfg.nll_beta * logvar.detach())
        loss = loss + cfg.uncertainty_weight * nll.mean()
    return loss


def _predict(net: torch.nn.Module, cfg: TrainConfig, mu: torch.Tensor, x0: torch.Tensor, gen: torch.Generator):
    """The network's output for one batch, and (schedule, x_t, t) for the IR-SDE ML loss."""
    if cfg.arch == "dncnn":
        return net(mu), None
    b, k = mu.shape[:2]
    if cfg.arch == "regression":
        return net(torch.cat([torch.zeros_like(mu), mu], dim=2),
                   torch.zeros(b, dtype=torch.long, device=mu.device)), None
    sched = cfg.schedule()
    t = torch.randint(1, sched.T + 1, (b, k), generator=gen)
    if cfg.t_focus > 0:  # a share of the batch at the last FOCUS_STEPS steps, where few-step sampling starts
        top = torch.randint(sched.T - FOCUS_STEPS + 1, sched.T + 1, (b, k), generator=gen)
        t = torch.where(torch.rand((b, k), generator=gen) < cfg.t_focus, top, t)
    # t and noise are drawn on the CPU generator (the same draws on every device), then moved
    t = t.to(mu.device)
    noise = torch.randn(mu.shape, generator=gen).to(mu.device)
    xt = marginal_sample(sched, x0, mu, t, noise)
    return net(net_input(sched, xt, mu, t), t), (sched, xt, t)


# --------------------------------------------------------------------------- checkpoints
@dataclass
class RunState:
    """What a run folder's ``state.json`` holds besides the weights (see the module docstring)."""

    config: dict
    step: int = 0
    elapsed: float = 0.0                      # training seconds
    consumed: int = 0                         # pairs drawn from the data stream (where a resumed run starts)
    consumed_base: int = 0
    losses: list = field(default_factory=list)   # [step, elapsed s, running loss] every 25 steps
    val: list = field(default_factory=list)      # validation PSNR at every checkpoint
    started: str = ""
    psf_format: int | None = None          # the fast path's PSF banks the run trained on
    devices: list = field(default_factory=list)  # [{"step", "device"}]: where each stretch of steps ran
    stages: list = field(default_factory=list)   # t_focus changes made when the run was resumed
    lr_restarts: list = field(default_factory=list)  # max_steps raised on resume: the cosine decay restarts there
    init: dict | None = None               # the model a fine-tuning run started from
    param_groups: list | None = None       # the optimiser's

    @classmethod
    def from_dict(cls, d: dict) -> RunState:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1][2] if self.losses else None


def _save_checkpoint(run: Path, net, ema: dict, opt: torch.optim.Optimizer, state: RunState) -> None:
    tensors = {"net." + k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tensors.update({"ema." + k: v.detach().cpu().contiguous() for k, v in ema.items()})
    osd = opt.state_dict()
    for idx, st in osd["state"].items():
        for key, v in st.items():
            tensors["opt.%d.%s" % (idx, key)] = torch.as_tensor(v).detach().cpu().reshape(-1).contiguous() \
                if key == "step" else v.detach().cpu().contiguous()
    tmp = run / (CKPT + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, run / CKPT)
    state.param_groups = osd["param_groups"]
    tmp = run / (STATE + ".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=1))
    os.replace(tmp, run / STATE)


def warm_start(net: UNet | DnCNN, cfg: TrainConfig) -> dict:
    """Load the weights of ``cfg.init`` (a shipped model name or an exported folder) into ``net``: its
    first ``cfg.members`` members; architecture, network and mode must match.  Returns what the model
    card records about it (name, SHA-256, the steps and minutes it had been trained)."""
    assert cfg.init is not None  # called only for runs with --init
    src, card, folder = read_model(cfg.init)
    if card["mode"] != cfg.arch:
        raise ValueError("--init %s is a %s model; this run trains %s" % (cfg.init, card["mode"], cfg.arch))
    grown = cfg.head and card["network"] == {k: v for k, v in net.config().items() if k != "head"}
    if card["network"] != net.config() and not grown:
        raise ValueError("--init %s has network %s; this run builds %s" % (cfg.init, card["network"], net.config()))
    first = int(cfg.init_member)
    if first < 0 or int(card["members"]) < first + cfg.members:
        raise ValueError("--init %s has %d members; this run needs %d from member %d"
                         % (cfg.init, card["members"], cfg.members, first))
    state = select_members(src.state_dict(), int(card["members"]), range(first, first + cfg.members))
    if grown:  # a model without the head's own layers: they start as this network made them (a zero correction)
        state |= {k: v for k, v in net.state_dict().items() if k.startswith(HEAD_LAYERS)}
    net.load_state_dict(state)
    tr = card.get("training") or {}
    prior = tr.get("init") or {}  # a model that was itself fine-tuned: count its whole history
    return {"model": card.get("name", folder.name), "sha256": {f: i.get("sha256") for f, i in card["files"].items()},
            "members_from": first,
            "steps": int(tr.get("steps") or 0) + int(prior.get("steps") or 0),
            "wall_minutes": round(float(tr.get("wall_minutes") or 0) + float(prior.get("wall_minutes") or 0), 2),
            "schedule": card.get("schedule"), "loss": tr.get("loss"),
            "hardware": tr.get("hardware") or "cpu"}  # cards older than the hardware record: all CPU runs


def psf_format() -> int:
    """The fast path's PSF-bank format (simulator.psf; imported here, not at module level: it loads pymust)."""
    from simulator.psf import FORMAT_VERSION

    return FORMAT_VERSION


def cpu_text(threads: int | None) -> str:
    """"cpu, 1 thread" / "cpu, 2 threads" ("cpu" when the thread count is unknown)."""
    if not threads:
        return "cpu"
    return "cpu, %d thread%s" % (int(threads), "s" * (int(threads) != 1))


def hardware_text(devices: Sequence[dict], threads: int | None) -> str:
    """Where a run's optimiser steps ran (model card), from its ``devices`` record: "NVIDIA H100 80GB HBM3"
    or, when a resumed run changed device, "cpu, 2 threads (steps 0-1200); NVIDIA ... (from step 1200)"."""
    devices = list(devices) or [{"step": 0, "device": cpu_text(threads)}]  # older runs: no record
    if len(devices) == 1:
        return devices[0]["device"]
    parts = ["%s (steps %d-%d)" % (d["device"], d["step"], nxt["step"]) for d, nxt in zip(devices, devices[1:])]
    return "; ".join(parts + ["%s (from step %d)" % (devices[-1]["device"], devices[-1]["step"])])


def loss_text(cfg: TrainConfig) -> str:
    """The model card's description of the training loss."""
    norm = {"l1": "L1", "l2": "L2 (squared error)"}[cfg.norm]
    text = ("%s on x0" % norm) if cfg.loss == "x0" or cfg.arch != "irsde" else ("IR-SDE maximum-likelihood %s" % norm)
    head = (" beta-NLL (beta %g) of the error (uncertainty head)" % cfg.nll_beta if cfg.nll_beta
            else " Gaussian NLL of the error (uncertainty head)")
    if cfg.uncertainty and cfg.train_only:
        return "only the" + head + ", the rest of the network frozen"
    return text + (" +" + head if cfg.uncertainty else "")


def _load_checkpoint(run: Path, net, opt: torch.optim.Optimizer | None) -> tuple[RunState, dict]:
    run = Path(run)
    state = RunState.from_dict(json.loads((run / STATE).read_text()))
    tensors = load_file(str(run / CKPT))
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    ema = {k[4:]: v.clone() for k, v in tensors.items() if k.startswith("ema.")}
    if opt is not None:
        st: dict = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, idx, key = k.split(".", 2)
                st.setdefault(int(idx), {})[key] = v.reshape(()) if key == "step" else v
        opt.load_state_dict({"state": st, "param_groups": state.param_groups})
    return state, ema


def run_steps(run: str | os.PathLike) -> int:
    """Optimiser steps a run folder holds (0 when it holds no run yet)."""
    path = Path(run) / STATE
    return int(json.loads(path.read_text())["step"]) if path.is_file() else 0


def load_config(run: str | os.PathLike) -> TrainConfig:
    """The :class:`TrainConfig` stored in a run folder."""
    state = json.loads((Path(run) / STATE).read_text())
    cfg = state["config"]
    cfg["zoom"], cfg["dr_ratio"] = tuple(cfg["zoom"]), tuple(cfg["dr_ratio"])
    cfg["disable"] = tuple(cfg.get("disable") or ())
    return TrainConfig(**cfg)


# --------------------------------------------------------------------------- evaluation
def evaluate(ens: Ensemble, noisy: np.ndarray, clean: np.ndarray, settings: Sequence[tuple[str, int]]) -> dict:
    """PSNR / SSIM of the ensemble mean (and the mean member PSNR, std–error correlation) per setting."""
    from .metrics import pearson, psnr, ssim
    out = {"input": {"psnr": float(np.mean([psnr(n, c) for n, c in zip(noisy, clean)]))}}
    for sampler, steps in settings:
        if ens.mode != "irsde" and (sampler, steps) != settings[0]:
            continue
        res = ens.despeckle(noisy, steps=steps if ens.mode == "irsde" else None,
                            sampler=sampler if ens.mode == "irsde" else None, seed=0)
        err = np.abs(res.mean - clean)
        key = "%s-%d" % (sampler, steps) if ens.mode == "irsde" else "direct"
        out[key] = {"psnr": float(np.mean([psnr(m, c) for m, c in zip(res.mean, clean)])),
                    "ssim": float(np.mean([ssim(m, c) for m, c in zip(res.mean, clean)])),
                    "std_mean": float(res.std.mean())}
        if ens.members > 1 and float(res.std.max()) > 0:
            out[key]["corr_std_abs_err"] = float(pearson(res.std.ravel(), err.ravel()))
    return out


# --------------------------------------------------------------------------- training
def train(cfg: TrainConfig, run_dir: str | os.PathLike, log: Callable[[str], None] | None = None,
          max_steps: int | None = None) -> RunState:
    """Train (or resume) in ``run_dir`` until ``cfg.minutes`` of training time or ``cfg.max_steps`` steps;
    returns the final :class:`RunState`.

    ``log`` receives the live progress line (default: stderr, rewritten in place on a terminal).
    ``max_steps`` stops this call earlier (tests).
    """
    cfg.validate()
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    log = log or _terminal_log()
    dev = torch.device(cfg.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop shapes: let cuDNN pick its fastest kernels
    net = make_network(cfg).to(dev)
    params, masks = trainable(net, cfg)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    state, ema = _open_run(cfg, run, net, opt, dev, log)
    step0 = state.step
    rngs = [np.random.default_rng([s, step0]) for s in cfg.member_seeds()]
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + step0)
    pool = Pool(cfg, pair_source(cfg, "train", start=state.consumed), np.random.default_rng([cfg.seed, step0, 1]))
    pool.fill()
    noisy_val, clean_val = val_set(cfg)
    budget = cfg.minutes * 60.0
    t_start, elapsed0 = time.time(), state.elapsed
    last_ckpt, run_loss = time.time(), None
    ema_model = make_network(cfg)

    def checkpoint(final: bool = False) -> None:
        ema_model.load_state_dict(ema)
        val = evaluate(ensemble_for(ema_model, cfg), noisy_val, clean_val, [("posterior", 1)])
        key = [k for k in val if k != "input"][0]
        state.val.append({"step": state.step, "minutes": round(state.elapsed / 60, 2),
                          "psnr": round(val[key]["psnr"], 3), "input_psnr": round(val["input"]["psnr"], 3)})
        state.consumed = pool.consumed + state.consumed_base
        _save_checkpoint(run, net, ema, opt, state)
        log("checkpoint step %d: val PSNR %.2f dB (input %.2f dB)%s" % (
            state.step, val[key]["psnr"], val["input"]["psnr"], " [final]" if final else ""))

    state.consumed_base = state.consumed
    net.train()
    while (state.elapsed < budget and (max_steps is None or state.step - step0 < max_steps)
           and (cfg.max_steps is None or state.step < cfg.max_steps)):
        for g in opt.param_groups:  # short warm-up, then cosine decay to 10 % over the budget
            g["lr"] = cfg.lr * min(1.0, (state.step + 1) / max(cfg.warmup, 1)) * (
                0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * _progress(cfg, state, budget, step0, max_steps))))
        lv = _optimizer_step(net, opt, cfg, pool, rngs, gen, dev)
        state.step += 1
        _update_ema(ema, net, min(cfg.ema, (1 + state.step) / (10 + state.step)), masks)
        run_loss = lv if run_loss is None else 0.98 * run_loss + 0.02 * lv
        state.elapsed = elapsed0 + time.time() - t_start
        if state.step % 25 == 0:
            state.losses.append([state.step, round(state.elapsed, 1), round(run_loss, 6)])
        if state.step % 10 == 0 or state.step == 1:
            log("%s step %d  loss %.5f  %.1f/%.1f min" % (cfg.name or cfg.arch, state.step, run_loss,
                                                          state.elapsed / 60, cfg.minutes))
        if time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
            checkpoint()
            last_ckpt = time.time()
    checkpoint(final=True)
    return state


def _terminal_log() -> Callable[[str], None]:
    tty = sys.stderr.isatty()

    def log(msg: str) -> None:
        sys.stderr.write(("\r" + msg + "\033[K") if tty else msg + "\n")
        sys.stderr.flush()
    return log


def _open_run(cfg: TrainConfig, run: Path, net, opt, dev, log) -> tuple[RunState, dict]:
    """Resume the run in ``run`` (its settings must match but for :attr:`TrainConfig.RESUMABLE`) or start one
    (warm-started from ``cfg.init``); returns its state and EMA weights, with this stretch's device recorded."""
    if (run / STATE).is_file() and (run / CKPT).is_file():
        prev = load_config(run)
        free = {f: None for f in TrainConfig.RESUMABLE + ("init", "init_member")}  # init only matters for a new run
        if asdict(prev) | free != asdict(cfg) | free:
            raise ValueError("%s holds a run with different settings; use a new -o folder" % run)
        state, ema = _load_checkpoint(run, net, opt)
        ema = {k: v.to(dev) for k, v in ema.items()}
        if prev.t_focus != cfg.t_focus:
            state.stages.append({"step": state.step, "prev_t_focus": prev.t_focus, "t_focus": cfg.t_focus})
        if prev.max_steps != cfg.max_steps:
            state.lr_restarts.append({"step": state.step, "prev_max_steps": prev.max_steps,
                                      "max_steps": cfg.max_steps})
        state.config = asdict(cfg) | {"init": prev.init}
        log("resuming %s at step %d (%.1f of %.1f min)" % (run, state.step, state.elapsed / 60, cfg.minutes))
    else:
        state = RunState(config=asdict(cfg), started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         psf_format=None if cfg.data_dir else psf_format())
        if cfg.init:
            state.init = warm_start(net, cfg)
            log("initialised from %s (%d steps, %.1f min)"
                % (cfg.init, state.init["steps"], state.init["wall_minutes"]))
        ema = {k: v.detach().clone() for k, v in net.state_dict().items()}
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_text(torch.get_num_threads())
    if not state.devices or state.devices[-1]["device"] != where:  # where each stretch of steps ran (model card)
        state.devices.append({"step": state.step, "device": where})
    return state, ema


def _progress(cfg: TrainConfig, state: RunState, budget: float, step0: int, max_steps: int | None) -> float:
    """How far along the learning-rate schedule is: the larger of the time and the step fractions."""
    frac = min(state.elapsed / budget, 1.0)
    if max_steps is not None:  # a step-limited call decays its learning rate by steps as well
        frac = max(frac, min(state.step / max(step0 + max_steps, 1), 1.0))
    if cfg.max_steps is not None:
        frac = max(frac, min(state.step / cfg.max_steps, 1.0))
    return frac


def _optimizer_step(net, opt, cfg: TrainConfig, pool: Pool, rngs, gen, dev) -> float:
    """Refresh the pool, draw a batch, one clipped Adam step; returns the loss."""
    pool.refresh()
    mu, x0 = pool.batch(rngs)
    mu, x0 = mu.to(dev, non_blocking=True), x0.to(dev, non_blocking=True)
    loss = loss_fn(net, cfg, mu, x0, gen)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    return float(loss.detach())


def _update_ema(ema: dict, net, decay: float, masks: dict | None = None) -> None:
    """EMA of the weights; with ``masks`` (a head-only run) of the masked rows only, so that the frozen
    weights keep their values exactly (an average of equal values can move them by rounding)."""
    with torch.no_grad():
        for k, v in net.state_dict().items():
            if masks is None:
                ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
            elif k in masks:
                m = masks[k].to(v.device)
                ema[k][m] = ema[k][m] * decay + v.detach()[m] * (1 - decay)


def committed_set_metrics(ens: Ensemble, probes: Sequence[str], steps: int) -> dict:
    """PSNR / SSIM of the ensemble mean at the default setting on the committed test sets (fast and
    full physics) of each probe; sets that are not there are skipped."""
    from simulator.datasets import load_test_set

    out: dict = {}
    for kind in ("fast", "full"):
        for probe in probes:
            try:
                data = load_test_set(kind, probe)
            except (FileNotFoundError, ValueError, OSError):
                continue
            if len(data.get("bmode", ())) == 0:
                continue
            settings = [("posterior", steps)]
            res = evaluate(ens, data["bmode"], data["clean"], settings)
            key = [k for k in res if k != "input"][0]
            out["%s/%s" % (kind, probe)] = {"images": int(len(data["bmode"])), "input_psnr": res["input"]["psnr"],
                                            "setting": key, **res[key]}
    return out


# --------------------------------------------------------------------------- export
def timestep_sampling(t_focus: float, stages: Sequence[dict]) -> str:
    """How training drew t (for the model card), including the changes made when the run was resumed."""
    def one(f: float) -> str:
        if not f:
            return "uniform in 1..T"
        if f >= 1:
            return "all from the last %d steps" % FOCUS_STEPS
        return "%.0f %% from the last %d steps, the rest uniform" % (100 * f, FOCUS_STEPS)
    parts, prev = [], 0
    for st in stages:
        parts.append("steps %d-%d: %s" % (prev, st["step"], one(st["prev_t_focus"])))
        prev = st["step"]
    parts.append(("from step %d: %s" % (prev, one(t_focus))) if stages else one(t_focus))
    return "; ".join(parts)


DESCRIPTIONS = {
    "irsde": "IR-SDE (mean-reverting SDE) ensemble, x0-predicting conditional UNet members, trained jointly "
             "on fast-simulated (B-mode, clean) pairs from MRI phantoms.",
    "regression": "Direct-regression baseline: the same UNet fed (0, speckled) at a fixed t, trained with L1 "
                  "on the same data (no diffusion).",
    "dncnn": "DnCNN-style residual CNN trained with L1 on the same data.",
}


def export(run_dir: str | os.PathLike, dest: str | os.PathLike | None = None, name: str | None = None,
           choose_steps: Sequence[int] = (1, 2), n_eval: int = 16, log: Callable[[str], None] = print,
           test_sets: bool = True) -> dict:
    """Write the EMA weights of a run as a model folder (fp16 safetensors + model card) into ``dest``.

    The default sampler steps are chosen by measurement: posterior sampling with each of
    ``choose_steps`` is scored on ``n_eval`` validation frames and the fewest steps within 0.05 dB of the
    best PSNR become the default (4 posterior and 4 DDIM steps are scored for the record; the choice is
    limited to 1–2 evaluations so that the default stays cheaper than BM3D at 480 × 640 on a CPU).  Metrics
    (validation; with ``test_sets`` also the committed fast and full-physics test sets of the run's probes),
    training record and normalisation reference go in the card.
    """
    run = Path(run_dir)
    if not (run / STATE).is_file():
        raise ValueError("%s is not a training folder (no %s)" % (run, STATE))
    cfg = load_config(run)
    net = make_network(cfg)
    state, ema = _load_checkpoint(run, net, None)
    net.load_state_dict(ema)
    net.eval()
    noisy, clean = val_set(cfg, n_eval)
    ens = ensemble_for(net, cfg)
    settings = [("posterior", s) for s in sorted(set(choose_steps) | {4})] + [("ddim", 4)]
    metrics: dict[str, Any] = {"validation": evaluate(ens, noisy, clean, settings), "validation_frames": int(n_eval),
                               "validation_split": "val (seed 12345, fast simulator)"}
    default_steps = 1
    if cfg.arch == "irsde":
        scores = {s: metrics["validation"]["posterior-%d" % s]["psnr"] for s in choose_steps}
        best = max(scores.values())
        default_steps = min(s for s, v in scores.items() if v >= best - 0.05)
    if test_sets:
        metrics["test_sets"] = committed_set_metrics(ens, cfg.probes, default_steps)
    train_src = pair_source(cfg, "train", seed=cfg.seed + 999)
    ref = normalize.measure_reference([next(train_src)[0] for _ in range(32)], cfg.zoom, cfg.dr_ratio)
    sched = cfg.schedule()
    card = {
        "name": name or cfg.name or run.name,
        "description": DESCRIPTIONS[cfg.arch],
        "mode": cfg.arch,
        "schedule": sched.as_dict() if sched is not None else None,
        "default_sampler": "posterior" if cfg.arch == "irsde" else "direct",
        "default_steps": int(default_steps),
        "reference": ref,
        "metrics": metrics,
        "training": {
            "probes": list(cfg.probes), "data": ("dataset %s" % cfg.data_dir) if cfg.data_dir else
            "fast simulator on the fly (simulator.datasets.PairStream, split train, %d px frames, PSF banks format %d)"
            % (cfg.size, state.psf_format or psf_format()),  # runs older than the record: the current one
            "member_seeds": cfg.member_seeds(), "steps": int(state.step),
            "wall_minutes": round(state.elapsed / 60, 2), "pairs_simulated": int(state.consumed),
            "loss": loss_text(cfg), "final_loss": state.final_loss,
            "val_history": state.val, "started": state.started,
            "config": state.config, "threads": cfg.threads, "hardware": hardware_text(state.devices, cfg.threads),
            "stages": state.stages, "lr_restarts": state.lr_restarts, "init": state.init,
            "timestep_sampling": timestep_sampling(cfg.t_focus, state.stages)
            if cfg.arch == "irsde" else None,
            "augmentation": {"zoom": cfg.zoom, "gain": cfg.gain, "dr_ratio": cfg.dr_ratio, "lateral_flip": True},
        },
    }
    out = Path(dest) if dest is not None else run
    card = save_model(out, net, card)
    log("exported %s (%d members, %d params each, default posterior %d step(s)) to %s" % (
        card["name"], card["members"], param_count(net), default_steps, out))
    return card


def _member_state(run: Path) -> tuple[TrainConfig, RunState, dict]:
    cfg = load_config(run)
    net = make_network(cfg)
    state, ema = _load_checkpoint(run, net, None)
    return cfg, state, ema


def export_members(run_dirs: Sequence[str | os.PathLike], dest: str | os.PathLike, name: str,
                   description: str = "", recipe: dict | None = None, n_eval: int = 64,
                   choose_steps: Sequence[int] = (1, 2), log: Callable[[str], None] = print) -> dict:
    """Stack single-member runs (same network and data, own seeds) into one K-member model folder.

    The default sampler steps are chosen on ``n_eval`` validation frames as in :func:`export`; with the
    uncertainty head the calibration scales of the total uncertainty (:meth:`Ensemble.uncertainty`) are
    fitted there (non-negative least squares of the squared error on the squared aleatoric and epistemic
    parts, :func:`engine.scoring.fit_uncertainty_scales`).  ``recipe`` (the declarative training config)
    is stored in the card as it was given."""
    from .network import stack_members
    from .scoring import fit_uncertainty_scales

    runs = [Path(r) for r in run_dirs]
    parts = [_member_state(r) for r in runs]
    cfg0 = parts[0][0]
    for cfg, _, _ in parts[1:]:
        own = ("seed", "name", "threads", "device", "minutes", "init_member")  # what each member has of its own
        same = {k: v for k, v in asdict(cfg).items() if k not in own}
        ref0 = {k: v for k, v in asdict(cfg0).items() if k not in own}
        if same != ref0:
            raise ValueError("runs %s do not share one configuration (only seeds may differ)"
                             % ", ".join(map(str, runs)))
    net = make_network(dataclasses_replace(cfg0, members=len(runs)))
    net.load_state_dict(stack_members([ema for _, _, ema in parts]))
    net.eval()
    noisy, clean = val_set(cfg0, n_eval)
    ens = ensemble_for(net, cfg0)
    settings = [("posterior", s) for s in sorted(set(choose_steps))] if cfg0.arch == "irsde" else [("direct", 1)]
    val = evaluate(ens, noisy, clean, settings)
    default_steps = 1
    if cfg0.arch == "irsde":
        scores = {s: val["posterior-%d" % s]["psnr"] for s in choose_steps}
        best = max(scores.values())
        default_steps = min(s for s, v in scores.items() if v >= best - 0.05)
    card: dict = {"name": name, "description": description or DESCRIPTIONS[cfg0.arch], "mode": cfg0.arch,
                  "schedule": cfg0.schedule().as_dict() if cfg0.arch == "irsde" else None,
                  "default_sampler": "posterior" if cfg0.arch == "irsde" else "direct",
                  "default_steps": int(default_steps),
                  "metrics": {"validation": val, "validation_frames": int(n_eval),
                              "validation_split": "val (seed 12345, %s)" % (
                                  "domain-randomised pairs" if cfg0.data == "randomized" else "fast simulator")}}
    res = ens.despeckle(noisy, steps=default_steps, seed=0)
    if res.aleatoric is not None:
        assert res.epistemic is not None  # the ensemble returns both parts or neither
        a, e = fit_uncertainty_scales(res.aleatoric, res.epistemic, res.mean - clean)
        card["uncertainty"] = {"aleatoric_scale": a, "epistemic_scale": e,
                               "fitted_on": "%d validation frames (%s)" % (n_eval, card["metrics"]["validation_split"])}
    elif len(runs) > 1:
        from .scoring import fit_scale
        card["uncertainty"] = {"epistemic_scale": fit_scale(res.std, res.mean - clean),
                               "fitted_on": "%d validation frames" % n_eval}
    train_src = pair_source(cfg0, "train", seed=cfg0.seed + 999)
    card["reference"] = normalize.measure_reference([next(train_src)[0] for _ in range(32)], cfg0.zoom, cfg0.dr_ratio)
    card["training"] = {
        "probes": list(cfg0.probes), "data": ("%s pairs, dataset %s" % (cfg0.data, Path(cfg0.data_dir).name))
        if cfg0.data_dir else "%s pairs on the fly" % cfg0.data, "target": cfg0.target,
        "loss": loss_text(cfg0),
        "members": [{"seed": cfg.seed, "steps": int(st.step), "wall_minutes": round(st.elapsed / 60, 2),
                     "hardware": hardware_text(st.devices, cfg.threads), "final_loss": st.final_loss,
                     "val_history": st.val[-3:]} for cfg, st, _ in parts],
        "member_seeds": [cfg.seed for cfg, _, _ in parts],
        "steps": int(sum(st.step for _, st, _ in parts) / len(parts)),
        "wall_minutes": round(sum(st.elapsed for _, st, _ in parts) / 60, 2),
        "config": asdict(cfg0) | {"seed": None, "members": len(runs)},
        "timestep_sampling": timestep_sampling(cfg0.t_focus, []) if cfg0.arch == "irsde" else None,
        "lr_restarts": parts[0][1].lr_restarts,  # the members of a recipe are resumed alike
        "init": _stacked_init([st.init for _, st, _ in parts]),
        "recipe": recipe,
    }
    card.update((recipe or {}).get("card", {}))  # the recipe's own card fields (brightness, notes)
    card = save_model(Path(dest), net, card)
    log("exported %s (%d members, default %d step(s)) to %s" % (name, len(runs), default_steps, dest))
    return card


def _stacked_init(inits: Sequence[dict | None]) -> dict | None:
    """What a stacked model's card records of the model its members were warm-started from (member k
    from member k of one model), or None for members trained from scratch."""
    if not inits or inits[0] is None:
        return None
    models = {(i or {}).get("model") for i in inits}
    if len(models) != 1:
        raise ValueError("the members were warm-started from different models (%s)" % ", ".join(map(str, models)))
    return {k: v for k, v in inits[0].items() if k != "members_from"} | {
        "members_from": [int((i or {}).get("members_from", 0)) for i in inits]}


def dataclasses_replace(cfg: TrainConfig, **kw) -> TrainConfig:
    from dataclasses import replace

    return replace(cfg, **kw)
