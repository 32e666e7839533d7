"""Where the time goes: a pruned ONNX variant against its dense reference, per operator type, from the ONNX Runtime
profiles that `bench --profile` records in round 1. The MAC count predicts the speedup; this says which operators
kept pace with it and which did not, and how much of the missing time each one accounts for."""

from __future__ import annotations

from pathlib import Path

from tsprune_edge.devices.runs import read_first_round
from tsprune_edge.report.remedies import closing_line
from tsprune_edge.report.stats import LABELS, REAL_SPEEDUP

SHORTFALL_EFFICIENCY = 0.85  # achieved / predicted below this falls short; also the plots' dashed line
SHOWN_VERDICTS = tuple(v for v in LABELS if v != REAL_SPEEDUP)
TOP_BEHIND = 5  # operators named one by one in the explanation; the rest are summed
SECTION = "Where the time goes (ONNX Runtime profile, round 1)"
HEADERS = ("op", "dense µs", "variant µs", "variant / dense", "share of variant kernels")


def attach_profile_diffs(run_dir: Path, rows: list[dict]) -> None:
    """Give every pruned ONNX row whose item and dense reference both have a round-1 profile a `profile_diff`."""
    for row in rows:
        if row["variant"] == "dense" or row["format"] != "onnx":
            continue
        variant = _round_one(run_dir, f"{row['variant']}__onnx__t{row['threads']}")
        dense = _round_one(run_dir, f"dense__onnx__t{row['threads']}")
        if variant and dense:
            row["profile_diff"] = profile_diff(dense, variant, row.get("predicted_speedup"))


def _round_one(run_dir: Path, item_id: str) -> dict | None:
    """The round-1 raw result when it holds a latency and an available profile."""
    result = read_first_round(run_dir, item_id)
    if result is None:
        return None
    profile = result.get("profile") or {}
    return result if profile.get("available") and "latency" in result else None


def _per_op(result: dict) -> dict[str, float]:
    return {op["op_name"]: float(op["us_per_inference"]) for op in result["profile"]["ops"]}


def profile_diff(dense: dict, variant: dict, predicted: float | None) -> dict:
    """Per op type: µs per inference in both profiles, their ratio, the op's share of the variant's kernel time and
    its excess over a MAC-proportional cut; plus the time outside kernels (the profiled run's median minus its summed
    kernels, from the same runs; older profiles without the run time use the round-1 p50), the profiler's own cost
    (profiled run against the unprofiled p50) and the explanation. Without a MAC prediction the reference is no
    change."""
    d_ops, v_ops = _per_op(dense), _per_op(variant)
    d_p50, v_p50 = dense["latency"]["p50"] * 1e6, variant["latency"]["p50"] * 1e6
    cut = predicted if predicted and predicted > 0 else 1.0
    d_kernels, v_kernels = sum(d_ops.values()), sum(v_ops.values())
    ops = []
    for op in sorted(set(d_ops) | set(v_ops), key=lambda name: (-v_ops.get(name, 0.0), -d_ops.get(name, 0.0), name)):
        d, v = d_ops.get(op, 0.0), v_ops.get(op, 0.0)
        ops.append({"op": op, "dense_us": d, "variant_us": v, "ratio": v / d if d else None,
                    "share": v / v_kernels if v_kernels else None, "excess_us": v - d / cut,
                    "kept_pace": d > 0 and v <= d / cut / SHORTFALL_EFFICIENCY})
    d_run = dense["profile"].get("model_run_us") or d_p50
    v_run = variant["profile"].get("model_run_us") or v_p50
    d_out, v_out = d_run - d_kernels, v_run - v_kernels
    outside = {"dense_us": max(d_out, 0.0), "variant_us": max(v_out, 0.0), "measurable": d_out >= 0 and v_out >= 0,
               "share_of_p50": max(v_out, 0.0) / v_run if v_run else None,
               "base": "profiled run" if variant["profile"].get("model_run_us") else "p50"}
    outside["ratio"] = outside["variant_us"] / outside["dense_us"] if outside["dense_us"] else None
    outside["excess_us"] = v_out - d_out / cut if outside["measurable"] else None
    diff = {"dense_p50_us": d_p50, "variant_p50_us": v_p50, "dense_kernel_us": d_kernels,
            "variant_kernel_us": v_kernels, "iterations": {"dense": dense["profile"]["iterations"],
                                                           "variant": variant["profile"]["iterations"]},
            "predicted_speedup": predicted, "predicted_us": d_p50 / cut, "shortfall_us": v_p50 - d_p50 / cut,
            "ops": ops, "outside": outside, "profiler_cost": _profiler_cost(dense, variant), "flags": []}
    if not outside["measurable"]:
        diff["flags"].append(
            f"summed kernel time under the profiler (dense {d_kernels:.0f} µs, variant {v_kernels:.0f} µs) exceeds "
            f"the {outside['base']} (dense {d_run:.0f} µs, variant {v_run:.0f} µs): the profiler's per-node timing "
            "inflates kernel times, so the time outside kernels is not measurable here (shown as 0); compare ratios "
            "and shares")
    diff["time_lost_us"] = sum(op["excess_us"] for op in ops if not op["kept_pace"] and op["excess_us"] > 0) + max(
        outside["excess_us"] or 0.0, 0.0)
    diff["explanation"] = explanation(diff, cut)
    return diff


def _profiler_cost(dense: dict, variant: dict) -> dict | None:
    """What profiling added: the profiled run's median over the unprofiled p50, per node run. The profiler times
    every node and records an event for it, so its cost grows with the node count, which pruning keeps; profiled µs
    are therefore larger than real ones and the per-op ratios lean towards 1. None for profiles without a run time."""
    cost = {}
    for side, result in (("dense", dense), ("variant", variant)):
        run_us = result["profile"].get("model_run_us")
        if not run_us:
            return None
        nodes = sum(op.get("calls_per_inference", 0) for op in result["profile"]["ops"])
        added = run_us - result["latency"]["p50"] * 1e6
        cost[side] = {"profiled_run_us": run_us, "added_us": added, "nodes": nodes,
                      "per_node_us": added / nodes if nodes else None}
    return cost


def explanation(diff: dict, cut: float) -> list[str]:
    """Which ops kept pace with the MAC cut, which fell behind, and how much each accounts for, as shares of the
    profiled time lost (every op's and the outside time's µs beyond a MAC-proportional cut, summed): the profiler
    inflates absolute µs, so shares are what compare. Ends with what would close the shortfall, from the kinds of
    operator that fell behind."""
    shortfall = diff["shortfall_us"]
    achieved = diff["dense_p50_us"] / diff["variant_p50_us"]
    source = "the MACs predict" if diff["predicted_speedup"] else "no MAC count; against no change,"
    lines = [f"Round 1: dense {diff['dense_p50_us']:.0f} µs, variant {diff['variant_p50_us']:.0f} µs "
             f"({achieved:.2f}x); {source} {cut:.2f}x ({diff['predicted_us']:.0f} µs): "
             + (f"{shortfall:.0f} µs short." if shortfall > 0 else "met.")]
    cost = diff.get("profiler_cost")
    if cost:
        per_node = cost["dense"]["per_node_us"]
        lines.append(f"Under the profiler the dense run took {cost['dense']['profiled_run_us']:.0f} µs and the "
                     f"variant {cost['variant']['profiled_run_us']:.0f} µs"
                     + (f" (about {per_node:.1f} µs more per node, {cost['dense']['nodes']:.0f} nodes)"
                        if per_node is not None else "")
                     + ": the µs below are profiled µs, and shares are of the profiled time lost, "
                     f"{diff['time_lost_us']:.0f} µs.")
    kept = [op for op in diff["ops"] if op["kept_pace"]]
    lines.append("Kept pace with the MACs: " + (", ".join(f"{op['op']} {op['ratio']:.2f}x" for op in kept)
                                                if kept else "no operator") + ".")
    behind = sorted((op for op in diff["ops"] if not op["kept_pace"] and op["excess_us"] > 0),
                    key=lambda op: -op["excess_us"])
    lost = diff["time_lost_us"]
    if behind:
        named = [f"{op['op']} {_ratio(op['ratio'])} (+{op['excess_us']:.0f} µs{_of(op['excess_us'], lost)})"
                 for op in behind[:TOP_BEHIND]]
        rest = sum(op["excess_us"] for op in behind[TOP_BEHIND:])
        if len(behind) > TOP_BEHIND:
            named.append(f"{len(behind) - TOP_BEHIND} more (+{rest:.0f} µs{_of(rest, lost)})")
        lines.append("Fell behind (time beyond a MAC-proportional cut): " + ", ".join(named) + ".")
    outside = diff["outside"]
    base_name = outside.get("base", "p50")
    if outside["measurable"]:
        lines.append("Outside kernels (executor dispatch between nodes, the Python call, copies"
                     + (", the profiler's own bookkeeping" if cost else "") + f"): dense {outside['dense_us']:.0f} µs, "
                     f"variant {outside['variant_us']:.0f} µs, {outside['share_of_p50']:.0%} of the variant's "
                     f"{base_name} ({outside['excess_us']:+.0f} µs{_of(outside['excess_us'], lost)}).")
    else:
        lines.append(f"Outside kernels: not measurable, the profiled kernels sum to more than the {base_name}.")
    closing = closing_line(diff)
    return lines + ([closing] if closing else [])


def _ratio(ratio: float | None) -> str:
    return "new" if ratio is None else f"{ratio:.2f}x"


def _of(excess: float, lost: float) -> str:
    return f", {excess / lost:.0%} of the time lost" if lost > 0 and excess > 0 else ""


def shows_diff(row: dict) -> bool:
    """Rendered only where it explains something: an efficiency that may fall short of SHORTFALL_EFFICIENCY (its
    interval reaches below it), or no real speedup."""
    if "profile_diff" not in row:
        return False
    return _may_fall_short(row) or row.get("verdict") in SHOWN_VERDICTS


def _may_fall_short(row: dict) -> bool:
    low = row.get("efficiency_low", row.get("efficiency"))
    return low is not None and low < SHORTFALL_EFFICIENCY


def why_shown(row: dict) -> str:
    if _may_fall_short(row):
        interval = (f" [{row['efficiency_low']:.2f}, {row['efficiency_high']:.2f}]"
                    if row.get("efficiency_high") is not None else "")
        return f"achieved / predicted {row['efficiency']:.2f}{interval} reaches below {SHORTFALL_EFFICIENCY}"
    return row["verdict"]


def diff_title(row: dict) -> str:
    return (f"{row['variant']} ({row['model']}), {row['format']} ({row['runtime']}), {row['threads']} thread(s), "
            f"{row['device']}, run {row['run']}: {why_shown(row)}")


def diff_cells(diff: dict) -> list[list[str]]:
    """The table under HEADERS: one line per op type, then the time outside kernels."""
    cells = [[op["op"], f"{op['dense_us']:.1f}", f"{op['variant_us']:.1f}", _ratio(op["ratio"]),
              "-" if op["share"] is None else f"{op['share']:.1%}"] for op in diff["ops"]]
    outside = diff["outside"]
    share = outside["share_of_p50"]
    cells.append([f"outside kernels ({outside.get('base', 'p50')} - kernels)"
                  + ("" if outside["measurable"] else ", clamped at 0"),
                  f"{outside['dense_us']:.1f}", f"{outside['variant_us']:.1f}",
                  "-" if outside["ratio"] is None else f"{outside['ratio']:.2f}x",
                  "-" if share is None else f"{share:.1%} of the {outside.get('base', 'p50')}"])
    return cells


def no_diff_note(rows: list[dict]) -> str:
    """What the section says when no diff is shown; empty when the rows have no pruned ONNX variant at all."""
    if not any(row["variant"] != "dense" and row["format"] == "onnx" for row in rows):
        return ""
    if not any("profile_diff" in row for row in rows):
        return ("No per-operator profiles in these runs: `tsprune-edge bench --profile` records them "
                "(ONNX Runtime only).")
    return (f"Every profiled variant reached {SHORTFALL_EFFICIENCY:.0%} of its predicted speedup (its whole "
            "interval) with a real speedup; the diffs are in report.json (`profile_diff`).")


def profile_markdown(rows: list[dict]) -> str:
    """The report's "where the time goes" section: the diff of every row that falls short."""
    shown = [row for row in rows if shows_diff(row)]
    note = no_diff_note(rows)
    if not shown and not note:
        return ""
    lines = ["", f"## {SECTION}", ""]
    if not shown:
        return "\n".join(lines + [note]) + "\n"
    for row in shown:
        diff = row["profile_diff"]
        lines += [f"### {diff_title(row)}", ""]
        lines += [f"- {line}" for line in diff["explanation"] + diff["flags"]]
        lines += ["", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        lines += ["| " + " | ".join(cells) + " |" for cells in diff_cells(diff)]
        lines.append("")
    return "\n".join(lines)
