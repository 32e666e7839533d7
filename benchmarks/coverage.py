"""Does the verdict's 95% interval hold its level, how often does it call a true 1.05x a REAL SPEEDUP, and how wide
is it on this desktop?

1. Coverage: synthetic bench runs per condition (tsprune_edge.report.coverage: plans of 8 and 20 items in the
   agent's own order, drift over the run, heavy tails, bimodal latencies, a noisy neighbour; the report's own
   interval, labels and per-variant stopping; adaptive rounds as bench adds them), at a true 1.25x and at a true
   1.05x (the band's edge, where a REAL SPEEDUP is a false one). Beside the default design: fixed rounds, the
   forward pass alone (the rotation-only order of earlier agents), and adaptive rounds with t's quantile at every
   look (optional stopping, for contrast).
2. Coverage across true speedups: the default design and condition at true speedups from 1.00x to 1.25x, the
   band's edge and either side of it included.
3. Width: from a real `tsprune-edge bench` run (--run), the half-width of the speedup interval of every variant
   when only R consecutive rounds are kept, for every window of R rounds. Without --run the widths already in
   coverage.json are kept (they are measurements).

Usage: python benchmarks/coverage.py [--run results/desktop-...] [--runs 4000]
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
from tsprune_edge.report.stats import FIRST_LOOK_SPEND, boundaries, speedup_interval, t_quantile
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
DEFAULT = "5% linear drift over the run (default)"
ADAPTIVE = f"adaptive {DEFAULT_ROUNDS}-{DEFAULT_MAX_ROUNDS} (default)"
DESIGNS = {  # name -> changes to the default (adaptive rounds, both passes), and the conditions it runs under
    ADAPTIVE: ({}, tuple(CONDITIONS)),
    f"fixed {DEFAULT_ROUNDS}": ({"max_rounds": DEFAULT_ROUNDS}, tuple(CONDITIONS)),
    f"fixed {DEFAULT_ROUNDS}, forward pass only (rotation, the old order)": (
        {"passes": 1, "iterations": 100, "max_rounds": DEFAULT_ROUNDS}, (DEFAULT, "10% linear drift")),
    f"adaptive {DEFAULT_ROUNDS}-{DEFAULT_MAX_ROUNDS}, t's quantile at every look (optional stopping)": (
        {"naive": True}, (DEFAULT,)),
}
TRUTHS = (1.0, 1.03, 1.04, 1.045, 1.05, 1.055, 1.06, 1.07, 1.10, 1.25)  # the grid: the band's edge is 1.05


def coverage_table(runs: int) -> list[dict]:
    rows = []
    for name, base in CONDITIONS.items():
        for design, (changes, conditions) in DESIGNS.items():
            if name not in conditions:
                continue
            for items in (8, 20):
                began = time.monotonic()
                at = {truth: simulate(replace(base, items=items, true_speedup=truth, **changes), runs=runs,
                                      seed=items + int(truth * 100)) for truth in (1.25, 1.05)}
                rows.append({"condition": name, "design": design, "items": items, "runs": runs,
                             "coverage_125": at[1.25]["coverage"], "coverage_125_se": at[1.25]["coverage_se"],
                             "coverage_105": at[1.05]["coverage"], "coverage_105_se": at[1.05]["coverage_se"],
                             "false_real_speedup_105": at[1.05]["real_speedup_share"],
                             "false_real_speedup_105_se": at[1.05]["real_speedup_se"],
                             "half_width_125": at[1.25]["median_half_width"],
                             "judged_round_105": at[1.05]["mean_judged_round"],
                             "mean_rounds_105": at[1.05]["mean_rounds"], "scenario": at[1.25]})
                print(f"{name}, {design}, {items} items: {at[1.25]['coverage']:.3f} / {at[1.05]['coverage']:.3f}, "
                      f"false REAL {at[1.05]['real_speedup_share']:.3f} ({time.monotonic() - began:.0f} s)", flush=True)
    return rows


def truth_table(runs: int) -> list[dict]:
    """The default design and condition at every true speedup of TRUTHS."""
    rows = []
    for items in (8, 20):
        for truth in TRUTHS:
            seed = 1000 + items + int(truth * 1000)
            found = simulate(Scenario(items=items, true_speedup=truth), runs=runs, seed=seed)
            rows.append({"items": items, "true_speedup": truth, "runs": runs, "coverage": found["coverage"],
                         "coverage_se": found["coverage_se"], "real_speedup_share": found["real_speedup_share"],
                         "judged_round": found["mean_judged_round"], "mean_rounds": found["mean_rounds"]})
            print(f"{items} items at {truth}x: {found['coverage']:.3f}, REAL {found['real_speedup_share']:.3f}",
                  flush=True)
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


NEIGHBOUR = "noisy neighbour (2% of measurements start a burst of 3, +20%)"
BURSTY = (NEIGHBOUR, "all of these together")  # bursts make heavy-tailed round values: a conservative interval


def span(values, digits: int = 1) -> str:
    """'a-b%' over the values (shares), or 'a%' where they round alike."""
    low, high = (f"{100 * v:.{digits}f}" for v in (min(values), max(values)))
    return f"{low}%" if low == high else f"{low}-{high}%"


def findings(result: dict) -> list[str]:
    """What the tables show, every figure taken from them."""
    rows, grid = result["coverage"], result["truths"]

    def pick(design: str, bursty: bool | None = None) -> list[dict]:
        return [r for r in rows if r["design"] == design and (bursty is None or (r["condition"] in BURSTY) == bursty)]

    adaptive, calm, bursts = pick(ADAPTIVE), pick(ADAPTIVE, False), pick(ADAPTIVE, True)
    fixed = [r for r in rows if r["design"] == f"fixed {DEFAULT_ROUNDS}"]
    old = [r for r in rows if "old order" in r["design"] and r["items"] == 20]
    naive = [r for r in rows if "optional stopping" in r["design"]]
    (acceptance,) = [r for r in adaptive if r["condition"] == DEFAULT and r["items"] == 20]
    near = [g for g in grid if 0 < abs(g["true_speedup"] - 1.05) <= 0.0101]
    far = [g for g in grid if abs(g["true_speedup"] - 1.05) > 0.015]
    edge = [g for g in grid if g["true_speedup"] == 1.05]
    worst_se = max(r["false_real_speedup_105_se"] for r in calm)
    both = ("coverage_125", "coverage_105")
    judged_at = [r["judged_round_105"] for r in adaptive]
    fixed_calm = [r[k] for r in fixed if r["condition"] not in BURSTY for k in both]
    fixed_bursts = [r[k] for r in fixed if r["condition"] in BURSTY for k in both]
    bimodal = [r["half_width_125"] for r in adaptive if r["condition"].startswith("bimodal")]
    neighbour = [r["half_width_125"] for r in adaptive if r["condition"] == NEIGHBOUR]
    two_modes = [r for r in calm if r["condition"].startswith("bimodal")]
    alone = [r for r in bursts if r["condition"] == NEIGHBOUR]
    together = [r for r in bursts if r["condition"] != NEIGHBOUR]
    return [
        "What it shows:", "",
        "- Adaptive rounds (the default), each variant judged at its own first resolved look with the boundary, "
        f"every condition without the noisy neighbour: at a true 1.25x {span([r['coverage_125'] for r in calm])} (a "
        f"variant resolved at its first look is judged with that look's boundary, which spends {FIRST_LOOK_SPEND:.0%}"
        " of the 5%: 96% by design; bimodal latencies' wider intervals keep a few variants going, to round "
        f"{max(r['scenario']['mean_judged_round'] for r in two_modes):.2f} on average); at a true 1.05x, on the "
        f"band's edge, {span([r['coverage_105'] for r in calm])} (a variant there stops only once its interval "
        "leaves the edge, i.e. misses the truth, so its coverage is the joint 95% of all looks; the top, "
        f"{span([r['coverage_105'] for r in two_modes])}, is bimodal latencies', whose round values are far from "
        "normal: a pass' median falls near one mode or the other), false REAL SPEEDUP "
        f"{span([r['false_real_speedup_105'] for r in calm])} (2.5% "
        f"by design; Monte Carlo standard error at most {100 * worst_se:.2f}%). The acceptance cell (20 items, 5% "
        f"drift): {acceptance['coverage_125']:.1%} and {acceptance['coverage_105']:.1%}, false REAL SPEEDUP "
        f"{acceptance['false_real_speedup_105']:.1%} (+-{100 * acceptance['false_real_speedup_105_se']:.2f}%). A "
        f"variant on the edge is judged at round {min(judged_at):.1f}-{max(judged_at):.1f} on average, and some "
        f"variant keeps every run going to {DEFAULT_MAX_ROUNDS} rounds.",
        "- The noisy neighbour's bursts make heavy-tailed round values and a conservative interval: alone "
        f"{span([r['coverage_125'] for r in alone])} at 1.25x, {span([r['coverage_105'] for r in alone])} at 1.05x "
        f"with {span([r['false_real_speedup_105'] for r in alone])} false REAL SPEEDUP; with every other condition "
        f"together {span([r['coverage_125'] for r in together])}, {span([r['coverage_105'] for r in together])} and "
        f"{span([r['false_real_speedup_105'] for r in together])}. Fixed rounds are as conservative there.",
        f"- Optional stopping, for contrast: the same adaptive rounds judged with t's quantile at every look cover "
        f"{span([r['coverage_105'] for r in naive])} at 1.05x with {span([r['false_real_speedup_105'] for r in naive])}"
        " false REAL SPEEDUP.",
        f"- Across true speedups (second table): {span([g['coverage'] for g in far])} two half-widths or more from "
        f"the band's edge, {span([g['coverage'] for g in edge])} on it, and up to "
        f"{max(g['coverage'] for g in near):.1%} within about a half-width of it (1.04x-1.06x). That rise "
        "comes with the 2.5% bound: just beyond the edge, an interval that misses the truth on the edge's side "
        "still straddles the edge, so it is not stopped on and later looks can cover; only a miss on the far side "
        "stops, about as often as a false REAL SPEEDUP on the edge. So coverage there is about 1 - 2.5%, and no "
        "boundary that keeps false REAL SPEEDUP at 2.5% can bring it under 97% (fixed rounds can: 95% at every "
        "true speedup).",
        f"- Fixed {DEFAULT_ROUNDS} rounds: {span(fixed_calm)} at both speedups without bursts, {span(fixed_bursts)} "
        f"with them; false REAL SPEEDUP at 1.05x {span([r['false_real_speedup_105'] for r in fixed])}.",
        "- The mirrored pass cancels a linear drift exactly (the drift rows equal the no-drift rows). The forward pass "
        f"alone (the rotation earlier agents ran) fell to {old[0]['coverage_105']:.1%} at 5% drift and "
        f"{old[1]['coverage_105']:.1%} at 10% in a 20-item plan (at 1.05x), with "
        f"{old[0]['false_real_speedup_105']:.1%} and {old[1]['false_real_speedup_105']:.1%} false REAL SPEEDUP.",
        "- Widths: heavy tails leave them alone (the median absorbs them); bimodal latencies whose share of the slow "
        "mode differs between processes widen the half-width at 1.25x from about 1% to "
        f"{span(bimodal, 0)}, a noisy neighbour to {span(neighbour, 0)}. "
        "Neither breaks coverage: both show as a wide interval, not a wrong one.",
    ]


def markdown(result: dict) -> str:
    d, bound = Scenario(), boundaries(DEFAULT_ROUNDS, DEFAULT_MAX_ROUNDS)
    looks = ", ".join(f"{b:.2f}" for b in bound)
    errors = {"coverage": [r[k] for r in result["coverage"] for k in ("coverage_125_se", "coverage_105_se")],
              "false": [r["false_real_speedup_105_se"] for r in result["coverage"]]}
    lines = ["# Coverage and width of the speedup's 95% interval", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, Python "
             f"{result['machine']['python']}. {result['runs']} synthetic runs per cell (fixed seeds), every variant "
             "of a run counted; plans of 8 and 20 items (two runtimes, each a dense reference and its variants, all "
             "at the same true speedup), in the agent's own order: each round a rotated forward pass, then the "
             f"mirrored pass. Each measurement: {d.iterations} latencies (AR(1), {d.ar}), a {d.noise_sd:.0%} "
             f"spread, {d.spike_rate:.0%} preemption spikes; a {d.round_sd:.0%} level per round, {d.process_sd:.1%} "
             "per process (the half-widths of a real desktop run, below). The estimator is the report's: per pass "
             "the median, per round the passes' geometric mean, dense / variant paired by round, the report's "
             "`stopping_look`, `log_interval` and `labels`. Adaptive: bench's rule, one more round while any "
             f"variant is FASTER, SLOWER or INCONCLUSIVE, from {DEFAULT_ROUNDS} up to {DEFAULT_MAX_ROUNDS} rounds; "
             "each variant judged at its own first look whose label is resolved (else the last), with the "
             f"error-spending boundary ({FIRST_LOOK_SPEND:.0%} at the first look, the other "
             f"{0.05 - FIRST_LOOK_SPEND:.0%} evenly over the later ones): {looks} at {DEFAULT_ROUNDS}.."
             f"{DEFAULT_MAX_ROUNDS} rounds, against t's {float(t_quantile(DEFAULT_ROUNDS)):.2f}.."
             f"{float(t_quantile(DEFAULT_MAX_ROUNDS)):.2f}; fixed: t's quantile. A true 1.05x sits on the band's edge: "
             "a REAL SPEEDUP there is a false one (2.5% by design). The Monte Carlo standard error (over runs: a "
             "run's variants share their dense reference) is in coverage.json beside each share: "
             f"{span(errors['coverage'], 2)} for a coverage, {span(errors['false'], 2)} for a false REAL SPEEDUP "
             "share.", "",
             "| condition | design | items | coverage at 1.25x | coverage at 1.05x | false REAL SPEEDUP at 1.05x | "
             "median half-width at 1.25x | judged at round (1.05x) | rounds of a run (1.05x) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in result["coverage"]:
        lines.append(f"| {row['condition']} | {row['design']} | {row['items']} | {row['coverage_125']:.1%} | "
                     f"{row['coverage_105']:.1%} | {row['false_real_speedup_105']:.1%} | "
                     f"{row['half_width_125']:.1%} | {row['judged_round_105']:.1f} | {row['mean_rounds_105']:.1f} |")
    lines += ["", f"## Across true speedups: {ADAPTIVE}, {DEFAULT}", "",
              "| items | true speedup | coverage | REAL SPEEDUP | judged at round | rounds of a run |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {g['items']} | {g['true_speedup']:.3f}x | {g['coverage']:.1%} (+-{g['coverage_se']:.2%}) | "
              f"{g['real_speedup_share']:.1%} | {g['judged_round']:.1f} | {g['mean_rounds']:.1f} |"
              for g in result["truths"]]
    lines += ["", *findings(result)]
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
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--render", action="store_true", help="rewrite coverage.md from coverage.json, simulating "
                        "nothing")
    args = parser.parse_args()
    kept = json.loads((RESULTS / "coverage.json").read_text()) if (RESULTS / "coverage.json").is_file() else {}
    if args.render:
        (RESULTS / "coverage.md").write_text(markdown(kept))
        return
    widths = {"run": args.run.name, "run_note": args.run_note, "widths": width_table(args.run)} if args.run else {
        key: kept.get(key) for key in ("run", "run_note", "widths")}
    result = {"machine": machine(), "runs": args.runs, "default_rounds": DEFAULT_ROUNDS,
              "default_max_rounds": DEFAULT_MAX_ROUNDS, "first_look_spend": FIRST_LOOK_SPEND,
              "boundary": list(boundaries(DEFAULT_ROUNDS, DEFAULT_MAX_ROUNDS)),
              "coverage": coverage_table(args.runs), "truths": truth_table(args.runs), **widths}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "coverage.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "coverage.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
