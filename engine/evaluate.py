"""The evaluation behind ``usclean evaluate``: quality, uncertainty, domain shift, steps vs quality.

:func:`run_evaluation` loads the committed test sets (``simulator.datasets.load_test_set``) and the
shipped models (``engine.load_ensemble``), tunes every classical filter on validation pairs,
computes every table, draws the figures (:mod:`engine.figures`) and writes a Markdown report.
Model, test-set and validation loaders are injectable, so the whole pipeline runs in the test
suite on a tiny model and small synthetic sets.  Missing models or test sets are listed in the
report instead of stopping the run.

Conventions (stated again in the report):

- all images are display images in [0, 1] (log-compressed B-mode, DR from the test set);
- PSNR and SSIM are computed inside each image's valid imaging region (``mask``: the sector for
  convex/phased probes), against the clean target;
- CNR and gCNR are computed in the display (log-compressed) domain between ``lesion_mask`` and
  ``background_mask`` (each intersected with ``mask``), on the images that have a lesion, and
  averaged over those images;
- every model call uses the same seed (``EvalConfig.seed``); subsets are the first N images of
  each set (the sets' own seeds are random, so the first N are an unbiased, pre-declared choice).
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np

from engine import classical, metrics

from .evalstats import (correlations, paired_diff, reliability, set_metrics, summarize,
                        top_fraction_overlap, _has_lesion)
from .evaluate_config import (BMODE_BM3D_GRID, DEFAULT_MODEL, FIGURE_EXAMPLES, IRSDE_MODELS, KINDS,  # noqa: F401
                              LEARNED_BASELINES, NFE_GRID, PROBES, REFERENCE_PROBE, VAL_SEED, EvalConfig)
from .report import render_report

@dataclass
class EvalSet:
    """One test set, already cut to the evaluated images."""

    kind: str
    probe: str
    bmode: np.ndarray
    clean: np.ndarray
    mask: np.ndarray
    lesion_mask: np.ndarray
    background_mask: np.ndarray
    dr_db: np.ndarray
    n_total: int
    bmode_target: np.ndarray | None = None  # the speckle-free B-mode (where the set has one)

    @property
    def name(self) -> str:
        return "%s %s" % (self.probe, self.kind)

    def __len__(self) -> int:
        return len(self.bmode)


def filter_pool(workers: int):
    """A process pool for the classical filters (None for ``workers`` ≤ 1).  fork (where available) starts
    the workers without re-importing torch; they only run numpy/scipy/bm3d code, so create the pool before
    any torch computation has run in this process."""
    if workers <= 1:
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))


@dataclass
class Evaluation:
    """Runs the evaluation; results accumulate in ``self.results`` (a plain dict)."""

    config: EvalConfig
    model_loader: Callable[[str], Any]
    testset_loader: Callable[[str, str], dict]
    val_loader: Callable[[str, int], list] | None = None
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)
    results: dict = field(default_factory=dict)
    #: foreign sets and real clips: ``fn(models {name: ensemble}) -> (results, markdown)`` (None: skipped)
    generalization: Callable[[dict], tuple[dict, str]] | None = None

    # ------------------------------------------------------------------ entry point
    def run(self) -> dict:
        t0 = self._t0 = time.time()
        cfg = self.config
        self.results = {"config": dataclasses.asdict(cfg), "missing": [], "timings": {}, "sets": {},
                        "refs": {}, "tuning": {}, "models": {}, "figures": {}}
        self._models: dict[str, Any] = {}
        self._runs: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._speed: dict[str, list[tuple[float, int]]] = {}
        self._outputs: dict[str, dict[str, np.ndarray]] = {}
        self.sets = self._load_sets()
        self._load_models()
        self._pool = filter_pool(cfg.workers)
        try:
            self._stage("tuning", self._tune_filters)
            self._stage("classical filters", self._classical)
            self._stage("BM3D against the speckle-free target", self._bmode_bm3d)
        finally:
            if self._pool is not None:
                self._pool.shutdown()
            self._pool = None
        self._stage("quality", self._quality)
        self._stage("speckle-free target", self._bmode_quality)
        self._plan_budget()
        self._stage("references", self._references)
        self._stage("steps", self._steps)
        self._stage("uncertainty", self._uncertainty)
        self._stage("domain shift", self._domain_shift)
        if self.generalization is not None:
            self._stage("generalization", self._generalization)
        self.results["runtime_s"] = time.time() - t0
        return self.results

    def _map(self, fn: Callable, jobs: list) -> list:
        if self._pool is None:
            return list(map(fn, jobs))
        return list(self._pool.map(fn, jobs, chunksize=max(1, len(jobs) // (4 * self.config.workers))))

    def _stage(self, name: str, fn: Callable[[], None]) -> None:
        t = time.time()
        self.log("[evaluate] %s ..." % name)
        fn()
        self.results["timings"][name] = time.time() - t
        self.log("[evaluate] %s done in %.1f s" % (name, time.time() - t))

    def _missing(self, what: str) -> None:
        self.log("[evaluate] missing: %s" % what)
        self.results["missing"].append(what)

    # ------------------------------------------------------------------ loading
    def _load_sets(self) -> dict[str, EvalSet]:
        out: dict[str, EvalSet] = {}
        for kind in self.config.kinds:
            for probe in self.config.probes:
                try:
                    d = self.testset_loader(kind, probe)
                except (FileNotFoundError, ValueError, ImportError, OSError) as exc:
                    self._missing("test set %s %s (%s)" % (probe, kind, exc))
                    continue
                n_total = len(d["bmode"])
                n = n_total if self.config.max_images is None else min(n_total, self.config.max_images)
                if n == 0:
                    self._missing("test set %s %s (empty)" % (probe, kind))
                    continue
                bmode = np.asarray(d["bmode"][:n], np.float32)
                full = np.ones(bmode.shape, bool)
                dr = np.asarray(d.get("dynamic_range_db", np.full(n_total, classical.DEFAULT_DR_DB)), float)
                ts = EvalSet(kind, probe, bmode, np.asarray(d["clean"][:n], np.float32),
                             np.asarray(d.get("mask", full)[:n], bool),
                             np.asarray(d.get("lesion_mask", ~full)[:n], bool),
                             np.asarray(d.get("background_mask", ~full)[:n], bool),
                             np.broadcast_to(dr, (n_total,))[:n].copy(), n_total,
                             np.asarray(d["bmode_target"][:n], np.float32) if "bmode_target" in d else None)
                out[ts.name] = ts
                self.results["sets"][ts.name] = {"kind": kind, "probe": probe, "n": n, "n_total": n_total,
                                                 "n_lesion": int(sum(_has_lesion(ts, i) for i in range(n))),
                                                 "rows": {}}
        return out

    def _load_models(self) -> None:
        for name in list(IRSDE_MODELS) + list(LEARNED_BASELINES):
            try:
                ens = self.model_loader(name)
            except (FileNotFoundError, ValueError, KeyError, ImportError, OSError) as exc:
                self._missing("model %s (%s)" % (name, exc))
                continue
            self._models[name] = ens
            self.results["models"][name] = {
                "mode": getattr(ens, "mode", None),
                "default_sampler": getattr(ens, "default_sampler", None),
                "default_steps": getattr(ens, "default_steps", None),
                "members": _n_members(ens),
            }

    # ------------------------------------------------------------------ model runs
    def _run(self, model: str, ts: EvalSet, idx: Sequence[int], sampler: str | None = None, steps: int | None = None,
             members: int | None = None, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` of ``model`` on images ``idx`` of ``ts`` (memoised)."""
        seed = self.config.seed if seed is None else seed
        key = (model, ts.name, tuple(int(i) for i in idx), sampler, steps, members, seed)
        if key not in self._runs:
            t = time.time()
            res = self._models[model].despeckle(ts.bmode[list(idx)], steps=steps, sampler=sampler,
                                                members=members, seed=seed)
            mean = np.asarray(res.mean, np.float32).reshape(len(idx), *ts.bmode.shape[1:])
            std = np.asarray(res.std, np.float32).reshape(mean.shape)
            self._runs[key] = (mean, std)
            dt = time.time() - t
            nfe = steps or getattr(self._models[model], "default_steps", 1) or 1
            self._speed.setdefault(model, []).append(
                (dt, len(idx) * nfe * (members or _n_members(self._models[model]) or 1)))
            self.log("[evaluate]   %s on %s (%d images, sampler=%s, steps=%s, members=%s): %.1f s"
                     % (model, ts.name, len(idx), sampler, steps, members, dt))
        return self._runs[key]

    # ------------------------------------------------------------------ tuning
    def _val_pairs(self) -> list[tuple]:
        cfg = self.config
        loader = self.val_loader or default_val_pairs
        pairs: list[tuple] = []
        for probe in cfg.probes:
            try:
                pairs.extend(loader(probe, cfg.val_per_probe))
            except (FileNotFoundError, ValueError, ImportError, OSError) as exc:
                self._missing("validation pairs for %s (%s)" % (probe, exc))
        return pairs

    def _tune_filters(self) -> None:
        pairs = self._val_pairs()
        self.results["val_pairs"] = len(pairs)
        for name in self.config.filters:
            f = classical.get_filter(name)
            if not pairs:
                self.results["tuning"][name] = {"params": {}, "table": [], "text": "(untuned: no validation pairs)",
                                                "val_psnr": float("nan")}
                continue
            lines: list[str] = []
            drs = sorted({float(p[3]) for p in pairs})  # pairs: (noisy, clean, mask, dr_db)
            t = time.time()
            grid = (self.config.grids or {}).get(name)
            params, table = classical.tune(f, [p[:3] for p in pairs], grid=grid,
                                           fixed=_dr_kwargs(f, float(np.median(drs))), print_fn=lines.append,
                                           map_fn=self._map)
            self.log("\n".join(lines))
            best = max(row["psnr"] for row in table)
            self.results["tuning"][name] = {"params": params, "table": table, "text": "\n".join(lines),
                                            "val_psnr": best, "seconds": time.time() - t}

    # ------------------------------------------------------------------ quality table
    def _classical(self) -> None:
        """Every tuned filter on every test image (spread over the worker processes)."""
        self._times: dict[str, dict[str, float]] = {}
        for ts in self.sets.values():
            self._outputs[ts.name] = {"input": ts.bmode}
            self._times[ts.name] = {}
            for name in self.config.filters:
                f = classical.get_filter(name)
                params = self.results["tuning"][name]["params"]
                t = time.time()
                jobs = [(name, ts.bmode[i], {**params, **_dr_kwargs(f, ts.dr_db[i])}) for i in range(len(ts))]
                self._outputs[ts.name][name] = np.stack(self._map(classical.apply_job, jobs))
                self._times[ts.name][name] = (time.time() - t) * max(1, self.config.workers) / len(ts)

    def _quality(self) -> None:
        for ts in self.sets.values():
            rows = self.results["sets"][ts.name]["rows"]
            idx = list(range(len(ts)))
            outs = self._outputs[ts.name]
            times = self._times[ts.name]
            for model in LEARNED_BASELINES:
                if model in self._models:
                    t = time.time()
                    outs[model] = self._run(model, ts, idx)[0]
                    times[model] = (time.time() - t) / len(ts)
            for model in IRSDE_MODELS:
                if model in self._models:
                    t = time.time()
                    outs[model] = self._run(model, ts, idx)[0]
                    times[model] = (time.time() - t) / len(ts)
            for method, out in outs.items():
                rows[method] = summarize(set_metrics(out, ts))
                if method in times:
                    rows[method]["s_per_image"] = times[method]
            clean_row = summarize(set_metrics(ts.clean, ts))
            rows["clean target"] = {"cnr": clean_row["cnr"], "gcnr": clean_row["gcnr"],
                                    "n_lesion": clean_row["n_lesion"]}
            self._comparison(ts)

    def _bmode_bm3d(self) -> None:
        """BM3D with its sigma tuned against the speckle-free B-mode on each set's first images (an oracle
        tuning), run while the worker pool is up; :meth:`_bmode_quality` scores it."""
        self._bmode_bm3d_out: dict[str, tuple[float, np.ndarray]] = {}
        for ts in self.sets.values():
            if ts.bmode_target is None:
                continue
            n_tune = min(len(ts), 8)
            grid = (self.config.grids or {}).get("bm3d", {}).get("sigma") or BMODE_BM3D_GRID
            scores = {}
            for sig in grid:
                tuned = self._map(classical.apply_job, [("bm3d", ts.bmode[i], {"sigma": sig}) for i in range(n_tune)])
                scores[sig] = float(np.mean([metrics.psnr(o, ts.bmode_target[i], ts.mask[i])
                                             for i, o in enumerate(tuned)]))
            best = max(scores, key=scores.__getitem__)
            out = np.stack(self._map(classical.apply_job, [("bm3d", b, {"sigma": best}) for b in ts.bmode]))
            self._bmode_bm3d_out[ts.name] = (best, out)

    def _bmode_quality(self) -> None:
        """PSNR / SSIM of every method against the speckle-free B-mode where the set has one, BM3D with the
        sigma :meth:`_bmode_bm3d` tuned against that target included."""
        for name, (best, bm3d_out) in self._bmode_bm3d_out.items():
            ts = self.sets[name]
            assert ts.bmode_target is not None  # _bmode_bm3d keeps only the sets that have one
            outs = dict(self._outputs[ts.name], **{"BM3D (sigma tuned on this target)": bm3d_out})
            rows = {}
            for method, out in outs.items():
                p = [metrics.psnr(o, ts.bmode_target[i], ts.mask[i]) for i, o in enumerate(out)]
                q = [metrics.ssim(o, ts.bmode_target[i], ts.mask[i]) for i, o in enumerate(out)]
                rows[method] = {"psnr": float(np.mean(p)), "ssim": float(np.mean(q)), "psnr_per_image": p}
            self.results["sets"][ts.name]["bmode_rows"] = rows
            self.results["sets"][ts.name]["bmode_bm3d_sigma"] = best

    def _generalization(self) -> None:
        assert self.generalization is not None  # run() calls this stage only with one
        res, md = self.generalization(dict(self._models))
        self.results["generalization"] = res
        self.results["generalization_md"] = md

    def _comparison(self, ts: EvalSet) -> None:
        """Which method wins the set, and ours minus the best other method (paired 95 % CI)."""
        entry = self.results["sets"][ts.name]
        rows = entry["rows"]
        cands = {m: r for m, r in rows.items() if "psnr" in r and m != "input"}
        if not cands:
            return
        entry["best"] = {k: max(cands, key=lambda m: cands[m][k]) for k in ("psnr", "ssim")}
        lesion_cands = {m: r for m, r in cands.items() if np.isfinite(r.get("cnr", np.nan))}
        for k in ("cnr", "gcnr"):
            if lesion_cands:
                entry["best"][k] = max(lesion_cands, key=lambda m: lesion_cands[m][k])
        others = {m: r for m, r in cands.items() if m not in IRSDE_MODELS}
        if others:
            rival = max(others, key=lambda m: others[m]["psnr"])
            entry["irsde_vs_best_other"] = {
                m: {"rival": rival, **paired_diff(cands[m]["psnr_per_image"], cands[rival]["psnr_per_image"])}
                for m in IRSDE_MODELS if m in cands}

    # ------------------------------------------------------------------ time budget
    def _plan_budget(self) -> None:
        """Shrink the reference and steps-curve subsets (same factor) if, at the speed measured on
        the default runs, they would not finish within ``budget_min``; the report states it."""
        cfg = self.config
        runs = self._speed.get(DEFAULT_MODEL)
        if not cfg.budget_min or not runs:
            return
        ens = self._models[DEFAULT_MODEL]
        k = _n_members(ens) or 1
        d = getattr(ens, "default_steps", 1) or 1
        c = sum(t for t, _ in runs) / max(1, sum(n for _, n in runs))  # seconds per member-evaluation of a frame
        full = [ts for ts in self.sets.values() if ts.kind == "full"] or list(self.sets.values())
        n_unc = sum(len(ts) for ts in full)
        fixed = c * n_unc * d * (k * (k - 1) / 2 + cfg.sample_seeds)  # member curve + one member's samples
        ref_sets = self._ref_sets()
        steps_name = "%s %s" % (cfg.steps_set[1], cfg.steps_set[0])
        n_ref_sets = sum(1 for ts in ref_sets if not (ts.name == steps_name and cfg.ref_steps in cfg.nfe_grid))
        per_image = c * k * (n_ref_sets * 2 * cfg.ref_steps * cfg.ref_images
                             + (2 * sum(cfg.nfe_grid) + cfg.ref_steps) * cfg.steps_images)
        left = cfg.budget_min * 60.0 * 0.95 - (time.time() - self._t0) - fixed - 30.0
        projected = per_image  # for the configured subset sizes
        self.results["budget"] = {"s_per_member_eval": c, "projected_s": projected + fixed, "left_s": left + fixed}
        self.log("[evaluate] measured %.3f s per member-evaluation of a frame; references + steps curve projected "
                 "at %.1f min, %.1f min left in the budget" % (c, projected / 60, max(left, 0) / 60))
        if projected <= left:
            return
        f = max(left, 0.0) / projected
        new_ref = max(1, int(cfg.ref_images * f))
        new_steps = max(1, int(cfg.steps_images * f))
        note = ("to fit the %.0f-minute budget at the measured %.3f s per member-evaluation, the 100-step references "
                "use the first %d (not %d) images per set and the steps curve the first %d (not %d)"
                % (cfg.budget_min, c, new_ref, cfg.ref_images, new_steps, cfg.steps_images))
        self.log("[evaluate] " + note)
        self.results["budget"]["note"] = note
        cfg.ref_images, cfg.steps_images = new_ref, new_steps
        self.results["config"].update(ref_images=new_ref, steps_images=new_steps)

    # ------------------------------------------------------------------ 100-step references
    def _ref_sets(self) -> list[EvalSet]:
        if self.config.ref_sets is None:
            return list(self.sets.values())
        wanted = {"%s %s" % (p, k) for k, p in self.config.ref_sets}
        return [ts for ts in self.sets.values() if ts.name in wanted]

    def _references(self) -> None:
        if DEFAULT_MODEL not in self._models:
            return
        for ts in self._ref_sets():
            idx = list(range(min(self.config.ref_images, len(ts))))
            rows: dict[str, dict] = {}
            rows["default"] = summarize(set_metrics(
                self._run(DEFAULT_MODEL, ts, list(range(len(ts))))[0][idx], ts, idx))
            for sampler in ("posterior", "em"):
                t = time.time()
                out = self._run(DEFAULT_MODEL, ts, idx, sampler=sampler, steps=self.config.ref_steps)[0]
                rows["%s %d" % (sampler, self.config.ref_steps)] = summarize(set_metrics(out, ts, idx))
                rows["%s %d" % (sampler, self.config.ref_steps)]["s_per_image"] = (time.time() - t) / len(idx)
            self.results["refs"][ts.name] = {"indices": idx, "rows": rows}

    # ------------------------------------------------------------------ steps vs quality
    def _steps(self) -> None:
        kind, probe = self.config.steps_set
        name = "%s %s" % (probe, kind)
        ts = self.sets.get(name) or next(iter(self.sets.values()), None)
        if DEFAULT_MODEL not in self._models or ts is None:
            self._missing("steps vs quality (needs model %s and a test set)" % DEFAULT_MODEL)
            return
        idx = list(range(min(self.config.steps_images, len(ts))))
        curves: dict[str, dict[int, dict]] = {}
        for sampler in ("posterior", "ddim"):
            curves[sampler] = {}
            for nfe in self.config.nfe_grid:
                out = self._run(DEFAULT_MODEL, ts, idx, sampler=sampler, steps=nfe)[0]
                s = summarize(set_metrics(out, ts, idx))
                curves[sampler][nfe] = {"psnr": s["psnr"], "ssim": s["ssim"]}
        out = self._run(DEFAULT_MODEL, ts, idx, sampler="em", steps=self.config.ref_steps)[0]
        s = summarize(set_metrics(out, ts, idx))
        em = {"nfe": self.config.ref_steps, "psnr": s["psnr"], "ssim": s["ssim"]}
        self.results["steps"] = {"set": ts.name, "indices": idx, "curves": curves, "em": em}

    # ------------------------------------------------------------------ uncertainty
    def _uncertainty(self) -> None:
        if DEFAULT_MODEL not in self._models:
            self._missing("uncertainty analysis (needs model %s)" % DEFAULT_MODEL)
            return
        sets = [ts for ts in self.sets.values() if ts.kind == "full"] or list(self.sets.values())
        if not sets:
            return
        cfg = self.config
        err, std, img_err, img_std, overlap = [], [], [], [], []
        for ts in sets:
            mean, sd = self._run(DEFAULT_MODEL, ts, list(range(len(ts))))
            for i in range(len(ts)):
                m = ts.mask[i]
                e = np.abs(mean[i] - ts.clean[i])[m]
                s = sd[i][m]
                err.append(e)
                std.append(s)
                img_err.append(float(e.mean()))
                img_std.append(float(s.mean()))
                overlap.append(top_fraction_overlap(s, e, 0.10))
        err_all, std_all = np.concatenate(err), np.concatenate(std)
        u: dict[str, Any] = {"sets": [ts.name for ts in sets], "n_images": len(img_err), "n_pixels": int(err_all.size)}
        u["pixel"] = correlations(std_all, err_all)
        u["image"] = correlations(np.asarray(img_std), np.asarray(img_err))
        u["top10_overlap"] = float(np.mean(overlap))
        u["reliability"] = reliability(std_all, err_all, cfg.reliability_bins)
        u["members"] = self._member_curve(sets)
        u["one_member_samples"] = self._sample_spread(sets)
        self.results["uncertainty"] = u

    def _member_curve(self, sets: list[EvalSet]) -> list[dict] | str:
        """r(std, |error|) and PSNR of the mean for the ensembles of the first m members, m = 1..K."""
        k = _n_members(self._models[DEFAULT_MODEL])
        if not k:
            return "the model does not report its number of members"
        out = []
        for m in range(1, k + 1):
            errs, stds, ps = [], [], []
            for ts in sets:
                mean, sd = self._run(DEFAULT_MODEL, ts, list(range(len(ts))), members=None if m == k else m)
                for i in range(len(ts)):
                    msk = ts.mask[i]
                    errs.append(np.abs(mean[i] - ts.clean[i])[msk])
                    stds.append(sd[i][msk])
                    ps.append(metrics.psnr(mean[i], ts.clean[i], mask=msk))
            row = {"members": m, "psnr": float(np.mean(ps))}
            row.update(correlations(np.concatenate(stds), np.concatenate(errs)))
            out.append(row)
        return out

    def _sample_spread(self, sets: list[EvalSet]) -> dict | str:
        """The spread of one member's samples (different seeds, stochastic ``posterior`` sampler)."""
        n = self.config.sample_seeds
        if n < 2:
            return "needs at least 2 samples"
        errs, stds = [], []
        for ts in sets:
            idx = list(range(len(ts)))
            samples = np.stack([self._run(DEFAULT_MODEL, ts, idx, sampler="posterior", members=1,
                                          seed=self.config.seed + 1000 + s)[0] for s in range(n)])
            mean, sd = samples.mean(0), samples.std(0)
            for i in idx:
                msk = ts.mask[i]
                errs.append(np.abs(mean[i] - ts.clean[i])[msk])
                stds.append(sd[i][msk])
        std_all = np.concatenate(stds)
        if np.ptp(std_all) == 0:
            return "the samples of one member are identical (deterministic sampler)"
        return {"samples": n, **correlations(std_all, np.concatenate(errs))}

    # ------------------------------------------------------------------ domain shift
    def _domain_shift(self) -> None:
        tuned = {n: t["val_psnr"] for n, t in self.results["tuning"].items() if np.isfinite(t.get("val_psnr", np.nan))}
        best_classical = max(tuned, key=tuned.__getitem__) if tuned else None
        methods = [m for m in IRSDE_MODELS if m in self._models] + ([best_classical] if best_classical else [])
        table: dict[str, dict] = {}
        for kind in self.config.kinds:
            per: dict[str, dict[str, dict]] = {}
            for m in methods:
                per[m] = {}
                for probe in self.config.probes:
                    row = self.results["sets"].get("%s %s" % (probe, kind), {}).get("rows", {}).get(m)
                    if row:
                        per[m][probe] = {"psnr": row["psnr"], "ssim": row["ssim"]}
                ref = per[m].get(REFERENCE_PROBE)
                for v in per[m].values():
                    v["drop_psnr"] = v["psnr"] - ref["psnr"] if ref else float("nan")
                    v["drop_ssim"] = v["ssim"] - ref["ssim"] if ref else float("nan")
            table[kind] = per
        self.results["domain_shift"] = {"best_classical": best_classical, "methods": methods, "table": table}

    # ------------------------------------------------------------------ figures
    def figures(self, fig_dir: str | os.PathLike) -> dict[str, str]:
        """Draw the report's PNGs into ``fig_dir``; returns {figure name: path}."""
        from engine import figures

        fig_dir = Path(fig_dir)
        out: dict[str, str] = {}
        rows = []
        for kind, probe, i in FIGURE_EXAMPLES:
            ts = self.sets.get("%s %s" % (probe, kind))
            if ts is None or i >= len(ts):
                continue
            outs = self._outputs.get(ts.name, {})
            set_rows = self.results["sets"][ts.name]["rows"]
            base = [m for m in set_rows if m not in IRSDE_MODELS and m not in ("input", "clean target")]
            rival = max(base, key=lambda m: set_rows[m]["psnr"]) if base else None
            images = {"input": ts.bmode[i], "ground truth": ts.clean[i]}
            labels = {"input": "input %.1f dB" % metrics.psnr(ts.bmode[i], ts.clean[i], mask=ts.mask[i])}
            if DEFAULT_MODEL in outs:
                mean, sd = self._run(DEFAULT_MODEL, ts, list(range(len(ts))))
                images["ours"], images["uncertainty"] = mean[i], sd[i]
                labels["ours"] = "%s %.1f dB" % (DEFAULT_MODEL, metrics.psnr(mean[i], ts.clean[i], mask=ts.mask[i]))
                labels["uncertainty"] = "ensemble std"
            if rival:
                images["best baseline"] = outs[rival][i]
                labels["best baseline"] = "%s %.1f dB" % (rival, metrics.psnr(outs[rival][i], ts.clean[i],
                                                                               mask=ts.mask[i]))
            rows.append({"title": "%s #%d" % (ts.name, i), "images": images, "labels": labels})
        if rows:
            out["examples"] = str(figures.example_panels(
                fig_dir / "examples.png", rows, ["input", "ground truth", "ours", "best baseline", "uncertainty"]))
        st = self.results.get("steps")
        if st:
            out["steps"] = str(figures.steps_curve(
                fig_dir / "steps.png", st["curves"], {"em %d" % st["em"]["nfe"]: st["em"]},
                title="%s, %s, first %d images" % (DEFAULT_MODEL, st["set"], len(st["indices"]))))
        u = self.results.get("uncertainty")
        if u:
            rel = u["reliability"]
            out["reliability"] = str(figures.reliability_plot(
                fig_dir / "reliability.png", rel["std_mean"], rel["err_mean"],
                title="%s on %d images" % (DEFAULT_MODEL, u["n_images"])))
        ds = self.results.get("domain_shift")
        if ds and ds["methods"]:
            for kind, per in ds["table"].items():
                vals = {m: {p: v["psnr"] for p, v in per[m].items()} for m in per}
                if any(vals.values()):
                    out["domain_%s" % kind] = str(figures.domain_shift_bars(
                        fig_dir / ("domain_shift_%s.png" % kind), vals, list(self.config.probes),
                        title="PSNR per probe (%s test sets)" % kind))
        self.results["figures"] = out
        return out


# ---------------------------------------------------------------------- metric helpers


def _dr_kwargs(f: classical.Filter, dr_db: float) -> dict:
    return {"dr_db": float(dr_db)} if "dr_db" in inspect.signature(f.func).parameters else {}


def _n_members(ens: Any) -> int | None:
    for attr in ("n_members", "num_members", "members", "k"):
        v = getattr(ens, attr, None)
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return int(v)
    return None


def default_model_loader(name: str) -> Any:
    """``engine.load_ensemble(name)``; a name that is not shipped is looked up as a folder under the
    shipped-weights folder (e.g. a DnCNN baseline written there by ``usclean train``)."""
    from engine import load_ensemble

    try:
        return load_ensemble(name)
    except ValueError:
        from engine.weights import shipped_dir

        folder = shipped_dir() / name
        if folder.is_dir():
            return load_ensemble(folder)
        raise


def default_val_pairs(probe: str, n: int, size: int = 128) -> list[tuple]:
    """``n`` fast-path validation pairs (split="val") of ``probe``: (bmode, clean, mask, DR)."""
    return fast_pairs(probe, n, split="val", base_seed=VAL_SEED, size=size)


def fast_pairs(probe: str, n: int, split: str, base_seed: int, size: int = 128) -> list[tuple]:
    """``n`` fast-path pairs of ``probe`` from MRI ``split``, pair i from seed ``derive_seed(base_seed, i)``:
    (bmode, clean, mask, DR)."""
    from simulator.datasets import derive_seed, sample_pair

    out = []
    for i in range(int(n)):
        r = sample_pair(probe, size=size, seed=derive_seed(base_seed, i), split=split, path="fast")
        out.append((np.asarray(r.bmode, np.float32), np.asarray(r.clean, np.float32), np.asarray(r.mask, bool),
                    float(r.dynamic_range_db)))
    return out


# ---------------------------------------------------------------------- report


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".md", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def run_evaluation(out_md: str | os.PathLike, fig_dir: str | os.PathLike | None = None,
                   config: EvalConfig | None = None, model_loader: Callable[[str], Any] | None = None,
                   testset_loader: Callable[[str, str], dict] | None = None,
                   val_loader: Callable[[str, int], list] | None = None,
                   log: Callable[[str], None] | None = None, command: str = "usclean evaluate",
                   generalization: Callable[[dict], tuple[dict, str]] | None = None) -> dict:
    """Run the whole evaluation, draw the figures and write the report; returns the results dict.

    Defaults: ``engine.load_ensemble``, ``simulator.datasets.load_test_set`` and fast-path
    validation pairs from ``simulator.datasets.sample_pair``.
    """
    if model_loader is None:
        model_loader = default_model_loader
    if testset_loader is None:
        from simulator.datasets import load_test_set

        def testset_loader(kind: str, probe: str) -> dict:
            return load_test_set(kind=kind, probe=probe)
    out_md = Path(out_md)
    fig_dir = Path(fig_dir) if fig_dir is not None else out_md.parent / "figures"
    kw: dict[str, Any] = {"log": log} if log is not None else {}
    ev = Evaluation(config or EvalConfig(), model_loader, testset_loader, val_loader, generalization=generalization,
                    **kw)
    t0 = time.time()
    results = ev.run()
    ev.figures(fig_dir)
    results["runtime_s"] = time.time() - t0
    atomic_write_text(out_md, render_report(results, out_md, command))
    return results
