"""The verdict rows as a terminal table, Markdown, JSON and CSV (pandas reads the last two as they are)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rich import box
from rich.table import Table

from tsprune_edge.atomic import write_atomic, write_json_atomic
from tsprune_edge.formats import stamped
from tsprune_edge.report.cells import (
    HEADERS,
    answer_lines,
    measurement_notes,
    method_note,
    min_effect,
    narrow_notes,
    row_cells,
    run_notes,
    table_columns,
)
from tsprune_edge.report.control import control_check
from tsprune_edge.report.pareto import planes
from tsprune_edge.variants import PROBE_VARIANT

COLUMNS = ("headline", "device", "machine", "emulated", "variant", "model", "method", "sparsity", "format", "runtime",
           "threads", "rounds", "paired_rounds", "judged_at_round", "p50_ms", "p50_low_ms", "p50_high_ms", "ratio",
           "ratio_low", "ratio_high", "speedup", "speedup_low", "speedup_high", "verdict", "min_effect",
           "predicted_speedup", "efficiency", "efficiency_low", "efficiency_high", "beyond_call_efficiency",
           "beyond_call_efficiency_low", "beyond_call_efficiency_high", "memory_ratio", "file_ratio", "zstd_ratio",
           "mse_change", "mse_change_low", "mse_change_high", "accuracy_label", "accuracy_source", "max_mse_rise",
           "torch_mse", "board_mse", "board_mae", "max_abs_error", "macs", "flags", "warnings", "warmup", "providers",
           "delegate", "board_since_boot", "dominated_by", "run")
PAGE = "report.html"  # the page a user opens first: tables, plots and notes in one file
LISTS = ("flags", "warnings", "board_since_boot", "dominated_by")  # joined with "; " in the CSV


def verdict_table(rows: list[dict], wide: bool = False, tails: bool = False) -> Table:
    """The answer in 100 columns (variant, runtime, speedup, verdict, test MSE against dense; the tails' speedups
    with `tails`), or every column with `wide`. No cell is ever cut to '…': one too wide wraps (folds)."""
    if not rows:
        return Table(title="no measured items in this run")
    first = rows[0]
    models = ", ".join(dict.fromkeys(str(r["model"]) for r in rows if r["variant"] != PROBE_VARIANT))
    notes = run_notes(rows) + ([] if wide else narrow_notes(rows))
    table = Table(title=f"{models}: verdict on {first['device']} ({first['machine']}"
                        + (", EMULATED: timings say nothing about a board" if first["emulated"] else "")
                        + f"), against dense in the same run; minimum effect {min_effect(rows):.0%}",
                  caption=" ".join(notes) or None, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  padding=(0, 1, 0, 0), caption_justify="left")
    columns = table_columns(wide, tails)
    for header, _ in columns:
        table.add_column(header, overflow="fold")
    for row in rows:
        if wide or row["variant"] != PROBE_VARIANT:  # the narrow table says the probe's p50 in a note
            table.add_row(*(cell(row) for _, cell in columns))
    return table


def markdown(rows: list[dict]) -> str:
    if not rows:
        return "# Verdict\n\nNo measured items in these runs.\n"
    first = rows[0]
    lines = [f"# Verdict: {first['device']} ({first['machine']})", "",
             f"Run {first['run']}. Each variant against the dense model of the same format, runtime and threads, "
             "measured in the same interleaved run. " + method_note(rows), ""]
    if first["emulated"]:
        lines += ["**Emulated board: these timings come from qemu and say nothing about a real board.**", ""]
    answers = answer_lines(rows)
    if answers:
        lines += ["## The answer", ""] + [f"- {line}" for line in answers] + [""]
    lines += [f"**{note}**" for note in run_notes(rows)] + ([""] if run_notes(rows) else [])
    lines += ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row_cells(row)) + " |" for row in rows]
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
    write_json_atomic(out / "report.json", stamped("report", {"rows": rows, "control": control_check(rows),
                                                              "pareto": planes(rows)}))
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
