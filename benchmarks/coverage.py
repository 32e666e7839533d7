"""Does the verdict's 95% interval hold its level, and how wide is it on this desktop?

1. Coverage: thousands of synthetic bench runs per setting (tsprune_edge.report.coverage: a known true speedup,
   drift shared within a round, a random walk between the measurements of a round, each process' own level,
   AR(1) latencies with preemption spikes), for rounds 3..10 and a few drift / autocorrelation / outlier settings.
   Beside the t interval the report uses, the percentile bootstrap over rounds it replaced, for comparison.
2. Width: from a real `tsprune-edge bench` run (--run), the half-width of the speedup interval of every variant
   when only R consecutive rounds are kept, for every window of R rounds.

Usage: python benchmarks/coverage.py [--run results/desktop-...] [--runs 4000]
Writes benchmarks/results/coverage.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
from train_baselines import machine

from tsprune_edge.devices.runs import DEFAULT_ROUNDS
from tsprune_edge.report.coverage import Scenario, run_log_speedups, simulate
from tsprune_edge.report.stats import speedup_interval
from tsprune_edge.report.verdict import load_rounds

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = {
    "default": Scenario(),
    "strong drift (20% between rounds, 3% within)": Scenario(drift_sd=0.2, step_sd=0.03),
    "strong autocorrelation (AR 0.95)": Scenario(ar=0.95),
    "slow processes (10% of them 10% slower)": Scenario(slow_process_rate=0.1),
    "order effect (second item 2% slower)": Scenario(order_effect=0.02),
    "many preemptions (10% of latencies)": Scenario(spike_rate=0.1),
}


def bootstrap_coverage(scenario: Scenario, runs: int, seed: int, resamples: int = 400) -> float:
    """The percentile bootstrap over rounds of the same per-round log ratios (what the old report did, minus the
    latencies within rounds), for comparison."""
    rng = np.random.default_rng(seed)
    covered = []
    for start in range(0, runs, 250):
        logs = run_log_speedups(scenario, min(250, runs - start), rng)
        picks = rng.integers(0, scenario.rounds, (logs.shape[0], resamples, scenario.rounds))
        means = np.take_along_axis(logs[:, None, :], picks, axis=2).mean(axis=2)
        low, high = np.percentile(means, [2.5, 97.5], axis=1)
        truth = math.log(scenario.true_speedup)
        covered.append((low <= truth) & (truth <= high))
    return float(np.concatenate(covered).mean())


def coverage_table(runs: int) -> list[dict]:
    rows = []
    for name, base in SETTINGS.items():
        for rounds in range(3, 11) if name == "default" else (3, DEFAULT_ROUNDS, 10):
            scenario = replace(base, rounds=rounds)
            row = simulate(scenario, runs=runs, seed=rounds)
            row["bootstrap_coverage"] = bootstrap_coverage(scenario, runs // 2, seed=rounds)
            rows.append({"setting": name, **row})
            print(f"{name}, {rounds} rounds: {row['coverage']:.3f} (bootstrap {row['bootstrap_coverage']:.3f})")
    return rows


def width_table(run: Path) -> list[dict]:
    """Half-widths (log scale, about relative) of the speedup interval over windows of R consecutive rounds."""
    plan = json.loads((run / "plan.json").read_text())
    rows = []
    for item in plan["items"]:
        dense_id = f"dense__{item['format']}__t{item['threads']}"
        if item["bundle"] == "dense":
            continue
        variant, dense = load_rounds(run, item["id"]).medians, load_rounds(run, dense_id).medians
        common = sorted(set(variant) & set(dense))
        for rounds in (3, DEFAULT_ROUNDS, 10):
            halves = []
            for start in range(len(common) - rounds + 1):
                window = common[start:start + rounds]
                found = speedup_interval({r: variant[r] for r in window}, {r: dense[r] for r in window})
                halves.append(math.log(found.high / found.low) / 2)
            if halves:
                rows.append({"item": item["id"], "rounds": rounds, "windows": len(halves),
                             "median_half_width": float(np.median(halves)), "max_half_width": float(max(halves))})
    return rows


def markdown(result: dict) -> str:
    lines = ["# Coverage and width of the speedup's 95% interval", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, Python "
             f"{result['machine']['python']}. {result['runs']} synthetic runs per setting (fixed seeds); true speedup "
             "1.25 unless said. The interval: t on the per-round log ratios dense / variant, rounds - 1 degrees of "
             "freedom. Bootstrap: the percentile bootstrap over rounds of the same log ratios, for comparison.", "",
             "| setting | rounds | coverage (t) | coverage (bootstrap) | median half-width |", "|---|---|---|---|---|"]
    for row in result["coverage"]:
        lines.append(f"| {row['setting']} | {row['rounds']} | {row['coverage']:.1%} | "
                     f"{row['bootstrap_coverage']:.1%} | {row['median_half_width']:.1%} |")
    if result["widths"]:
        lines += ["", f"## Width on this desktop: run {result['run']}", "",
                  f"{result['run_note']} Each window of R consecutive rounds of the real run gives one interval.", "",
                  "| item | rounds | windows | median half-width | max half-width |", "|---|---|---|---|---|"]
        lines += [f"| {r['item']} | {r['rounds']} | {r['windows']} | {r['median_half_width']:.2%} | "
                  f"{r['max_half_width']:.2%} |" for r in result["widths"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a bench run folder with raw/ and plan.json, for the widths")
    parser.add_argument("--run-note", default="", help="what the run measured (bundles, min-time, load)")
    parser.add_argument("--runs", type=int, default=4000)
    args = parser.parse_args()
    result = {"machine": machine(), "runs": args.runs, "default_rounds": DEFAULT_ROUNDS,
              "coverage": coverage_table(args.runs), "run": args.run.name if args.run else None,
              "run_note": args.run_note, "widths": width_table(args.run) if args.run else []}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "coverage.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "coverage.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
