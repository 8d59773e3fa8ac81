"""The Markdown report of ``usclean evaluate`` (:func:`render_report`), one small function per section."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Sequence

import numpy as np

from . import classical
from .evaluate_config import (DEFAULT_MODEL, FIGURE_EXAMPLES, IRSDE_MODELS, LEARNED_BASELINES, REFERENCE_PROBE,
                              VAL_SEED)


def _f(v: Any, fmt: str = "%.2f") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "—"
    return fmt % v


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table (``|`` inside cells is escaped)."""
    def cell(c: str) -> str:
        return str(c).replace("|", "\\|")
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return lines


def _method_label(m: str, models: dict) -> str:
    if m in IRSDE_MODELS:
        info = models.get(m, {})
        if info.get("mode") not in (None, "irsde"):
            return "`%s` ensemble mean (%s)" % (m, info["mode"])
        setting = "%s, %s NFE" % (info.get("default_sampler") or "default sampler",
                                  info.get("default_steps") or "default")
        return "IR-SDE `%s` ensemble mean (%s)" % (m, setting)
    if m in LEARNED_BASELINES:
        return "`%s` (%s)" % (m, LEARNED_BASELINES[m])
    if m in classical.FILTERS:
        return "%s (%s)" % (m, classical.FILTERS[m].reference)
    return m


def render_report(results: dict, out_path: str | os.PathLike, command: str) -> str:
    """The Markdown report of ``results`` (figure links relative to ``out_path``'s folder)."""
    cfg, models = results["config"], results.get("models", {})
    L = _header(results, cfg, models, command)
    for section in (_models_line, _tuning_section, _quality_section, _uncertainty_section, _domain_section,
                    _steps_section):
        L += section(results, cfg, models)
    L += _figures_and_timings(results, Path(out_path).resolve().parent)
    return "\n".join(L)


def _header(results: dict, cfg: dict, models: dict, command: str) -> list[str]:
    """Title, how to regenerate, seeds, metric conventions, budget note, what is missing."""
    L: list[str] = ["# USClean evaluation results", ""]
    L.append("Regenerate with `%s`%s. Run time: **%.1f min** on %d CPU core(s) (%s, Python %s)."
             % (command, " (quick: a tiny subset, not the published numbers)" if cfg["quick"] else "",
                results["runtime_s"] / 60.0, os.cpu_count() or 0, platform.machine(), platform.python_version()))
    L.append("")
    L.append("Seeds and indices, fixed before the run: model seed %d for every call; each test set's first %s "
             "images (all when none given); 100-step references and the steps curve on the first %d / %d images; "
             "one-member sample seeds %d..%d; validation pairs: %d per probe (fast path, split `val`, seeds from %d); "
             "figure examples (kind, probe, index): %s." % (
                 cfg["seed"], cfg["max_images"] or "N", cfg["ref_images"], cfg["steps_images"], cfg["seed"] + 1000,
                 cfg["seed"] + 1000 + cfg["sample_seeds"] - 1, cfg["val_per_probe"], VAL_SEED,
                 ", ".join("(%s, %s, %d)" % e for e in FIGURE_EXAMPLES)))
    L.append("")
    L.append("Metrics: PSNR and SSIM (scikit-image, 7×7 window, data range 1) against the clean target inside each "
             "image's valid imaging region; **CNR and gCNR in the display (log-compressed, [0, 1]) domain**, lesion "
             "mask vs background mask, averaged over the images that contain a lesion (`n_lesion`). Tables give means "
             "over images; the best value of each column is in bold. `s / image`: wall-clock seconds per image "
             "(classical filters: single-process time; models: the whole ensemble).")
    L.append("")
    budget = results.get("budget", {})
    if budget.get("note"):
        L.append("Note: %s." % budget["note"])
        L.append("")
    if results["missing"]:
        L.append("## Missing")
        L.append("")
        L += ["- %s" % m for m in results["missing"]]
        L.append("")
    return L


def _models_line(results: dict, cfg: dict, models: dict) -> list[str]:
    """The models evaluated and their default settings."""
    L: list[str] = []
    if models:
        L.append("Models: " + "; ".join(
            "`%s` (%s, %s members%s)" % (m, v.get("mode") or "?", v.get("members") or "?",
                                       ", default: %s sampler, %s NFE"
                                       % (v.get("default_sampler"), v.get("default_steps"))
                                       if v.get("mode") in (None, "irsde") else "")
            for m, v in models.items()) + ".")
        L.append("")
    return L


def _tuning_section(results: dict, cfg: dict, models: dict) -> list[str]:
    """The classical filters' grids and chosen parameters."""
    L: list[str] = []
    L.append("## Classical filters: grids and chosen parameters")
    L.append("")
    L.append("Every filter implements its published formula (`engine/classical.py`) and was tuned by grid search for "
             "the best mean PSNR on %d validation pairs (all probes, fast path). Each grid point also gets the global "
             "additive display offset that minimises the squared error on the validation pairs (closed form), which "
             "removes the log-compression bias of speckle that the learned models absorb from their training data."
             % results.get("val_pairs", 0))
    L.append("")
    trows = []
    for name, t in results["tuning"].items():
        f = classical.FILTERS.get(name)
        chosen = ", ".join("%s=%s" % (k, ("%.4g" % v) if isinstance(v, float) else v) for k, v in t["params"].items())
        trows.append([name, f.domain if f else "", chosen or "defaults",
                      _f(t.get("val_psnr")), "; ".join("%s ∈ %s" % (k, v) for k, v in (f.grid if f else {}).items())])
    L += _table(["filter", "domain", "chosen", "val PSNR", "grid"], trows)
    L.append("")
    L.append("<details><summary>Full grid tables</summary>")
    L.append("")
    L.append("```")
    L += [t["text"] for t in results["tuning"].values()]
    L.append("```")
    L.append("</details>")
    L.append("")
    return L


def _quality_section(results: dict, cfg: dict, models: dict) -> list[str]:
    """Quality per test set, with the paired comparison and the 100-step references."""
    L: list[str] = []
    L.append("## 1. Quality")
    L.append("")
    filled = {n: e for n, e in results["sets"].items() if e["rows"]}
    if filled:
        methods = [m for m in next(iter(filled.values()))["rows"] if m != "clean target"]
        L.append("Summary: mean PSNR (dB) / SSIM per test set (best in bold; details and CNR/gCNR below).")
        L.append("")
        body = []
        for m in methods:
            cells = [m]
            for e in filled.values():
                r = e["rows"].get(m)
                if not r:
                    cells.append("—")
                    continue
                txt = "%s / %s" % (_f(r["psnr"]), _f(r["ssim"], "%.3f"))
                cells.append("**%s**" % txt if e.get("best", {}).get("psnr") == m else txt)
            body.append(cells)
        L += _table(["method"] + list(filled), body)
        L.append("")
    for set_name, entry in results["sets"].items():
        rows = entry["rows"]
        if not rows:
            continue
        L.append("### %s (%d of %d images, %d with a lesion)"
                 % (set_name, entry["n"], entry["n_total"], entry["n_lesion"]))
        L.append("")
        best = entry.get("best", {})
        body = []
        for m, r in rows.items():
            cells = [_method_label(m, models)]
            for k, fmt in (("psnr", "%.2f"), ("ssim", "%.4f"), ("cnr", "%.3f"), ("gcnr", "%.3f")):
                s = _f(r.get(k), fmt)
                cells.append("**%s**" % s if best.get(k) == m and s != "—" else s)
            cells.append(_f(r.get("s_per_image", None), "%.3f") if "s_per_image" in r else "—")
            body.append(cells)
        L += _table(["method", "PSNR (dB)", "SSIM", "CNR", "gCNR", "s / image"], body)
        L.append("")
        if best:
            L.append("Best PSNR: %s; best SSIM: %s%s." % (best["psnr"], best["ssim"],
                     "; best gCNR: %s" % best["gcnr"] if "gcnr" in best else ""))
        for model, cmp in entry.get("irsde_vs_best_other", {}).items():
            verdict = ("the IR-SDE ensemble wins" if cmp["lo"] > 0 else "**the baseline `%s` wins**" % cmp["rival"]
                       if cmp["hi"] < 0 else "no significant difference" if np.isfinite(cmp["lo"]) else
                       "too few images to tell")
            L.append("")
            L.append("`%s` − best non-IR-SDE method (`%s`): %+.2f dB PSNR (paired 95 %% CI %s … %s, n = %d): %s."
                     % (model, cmp["rival"], cmp["diff"], _f(cmp["lo"]), _f(cmp["hi"]), cmp["n"], verdict))
        L.append("")
    if results["refs"]:
        L.append("### 100-step references (`%s`, first images of each set)" % DEFAULT_MODEL)
        L.append("")
        body = []
        for set_name, ref in results["refs"].items():
            for m, r in ref["rows"].items():
                body.append([set_name, "%s (n = %d)" % (m, r["n"]), _f(r["psnr"]), _f(r["ssim"], "%.4f"),
                             _f(r["cnr"], "%.3f"), _f(r["gcnr"], "%.3f"), _f(r.get("s_per_image"), "%.2f")])
        L += _table(["set", "setting", "PSNR (dB)", "SSIM", "CNR", "gCNR", "s / image"], body)
        L.append("")
    return L


def _uncertainty_section(results: dict, cfg: dict, models: dict) -> list[str]:
    """The ensemble spread against the error."""
    L: list[str] = []
    u = results.get("uncertainty")
    L.append("## 2. Uncertainty")
    L.append("")
    if u:
        L.append("`%s` at its default setting on %s (%d images, %d pixels inside the imaging regions). Error = "
                 "|ensemble mean − clean|; std = cross-member std (variance = std²)."
                 % (DEFAULT_MODEL, ", ".join(u["sets"]), u["n_images"], u["n_pixels"]))
        L.append("")
        body = [[lvl, _f(u[lvl]["pearson_var"], "%.3f"), _f(u[lvl]["pearson_std"], "%.3f"),
                 _f(u[lvl]["spearman_std"], "%.3f")]
                for lvl in ("pixel", "image")]
        L += _table(["level", "Pearson r (variance, |err|)", "Pearson r (std, |err|)",
                     "Spearman ρ (std or variance, |err|)"], body)
        L.append("")
        L.append("Of the 10 %% most uncertain pixels of each image, **%.1f %%** are among its 10 %% largest errors "
                 "(chance: 10 %%)." % (100 * u["top10_overlap"]))
        L.append("")
        if isinstance(u["members"], list):
            body = [[str(r["members"]), _f(r["psnr"]), _f(r["pearson_std"], "%.3f"), _f(r["spearman_std"], "%.3f")]
                    for r in u["members"]]
            L.append("Ensembles of the first m members (same seed; m = 1 has no spread, so no correlation):")
            L.append("")
            L += _table(["members m", "PSNR of the mean", "Pearson r (std, |err|)", "Spearman ρ"], body)
            L.append("")
        else:
            L.append("Member curve: %s." % u["members"])
            L.append("")
        s = u["one_member_samples"]
        if isinstance(s, dict):
            L.append("Spread of %d samples of one member (`posterior` sampler, default steps, different seeds): "
                     "Pearson r (std, |err|) = %s, Spearman ρ = %s — compare with the independent members above."
                     % (s["samples"], _f(s["pearson_std"], "%.3f"), _f(s["spearman_std"], "%.3f")))
        else:
            L.append("One member's samples: %s." % s)
        L.append("")
    else:
        L.append("Not available (see Missing).")
        L.append("")
    return L


def _domain_section(results: dict, cfg: dict, models: dict) -> list[str]:
    """Domain shift per probe."""
    L: list[str] = []
    ds = results.get("domain_shift")
    L.append("## 3. Domain shift")
    L.append("")
    if ds and ds["methods"]:
        L.append("PSNR (dB) per probe and, in brackets, the change relative to %s (the training probe of `l11-5v`; "
                 "`multiprobe` was trained on all four probes; the best classical filter by validation PSNR, `%s`, "
                 "has no training probe)." % (REFERENCE_PROBE, ds["best_classical"]))
        L.append("")
        for kind, per in ds["table"].items():
            body = []
            for m in ds["methods"]:
                cells = [m]
                for p in cfg["probes"]:
                    v = per.get(m, {}).get(p)
                    cells.append("%s (%s)" % (_f(v["psnr"]), _f(v["drop_psnr"], "%+.2f")) if v else "—")
                body.append(cells)
            L.append("**%s test sets**" % kind)
            L.append("")
            L += _table(["method"] + list(cfg["probes"]), body)
            L.append("")
    else:
        L.append("Not available (see Missing).")
        L.append("")
    return L


def _steps_section(results: dict, cfg: dict, models: dict) -> list[str]:
    """Steps against quality."""
    L: list[str] = []
    st = results.get("steps")
    L.append("## 4. Steps vs quality")
    L.append("")
    if st:
        L.append("`%s` ensemble mean on %s, images %s; NFE = network evaluations per member."
                 % (DEFAULT_MODEL, st["set"], st["indices"]))
        L.append("")
        nfes = sorted({n for c in st["curves"].values() for n in c} | {st["em"]["nfe"]})
        body = [[s] + ["%s / %s" % (_f(c[n]["psnr"]), _f(c[n]["ssim"], "%.3f")) if n in c else "—" for n in nfes]
                for s, c in st["curves"].items()]
        body.append(["em"] + ["%s / %s" % (_f(st["em"]["psnr"]), _f(st["em"]["ssim"], "%.3f")) if n == st["em"]["nfe"]
                              else "" for n in nfes])
        L += _table(["sampler (PSNR / SSIM)"] + [str(n) for n in nfes], body)
        L.append("")
    else:
        L.append("Not available (see Missing).")
        L.append("")
    return L


def _figures_and_timings(results: dict, out_dir: Path) -> list[str]:
    """The speckle-free-target and generalization sections, the figures and the stage timings."""
    L: list[str] = []
    figs = results.get("figures", {})
    L += _bmode_section(results)
    if results.get("generalization_md"):
        L.append(results["generalization_md"])
    if figs:
        L.append("## 5. Figures")
        L.append("")
        captions = {"examples": "Examples (input / ground truth / ours / best baseline of that set / ensemble std)",
                    "steps": "Steps vs quality", "reliability": "Reliability: mean |error| per std bin",
                    "domain_fast": "Domain shift, fast-sim test sets",
                    "domain_full": "Domain shift, full-physics test sets"}
        for key, path in figs.items():
            rel = os.path.relpath(Path(path).resolve(), out_dir)
            L.append("![%s](%s)" % (captions.get(key, key), rel.replace(os.sep, "/")))
            L.append("")
    L.append("## Stage timings")
    L.append("")
    L += _table(["stage", "seconds"], [[k, "%.1f" % v] for k, v in results["timings"].items()])
    L.append("")
    return L


def _bmode_section(results: dict) -> list[str]:
    """The committed sets scored against the speckle-free B-mode (where a set has one)."""
    sets = {k: v for k, v in results["sets"].items() if v.get("bmode_rows")}
    if not sets:
        return []
    methods = list(next(iter(sets.values()))["bmode_rows"])
    L = ["## 1b. Quality against the speckle-free B-mode", "",
         "The same outputs scored against the speckle-free B-mode of each committed image (the mean displayed image "
         "of 32 fresh fast-path realisations of its phantom, `python -m simulator.fullset --bmode-targets`; for the "
         "full-physics sets an estimate through the fast path's PSFs): the target of the models that learn it. "
         "PSNR (dB) / SSIM; BM3D also with its sigma tuned against this target on the set's first 8 images "
         "(sigma: %s)." % ", ".join("%s %s" % (k, v["bmode_bm3d_sigma"]) for k, v in sets.items()), ""]
    rows = [[m] + ["%.2f / %.3f" % (v["bmode_rows"][m]["psnr"], v["bmode_rows"][m]["ssim"]) if m in v["bmode_rows"]
                   else "–" for v in sets.values()] for m in methods]
    L += _table(["method"] + list(sets), rows)
    L.append("")
    return L
