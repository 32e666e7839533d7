"""The verdict rows as a terminal table, Markdown, JSON and CSV (pandas reads the last two as they are)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rich.table import Table

from tsprune_edge.atomic import write_atomic, write_json_atomic
from tsprune_edge.report.pareto import fit_notes
from tsprune_edge.report.stats import legend
from tsprune_edge.variants import PROBE_VARIANT

COLUMNS = ("device", "machine", "emulated", "variant", "model", "method", "sparsity", "format", "runtime", "threads",
           "rounds", "paired_rounds", "p50_ms", "p50_low_ms", "p50_high_ms", "ratio", "ratio_low", "ratio_high",
           "speedup", "speedup_low", "speedup_high", "verdict", "min_effect", "predicted_speedup", "efficiency",
           "efficiency_low", "efficiency_high", "beyond_call_efficiency", "beyond_call_efficiency_low",
           "beyond_call_efficiency_high", "memory_ratio", "file_ratio", "zstd_ratio", "torch_mse", "board_mse",
           "board_mae", "max_abs_error", "macs", "flags", "warnings", "warmup", "providers", "delegate",
           "board_since_boot", "run")
PAGE = "report.html"  # the page a user opens first: tables, plots and notes in one file
LISTS = ("flags", "warnings", "board_since_boot")  # joined with "; " in the CSV
METHOD = ("Speedup = dense latency / variant latency per round (each round's two passes, forward and mirrored, "
          "combined as the geometric mean of their medians; rounds interleaved in time), combined as a geometric "
          "mean over the rounds both have, with a 95% t interval on the per-round log ratios (rounds - 1 degrees "
          "of freedom; where bench could add rounds, a constant that holds 95% at every look); p50 is the "
          "geometric mean of the round values, the same estimator. {labels} Predicted = dense MACs / variant MACs; "
          "achieved / predicted carries the speedup's interval; beyond per-call: the same for the time above the "
          "per-call probe's.")


def interval_text(value, low, high, spec: str, unit: str = "") -> str:
    """A figure and its interval, "-" when there is none: one format for the report and the benchmarks."""
    if value is None:
        return "-"
    text = f"{value:{spec}}{unit}"
    return text if low is None or high is None else f"{text} [{low:{spec}}, {high:{spec}}]"


def _speedup(row: dict) -> str:
    if "speedup" not in row:
        return "reference" if row["variant"] == "dense" else "-"
    return interval_text(row["speedup"], row["speedup_low"], row["speedup_high"], ".2f", "x")


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _p50(row: dict) -> str:
    if row["variant"] == PROBE_VARIANT:  # the per-call cost: its interval is the figure
        return interval_text(row["p50_ms"], row.get("p50_low_ms"), row.get("p50_high_ms"), ".4f")
    return _num(row["p50_ms"], ".4f")


def _cells(row: dict) -> list[str]:
    verdict = row.get("verdict", "-" if row["variant"] != "dense" else "")
    flags = row["flags"] + [f"dense {f}" for f in row.get("dense_flags", [])]
    if row["emulated"]:
        flags.append("emulated timings")
    return [row["variant"], f"{row['format']} ({row['runtime']})", str(row["threads"]), _p50(row),
            _speedup(row), verdict, _num(row.get("predicted_speedup"), ".2f"),
            interval_text(row.get("efficiency"), row.get("efficiency_low"), row.get("efficiency_high"), ".2f"),
            interval_text(row.get("beyond_call_efficiency"), row.get("beyond_call_efficiency_low"),
                      row.get("beyond_call_efficiency_high"), ".2f"),
            _num(row.get("memory_ratio"), ".2f"), _num(row.get("file_ratio"), ".2f"), _num(row["torch_mse"], ".4f"),
            _num(row.get("board_mse"), ".4f"), _num(row["max_abs_error"], ".1e"), "; ".join(flags)]


HEADERS = ("variant", "format (runtime)", "threads", "p50 ms", "speedup [95% CI]", "verdict", "predicted (MACs)",
           "achieved / predicted", "beyond per-call / predicted", "memory ratio", "file ratio", "torch MSE",
           "board MSE", "max error", "flags")


def run_notes(rows: list[dict]) -> list[str]:
    """What a reader must know before the table: nothing judged because every round was left out; the board's
    since-boot throttling history, once; a fit's models against its budget and on the (latency, MSE) plane."""
    notes = []
    if rows and all(r["rounds"] == 0 for r in rows):
        notes.append("Every round of this run was left out (failed, incorrect or throttled; see flags): "
                     "nothing is judged.")
    history = rows[0].get("board_since_boot") if rows else None
    if history:
        notes.append(f"The board reports since boot: {', '.join(history)}. Context only: a round is left out when "
                     "throttling or under-voltage holds while it runs, or begins during it.")
    return notes + fit_notes(rows)


def measurement_notes(rows: list[dict]) -> list[str]:
    """Per item, what the agent reported: warm-up, providers or delegate, warnings."""
    lines = []
    for row in rows:
        parts = [f"warm-up {row['warmup']}" if row.get("warmup") else None,
                 f"providers {row['providers']}" if row.get("providers") else None,
                 f"delegate {row['delegate']}" if row.get("delegate") else None,
                 *row.get("warnings", [])]
        if any(parts):
            lines.append(f"{row['variant']}, {row['format']}, t{row['threads']}: "
                         + "; ".join(p for p in parts if p))
    return lines


def verdict_table(rows: list[dict]) -> Table:
    if not rows:
        return Table(title="no measured items in this run")
    first = rows[0]
    models = ", ".join(dict.fromkeys(str(r["model"]) for r in rows if r["variant"] != PROBE_VARIANT))
    notes = run_notes(rows)
    table = Table(title=f"{models}: verdict on {first['device']} ({first['machine']}"
                        + (", EMULATED: timings say nothing about a board" if first["emulated"] else "")
                        + f"), against dense in the same run; minimum effect {_min_effect(rows):.0%}",
                  caption=" ".join(notes) or None)
    for header in HEADERS:
        table.add_column(header, no_wrap=header in ("variant", "speedup [95% CI]", "verdict"))
    for row in rows:
        table.add_row(*_cells(row))
    return table


def _min_effect(rows: list[dict]) -> float:
    return next((r["min_effect"] for r in rows if "min_effect" in r), 0.05)


def method_note(rows: list[dict]) -> str:
    return METHOD.format(labels=legend(_min_effect(rows)))


def markdown(rows: list[dict]) -> str:
    if not rows:
        return "# Verdict\n\nNo measured items in these runs.\n"
    first = rows[0]
    lines = [f"# Verdict: {first['device']} ({first['machine']})", "",
             f"Run {first['run']}. Each variant against the dense model of the same format, runtime and threads, "
             "measured in the same interleaved run. " + method_note(rows), ""]
    if first["emulated"]:
        lines += ["**Emulated board: these timings come from qemu and say nothing about a real board.**", ""]
    lines += [f"**{note}**" for note in run_notes(rows)] + ([""] if run_notes(rows) else [])
    lines += ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in _cells(row)) + " |" for row in rows]
    notes = measurement_notes(rows)
    if notes:
        lines += ["", "What the agent reported:", ""] + [f"- {line}" for line in notes]
    return "\n".join(lines) + "\n"


def write_report(rows: list[dict], out: Path) -> list[Path]:
    """report.json, report.csv, report.md, report.html and plots/*.png in `out`, each written atomically.
    The plotting modules are imported here: matplotlib costs a second that the terminal table does not need."""
    from tsprune_edge.report.html import html_report
    from tsprune_edge.report.plots import TITLES, figures
    from tsprune_edge.report.profile_diff import profile_markdown

    out = Path(out)
    write_json_atomic(out / "report.json", {"rows": rows})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, **{key: "; ".join(row.get(key) or []) for key in LISTS}})
    write_atomic(out / "report.csv", lambda handle: handle.write(buffer.getvalue().encode()))
    images = figures(rows)
    pngs = [out / "plots" / f"{name}.png" for name in images]
    for path, png in zip(pngs, images.values(), strict=True):
        write_atomic(path, lambda handle, png=png: handle.write(png))
    runs = list(dict.fromkeys(r["run"] for r in rows))
    text = ("".join(markdown([r for r in rows if r["run"] == run]) + "\n" for run in runs) or markdown([]))
    text += "\n## Plots\n\n" + "".join(f"![{TITLES[n]}](plots/{n}.png)\n\n" for n in images) + profile_markdown(rows)
    write_atomic(out / "report.md", lambda handle: handle.write(text.encode()))
    page = html_report(rows, images)
    write_atomic(out / PAGE, lambda handle: handle.write(page.encode()))
    return [out / "report.json", out / "report.csv", out / "report.md", out / PAGE, *pngs]
