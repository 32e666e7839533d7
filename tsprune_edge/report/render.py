"""The verdict rows as a terminal table, Markdown, JSON and CSV (pandas reads the last two as they are)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rich.table import Table

from tsprune_edge.atomic import write_atomic, write_json_atomic

COLUMNS = ("device", "machine", "emulated", "variant", "model", "method", "sparsity", "format", "runtime", "threads",
           "rounds", "p50_ms", "ratio", "ratio_low", "ratio_high", "speedup", "speedup_low", "speedup_high",
           "verdict", "min_effect", "predicted_speedup", "efficiency", "memory_ratio", "file_ratio", "zstd_ratio",
           "torch_mse", "board_mse", "board_mae", "max_abs_error", "macs", "flags", "run")


def _speedup(row: dict) -> str:
    if "speedup" not in row:
        return "reference" if row["variant"] == "dense" else "-"
    return f"{row['speedup']:.2f}x [{row['speedup_low']:.2f}, {row['speedup_high']:.2f}]"


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cells(row: dict) -> list[str]:
    verdict = row.get("verdict", "-" if row["variant"] != "dense" else "")
    flags = row["flags"] + [f"dense {f}" for f in row.get("dense_flags", [])]
    if row["emulated"]:
        flags.append("emulated timings")
    return [row["variant"], f"{row['format']} ({row['runtime']})", str(row["threads"]), f"{row['p50_ms']:.3f}",
            _speedup(row), verdict, _num(row.get("predicted_speedup"), ".2f"), _num(row.get("efficiency"), ".2f"),
            _num(row.get("memory_ratio"), ".2f"), _num(row.get("file_ratio"), ".2f"), _num(row["torch_mse"], ".4f"),
            _num(row.get("board_mse"), ".4f"), _num(row["max_abs_error"], ".1e"), "; ".join(flags)]


HEADERS = ("variant", "format (runtime)", "threads", "p50 ms", "speedup [95% CI]", "verdict", "predicted (MACs)",
           "achieved / predicted", "memory ratio", "file ratio", "torch MSE", "board MSE", "max error", "flags")


def verdict_table(rows: list[dict]) -> Table:
    first = rows[0]
    models = ", ".join(dict.fromkeys(str(r["model"]) for r in rows))
    table = Table(title=f"{models}: verdict on {first['device']} ({first['machine']}"
                        + (", EMULATED: timings say nothing about a board" if first["emulated"] else "")
                        + f"), against dense in the same run; minimum effect {_min_effect(rows):.0%}")
    for header in HEADERS:
        table.add_column(header, no_wrap=header in ("variant", "speedup [95% CI]", "verdict"))
    for row in rows:
        table.add_row(*_cells(row))
    return table


def _min_effect(rows: list[dict]) -> float:
    return next((r["min_effect"] for r in rows if "min_effect" in r), 0.05)


def markdown(rows: list[dict]) -> str:
    first = rows[0]
    lines = [f"# Verdict: {first['device']} ({first['machine']})", "",
             f"Run {first['run']}. Each variant against the dense model of the same format, runtime and threads, "
             "measured in the same interleaved run. Speedup = median dense latency / median variant latency, "
             "with a hierarchical bootstrap 95% interval (rounds, then latencies). REAL SPEEDUP needs the whole "
             f"interval at least {_min_effect(rows):.0%} faster; SLOWDOWN the whole interval that much slower. "
             "Predicted = dense MACs / variant MACs.", ""]
    if first["emulated"]:
        lines += ["**Emulated board: these timings come from qemu and say nothing about a real board.**", ""]
    lines += ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in _cells(row)) + " |" for row in rows]
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
        writer.writerow({**row, "flags": "; ".join(row["flags"])})
    write_atomic(out / "report.csv", lambda handle: handle.write(buffer.getvalue().encode()))
    images = figures(rows)
    pngs = [out / "plots" / f"{name}.png" for name in images]
    for path, png in zip(pngs, images.values(), strict=True):
        write_atomic(path, lambda handle, png=png: handle.write(png))
    text = (markdown(rows) + "\n## Plots\n\n" + "".join(f"![{TITLES[n]}](plots/{n}.png)\n\n" for n in images)
            + profile_markdown(rows))
    write_atomic(out / "report.md", lambda handle: handle.write(text.encode()))
    page = html_report(rows, images)
    write_atomic(out / "report.html", lambda handle: handle.write(page.encode()))
    return [out / "report.json", out / "report.csv", out / "report.md", out / "report.html", *pngs]

