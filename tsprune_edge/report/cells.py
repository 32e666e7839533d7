"""The verdict rows as cells and notes: what the terminal table, the Markdown and the HTML page each show, in one
place so that every rendering says the same."""

from __future__ import annotations

from collections.abc import Callable

from tsprune_edge.report.accuracy import accuracy_phrase
from tsprune_edge.report.control import control_warnings, setting
from tsprune_edge.report.pareto import fit_notes, pareto_notes
from tsprune_edge.report.stats import legend
from tsprune_edge.report.verdict import DEFAULT_MIN_EFFECT
from tsprune_edge.variants import CONTROL, DENSE, PROBE_VARIANT, is_baseline

SHORT_RUNTIMES = {"onnxruntime": "ORT", "ai_edge_litert": "LiteRT", "tflite_runtime": "TFLite",
                  "tensorrt": "TRT"}
PRECISIONS = ("fp32", "fp16")  # TensorRT's engine precisions, last in a row's runtime
SOURCE_WORDS = {"board": "the board's own outputs (bench --accuracy)", "torch": "torch at export"}

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
        return "reference" if row["variant"] == DENSE else "-"
    return interval_text(row["speedup"], row["speedup_low"], row["speedup_high"], ".2f", "x")


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _p50(row: dict) -> str:
    if row["variant"] == PROBE_VARIANT:  # the per-call cost: its interval is the figure
        return interval_text(row["p50_ms"], row.get("p50_low_ms"), row.get("p50_high_ms"), ".4f")
    return _num(row["p50_ms"], ".4f")


def _verdict(row: dict) -> str:
    return row.get("verdict", "-" if row["variant"] != DENSE else "")


def _flags(row: dict) -> list[str]:
    flags = row["flags"] + [f"dense {f}" for f in row.get("dense_flags", [])]
    return flags + ["emulated timings"] * bool(row["emulated"])


def _tail_speedup(tail: str) -> Callable[[dict], str]:
    def cell(row: dict) -> str:
        if row["variant"] == DENSE:
            return "reference"
        return interval_text(row.get(f"{tail}_speedup"), row.get(f"{tail}_speedup_low"),
                             row.get(f"{tail}_speedup_high"), ".2f", "x")
    return cell


def _tail_ms(tail: str) -> Callable[[dict], str]:
    return lambda row: _num(row.get(f"{tail}_ms"), ".4f")


def _accuracy(row: dict) -> str:
    """'+60% [+55%, +65%] ACCURACY LOST': the headline's accuracy phrase without its source (the caption says it)."""
    if row["variant"] == DENSE:
        return "reference"
    if row.get("mse_change") is None:
        return "-"
    return accuracy_phrase(row).split(" test MSE ", 1)[1]


def _runtime(row: dict) -> str:
    """'ORT t1', 'TRT fp16 t1': the runtime's short name (its version is in the caption), its precision
    where it has one, and the threads; the format follows from the runtime."""
    name, *rest = row["runtime"].split()
    precision = [rest[-1]] if rest and rest[-1] in PRECISIONS else []
    return " ".join([SHORT_RUNTIMES.get(name, name), *precision, f"t{row['threads']}"])


Column = tuple[str, Callable[[dict], str]]
# Every column, in the order `report --wide`, the Markdown and the HTML page show them.
WIDE: tuple[Column, ...] = (
    ("variant", lambda r: r["variant"]), ("format (runtime)", lambda r: f"{r['format']} ({r['runtime']})"),
    ("threads", lambda r: str(r["threads"])), ("p50 ms", _p50), ("speedup [95% CI]", _speedup),
    ("verdict", _verdict), ("test MSE vs dense [95% CI]", _accuracy),
    ("p90 ms", _tail_ms("p90")), ("p90 speedup [95% CI]", _tail_speedup("p90")),
    ("p99 ms", _tail_ms("p99")), ("p99 speedup [95% CI]", _tail_speedup("p99")),
    ("predicted (MACs)", lambda r: _num(r.get("predicted_speedup"), ".2f")),
    ("achieved / predicted", lambda r: interval_text(r.get("efficiency"), r.get("efficiency_low"),
                                                     r.get("efficiency_high"), ".2f")),
    ("beyond per-call / predicted", lambda r: interval_text(r.get("beyond_call_efficiency"),
                                                            r.get("beyond_call_efficiency_low"),
                                                            r.get("beyond_call_efficiency_high"), ".2f")),
    ("memory ratio", lambda r: _num(r.get("memory_ratio"), ".2f")),
    ("file ratio", lambda r: _num(r.get("file_ratio"), ".2f")),
    ("torch MSE", lambda r: _num(r["torch_mse"], ".4f")), ("board MSE", lambda r: _num(r.get("board_mse"), ".4f")),
    ("max error", lambda r: _num(r["max_abs_error"], ".1e")), ("flags", lambda r: "; ".join(_flags(r))))
# The default table, the answer in 100 columns: variant, runtime, speed and accuracy against dense.
NARROW: tuple[Column, ...] = (
    ("variant", lambda r: r["variant"]), ("runtime", _runtime), ("speedup [95% CI]", _speedup),
    ("verdict", _verdict), ("test MSE vs dense [95% CI]", _accuracy))
TAIL_COLUMNS: tuple[Column, ...] = (("p90 speedup [95% CI]", _tail_speedup("p90")),
                                    ("p99 speedup [95% CI]", _tail_speedup("p99")))
HEADERS = tuple(header for header, _ in WIDE)


def row_cells(row: dict) -> list[str]:
    """The row under HEADERS (every column)."""
    return [cell(row) for _, cell in WIDE]


def table_columns(wide: bool = False, tails: bool = False) -> tuple[Column, ...]:
    """The terminal table's columns: every one with `wide`, else the answer (NARROW), with the tails on request."""
    return WIDE if wide else NARROW + TAIL_COLUMNS * tails


def narrow_notes(rows: list[dict]) -> list[str]:
    """What the narrow table leaves out and a reader must still see: the runtimes' versions, where the test MSE
    comes from, each flagged row's flags and the per-call probe."""
    versions = dict.fromkeys(tuple(r["runtime"].split()[:2]) for r in rows)
    notes = ["Runtimes: " + ", ".join(f"{SHORT_RUNTIMES.get(name, name)} = {' '.join([name, *version])}"
                                      for name, *version in versions) + "."] if versions else []
    sources = sorted({r["accuracy_source"] for r in rows if r.get("accuracy_source")})
    if sources:
        notes.append("Test MSE from " + " or ".join(SOURCE_WORDS[s] for s in sources) + ".")
    for row in rows:
        if row["variant"] == PROBE_VARIANT:
            notes.append(f"Per-call probe ({_runtime(row)}): p50 {_p50(row)} ms.")
        elif row["flags"]:  # dense's own row says its flags; the title says the board is emulated
            notes.append(f"Flagged {row['variant']} ({_runtime(row)}): {'; '.join(row['flags'])}.")
    return notes


def run_notes(rows: list[dict]) -> list[str]:
    """What a reader must know before the table: nothing judged because every round was left out; the board's
    since-boot throttling history, once; a fit's models against its budget and on the (latency, MSE) plane; with
    baselines, the Pareto front per setting and what each pruned variant could have been instead."""
    notes = []
    if rows and all(r["rounds"] == 0 for r in rows):
        notes.append("Every round of this run was left out (failed, incorrect, throttled or clocks changed; see "
                     "flags): nothing is judged.")
    history = rows[0].get("board_since_boot") if rows else None
    if history:
        notes.append(f"The board reports since boot: {', '.join(history)}. Context only: a round is left out when "
                     "throttling or under-voltage holds while it runs, or begins during it.")
    return notes + fit_notes(rows) + pareto_notes(rows)


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
                                     if r.get("headline") and r["variant"] != CONTROL  # the control: not deployable
                                     and not is_baseline(r["variant"])]  # the pruning answer: the table has them
