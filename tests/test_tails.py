"""Tail latency and the shape of the answer: p90 and p99 per variant with paired intervals (on a real bench run of
this machine), the default table in 100 columns with no cell cut, `report --tails` and `--wide`, and one latency
line per variant family in the plots."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
from rich.console import Console

from tsprune_edge.devices import runs
from tsprune_edge.report.cells import HEADERS
from tsprune_edge.report.plots import latency_figure, mse_figure
from tsprune_edge.report.render import verdict_table
from tsprune_edge.report.verdict import verdict_rows
from tsprune_edge.variants import PROBE_VARIANT as PROBE


def _round_values(run: Path, item_id: str, tail: str) -> dict[int, float]:
    """Each round's value of a percentile: the geometric mean of its two passes' (the agent's per-measurement
    percentile of its timed inferences)."""
    passes: dict[int, list[float]] = {}
    for (number, _), path in runs.round_paths(run, item_id):
        result = json.loads(path.read_text())
        passes.setdefault(number, []).append(result["latency"][tail])
    assert all(len(p) == 2 for p in passes.values())
    return {number: statistics.geometric_mean(p) for number, p in passes.items()}


def _interval(value: float, low: float, high: float) -> str:
    return f"{value:.2f}x [{low:.2f}, {high:.2f}]"


@pytest.mark.parametrize("tail", ["p90", "p99"])
def test_tails_are_paired_per_round_as_the_median(onnx_run, tail):
    rows = {r["variant"]: r for r in verdict_rows(onnx_run)}
    dense = _round_values(onnx_run, "dense__onnx__t1", tail)
    variant = _round_values(onnx_run, "unstructured-0.5__onnx__t1", tail)
    for name, values in (("dense", dense), ("unstructured-0.5", variant)):
        row = rows[name]
        assert row[f"{tail}_ms"] == pytest.approx(statistics.geometric_mean(values.values()) * 1e3)
        assert row[f"{tail}_low_ms"] < row[f"{tail}_ms"] < row[f"{tail}_high_ms"]
        assert row[f"{tail}_ms"] >= row["p50_ms"]
    row = rows["unstructured-0.5"]
    assert row[f"{tail}_speedup"] == pytest.approx(statistics.geometric_mean(dense[n] / variant[n] for n in dense))
    assert row[f"{tail}_speedup_low"] < row[f"{tail}_speedup"] < row[f"{tail}_speedup_high"]
    assert f"{tail}_speedup" not in rows["dense"]


def test_report_tails_and_wide_on_request(cli, tmp_path, onnx_run):
    result = cli("report", str(onnx_run), "--out", str(tmp_path / "plain"))
    assert result.code == 0, result.err
    assert "p90 speedup" not in result.out and "torch MSE" not in result.out
    row = next(r for r in json.loads((tmp_path / "plain" / "report.json").read_text())["rows"]
               if r["variant"] == "unstructured-0.5")
    tails = cli("report", str(onnx_run), "--out", str(tmp_path / "tails"), "--tails")
    assert tails.code == 0, tails.err
    line = next(line for line in tails.out.splitlines() if line.startswith("unstructured-0.5 "))
    assert re.split(r"\s{2,}", line.strip())[-2:] == [
        _interval(row["p90_speedup"], row["p90_speedup_low"], row["p90_speedup_high"]),
        _interval(row["p99_speedup"], row["p99_speedup_low"], row["p99_speedup_high"])]
    wide = cli("report", str(onnx_run), "--out", str(tmp_path / "wide"), "--wide")
    assert wide.code == 0, wide.err
    header = next(line for line in wide.out.splitlines() if line.startswith("variant "))
    assert re.split(r"\s{2,}", header.strip()) == list(HEADERS)
    assert "…" not in wide.out and f"{row['p99_ms']:.4f}" in wide.out


def _cells(text: str, variant: str) -> list[str]:
    """The cells of the line of `variant` (of its first, where tables follow one another)."""
    line = next(line for line in text.splitlines() if line.startswith(variant + " "))
    return re.split(r"\s{2,}", line.rstrip())


def test_the_real_runs_table_fits_100_columns_whole(onnx_run):
    rows = verdict_rows(onnx_run)
    console = Console(width=100, record=True)
    console.print(verdict_table(rows))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 100
    row = next(r for r in rows if r["variant"] == "unstructured-0.5")
    accuracy = row["headline"].split(" test MSE ", 1)[1]  # the headline's own accuracy phrase, its source aside
    assert _cells(text, "unstructured-0.5") == [
        "unstructured-0.5", "ORT t1", _interval(row["speedup"], row["speedup_low"], row["speedup_high"]),
        row["verdict"], accuracy]
    assert _cells(text, "dense") == ["dense", "ORT t1", "reference", "reference"]
    assert not any(line.startswith(PROBE) for line in text.splitlines())  # the probe's p50 is a note
    probe = next(r for r in rows if r["variant"] == PROBE)
    assert f"Per-call probe (ORT t1): p50 {probe['p50_ms']:.4f} [" in " ".join(text.split())
    assert f"Runtimes: ORT = {row['runtime']}." in " ".join(text.split())


def _row(variant: str, runtime: str = "ai_edge_litert 1.4.0", **fields) -> dict:
    row = {"run": "r1", "device": "desktop", "machine": "x86_64", "emulated": False, "model": "transformer",
           "variant": variant, "format": "tflite", "runtime": runtime, "threads": 1, "rounds": 5, "flags": [],
           "p50_ms": 1.2, "torch_mse": 0.3, "max_abs_error": 1e-6, "warnings": [], "board_since_boot": []}
    return {**row, **fields}


def _judged(variant: str, speedup: tuple[float, float, float], verdict: str, change: tuple[float, float, float],
            accuracy: str, **fields) -> dict:
    return _row(variant, speedup=speedup[0], speedup_low=speedup[1], speedup_high=speedup[2], verdict=verdict,
                min_effect=0.05, mse_change=change[0], mse_change_low=change[1], mse_change_high=change[2],
                accuracy_label=accuracy, accuracy_source="torch", **fields)


def test_the_widest_study_rows_fit_100_columns_whole():
    """The study's longest variant name, runtime and labels with a whole-percent accuracy phrase fill exactly 100
    columns; a TensorRT row and a change under 1% (two decimals) fit beside a shorter name (in a table of their
    own: rich sizes columns to a table's widest cells)."""
    rows = [_row("dense"),
            _judged("structured_width-0.5", (1.66, 1.47, 1.88), "SMALL SLOWDOWN", (0.6, 0.55, 0.65),
                    "ACCURACY LOST"),
            _judged("unstructured-0.9", (0.956, 0.949, 0.964), "SMALL SLOWDOWN", (0.052, -0.013, 0.117),
                    "UNRESOLVED", flags=["r2 clocks changed while measuring (CPU frequency 1000-1500 MHz)"]),
            _judged("structured-0.5", (1.07, 1.04, 1.10), "FASTER", (0.0012, -0.0003, 0.0031), "UNRESOLVED",
                    runtime="tensorrt 8.2.1 fp16", format="onnx")]
    console = Console(width=100, record=True)
    console.print(verdict_table(rows[:3]))
    console.print(verdict_table([rows[0], rows[3]]))
    text = console.export_text()
    assert "…" not in text and max(len(line.rstrip()) for line in text.splitlines()) == 100
    assert _cells(text, "variant") == ["variant", "runtime", "speedup [95% CI]", "verdict",
                                       "test MSE vs dense [95% CI]"]
    assert [re.split(r"\s{2,}", line.rstrip()) for line in text.splitlines() if line.startswith("dense ")] == [
        ["dense", "LiteRT t1", "reference", "reference"]] * 2
    assert _cells(text, "structured_width-0.5") == ["structured_width-0.5", "LiteRT t1", "1.66x [1.47, 1.88]",
                                                    "SMALL SLOWDOWN", "+60% [+55%, +65%] ACCURACY LOST"]
    assert _cells(text, "unstructured-0.9") == ["unstructured-0.9", "LiteRT t1", "0.96x [0.95, 0.96]",
                                                "SMALL SLOWDOWN", "+5% [-1%, +12%] UNRESOLVED"]
    assert _cells(text, "structured-0.5") == ["structured-0.5", "TRT fp16 t1", "1.07x [1.04, 1.10]", "FASTER",
                                              "+0.12% [-0.03%, +0.31%] UNRESOLVED"]
    notes = " ".join(text.split())
    assert ("Runtimes: LiteRT = ai_edge_litert 1.4.0. Test MSE from torch at export. Flagged unstructured-0.9 "
            "(LiteRT t1): r2 clocks changed while measuring (CPU frequency 1000-1500 MHz).") in notes
    assert "Runtimes: LiteRT = ai_edge_litert 1.4.0, TRT = tensorrt 8.2.1. Test MSE from torch at export." in notes


def test_a_cell_too_wide_for_100_columns_wraps_whole_words_and_is_never_cut():
    rows = [_judged("structured_width-0.5", (1.07, 1.04, 1.10), "SMALL SLOWDOWN", (0.0012, -0.0003, 0.0031),
                    "UNRESOLVED", runtime="tensorrt 8.2.1 fp16", format="onnx")]
    console = Console(width=100, record=True)
    console.print(verdict_table(rows))
    text = console.export_text()
    (index,) = [i for i, line in enumerate(text.splitlines()) if line.startswith("structured_width-0.5")]
    first, second = text.splitlines()[index:index + 2]
    assert "…" not in text and re.split(r"\s{2,}", first.rstrip()) == [
        "structured_width-0.5", "TRT fp16 t1", "1.07x [1.04, 1.10]", "SMALL SLOWDOWN", "+0.12% [-0.03%, +0.31%]"]
    assert second.strip() == "UNRESOLVED"


def _plot_rows() -> list[dict]:
    """structured and structured_width share the method `structured`; each is its own family."""
    rows = [_row("dense", p50_ms=2.0, torch_mse=0.30)]
    for name, method in (("structured", "structured"), ("structured_width", "structured"),
                         ("unstructured", "unstructured")):
        for sparsity, p50 in ((0.5, 1.5), (0.8, 1.0)):
            rows.append(_row(f"{name}-{sparsity:g}", method=method, sparsity=sparsity, p50_ms=p50 + len(name) / 100,
                             torch_mse=0.3 + sparsity / 10))
    return rows


def test_each_variant_family_is_its_own_line():
    (ax,) = latency_figure(_plot_rows()).axes
    lines = {container.get_label(): container.lines[0] for container in ax.containers}
    assert set(lines) == {"structured", "structured_width", "unstructured"}
    for name, line in lines.items():
        assert list(line.get_xdata()) == [0.0, 0.5, 0.8]
        assert list(line.get_ydata()) == pytest.approx([2.0, 1.5 + len(name) / 100, 1.0 + len(name) / 100])
    (ax,) = mse_figure(_plot_rows()).axes
    assert sorted(line.get_label() for line in ax.get_lines()) == [
        "torch structured", "torch structured_width", "torch unstructured"]
