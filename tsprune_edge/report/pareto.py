"""A fit's run on the (latency, test MSE) plane: is the fitted model on the Pareto front of the models measured with
it, and how does it compare with the uniform model of the nearest measured latency not above the budget? Torch-free:
the report and `fit` both judge with it."""

from __future__ import annotations

FIT_PREFIX = "fit-"  # the fitted candidates' variant names
UNIFORM_PREFIX = "uniform"  # the uniform structured models a fit measures beside them
OVER_ALLOWED = 1.03  # within a budget: median within it and the upper end of its 95% interval at most 3% over


def within_budget(p50_ms: float, p50_high_ms: float | None, budget_ms: float) -> bool:
    """The fit's rule for meeting a budget, as `fit` decides it and the report says it."""
    return p50_ms <= budget_ms and (p50_high_ms or p50_ms) <= budget_ms * OVER_ALLOWED


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
    settings = dict.fromkeys((r["format"], r["runtime"], r["threads"]) for r in rows if r.get("budget_ms"))
    for setting in settings:
        same = [r for r in rows if (r["format"], r["runtime"], r["threads"]) == setting
                and r.get("p50_ms") is not None and r.get("torch_mse") is not None and r.get("method") != "probe"]
        points = [{"name": r["variant"], "p50_ms": r["p50_ms"], "mse": r["torch_mse"]} for r in same]
        for row in same:
            if not row["variant"].startswith(FIT_PREFIX):
                continue
            budget = row["budget_ms"]
            judged = fit_verdict(points, row["variant"], budget)
            within = within_budget(row["p50_ms"], row.get("p50_high_ms"), budget)
            text = (f"Fit {row['variant']} ({setting[1]}, t{setting[2]}): p50 {row['p50_ms']:.4g} ms "
                    f"[{row.get('p50_low_ms') or row['p50_ms']:.4g}, {row.get('p50_high_ms') or row['p50_ms']:.4g}]"
                    f" against the budget {budget:.4g} ms: {'within' if within else 'OVER'} "
                    f"({row['p50_ms'] / budget:.0%} of it), test MSE {row['torch_mse']:.4g}; ")
            text += ("on the (latency, MSE) Pareto front of this run" if judged["on_pareto_front"] else
                     f"NOT on the Pareto front of this run (dominated by {', '.join(judged['dominated_by'])})")
            if len(points) > 2 and any(p["name"].startswith(UNIFORM_PREFIX) for p in points):
                nearest = judged["nearest_uniform"]
                text += (f"; nearest uniform model within the budget: {nearest}, MSE "
                         f"{next(p['mse'] for p in points if p['name'] == nearest):.4g} "
                         f"({'not worse' if judged['mse_not_worse_than_nearest_uniform'] else 'the fit is worse'})"
                         if nearest else "; no uniform model measured within the budget")
            notes.append(text + ".")
    return notes
