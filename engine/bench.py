"""Speed benchmark of the despeckler against its 100-step references and classical filters.

Everything is measured in one run on the current machine: ms per frame for the default setting
(ensemble mean + uncertainty), the 100-step ``posterior`` and ``em`` references, BM3D and NLM, at
each size; ratios to the default; the network's achieved FLOP/s against a matrix-multiply peak
measured in the same run; peak memory.  References at sizes where 100 steps would take minutes are
extrapolated (marked ``*``) from runs of 1 and 3 steps: the per-frame work (normalisation, the start
noise, mean and std) counted once, plus 99 times the cost of one more step (one network evaluation
plus elementwise work, a constant).  On a GPU the per-frame work is most of a 1-step run, so scaling a
3-step time by 100/3 would overstate the references.
"""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .ensemble import Ensemble, checked_device, load_ensemble
from .network import UNet, init_members
from .sde import make_schedule

DEFAULT_SIZES = ((128, 128), (256, 256), (480, 640))


@dataclass
class Row:
    size: tuple[int, int]
    method: str
    ms: float
    note: str = ""


def speckle_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth image with log-Rayleigh speckle in display units (DR = 50 dB)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    clean = 0.55 + 0.25 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    env = np.abs(rng.normal(size=(h, w)) + 1j * rng.normal(size=(h, w))) / np.sqrt(2)
    return np.clip(clean + 20 * np.log10(np.maximum(env, 1e-6)) / 50.0, 0, 1).astype(np.float32)


def _time(fn: Callable[[], object], repeat: int, warmup: bool = False) -> float:
    """ms per call: the median of up to ``repeat`` calls (one call when it takes over a second)."""
    if warmup:
        fn()
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if times[-1] > 1.0:
            break
    return float(np.median(times)) * 1000.0


def conv_flops(net: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> float:
    """Multiply-add FLOPs (2 per MAC) of the convolutions in one forward pass."""
    total = [0.0]

    def hook(mod: torch.nn.Conv2d, _inp, out: torch.Tensor) -> None:
        kh, kw = mod.kernel_size
        total[0] += 2.0 * out.numel() * (mod.in_channels // mod.groups) * kh * kw

    hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net(x, t)
    for h in hs:
        h.remove()
    return total[0]


def matmul_peak(device: torch.device, n: int = 2048, repeat: int = 5) -> float:
    """Achieved FLOP/s of an n × n fp32 matrix multiply."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)

    def mm() -> None:
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
    ms = _time(mm, repeat, warmup=True)
    return 2.0 * n ** 3 / (ms / 1000.0)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_ensemble(model: str, device: torch.device) -> tuple[Ensemble, str]:
    """The shipped model, or (when its weights are absent) an untrained network of the same shape."""
    try:
        return load_ensemble(model, device=device), model
    except ValueError:
        net = init_members(UNet(1, base=16).config(), [0, 1, 2, 3])
        return (Ensemble(net, schedule=make_schedule(), device=device, normalize="off"),
                "untrained 4-member UNet (shipped %r not installed)" % model)


def run_bench(device: str = "cpu", sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES, quick: bool = False,
              model: str = "multiprobe", out: Callable[[str], None] = print) -> dict:
    """Run the benchmark and print a table; returns the measured numbers."""
    from . import classical

    dev = checked_device(device)
    ens, label = bench_ensemble(model, dev)
    T = ens.schedule.T if ens.schedule is not None else 100
    repeat = 1 if quick else 3
    out("usclean bench: device %s, %d torch threads, model %s (%d members, default %s %d step(s))"
        % (dev, torch.get_num_threads(), label, ens.members, ens.default_sampler, ens.default_steps))
    peak = matmul_peak(dev, 1024 if quick else 2048)
    out("matmul peak (fp32): %.1f GFLOP/s" % (peak / 1e9))
    rows: list[Row] = []
    flops: dict = {}
    ens.despeckle(speckle_frame(64, 64), seed=0)  # warm-up (allocator, kernels)
    out("")
    out("%-11s %-22s %12s %14s" % ("size", "method", "ms/frame", "x default"))

    def add(row: Row) -> None:
        rows.append(row)
        base = next(q.ms for q in rows if q.size == row.size)
        out("%-11s %-22s %11.1f%1s %13.2fx" % ("%dx%d" % row.size, row.method, row.ms, row.note, row.ms / base))

    for h, w in sizes:
        frame = speckle_frame(h, w)
        add(Row((h, w), "default (mean+std)", _time(lambda: ens.despeckle(frame, seed=0), repeat)))
        if ens.mode == "irsde":
            full = (h * w <= 128 * 128) and not quick
            for sampler in ("posterior", "em"):
                if full:
                    ms = _time(lambda: ens.despeckle(frame, steps=T, sampler=sampler, seed=0), 1)
                else:  # per-frame work (normalisation, noise, mean/std) once, plus T times the cost of a step
                    ms1 = _time(lambda: ens.despeckle(frame, steps=1, sampler=sampler, seed=0), 1)
                    ms3 = _time(lambda: ens.despeckle(frame, steps=3, sampler=sampler, seed=0), 1)
                    ms = ms1 + max(ms3 - ms1, 0.0) / 2 * (T - 1)
                add(Row((h, w), "%s %d steps" % (sampler, T), ms, "" if full else "*"))
        add(Row((h, w), "BM3D (sigma 0.1)", _time(lambda: classical.bm3d(frame, 0.1), 1)))
        add(Row((h, w), "NLM", _time(lambda: classical.nlm(frame), repeat)))
        net = ens.net
        x = torch.rand(1, net.members, net.in_ch, h, w, device=dev)
        t = torch.zeros(1, dtype=torch.long, device=dev)
        f = conv_flops(net, x, t)

        def forward() -> None:
            net(x, t)
            if dev.type == "cuda":  # kernels run asynchronously: wait for them, or only the launch is timed
                torch.cuda.synchronize(dev)
        with torch.no_grad():
            net_ms = _time(forward, repeat, warmup=True)
        flops[(h, w)] = {"gflop": f / 1e9, "net_ms": net_ms, "gflops": f / (net_ms / 1000) / 1e9}
    out("")
    for (h, w), fl in flops.items():
        out("network %dx%d: %.2f GFLOP per evaluation (%d members), %.1f ms -> %.1f GFLOP/s = %.0f%% of matmul peak"
            % (h, w, fl["gflop"], ens.members, fl["net_ms"], fl["gflops"], 100 * fl["gflops"] * 1e9 / peak))
    mem = peak_memory_mb(dev)
    out("peak memory: %.0f MB (%s)" % (mem, "CUDA allocated" if dev.type == "cuda" else "process max RSS"))
    if any(r.note for r in rows):
        out("* extrapolated to %d steps from runs of 1 and 3 steps (per-frame work once, each step one network "
            "evaluation)" % T)
    return {"rows": [r.__dict__ for r in rows], "flops": {"%dx%d" % k: v for k, v in flops.items()},
            "matmul_gflops": peak / 1e9, "peak_memory_mb": mem}
