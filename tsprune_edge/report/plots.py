"""The report's figures, drawn from verdict rows of any number of runs, models and devices. Figures are built
with matplotlib's object API on the Agg canvas (no pyplot state, no display) and come back as PNG bytes, so the
same image goes to plots/*.png and into the self-contained HTML."""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Callable, Iterable

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from tsprune_edge.report.pareto import front, mse_field, target_latency
from tsprune_edge.report.profile_diff import SHORTFALL_EFFICIENCY
from tsprune_edge.variants import CONTROL, PROBE_VARIANT, is_baseline

TITLES = {
    "latency": "Latency (p50) vs sparsity",
    "mse": "Test MSE vs sparsity",
    "pareto": "Test MSE vs latency, Pareto front (lower left)",
    "speedup": "Predicted (MACs) vs achieved speedup",
}
DPI = 100
LABEL_GAP_PX = (70, 12)  # a point label is drawn only this far (x, y) from every label already placed


def figures(rows: list[dict]) -> dict[str, bytes]:
    """PNG bytes of every figure in TITLES, in that order; a figure without data says so instead of failing.
    The per-call probe is no model, and the A/A control is dense again: both stay out of the plots (the tables
    show them). Baselines are no pruned variant: only the Pareto plot, where every model competes, shows them."""
    draw = {"latency": latency_figure, "mse": mse_figure, "pareto": pareto_figure, "speedup": speedup_figure}
    models = [r for r in rows if r["variant"] not in (PROBE_VARIANT, CONTROL)]
    pruned = [r for r in models if not is_baseline(r["variant"])]
    return {name: _png(draw[name](models if name == "pareto" else pruned)) for name in TITLES}


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _finite(*values) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _panels(title: str, keys: list, draw: Callable[[Axes, object], None], empty: str) -> Figure:
    """One axes per key, three to a row; no key gives one axes that says `empty`."""
    count = max(len(keys), 1)
    cols = min(count, 3)
    nrows = math.ceil(count / cols)
    figure = Figure(figsize=(5.2 * cols, 3.9 * nrows), layout="constrained")
    figure.suptitle(title)
    axes = figure.subplots(nrows, cols, squeeze=False).ravel()
    for ax, key in zip(axes, keys, strict=False):
        draw(ax, key)
    if not keys:
        _say(axes[0], empty)
    for ax in axes[count:]:
        ax.set_visible(False)
    return figure


def _say(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _label(ax: Axes, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def _label_points(ax: Axes, points: list[tuple[float, float]], labels: list[str], offset=(3, 3)) -> int:
    """Annotate points in the given order, skipping any whose label would collide with one already placed (in
    display pixels, on the axes' final scale). Returns how many were labelled."""
    ax.autoscale_view()
    placed: list[tuple[float, float]] = []
    for (x, y), text in zip(points, labels, strict=True):
        px, py = ax.transData.transform((x, y))
        if any(abs(px - qx) < LABEL_GAP_PX[0] and abs(py - qy) < LABEL_GAP_PX[1] for qx, qy in placed):
            continue
        placed.append((px, py))
        ax.annotate(text, (x, y), fontsize=7, xytext=offset, textcoords="offset points")
    return len(placed)


def _log_scale(ax: Axes, axis: str) -> None:
    """A log axis with five plainly written ticks inside its span: matplotlib's own write every minor tick in
    scientific notation when the span is under a decade, and they run into each other."""
    getattr(ax, f"set_{axis}scale")("log")
    ax.autoscale_view()
    low, high = getattr(ax, f"get_{axis}lim")()
    target = ax.xaxis if axis == "x" else ax.yaxis
    inside = np.geomspace(low, high, 7)[1:-1]
    for digits in range(2, 7):  # as few significant digits as keep the ticks apart
        ticks = sorted({float(f"{v:.{digits}g}") for v in inside})
        if len(ticks) == len(inside):
            break
    target.set_major_locator(FixedLocator(ticks))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_locator(NullLocator())


def family(row: dict) -> str:
    """A variant's family, its name without the sparsity (`structured_width-0.5` -> `structured_width`): each family
    is one line (structured and structured_width share the method `structured` but prune different dimensions)."""
    return str(row["variant"]).rsplit("-", 1)[0]


def _is_dense(row: dict) -> bool:
    return row["variant"] == "dense"


def _group(rows: Iterable[dict], key: Callable[[dict], object]) -> dict:
    groups = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return dict(groups)


def _device_prefix(rows: list[dict], row: dict) -> str:
    return f"{row['device']}: " if len({r["device"] for r in rows}) > 1 else ""


def latency_figure(rows: list[dict]) -> Figure:
    """(a) p50 vs sparsity, one line per family starting at the dense model (sparsity 0), one panel per run, model,
    format (runtime) and thread count, latency on a log scale; error bars are the ratio's 95% interval applied to
    the variant's p50."""
    panels = _group((r for r in rows if _finite(r.get("p50_ms"))),
                    lambda r: (r["run"], r["model"], r["format"], r["runtime"], r["threads"]))

    def draw(ax: Axes, key) -> None:
        members = panels[key]
        dense = [r for r in members if _is_dense(r)]
        methods = _group((r for r in members if not _is_dense(r) and _finite(r.get("sparsity"))), family)
        for method, variants in sorted(methods.items(), key=lambda item: str(item[0])):
            points = [(0.0, dense[0]["p50_ms"], 0.0, 0.0)] if dense else []
            for r in sorted(variants, key=lambda r: r["sparsity"]):
                low = high = 0.0
                if _finite(r.get("ratio"), r.get("ratio_low"), r.get("ratio_high")) and r["ratio"] > 0:
                    low = r["p50_ms"] * (1 - r["ratio_low"] / r["ratio"])
                    high = r["p50_ms"] * (r["ratio_high"] / r["ratio"] - 1)
                points.append((r["sparsity"], r["p50_ms"], low, high))
            xs, ys, lows, highs = zip(*points, strict=True)
            ax.errorbar(xs, ys, yerr=[lows, highs], marker="o", capsize=3, label=str(method))
        if dense and not methods:
            ax.plot([0.0], [dense[0]["p50_ms"]], "ko", label="dense")
        first = members[0]
        target = fit_target_line(members)
        if target:  # a fit's run: its budget, or its speedup target as dense's p50 in this run / S
            ax.axhline(target[0], color="r", linestyle="--", label=target[1])
        ax.set_title(f"{_device_prefix(rows, first)}{first['model']}, {first['format']} ({first['runtime']}), "
                     f"t{first['threads']}", fontsize=9)
        if not dense and not methods:
            _say(ax, "no dense reference and no variant with a sparsity")
            return
        _log_scale(ax, "y")
        _label(ax, "sparsity", "p50 latency (ms, log scale)")

    return _panels(TITLES["latency"], sorted(panels, key=str), draw, "no latency measured")


def mse_figure(rows: list[dict]) -> Figure:
    """(b) torch test MSE vs sparsity per family (solid), and the board's MSE per family and format (dashed) where
    the rows carry `board_mse`; one panel per run and model."""
    panels = _group(rows, lambda r: (r["run"], r["model"]))

    def draw(ax: Axes, key) -> None:
        members = panels[key]
        drawn = _mse_lines(ax, members, "torch_mse", lambda r: "", "-", "torch")
        drawn += _mse_lines(ax, members, "board_mse", lambda r: f" {r['format']}", "--", "board")
        first = members[0]
        ax.set_title(f"{_device_prefix(rows, first)}{first['model']}", fontsize=9)
        if not drawn:
            _say(ax, "no test MSE recorded")
            return
        _label(ax, "sparsity", "test MSE (scaled)")

    return _panels(TITLES["mse"], sorted(panels, key=str), draw, "no rows")


def _mse_lines(ax: Axes, rows: list[dict], field: str, split: Callable[[dict], str], style: str,
               label: str) -> int:
    """One line per family and `split` value (the format, for the board's MSE), starting at the dense value of the
    same split at sparsity 0; each variant once, as rows repeat per thread count. Returns how many were drawn."""
    usable = [r for r in rows if _finite(r.get(field))]
    dense = {split(r): r[field] for r in usable if _is_dense(r)}
    lines = _group((r for r in usable if not _is_dense(r) and _finite(r.get("sparsity"))),
                   lambda r: (family(r), split(r)))
    for (method, part), variants in sorted(lines.items()):
        points = {r["sparsity"]: r[field] for r in variants}
        if part in dense:
            points[0.0] = dense[part]
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], style, marker="o", label=f"{label} {method}{part}")
    if lines:
        return len(lines)
    for part, value in dense.items():
        ax.plot([0.0], [value], "o", label=f"{label} dense{part}")
    return len(dense)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (lower or equal in both, lower in one), lower left best."""
    kept = set(front([{"name": i, "p50_ms": x, "mse": y} for i, (x, y) in enumerate(points)]))
    return [i for i in range(len(points)) if i in kept]


BASELINE_MARKERS = ("D", "^", "s", "v", "P", "X", "*")  # one per baseline, drawn over the grey pruned models


def pareto_figure(rows: list[dict]) -> Figure:
    """(c) MSE vs p50 per device, format (runtime) and thread count, every model together, latency on a log scale;
    the front is drawn in red; each baseline has its own marker (its name in the legend); points are labelled where
    the labels do not collide, the front's first. The MSE is the board's where every point has one, else torch's."""
    panels = _group((r for r in rows if _finite(r.get("p50_ms"))),
                    lambda r: (r["device"], r["format"], r["runtime"], r["threads"]))

    def draw(ax: Axes, key) -> None:
        members = panels[key]
        field = mse_field(members)
        points = [r for r in members if _finite(r.get(field))]
        first = members[0]
        ax.set_title(f"{first['device']}, {first['format']} ({first['runtime']}), t{first['threads']}", fontsize=9)
        if not points:
            _say(ax, "no test MSE recorded")
            return
        xy = [(r["p50_ms"], r[field]) for r in points]
        front = pareto_front(xy)
        others = [xy[i] for i, r in enumerate(points) if not is_baseline(r["variant"])]
        if others:
            ax.scatter(*zip(*others, strict=True), color="0.55", label="measured")
        baselines = [(r["variant"], xy[i]) for i, r in enumerate(points) if is_baseline(r["variant"])]
        for n, (name, (x, y)) in enumerate(sorted(baselines)):
            ax.scatter([x], [y], marker=BASELINE_MARKERS[n % len(BASELINE_MARKERS)], s=60, zorder=3, label=name)
        line = sorted(xy[i] for i in front)
        ax.plot(*zip(*line, strict=True), "r-o", drawstyle="steps-post", label="Pareto front")
        targets = {fit_target_line([r for r in members if r["run"] == run]) for run in {r["run"] for r in points}}
        for target in sorted(t for t in targets if t):  # a fit's run: its budget, or its speedup target in this run
            ax.axvline(target[0], color="r", linestyle="--", label=target[1])
        _log_scale(ax, "x")
        models = len({r["model"] for r in points}) > 1
        order = sorted(front, key=lambda i: xy[i]) + [i for i in range(len(xy)) if i not in front]  # front first
        _label_points(ax, [xy[i] for i in order],
                      [f"{points[i]['model']} {points[i]['variant']}" if models else points[i]["variant"]
                       for i in order])
        _label(ax, "p50 latency (ms, log scale)", f"test MSE ({field.split('_')[0]})")

    return _panels(TITLES["pareto"], sorted(panels, key=str), draw, "no latency measured")


def fit_target_line(rows: list[dict]) -> tuple[float, str] | None:
    """Where a fit's target sits on a latency axis, and its legend, for the rows of one run: `--budget-ms` is its
    budget; `--speedup S` is dense's p50 in the same run / S (the table's budget only aimed the search)."""
    at = target_latency(rows)
    if at is None:
        return None
    first = next(r for r in rows if r.get("budget_ms") or r.get("target_speedup"))
    if first.get("budget_ms"):
        return at, f"budget {at:.3g} ms"
    return at, f"speedup target {first['target_speedup']:g}x: dense in this run / {first['target_speedup']:g}"


def speedup_figure(rows: list[dict]) -> Figure:
    """(d) achieved speedup with its 95% interval against the MAC prediction, with y = x and y = 0.85x, and a
    `--speedup S` fit's target as the line y = S."""
    points = [r for r in rows if _finite(r.get("predicted_speedup"), r.get("speedup"), r.get("speedup_low"),
                                         r.get("speedup_high"))]
    figure = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = figure.subplots()
    ax.set_title(TITLES["speedup"])
    if not points:
        _say(ax, "no pruned variant with a MAC count and a measured speedup")
        return figure
    for label, group in sorted(_group(points, lambda r: f"{r['format']} ({r['runtime']}) t{r['threads']}").items()):
        ys = [r["speedup"] for r in group]
        ax.errorbar([r["predicted_speedup"] for r in group], ys, fmt="o", capsize=3, label=label,
                    yerr=[[y - r["speedup_low"] for r, y in zip(group, ys, strict=True)],
                          [r["speedup_high"] - y for r, y in zip(group, ys, strict=True)]])
    values = [v for r in points for v in (r["predicted_speedup"], r["speedup_low"], r["speedup_high"])]
    span = [min(min(values), 1.0) * 0.9, max(values) * 1.1]
    ax.plot(span, span, "k-", linewidth=1, label="achieved = predicted")
    ax.plot(span, [SHORTFALL_EFFICIENCY * v for v in span], "k--", linewidth=1,
            label=f"{SHORTFALL_EFFICIENCY:g} x predicted")
    for target in sorted({r["target_speedup"] for r in points if _finite(r.get("target_speedup"))}):
        ax.axhline(target, color="r", linestyle="--", label=f"speedup target {target:g}x")
    _label_points(ax, [(r["predicted_speedup"], r["speedup"]) for r in points],
                  [f"{r['model']} {r['variant']}" for r in points], offset=(4, -8))
    _label(ax, "predicted speedup (dense MACs / variant MACs)", "achieved speedup (95% CI)")
    return figure
