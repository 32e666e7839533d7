"""A fit's run on the (latency, test MSE) plane: is the fitted model on the Pareto front of the models measured with
it, and how does it compare with the uniform model of the nearest measured latency not above the budget? Torch-free:
the report and `fit` both judge with it. A `--speedup S` fit is judged by its speedup against dense in the same run;
its latency line is dense's p50 in that run / S, never the table's budget that only aimed the search."""

from __future__ import annotations

import math

from tsprune_edge.variants import DENSE

FIT_PREFIX = "fit-"  # the fitted candidates' variant names
UNIFORM_PREFIX = "uniform"  # the uniform structured models a fit measures beside them
OVER_ALLOWED = 1.03  # within a budget: median within it and the upper end of its 95% interval at most 3% over


def within_budget(p50_ms: float, p50_high_ms: float | None, budget_ms: float) -> bool:
    """The fit's rule for meeting a budget, as `fit` decides it and the report says it."""
    return p50_ms <= budget_ms and (p50_high_ms or p50_ms) <= budget_ms * OVER_ALLOWED


def meets_speedup(speedup: float, speedup_low: float | None, target: float) -> bool:
    """The same rule read as a ratio: the same-run speedup at least S, its interval's low end at most 3% under."""
    return speedup >= target and (speedup_low or speedup) >= target / OVER_ALLOWED


def share_text(used: float) -> str:
    """A share of the target to one decimal, rounded away from 100% so that the text never says a met candidate
    used more than it did, nor an over one less: 99.97% reads 99.9%, 100.02% reads 100.1%."""
    tenths = used * 1000
    shown = math.floor(tenths + 1e-9) if used <= 1 else math.ceil(tenths - 1e-9)
    return f"{shown / 10:.1f}%"


def target_latency(rows: list[dict]) -> float | None:
    """The latency a fit's target means in these rows (one run, one setting): its budget, or for a speedup target
    dense's p50 in the same run / S; None where the rows carry no target (or a speedup and no dense)."""
    first = next((r for r in rows if r.get("budget_ms") or r.get("target_speedup")), None)
    if first is None:
        return None
    if first.get("budget_ms"):
        return first["budget_ms"]
    dense = next((r["p50_ms"] for r in rows if r["variant"] == DENSE and r.get("p50_ms")), None)
    return dense / first["target_speedup"] if dense else None


def dominated_by(points: list[dict], name: str) -> list[str]:
    """The points at most as slow and at most as wrong as `name`, better in one (p50_ms, mse)."""
    mine = next(p for p in points if p["name"] == name)
    return [p["name"] for p in points if p["name"] != name and p["p50_ms"] <= mine["p50_ms"]
            and p["mse"] <= mine["mse"] and (p["p50_ms"] < mine["p50_ms"] or p["mse"] < mine["mse"])]


def fit_verdict(points: list[dict], fitted: str, budget_ms: float) -> dict:
    """Pareto status of `fitted` and its comparison with the nearest uniform model within the budget."""
    mine = next(p for p in points if p["name"] == fitted)
    beaten_by = dominated_by(points, fitted)
    uniform = [p for p in points if p["name"].startswith(UNIFORM_PREFIX) and p["p50_ms"] <= budget_ms]
    nearest = max(uniform, key=lambda p: p["p50_ms"]) if uniform else None
    return {"on_pareto_front": not beaten_by, "dominated_by": beaten_by,
            "nearest_uniform": nearest and nearest["name"],
            "mse_not_worse_than_nearest_uniform": None if nearest is None else mine["mse"] <= nearest["mse"]}


def fit_notes(rows: list[dict]) -> list[str]:
    """One line per fitted model in a run that carries a budget: its latency against the budget and its place on
    the plane beside the other models of the same format, runtime and threads."""
    notes = []
    settings = dict.fromkeys((r["run"], r["format"], r["runtime"], r["threads"]) for r in rows
                             if r.get("budget_ms") or r.get("target_speedup"))
    for setting in settings:
        same = [r for r in rows if (r["run"], r["format"], r["runtime"], r["threads"]) == setting
                and r.get("p50_ms") is not None and r.get("method") != "probe"]
        line = target_latency(same)
        points = [{"name": r["variant"], "p50_ms": r["p50_ms"], "mse": r["torch_mse"]} for r in same
                  if r.get("torch_mse") is not None]
        for row in same:
            if not row["variant"].startswith(FIT_PREFIX) or row.get("torch_mse") is None:
                continue
            text = f"Fit {row['variant']} ({setting[2]}, t{setting[3]}): {_against_target(row)}, test MSE " \
                   f"{row['torch_mse']:.4g}"
            if line is None:  # a speedup and no dense measured beside it: no plane to place it on
                notes.append(text + ".")
                continue
            judged = fit_verdict(points, row["variant"], line)
            text += "; " + ("on the (latency, MSE) Pareto front of this run" if judged["on_pareto_front"] else
                            f"NOT on the Pareto front of this run (dominated by {', '.join(judged['dominated_by'])})")
            if len(points) > 2 and any(p["name"].startswith(UNIFORM_PREFIX) for p in points):
                nearest, within = judged["nearest_uniform"], "the budget" if row.get("budget_ms") else "the target"
                text += (f"; nearest uniform model within {within}: {nearest}, MSE "
                         f"{next(p['mse'] for p in points if p['name'] == nearest):.4g} "
                         f"({'not worse' if judged['mse_not_worse_than_nearest_uniform'] else 'the fit is worse'})"
                         if nearest else f"; no uniform model measured within {within}")
            notes.append(text + ".")
    return notes


# Every model of a run on the (latency, test MSE) plane, per measured setting: the front, what each model is
# dominated by, and the most accurate model within each pruned variant's latency. Judged on point estimates (the
# p50 and the test MSE), not on their intervals: two models whose intervals overlap can still be ordered here, and
# the notes say so.
ESTIMATES = "point estimates: p50 and test MSE, their intervals not used"


def front(points: list[dict]) -> list[str]:
    """Names of the points no other point dominates, fastest first. Equal points dominate neither: both stay."""
    kept = [p for p in points if not dominated_by(points, p["name"])]
    return [p["name"] for p in sorted(kept, key=lambda p: (p["p50_ms"], p["mse"], str(p["name"])))]


def most_accurate_within(points: list[dict], p50_ms: float) -> dict | None:
    """The point of the lowest MSE among those at most `p50_ms` slow (ties: the faster, then by name)."""
    within = [p for p in points if p["p50_ms"] <= p50_ms]
    return min(within, key=lambda p: (p["mse"], p["p50_ms"], str(p["name"]))) if within else None


def _setting(row: dict) -> tuple:
    return row["run"], row["device"], row["format"], row["runtime"], row["threads"]


def _on_plane(row: dict) -> bool:
    from tsprune_edge.variants import CONTROL, PROBE_VARIANT

    return row["variant"] not in (PROBE_VARIANT, CONTROL) and _number(row.get("p50_ms"))


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def mse_field(rows: list[dict]) -> str:
    """The board's test MSE where every model of the setting has one (bench --accuracy), else torch's."""
    return "board_mse" if rows and all(_number(r.get("board_mse")) for r in rows) else "torch_mse"


def planes(rows: list[dict]) -> list[dict]:
    """Per run, device, format, runtime and threads: the models with a p50 and a test MSE, and the front.
    report.json's `pareto`."""
    settings: dict[tuple, list[dict]] = {}
    for row in rows:
        if _on_plane(row):
            settings.setdefault(_setting(row), []).append(row)
    found = []
    for (run, device, fmt, runtime, threads), members in settings.items():
        field = mse_field(members)
        points = [{"name": r["variant"], "p50_ms": r["p50_ms"], "mse": r[field]} for r in members
                  if _number(r.get(field))]
        found.append({"run": run, "device": device, "format": fmt, "runtime": runtime, "threads": threads,
                      "mse": field, "judged_on": ESTIMATES, "points": points, "front": front(points)})
    return found


def attach_dominated(rows: list[dict]) -> None:
    """Each row's `dominated_by`: the models of its setting at most as slow and at most as wrong, better in one
    (point estimates); None for a row not on the plane (the probe, the control, no p50 or no test MSE)."""
    for plane in planes(rows):
        names = {p["name"] for p in plane["points"]}
        for row in rows:
            if _setting(row) == (plane["run"], plane["device"], plane["format"], plane["runtime"], plane["threads"]):
                row["dominated_by"] = dominated_by(plane["points"], row["variant"]) if row["variant"] in names \
                    else None
    for row in rows:
        row.setdefault("dominated_by", None)


def is_pruned(row: dict) -> bool:
    """A pruned model: not dense, the control, the probe or a baseline."""
    from tsprune_edge.variants import CONTROL, DENSE, PROBE_VARIANT, is_baseline

    return row["variant"] not in (DENSE, CONTROL, PROBE_VARIANT) and not is_baseline(row["variant"])


def pareto_notes(rows: list[dict]) -> list[str]:
    """Where a run measured baselines: per setting the models on the front, every pruned variant a baseline
    dominates, and per pruned variant the most accurate model within its measured latency."""
    from tsprune_edge.report.control import setting
    from tsprune_edge.variants import is_baseline

    if not any(is_baseline(r["variant"]) for r in rows):
        return []
    notes = []
    for plane in planes(rows):
        members = [r for r in rows if _on_plane(r) and _setting(r) == (plane["run"], plane["device"],
                                                                       plane["format"], plane["runtime"],
                                                                       plane["threads"])]
        where = setting(members[0])
        source = plane["mse"].split("_")[0]
        notes.append(f"Pareto front (p50 latency, {source} test MSE; {ESTIMATES}), {where}: "
                     f"{', '.join(plane['front']) or 'no model with both'}.")
        points = {p["name"]: p for p in plane["points"]}
        for row in members:
            if not is_pruned(row) or row["variant"] not in points:
                continue
            beaten = [name for name in dominated_by(plane["points"], row["variant"]) if is_baseline(name)]
            if beaten:
                notes.append(f"{row['variant']} ({where}): dominated by {', '.join(beaten)}.")
            best = most_accurate_within(plane["points"], row["p50_ms"])
            notes.append(f"most accurate model within {row['variant']}'s measured latency ({row['p50_ms']:.4g} ms, "
                         f"{where}): {best['name']} (test MSE {best['mse']:.4g})")
    return notes
def _against_target(row: dict) -> str:
    """The fitted model against its target: p50 against a budget in ms, or its same-run speedup against S."""
    if row.get("budget_ms"):
        budget = row["budget_ms"]
        within = within_budget(row["p50_ms"], row.get("p50_high_ms"), budget)
        return (f"p50 {row['p50_ms']:.4g} ms [{row.get('p50_low_ms') or row['p50_ms']:.4g}, "
                f"{row.get('p50_high_ms') or row['p50_ms']:.4g}] against the budget {budget:.4g} ms: "
                f"{'within' if within else 'OVER'} ({share_text(row['p50_ms'] / budget)} of it)")
    target, speedup = row["target_speedup"], row.get("speedup")
    if speedup is None:
        return f"no speedup against dense in this run to judge against the speedup target {target:g}x"
    met = meets_speedup(speedup, row.get("speedup_low"), target)
    return (f"{speedup:.4g}x dense in this run [{row.get('speedup_low') or speedup:.4g}, "
            f"{row.get('speedup_high') or speedup:.4g}] against the speedup target {target:g}x: "
            f"{'met' if met else 'NOT met'} ({share_text(target / speedup)} of it)")
