"""Against uniform pruning and the tiny forecasters: the fitted model beside uniform structured models (heads + FFN,
and with the width) at the given ratios, pruned and fine-tuned the same way, and beside the `--baselines` trained
with their published schedules, all measured in ONE run with it and dense, placed on the (latency, test MSE) plane:
is the fitted model on the Pareto front (or does a baseline dominate it), and how does it compare with the uniform
model of the nearest measured latency not above the budget?"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console

from tsprune_edge.baselines import DEFAULT_CACHE as BASELINE_CACHE
from tsprune_edge.baselines import Baseline, RunWindows, test_metrics, trained_baseline
from tsprune_edge.checkpoint import load_checkpoint
from tsprune_edge.export.bundle import DENSE
from tsprune_edge.fit.measure import Target
from tsprune_edge.fit.met import Goal
from tsprune_edge.fit.resume import exported, measured, pruned
from tsprune_edge.prune.dimensions import DEFAULT_DIMENSIONS
from tsprune_edge.prune.stage import PruneRequest
from tsprune_edge.report.pareto import UNIFORM_PREFIX, fit_verdict

UNIFORM_DIMS = {UNIFORM_PREFIX: DEFAULT_DIMENSIONS, f"{UNIFORM_PREFIX}-width": (*DEFAULT_DIMENSIONS, "width")}


def compare_uniform(checkpoint: Path, target: Target, base: PruneRequest, reference: Path | None, fitted: dict,
                    ratios: tuple[float, ...], goal: Goal, out: Path, before: list[str],
                    console: Console, baselines: tuple[Baseline, ...] = (),
                    baseline_cache: Path = BASELINE_CACHE) -> dict:
    """Prune, fine-tune, export and bench the uniform models with the fitted one (what an interrupted comparison
    finished is reused; `before`: the bench runs OUT held before it started); returns the comparison record. The
    uniform models within the target are those within its latency in this run (a speedup: dense here / S), as the
    report draws it."""
    reused = True
    checkpoints = {DENSE: reference or checkpoint, fitted["name"]: Path(fitted["checkpoint"])}
    mse = {fitted["name"]: fitted["mse"]["finetuned"] or fitted["mse"]["pruned"], DENSE: fitted["mse"]["dense"]}
    for label, dims in UNIFORM_DIMS.items():
        for ratio in ratios:
            name = f"{label}-{ratio:g}"
            request = dataclasses.replace(base, sparsity=ratio, dims=dims)
            summary, kept = pruned(checkpoint, request, out / "candidates" / name, reference, console)
            reused = reused and kept
            checkpoints[name] = out / "candidates" / name / "model.pt"
            test = summary["test"]
            mse[name] = (test["finetuned"] or test["pruned"])["mse"]
            mse[DENSE] = test["dense"]["mse"]
    if baselines:
        trained = load_checkpoint(checkpoint)
        run = RunWindows.of_checkpoint(trained)  # the data, split, windows and seed the dense model had
        for baseline in baselines:
            checkpoints[baseline.variant] = trained_baseline(baseline, run, trained.data["sha256"], baseline_cache,
                                                             console)
            mse[baseline.variant] = test_metrics(checkpoints[baseline.variant])["mse"]
    export = out / "export" / "compare"
    exported(export, checkpoints, target.export_request(), console, reuse=reused)
    run_dir, rows = measured(target, export, out / "results", before, console)
    points = [{"name": name, "p50_ms": rows[name]["p50_ms"], "p50_low_ms": rows[name]["p50_low_ms"],
               "p50_high_ms": rows[name]["p50_high_ms"], "mse": mse[name]} for name in checkpoints]
    return {"run": str(run_dir), "points": points,
            **fit_verdict(points, fitted["name"], goal.budget_of(rows[DENSE]["p50_ms"]))}
