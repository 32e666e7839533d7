"""Does the verdict's 95% interval hold its level, how often does it call a true 1.05x a REAL SPEEDUP, and how wide
is it on this desktop?

1. Coverage: synthetic bench runs per condition (tsprune_edge.report.coverage: plans of 8 and 20 items in the
   agent's own order, drift over the run, heavy tails, bimodal latencies, a noisy neighbour; the report's own
   interval and labels; adaptive rounds as bench adds them), at a true 1.25x and at a true 1.05x (the band's edge,
   where a REAL SPEEDUP is a false one). Beside the default design: fixed rounds, and the forward pass alone (the
   rotation-only order of earlier agents).
2. Width: from a real `tsprune-edge bench` run (--run), the half-width of the speedup interval of every variant
   when only R consecutive rounds are kept, for every window of R rounds. Without --run the widths already in
   coverage.json are kept (they are measurements).

Usage: python benchmarks/coverage.py [--run results/desktop-...] [--runs 2000]
Writes benchmarks/results/coverage.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from train_baselines import machine

from tsprune_edge.devices.runs import DEFAULT_MAX_ROUNDS, DEFAULT_ROUNDS
from tsprune_edge.report.coverage import Scenario, simulate
from tsprune_edge.report.stats import critical_value, speedup_interval
from tsprune_edge.report.verdict import load_rounds

RESULTS = Path(__file__).resolve().parent / "results"
CONDITIONS = {
    "no drift": Scenario(drift=0.0),
    "5% linear drift over the run (default)": Scenario(),
    "10% linear drift": Scenario(drift=0.10),
    "random-walk drift (sd 5% over the run)": Scenario(drift=0.0, walk=0.05),
    "heavy tails (t, 3 df)": Scenario(tail_df=3),
    "bimodal latencies (modes 20% apart, share 20-80% per process)": Scenario(bimodal_gap=0.2),
    "noisy neighbour (2% of measurements start a burst of 3, +20%)": Scenario(burst_rate=0.02),
    "all of these together": Scenario(walk=0.05, tail_df=3, bimodal_gap=0.2, burst_rate=0.02),
}
DESIGNS = {  # name -> changes to the default (adaptive rounds, both passes)
    f"adaptive {DEFAULT_ROUNDS}-{DEFAULT_MAX_ROUNDS} (default)": {},
    f"fixed {DEFAULT_ROUNDS}": {"max_rounds": DEFAULT_ROUNDS},
    f"fixed {DEFAULT_ROUNDS}, forward pass only (rotation, the old order)": {"passes": 1, "iterations": 100,
                                                                         "max_rounds": DEFAULT_ROUNDS},
}
FINDINGS = [  # what the table shows; checked against the numbers when they are regenerated
    "What it shows:", "",
    "- Fixed 5 rounds: 94.7-95.5% at both speedups in every condition but the noisy neighbour, whose bursts make "
    "heavy-tailed round values and a conservative 97.4-98.0%; false REAL SPEEDUP at a true 1.05x 2.2-2.7% (2.5% by "
    "design; 2000 runs give about +-0.3%), 1.0-1.2% with the neighbour.",
    "- The mirrored pass cancels a linear drift exactly (the drift rows equal the no-drift rows). The forward pass "
    "alone (the rotation earlier agents ran) fell to 92.2% at 5% drift and 86.4% at 10% in a 20-item plan, with "
    "4.6% and 7.1% false REAL SPEEDUP.",
    "- Adaptive rounds (the default), every look with c(5, 10) in place of t's: at a true 1.25x 96.8-97.1% where "
    "every run stops at its first look (a single look with c covers 97.0% by construction), 97.6-98.8% with bimodal "
    "latencies or the neighbour, whose wider intervals keep some runs going; at a true 1.05x 98.9-99.8%, as some "
    "variant of an 8- or 20-item plan stays unresolved and the run goes to 10 rounds, still judged with c. False "
    "REAL SPEEDUP at 1.05x: 0.1-0.6%. The constant is tight for one variant on the band's edge "
    "(tests/test_stats_coverage.py: 94.4% and 2.7%, against 87.0% and 6.4% with t's quantile at every look); with "
    "many variants it is conservative.",
    "- Widths: heavy tails leave them alone (the median absorbs them); bimodal latencies whose share of the slow "
    "mode differs between processes widen the half-width from about 1% to 10%, a noisy neighbour to 4.6-6.2%. "
    "Neither breaks coverage: both show as a wide interval, not a wrong one.",
]
OLD_ORDER_CONDITIONS = ("5% linear drift over the run (default)", "10% linear drift")


def coverage_table(runs: int) -> list[dict]:
    rows = []
    for name, base in CONDITIONS.items():
        for design, changes in DESIGNS.items():
            if "old order" in design and name not in OLD_ORDER_CONDITIONS:
                continue
            for items in (8, 20):
                began = time.monotonic()
                at = {truth: simulate(replace(base, items=items, true_speedup=truth, **changes), runs=runs,
                                      seed=items + int(truth * 100)) for truth in (1.25, 1.05)}
                rows.append({"condition": name, "design": design, "items": items, "runs": runs,
                             "coverage_125": at[1.25]["coverage"], "coverage_105": at[1.05]["coverage"],
                             "false_real_speedup_105": at[1.05]["real_speedup_share"],
                             "half_width_125": at[1.25]["median_half_width"],
                             "mean_rounds_105": at[1.05]["mean_rounds"], "scenario": at[1.25]})
                print(f"{name}, {design}, {items} items: {at[1.25]['coverage']:.3f} / {at[1.05]['coverage']:.3f}, "
                      f"false REAL {at[1.05]['real_speedup_share']:.3f} ({time.monotonic() - began:.0f} s)")
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
    c, d = critical_value(DEFAULT_ROUNDS, DEFAULT_MAX_ROUNDS), Scenario()
    lines = ["# Coverage and width of the speedup's 95% interval", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, Python "
             f"{result['machine']['python']}. {result['runs']} synthetic runs per cell (fixed seeds), every variant "
             "of a run counted; plans of 8 and 20 items (two runtimes, each a dense reference and its variants, all "
             "at the same true speedup), in the agent's own order: each round a rotated forward pass, then the "
             f"mirrored pass. Each measurement: {d.iterations} latencies (AR(1), {d.ar}), a {d.noise_sd:.0%} "
             f"spread, {d.spike_rate:.0%} preemption spikes; a {d.round_sd:.0%} level per round, {d.process_sd:.1%} "
             "per process (the half-widths of a real desktop run, below). The estimator is the report's: per pass "
             "the median, per round "
             "the passes' geometric mean, dense / variant paired by round, the report's `log_interval` and "
             f"`labels`. Adaptive: bench's rule, one more round while any variant is FASTER, SLOWER or "
             f"INCONCLUSIVE, from {DEFAULT_ROUNDS} up to {DEFAULT_MAX_ROUNDS} rounds, every look with the "
             f"Pocock-type constant c({DEFAULT_ROUNDS}, {DEFAULT_MAX_ROUNDS}) = {c:.3f} (t's is "
             "2.776 at 5 rounds); fixed: t's quantile. A true 1.05x sits on the band's edge: a REAL SPEEDUP there "
             "is a false one (at most 2.5% by design).", "",
             "| condition | design | items | coverage at 1.25x | coverage at 1.05x | false REAL SPEEDUP at 1.05x | "
             "median half-width at 1.25x | mean rounds at 1.05x |", "|---|---|---|---|---|---|---|---|"]
    for row in result["coverage"]:
        lines.append(f"| {row['condition']} | {row['design']} | {row['items']} | {row['coverage_125']:.1%} | "
                     f"{row['coverage_105']:.1%} | {row['false_real_speedup_105']:.1%} | "
                     f"{row['half_width_125']:.1%} | {row['mean_rounds_105']:.1f} |")
    lines += ["", *FINDINGS]
    if result["widths"]:
        lines += ["", f"## Width on this desktop: run {result['run']}", "",
                  f"{result['run_note']} Each window of R consecutive rounds of the real run gives one interval "
                  "(t's quantile: the run predates the mirrored pass).", "",
                  "| item | rounds | windows | median half-width | max half-width |", "|---|---|---|---|---|"]
        lines += [f"| {r['item']} | {r['rounds']} | {r['windows']} | {r['median_half_width']:.2%} | "
                  f"{r['max_half_width']:.2%} |" for r in result["widths"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a bench run folder with raw/ and plan.json, for the widths")
    parser.add_argument("--run-note", default="", help="what the run measured (bundles, min-time, load)")
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    kept = json.loads((RESULTS / "coverage.json").read_text()) if (RESULTS / "coverage.json").is_file() else {}
    widths = {"run": args.run.name, "run_note": args.run_note, "widths": width_table(args.run)} if args.run else {
        key: kept.get(key) for key in ("run", "run_note", "widths")}
    result = {"machine": machine(), "runs": args.runs, "default_rounds": DEFAULT_ROUNDS,
              "default_max_rounds": DEFAULT_MAX_ROUNDS, "coverage": coverage_table(args.runs), **widths}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "coverage.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "coverage.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
