"""Speed benchmark: every inference backend side by side, the per-stage breakdown, the references.

Everything is measured in one run on the current machine (timings vary between runs; compare the ratios
of one run): ms per frame of the default setting (4-member ensemble: mean + uncertainty) and of the
one-member preview on every installed backend (:mod:`engine.backends`), their ratio to BM3D on the same
frame; for the fastest backend the per-stage breakdown of a frame (normalisation, network, tile blending
and member statistics, the rest) and the 100-step ``posterior`` and ``em`` references; NLM; the network's
achieved FLOP/s against fp32 and bf16 matrix-multiply peaks measured in the same run; peak memory.
References at sizes where 100 steps would take minutes are extrapolated (marked ``*``) from runs of 1
and 3 steps: the per-frame work counted once, plus 99 times the cost of one more step.
"""
from __future__ import annotations

import operator
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from . import backends as _backends
from .ensemble import Ensemble, load_ensemble, validate_frames

DEFAULT_SIZES = ((128, 128), (256, 256), (480, 640))


@dataclass
class Row:
    size: tuple[int, int]
    method: str
    ms: float
    note: str = ""


def speckle_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth image with log-Rayleigh speckle in display units (DR = 50 dB), its grain ≈ 2-3 px as on a
    scanner's frame, so that ``engine.normalize`` leaves it as it is (uncorrelated 1-px speckle would be
    resampled to 2.1 times the pixels first, and the network timed on a larger frame than asked)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    clean = 0.55 + 0.25 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    z = (ndimage.gaussian_filter(rng.normal(size=(h, w)), 1.0)
         + 1j * ndimage.gaussian_filter(rng.normal(size=(h, w)), 1.0))
    env = np.abs(z) / np.sqrt(np.mean(np.abs(z) ** 2))
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


def conv_flops(model: str, h: int, w: int) -> float | None:
    """Multiply-add FLOPs (2 per MAC) of one member's convolutions at h × w (torch needed; None without)."""
    if not _backends.installed("torch"):
        return None
    import torch

    from .weights import read_model

    net, card, _ = read_model(model)
    total = [0.0]

    def hook(mod, _inp, out) -> None:
        kh, kw = mod.kernel_size
        total[0] += 2.0 * out.numel() * (mod.in_channels // mod.groups) * kh * kw

    hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net(torch.rand(1, net.members, int(card["network"].get("in_ch", 2)), h, w), torch.zeros(1, dtype=torch.long))
    for hk in hs:
        hk.remove()
    return total[0] / net.members


def matmul_peaks(n: int = 2048, repeat: int = 5) -> dict[str, float]:
    """Achieved FLOP/s of an n × n matrix multiply in fp32, and in bf16 where the CPU has it natively
    (torch; empty without torch)."""
    if not _backends.installed("torch"):
        return {}
    import torch

    out = {}
    native = _backends.installed("openvino") and _backends.openvino_bf16()  # AVX512-BF16 or AMX
    kinds = (("fp32", torch.float32),) + ((("bf16", torch.bfloat16),) if native else ())
    for name, dtype in kinds:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        out[name] = 2.0 * n ** 3 / (_time(partial(operator.matmul, a, b), repeat, warmup=True) / 1000.0)
    return out


def _print_peaks(peaks: dict[str, float], out: Callable[[str], None]) -> None:
    for k, v in peaks.items():
        out("matmul peak %s: %.0f GFLOP/s" % (k, v / 1e9))
    if peaks and "bf16" not in peaks:
        out("matmul peak bf16: none (no AVX512-BF16 or AMX on this CPU: bf16 would be emulated)")


def peak_memory_mb() -> float:
    """This process's peak resident memory (MB): Linux's VmHWM, which belongs to the running program.
    ``ru_maxrss`` is the fallback elsewhere; on Linux it also keeps the high-water mark of the parent's
    memory copied at fork, so a child started by a large process reports the parent's size."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Timed:
    """A backend network that adds its call time to ``self.seconds``."""

    def __init__(self, net):
        self.net, self.seconds = net, 0.0
        self.members, self.out_ch, self.label = net.members, net.out_ch, net.label

    def subset(self, k):
        return _Timed(self.net.subset(k))

    def __call__(self, x, t):
        t0 = time.perf_counter()
        out = self.net(x, t)
        self.seconds += time.perf_counter() - t0
        return out


def stage_breakdown(ens: Ensemble, frame: np.ndarray, repeat: int = 3) -> dict[str, float]:
    """ms in each stage of the default setting on ``frame``: ``fit`` (measuring the frame: grain,
    normalisation plan, brightness window; once per cine, on its first frame), and per frame ``network``
    and ``rest`` (resampling forward and back, tiling, blending, member mean and uncertainty, the
    brightness correction, conversions).  ``total`` is one call on a frame whose fit is kept (a cine's
    later frames); each row is the fastest of ``repeat``."""
    timed = _Timed(ens.network)
    orig, ens.network, ens._subsets = ens.network, timed, {}
    mode = ens.normalize
    try:
        ens.despeckle(frame, seed=0)
        best: dict[str, float] = {}
        for _ in range(repeat):
            ens.clear_fits()
            t0 = time.perf_counter()
            plan, _sigma = ens._fitted(validate_frames(frame)[0], mode)
            t_fit = time.perf_counter() - t0
            timed.seconds = 0.0
            t0 = time.perf_counter()
            ens.despeckle(frame, seed=0)  # the fit just made is reused, as on a cine's later frames
            total = time.perf_counter() - t0
            row = {"fit": 1000 * t_fit, "network": 1000 * timed.seconds,
                   "rest": 1000 * (total - timed.seconds), "total": 1000 * total,
                   "resampled": float(plan is not None)}
            if not best or row["total"] < best["total"]:
                best = row
        return best
    finally:
        ens.network, ens._subsets = orig, {}
        ens.clear_fits()


def preview_text(ens: Ensemble) -> str:
    """What the preview network is, e.g. "base 16, 3 levels at 1/2 resolution, 394 k parameters"."""
    card = ens.preview_card
    torch_net = getattr(ens.preview_network, "net", None)
    cfg = card.get("network") or (torch_net.config() if torch_net is not None else {})
    bits = ["base %s" % cfg["base"]] if "base" in cfg else []
    if cfg.get("arch") == "unet":
        s = int(cfg.get("unshuffle", 1))
        bits.append("%s levels%s" % (cfg.get("levels", 2), " at 1/%d resolution" % s if s > 1 else ""))
    if card.get("params_per_member"):
        bits.append("%.0f k parameters" % (card["params_per_member"] / 1000))
    return ", ".join(bits) or "one member"


def _load(model: str, backend: str, threads):
    try:
        return load_ensemble(model, backend=backend, threads=threads)
    except ValueError as exc:
        return exc


def run_bench(sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES, quick: bool = False, model: str = "multiprobe",
              backends: Sequence[str] = ("openvino", "onnx", "torch"), threads="auto",
              out: Callable[[str], None] = print, device: str = "cpu") -> dict:
    """Run the benchmark and print the tables; returns the measured numbers."""
    from . import classical

    repeat = 1 if quick else 3
    if device != "cpu":
        backends = ("torch",)
    loaded = {b: _load(model, b, threads) for b in backends if _backends.installed(b)}
    ok = {b: e for b, e in loaded.items() if isinstance(e, Ensemble)}
    if not ok:
        raise ValueError("model %r could not be loaded on any backend: %s" % (model, loaded))
    for b, e in loaded.items():
        if not isinstance(e, Ensemble):
            out("backend %s: not available (%s)" % (b, e))
    default = load_ensemble(model, threads=threads, device=None if device == "cpu" else device)
    out("usclean bench: model %s (%d members, default %s %d step(s)); default backend: %s; threads: %s"
        % (model, default.members, default.default_sampler, default.default_steps, default.backend, threads))
    peaks = {} if quick else matmul_peaks()
    _print_peaks(peaks, out)
    rows: list[Row] = []
    result: dict = {"rows": rows, "stages": {}, "flops": {}, "matmul_gflops": {k: v / 1e9 for k, v in peaks.items()},
                    "backend": default.backend}
    for h, w in sizes:
        frame = speckle_frame(h, w)
        out("")
        out("%dx%d" % (h, w))
        bm3d_ms = _time(partial(classical.bm3d, frame, 0.1), 1)
        out("  %-34s %10.1f ms" % ("BM3D (sigma 0.1)", bm3d_ms))
        rows.append(Row((h, w), "BM3D", bm3d_ms))
        for ens in ok.values():
            variants: tuple[tuple[str, dict[str, Any]], ...] = (
                ("ensemble (%d members, mean+std)" % ens.members, {}), ("one member", {"members": 1}))
            if ens.has_preview:
                variants += (("preview network (%s)" % preview_text(ens), {"members": "preview"}),)
            for label, kw in variants:
                ms = _time(partial(ens.despeckle, frame, seed=0, **kw), repeat, warmup=True)
                rows.append(Row((h, w), "%s %s" % (ens.backend, label), ms))
                out("  %-20s %-34s %10.1f ms  = %.4f x BM3D  (%.1f frames/s)" % (ens.backend, label, ms, ms / bm3d_ms,
                                                                                1000 / ms))
        st = stage_breakdown(default, frame, repeat)
        result["stages"]["%dx%d" % (h, w)] = st
        out("  stages (%s): measuring the first frame %.1f ms (once per cine); then per frame: network %.1f ms, "
            "resampling%s/tiles/blend/mean/std/brightness/conversions %.1f ms"
            % (default.backend, st["fit"], st["network"], " (on)" if st["resampled"] else " (off)", st["rest"]))
        f = conv_flops(model, h, w)
        if f:
            gflops = f * default.members * default.default_steps / (st["network"] / 1000) / 1e9
            result["flops"]["%dx%d" % (h, w)] = {"gflop_per_member": f / 1e9, "achieved_gflops": gflops}
            share = ", ".join("%.0f %% of the %s peak" % (100 * gflops * 1e9 / v, k) for k, v in peaks.items())
            out("  network: %.2f GFLOP per member evaluation -> %.0f GFLOP/s%s" % (f / 1e9, gflops,
                                                                                   (" = " + share) if share else ""))
        base_ms = next((r.ms for r in rows if r.size == (h, w) and r.method.startswith(default.backend)
                        and "ensemble" in r.method), None) or st["total"]
        if default.mode == "irsde" and not quick:
            assert default.schedule is not None  # an irsde ensemble always has one
            T = default.schedule.T
            full = h * w <= 128 * 128
            for sampler in ("posterior", "em"):
                if full:
                    ms = _time(partial(default.despeckle, frame, steps=T, sampler=sampler, seed=0), 1)
                else:
                    ms1 = _time(partial(default.despeckle, frame, steps=1, sampler=sampler, seed=0), 1)
                    ms3 = _time(partial(default.despeckle, frame, steps=3, sampler=sampler, seed=0), 1)
                    ms = ms1 + max(ms3 - ms1, 0.0) / 2 * (T - 1)
                rows.append(Row((h, w), "%s %d steps" % (sampler, T), ms, "" if full else "*"))
                out("  %-55s %10.1f ms%s = %.1f x the default" % ("%s %d steps (%s)" % (sampler, T, default.backend),
                                                                  ms, "" if full else "*", ms / base_ms))
        if not quick:
            ms = _time(partial(classical.nlm, frame), 1)
            rows.append(Row((h, w), "NLM", ms))
            out("  %-34s %10.1f ms" % ("NLM", ms))
    result["peak_memory_mb"] = peak_memory_mb()
    out("")
    out("peak memory: %.0f MB (process max RSS)" % result["peak_memory_mb"])
    if any(r.note for r in rows):
        out("* extrapolated from runs of 1 and 3 steps (per-frame work once, each further step one network evaluation)")
    result["rows"] = [r.__dict__ for r in rows]
    return result
