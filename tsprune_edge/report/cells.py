"""The verdict rows as cells and notes: what the terminal table, the Markdown and the HTML page each show, in one
place so that every rendering says the same."""

from __future__ import annotations

from tsprune_edge.report.control import control_warnings, setting
from tsprune_edge.report.pareto import fit_notes
from tsprune_edge.report.stats import legend
from tsprune_edge.report.verdict import DEFAULT_MIN_EFFECT
from tsprune_edge.variants import CONTROL, PROBE_VARIANT

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


def row_cells(row: dict) -> list[str]:
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


def min_effect(rows: list[dict]) -> float:
    return next((r["min_effect"] for r in rows if "min_effect" in r), DEFAULT_MIN_EFFECT)


def method_note(rows: list[dict]) -> str:
    return METHOD.format(labels=legend(min_effect(rows)))


def answer_lines(rows: list[dict]) -> list[str]:
    """The answer first: per pruned variant and setting, one line joining the speed verdict and the accuracy
    verdict against dense (report.accuracy.headline), e.g. "structured-0.5, onnx (onnxruntime 1.32.0), 1 thread:
    1.39x faster [1.37, 1.41] REAL SPEEDUP, torch test MSE +60% [+55%, +65%] ACCURACY LOST"."""
    return control_warnings(rows) + [f"{r['variant']}, {setting(r)}: {r['headline']}" for r in rows
                                     if r.get("headline") and r["variant"] != CONTROL]  # the control: not deployable
