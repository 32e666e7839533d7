"""report.html: the verdict, the plots and the profile diffs in one self-contained page (inline CSS, images as
data URIs, no scripts, no external address), so it can be mailed or archived as one file. Every string from the
rows is escaped."""

from __future__ import annotations

import base64
from html import escape

from tsprune_edge.report.cells import HEADERS, answer_lines, measurement_notes, method_note, row_cells, run_notes
from tsprune_edge.report.plots import TITLES
from tsprune_edge.report.profile_diff import HEADERS as DIFF_HEADERS
from tsprune_edge.report.profile_diff import SECTION, diff_cells, diff_title, no_diff_note, shows_diff
from tsprune_edge.report.stats import (
    EQUIVALENT,
    FASTER,
    INCONCLUSIVE,
    REAL_SPEEDUP,
    SLOWDOWN,
    SLOWER,
    SMALL_SLOWDOWN,
    SMALL_SPEEDUP,
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }
th { background: #f0f0f0; }
tr.real td { background: #e6f4e6; } tr.same td { background: #f7f7f7; } tr.slow td { background: #fbe5e5; }
tr.unclear td { background: #fff8e1; }
.warning { background: #fff3cd; border: 1px solid #e0c060; padding: 0.6em; font-weight: bold; }
figure { margin: 1.5em 0; } img { max-width: 100%; }
"""
ROW_CLASS = {REAL_SPEEDUP: "real", SMALL_SPEEDUP: "same", EQUIVALENT: "same", SMALL_SLOWDOWN: "same",
             SLOWDOWN: "slow", INCONCLUSIVE: "unclear", FASTER: "unclear", SLOWER: "unclear"}


def html_report(rows: list[dict], images: dict[str, bytes]) -> str:
    """The page: title, method note, one verdict table per run, the plots, the diffs of rows that fall short."""
    devices = dict.fromkeys(f"{r['device']} ({r['machine']})" for r in rows)
    title = "Verdict: " + ", ".join(devices)
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{escape(title)}</h1>"]
    for device in dict.fromkeys(r["device"] for r in rows if r["emulated"]):
        parts.append(f"<p class=\"warning\">Emulated board {escape(device)}: these timings come from qemu and say "
                     "nothing about a real board.</p>")
    answers = answer_lines(rows)
    if answers:  # the answer first, then the method, tables and plots
        parts.append("<h2>The answer</h2><ul class=\"answer\">" + "".join(f"<li>{escape(line)}</li>"
                                                                           for line in answers) + "</ul>")
    parts.append(f"<p>Each variant against the dense model of the same format, runtime and threads, measured in "
                 f"the same interleaved run. {escape(method_note(rows))}</p>")
    if not rows:
        parts.append("<p>No measured items in these runs.</p>")
    for run in dict.fromkeys(r["run"] for r in rows):
        members = [r for r in rows if r["run"] == run]
        models = ", ".join(dict.fromkeys(str(r["model"]) for r in members))
        parts.append(f"<h2>{escape(models)}: run {escape(run)} on {escape(members[0]['device'])} "
                     f"({escape(members[0]['machine'])})</h2>")
        parts += [f"<p class=\"warning\">{escape(note)}</p>" for note in run_notes(members)]
        parts.append(_table(HEADERS, [row_cells(r) for r in members], [ROW_CLASS.get(r.get("verdict"), "")
                                                                     for r in members]))
        notes = measurement_notes(members)
        if notes:
            parts.append("<p>What the agent reported:</p><ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes)
                         + "</ul>")
    parts.append("<h2>Plots</h2>")
    for name, png in images.items():
        caption = escape(TITLES.get(name, name))
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{caption}\">"
                     f"<figcaption>{caption}</figcaption></figure>")
    parts.append(_diffs(rows))
    parts.append("</body></html>\n")
    return "\n".join(part for part in parts if part)


def _table(headers: tuple[str, ...], body: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    lines = []
    for cells, css in zip(body, classes or [""] * len(body), strict=True):
        attribute = f" class=\"{css}\"" if css else ""
        lines.append(f"<tr{attribute}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>" + "".join(lines) + "</tbody></table>"


def _diffs(rows: list[dict]) -> str:
    shown = [row for row in rows if shows_diff(row)]
    note = no_diff_note(rows)
    if not shown and not note:
        return ""
    parts = [f"<h2>{escape(SECTION)}</h2>"]
    if not shown:
        return "\n".join(parts + [f"<p>{escape(note)}</p>"])
    for row in shown:
        diff = row["profile_diff"]
        items = "".join(f"<li>{escape(line)}</li>" for line in diff["explanation"] + diff["flags"])
        parts += [f"<h3>{escape(diff_title(row))}</h3>", f"<ul>{items}</ul>", _table(DIFF_HEADERS, diff_cells(diff))]
    return "\n".join(parts)
