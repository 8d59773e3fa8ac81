"""Validate the fast simulation path against full MUST physics, per probe (single transmit).

``python -m simulator.validate`` (options: ``--probes``, ``--n``, ``--force``) runs the full path
on ``n`` homogeneous and ``n`` lesion phantoms (-6 dB and +6 dB discs) per probe, stores the
per-image statistics in ``resources/validation/<probe>.json`` (a probe whose file already holds
``n`` images with the current settings is not simulated again: the run resumes), measures the
fast path on the same phantoms and seeds, times one full and several fast simulations of the
same phantom in this run, and writes ``docs/experiments/fast_vs_full.md``.  ``--report-only`` rewrites the
report from the stored full statistics and full-path timings with freshly computed fast statistics
and timings.

Statistics (all on the linear envelope of the simulated image, inside the field of view):

* ``snr``: mean / std of the envelope of a homogeneous phantom (Rayleigh: 1.913);
* ``fwhm_axial_mm`` / ``fwhm_lateral_mm``: full width at half maximum of the normalised
  envelope autocovariance along depth / laterally (the speckle grain size);
* ``contrast_db``: 10 log10 of the mean envelope power in a lesion (eroded by 2 pixels) over
  that in the background ring around the lesions, for the -6 dB and +6 dB lesions.

Tolerances (issue 2): fast SNR within 1.91 +- 0.10; grain sizes within 20 % of the full path;
lesion contrasts within 1 dB of the full path.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from .phantoms import make_phantom
from .physics import DENSITY_FACTOR, simulate
from .probes import PROBE_NAMES, get_probe
from .types import SimResult

ROOT = Path(__file__).resolve().parent.parent
VALIDATION_DIR = ROOT / "resources" / "validation"
REPORT = ROOT / "docs" / "experiments" / "fast_vs_full.md"
SIZE = 128
N_IMAGES = 4
LESION_DB = (-6.0, 6.0)
SNR_TARGET, SNR_TOL = 1.91, 0.10
GRAIN_TOL = 0.20
CONTRAST_TOL_DB = 1.0
SETTINGS = {"size": SIZE, "lesion_db": list(LESION_DB), "density_factor": DENSITY_FACTOR, "version": 1}


# --------------------------------------------------------------------------- statistics
def fwhm_mm(env: np.ndarray, spacing: tuple[float, float]) -> tuple[float, float]:
    """Axial and lateral FWHM (mm) of the normalised autocovariance of ``env`` (a full 2-D array)."""
    e = env - env.mean()
    h, w = e.shape
    f = np.fft.rfft2(e, s=(2 * h, 2 * w))
    ac = np.fft.irfft2(np.abs(f) ** 2, s=(2 * h, 2 * w))
    ac = ac / ac[0, 0]

    def half_width(profile: np.ndarray) -> float:
        below = np.nonzero(profile < 0.5)[0]
        if below.size == 0:
            return float(profile.size)
        i = int(below[0])
        return (i - 1) + (profile[i - 1] - 0.5) / (profile[i - 1] - profile[i])

    return 2 * half_width(ac[:h, 0]) * spacing[0], 2 * half_width(ac[0, :w]) * spacing[1]


def homogeneous_stats(res: SimResult) -> dict[str, float]:
    """SNR and grain size of a homogeneous image (its field of view must fill the image)."""
    if not res.mask.all():
        raise ValueError("homogeneous statistics need an image entirely inside the field of view")
    env = res.envelope.astype(float)
    ax, lat = fwhm_mm(env, res.spacing_mm)
    return {"snr": float(env.mean() / env.std()), "fwhm_axial_mm": ax, "fwhm_lateral_mm": lat}


def lesion_stats(res: SimResult, labels: np.ndarray) -> dict[str, float]:
    """Contrast (dB) of each lesion (label 1, 2, ... in LESION_DB order) against the background."""
    power = res.envelope.astype(float) ** 2
    bg = power[res.background_mask].mean()
    out = {}
    for k, c_db in enumerate(LESION_DB, start=1):
        roi = ndimage.binary_erosion(labels == k, iterations=2) & res.mask
        out[f"{c_db:+.0f}"] = float(10 * np.log10(power[roi].mean() / bg))
    return out


def phantoms(probe_name: str, seed: int):
    """The homogeneous and lesion phantoms used for image ``seed`` of a probe."""
    probe = get_probe(probe_name)
    homog = make_phantom("homogeneous", probe, SIZE, seed=seed)
    lesions = make_phantom("lesions", probe, SIZE, seed=seed, contrast_db=list(LESION_DB))
    return probe, homog, lesions


def image_stats(probe_name: str, seed: int, path: str) -> dict:
    """All statistics of image ``seed`` (one homogeneous + one lesion phantom) for one path."""
    probe, homog, lesions = phantoms(probe_name, seed)
    t0 = time.perf_counter()
    h = simulate(homog, probe, path=path, seed=seed)
    t1 = time.perf_counter()
    les = simulate(lesions, probe, path=path, seed=seed + 1000)
    t2 = time.perf_counter()
    return {**homogeneous_stats(h), "contrast_db": lesion_stats(les, lesions.meta["labels"]),
            "seconds": [t1 - t0, t2 - t1]}


def summarise(images: list[dict]) -> dict:
    """Means (and standard deviations) over images."""
    def ms(vals):
        v = np.asarray(vals, float)
        return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0}

    keys = ("snr", "fwhm_axial_mm", "fwhm_lateral_mm")
    out = {k: ms([im[k] for im in images]) for k in keys}
    for c in images[0]["contrast_db"]:
        out[f"contrast_{c}_db"] = ms([im["contrast_db"][c] for im in images])
    return out


def fast_statistics(probe_name: str, n: int = N_IMAGES) -> dict:
    """Fast-path statistics over the same ``n`` phantoms and seeds as the stored full-path set."""
    return summarise([image_stats(probe_name, s, "fast") for s in range(n)])


def load_full(probe_name: str) -> dict:
    """The stored full-path statistics of a probe (resources/validation/<probe>.json)."""
    path = VALIDATION_DIR / f"{probe_name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m simulator.validate`")
    return json.loads(path.read_text())


def compare(full: dict, fast: dict) -> dict[str, bool]:
    """Which tolerances hold (issue 2, item 5)."""
    ok = {"snr": abs(fast["snr"]["mean"] - SNR_TARGET) <= SNR_TOL}
    for k in ("fwhm_axial_mm", "fwhm_lateral_mm"):
        ok[k] = abs(fast[k]["mean"] / full[k]["mean"] - 1) <= GRAIN_TOL
    for c in LESION_DB:
        k = f"contrast_{c:+.0f}_db"
        ok[k] = abs(fast[k]["mean"] - full[k]["mean"]) <= CONTRAST_TOL_DB
    return ok


CLEAN_BINS = (0.05, 0.3, 0.5, 0.7, 0.9, 1.0001)  # display-level bins of the clean target (I >= 0.05)


def testset_agreement(probe_name: str, n: int | None = None) -> dict:
    """Display-domain residuals ``bmode - clean`` of the committed full-physics test set and of the
    fast path on the same phantoms and seeds (MRI anatomy, inside the field of view): the mean residual
    per clean-level bin (``bins``: lower edges) and the residual's overall mean and standard deviation.
    The dark bins are where missing PSF tails show (their clutter lifts dark tissue)."""
    from .datasets import load_test_set, sample_pair

    ts = load_test_set("full", probe_name)
    n = len(ts["seed"]) if n is None else min(int(n), len(ts["seed"]))
    fast = np.stack([sample_pair(probe_name, SIZE, seed=int(s), split="test", path="fast").bmode
                     for s in ts["seed"][:n]])
    mask = ts["mask"][:n].astype(bool)
    clean = ts["clean"][:n][mask]
    out: dict = {"images": n, "bins": list(CLEAN_BINS[:-1])}
    for path, bmode in (("full", ts["bmode"][:n]), ("fast", fast)):
        r = (bmode[mask] - clean).astype(float)
        out[path] = {"mean": float(r.mean()), "std": float(r.std()),
                     "bin_mean": [float(r[(clean >= lo) & (clean < hi)].mean())
                                  for lo, hi in zip(CLEAN_BINS[:-1], CLEAN_BINS[1:])]}
    return out


# --------------------------------------------------------------------------- the run
def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def run_full(probe_name: str, n: int, force: bool = False) -> dict:
    """Full-path statistics of ``n`` images, resuming image by image from the stored JSON."""
    path = VALIDATION_DIR / f"{probe_name}.json"
    data: dict[str, Any] = {"probe": probe_name, "settings": SETTINGS, "images": []}
    if path.exists() and not force:
        old = json.loads(path.read_text())
        if old.get("settings") == SETTINGS:
            data["images"] = old.get("images", [])
    for seed in range(len(data["images"]), n):
        t = time.perf_counter()
        data["images"].append(image_stats(probe_name, seed, "full"))
        print(f"{probe_name}: full image {seed + 1}/{n} in {time.perf_counter() - t:.0f} s", flush=True)
        data["full"] = summarise(data["images"])
        _write_json(path, data)
    data["images"] = data["images"][:n]
    data["full"] = summarise(data["images"])
    _write_json(path, data)
    return data


def time_ratio(probe_name: str, repeats: int = 20, full_s: float | None = None) -> dict[str, float]:
    """Seconds per 128x128 image for each path, measured now on the same phantom (the full path
    only when ``full_s``, a stored full-path time, is not given)."""
    probe, homog, _ = phantoms(probe_name, 0)
    simulate(homog, probe, path="fast", seed=0)  # PSF bank loaded / built outside the timing
    t = time.perf_counter()
    for s in range(repeats):
        simulate(homog, probe, path="fast", seed=s)
    fast = (time.perf_counter() - t) / repeats
    if full_s is None:
        t = time.perf_counter()
        simulate(homog, probe, path="full", seed=0)
        full_s = time.perf_counter() - t
    return {"full_s": float(full_s), "fast_s": fast, "ratio": float(full_s) / fast}


def write_report(rows: dict[str, dict]) -> None:
    """docs/experiments/fast_vs_full.md from the per-probe full, fast, comparison and timing figures."""
    def f(s, digits=2):
        return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"

    lines = [
        "# Fast versus full physics (single transmit)",
        "",
        "Generated by `python -m simulator.validate`; full-path statistics are stored in",
        "`resources/validation/<probe>.json` and checked against the fast path by `tests/test_physics.py`.",
        f"Per probe: {rows[next(iter(rows))]['n']} homogeneous and {rows[next(iter(rows))]['n']} lesion "
        f"phantoms ({SIZE}×{SIZE}, default window), the same phantoms and seeds for both paths;",
        "mean ± standard deviation over images. Envelope SNR = mean/std (Rayleigh: 1.913);",
        "grain = FWHM of the envelope autocovariance; contrast = lesion/background envelope power (dB),",
        "lesions eroded by 2 pixels. Times: one full and 20 fast simulations of the same phantom in one run,",
        "this machine (shared 2-core CPU, single-threaded numpy; the full-path time is the stored one when the",
        "full statistics were not rerun: that path did not change).",
        "",
        "| probe | path | SNR | grain axial (mm) | grain lateral (mm) "
        "| −6 dB lesion (dB) | +6 dB lesion (dB) | s / image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        for path in ("full", "fast"):
            s = r[path]
            sec = r["timing"][f"{path}_s"]
            lines.append(f"| {name} | {path} | {f(s['snr'])} | {f(s['fwhm_axial_mm'], 3)} "
                         f"| {f(s['fwhm_lateral_mm'], 3)} | {f(s['contrast_-6_db'])} "
                         f"| {f(s['contrast_+6_db'])} | {sec:.3g} |")
    lines += ["", "## Tolerances (issue 2, item 5)", "",
              "| probe | fast SNR in 1.91 ± 0.10 | axial grain within 20 % | lateral grain within 20 % "
              "| −6 dB within 1 dB | +6 dB within 1 dB | fast/full speed-up |",
              "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        full, fast, ok = r["full"], r["fast"], r["ok"]
        mark = {True: "yes", False: "**no**"}
        ax = fast["fwhm_axial_mm"]["mean"] / full["fwhm_axial_mm"]["mean"] - 1
        la = fast["fwhm_lateral_mm"]["mean"] / full["fwhm_lateral_mm"]["mean"] - 1
        dm = fast["contrast_-6_db"]["mean"] - full["contrast_-6_db"]["mean"]
        dp = fast["contrast_+6_db"]["mean"] - full["contrast_+6_db"]["mean"]
        lines.append(
            f"| {name} | {mark[ok['snr']]} ({fast['snr']['mean']:.3f}) | {mark[ok['fwhm_axial_mm']]} ({ax:+.0%}) "
            f"| {mark[ok['fwhm_lateral_mm']]} ({la:+.0%}) | {mark[ok['contrast_-6_db']]} ({dm:+.2f} dB) "
            f"| {mark[ok['contrast_+6_db']]} ({dp:+.2f} dB) | {r['timing']['ratio']:.0f}× |")
    lines += ["", "## Anatomy: residuals on the committed full-physics test set", "",
              "Display-domain residual B-mode − clean (50 dB DR) of `resources/testsets/full` and of the fast path "
              "on the",
              "same MRI phantoms and seeds, inside the field of view: mean per clean-level bin, then overall mean and",
              "standard deviation. Dark tissue is where missing PSF tails show: their clutter lifts it. Until the PSF",
              "banks' format 4 the linear kernels were measured on ±20 × ±48 px only (2–11 % of a point's energy",
              "outside), and the L11-5v fast path put dark tissue (clean 0.05–0.3) at +0.004 where the full path",
              "has +0.040, with a residual std of 0.118 against 0.130.", ""]
    first = rows[next(iter(rows))]["testset"]
    heads = " | ".join("clean %.2f–%.2f" % (lo, hi) for lo, hi in zip(first["bins"], list(first["bins"][1:]) + [1.0]))
    lines += [f"| probe | path | images | {heads} | mean | std |", "|---|---|---|" + "---|" * (len(first["bins"]) + 2)]
    for name, r in rows.items():
        t = r["testset"]
        for path in ("full", "fast"):
            cells = " | ".join(f"{v:+.3f}" for v in t[path]["bin_mean"])
            lines.append(f"| {name} | {path} | {t['images']} | {cells} "
                         f"| {t[path]['mean']:+.4f} | {t[path]['std']:.4f} |")
    lines += [
        "",
        "## How the two paths are built",
        "",
        "- **Full** (`simulate(..., path=\"full\")`): scatterers on a jittered grid at twice genscat's default",
        "  density, Rayleigh amplitudes scaled by 10^(DR (I − 1) / 20), filling the image plus a margin of",
        "  max(1.5 mm, 8 λ); `pymust.simus` with one unfocused transmit (plane wave for linear arrays, the",
        "  natural diverging wave of the C5-2v, an 80° circular wave for the P4-2v); `rf2iq`; `dasmtx`",
        "  (pymust's optimal receive f-number) straight onto the Cartesian output pixels; envelope divided by",
        "  the square root of the measured PSF energy at that depth (a physics-derived TGC).",
        "- **Fast**: a complex Gaussian field of variance 10^(DR (I − 1) / 10) convolved with complex PSFs",
        "  measured with the same chain (one point target per depth, 9 depths per probe, stored in",
        "  `resources/psf/`; linear probes on ±64 × ±128 output pixels cropped to 99.9 % of the measured",
        "  energy, sector probes on ±20 × ±48 cropped to 99.7 %), blended linearly between depths with a "
        "variance correction; for the C5-2v",
        "  and P4-2v in beam space (radius × angle, 1.3× the kernels' Nyquist rate), then scan-converted",
        "  by cubic convolution to the Cartesian grid with the sector mask.",
        "- Both share the display mapping and clean target of `simulator/physics.py`.",
        "",
        "The full path's own envelope SNR sits a little below the Rayleigh value 1.91 because the number of",
        "scatterers per resolution cell is finite (doubling the density again moved it by about +0.02 at twice",
        "the cost); the fast path's field is fully developed by construction.",
        "",
        "Known limit: the fast path's kernels are measured on the probe axis. Off-axis, the full path's PSF",
        "widens and weakens (P4-2v, point at 55 mm: −6 dB lateral width 2.1 mm on axis, 2.2 mm at 20°,",
        "3.35 mm at 30°, with 3.8 dB less energy at 30°), which is why the P4-2v fast lateral grain is the",
        "smallest of the four, and why full-path sector images darken slightly towards the sector edges",
        "(the full path's gain compensates depth only).",
        "",
    ]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulator.validate", description=__doc__.split("\n")[0])
    ap.add_argument("--probes", nargs="+", default=list(PROBE_NAMES), choices=PROBE_NAMES)
    ap.add_argument("--n", type=int, default=N_IMAGES, help="images per phantom and probe")
    ap.add_argument("--force", action="store_true", help="re-run stored full-path images")
    ap.add_argument("--report-only", action="store_true",
                    help="no full simulation: stored full statistics and full-path times, "
                         "fresh fast statistics and times")
    args = ap.parse_args(argv)
    rows = {}
    for name in args.probes:
        if args.report_only:
            data = load_full(name)
            n = len(data["images"])
            timing = time_ratio(name, full_s=data["timing"]["full_s"])
        else:
            data = run_full(name, args.n, args.force)
            n = args.n
            timing = time_ratio(name)
        fast = fast_statistics(name, n)
        rows[name] = {"n": n, "full": data["full"], "fast": fast, "ok": compare(data["full"], fast),
                      "timing": timing, "testset": testset_agreement(name)}
        print(name, json.dumps({k: v for k, v in rows[name].items() if k != "n"}, default=str), flush=True)
        data["fast_at_validation"] = fast
        data["timing"] = rows[name]["timing"]
        _write_json(VALIDATION_DIR / f"{name}.json", data)
    write_report(rows)
    print(f"wrote {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
