"""The study's Markdown sets every verdict row's accuracy verdict (test-MSE change against dense, its interval and
label) beside its speed verdict, says where the accuracy comes from, and leaves accuracy out where it is no
result (the paper widths)."""

from __future__ import annotations

import importlib
import sys

from tests.paths import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
study = importlib.import_module("study")  # benchmarks/study.py

ORT = "onnxruntime 1.32.0"


def _row(variant: str, **fields) -> dict:
    return {"model": "transformer", "variant": variant, "format": "onnx", "runtime": ORT, "p50_ms": 1.0,
            "torch_mse": 0.3, **fields}


def _judged(variant: str, change: tuple[float, float, float] | None, label: str | None, **fields) -> dict:
    accuracy = ({"mse_change": change[0], "mse_change_low": change[1], "mse_change_high": change[2],
                 "accuracy_label": label, "accuracy_source": "torch", "max_mse_rise": 0.01} if change else
                dict.fromkeys(("mse_change", "mse_change_low", "mse_change_high", "accuracy_label",
                               "accuracy_source", "max_mse_rise")))
    return _row(variant, speedup=1.66, speedup_low=1.47, speedup_high=1.88, verdict="REAL SPEEDUP",
                predicted_speedup=1.95, efficiency=0.85, efficiency_low=0.75, efficiency_high=0.96, file_ratio=0.6,
                **accuracy, **fields)


def _study(rows: list[dict], paper: list[dict] | None = None) -> dict:
    return {"date": "2026-12-07", "machine": {"cpu": "AMD EPYC", "cores": 2, "python": "3.11.7", "torch": "2.13"},
            "commit": "abc1234", "settings": "ETTh1, " + study.accuracy_settings(rows), "cell_minutes": {},
            "rows": rows, "refused": {}, "matched": {}, "targets": [], "twins": {}, "paper_widths": paper or []}


def test_accuracy_cells_word_the_change_as_the_headline_does():
    assert study.accuracy_cells(_judged("s", (0.6, 0.55, 0.65), "ACCURACY LOST")) == ("+60% [+55%, +65%]",
                                                                                        "ACCURACY LOST")
    assert study.accuracy_cells(_judged("s", (0.004, -0.003, 0.009), "ACCURACY HELD")) == (
        "+0.40% [-0.30%, +0.90%]", "ACCURACY HELD")
    assert study.accuracy_cells(_judged("s", (0.052, -0.013, 0.117), "UNRESOLVED")) == ("+5% [-1%, +12%]",
                                                                                         "UNRESOLVED")
    assert study.accuracy_cells(_judged("s", None, None)) == ("-", "-")


def test_the_settings_say_where_accuracy_comes_from_and_its_tolerance():
    torch = _judged("s", (0.6, 0.55, 0.65), "ACCURACY LOST")
    assert study.accuracy_settings([torch]) == ("accuracy: test-MSE change against dense over the test windows, "
                                                "from torch at export, tolerance +1%")
    board = {**torch, "accuracy_source": "board", "max_mse_rise": 0.005}
    assert study.accuracy_settings([board, torch]) == (
        "accuracy: test-MSE change against dense over the test windows, from the board's own outputs (bench "
        "--accuracy) or torch at export, tolerance +0.5%")


def test_every_verdict_row_has_its_accuracy_beside_its_speed():
    rows = [_row("dense"), _judged("structured-0.5", (0.004, -0.003, 0.009), "ACCURACY HELD"),
            _judged("structured_width-0.5", (0.6, 0.55, 0.65), "ACCURACY LOST"),
            _judged("unstructured-0.5", None, None)]
    text = study.markdown(_study(rows))
    assert ("Settings: ETTh1, accuracy: test-MSE change against dense over the test windows, from torch at export, "
            "tolerance +1%.") in text
    assert "ACCURACY HELD when the whole interval is at or below +1% (`report --max-mse-rise`)" in text
    assert ("| model | variant | runtime | p50 ms | speedup [95% CI] | verdict | test MSE vs dense [95% CI] | "
            "accuracy | predicted |") in text
    assert ("| transformer | structured-0.5 | onnxruntime 1.32.0 | 1.000 | 1.66x [1.47, 1.88] | REAL SPEEDUP | "
            "+0.40% [-0.30%, +0.90%] | ACCURACY HELD | 1.95 | 0.85 [0.75, 0.96] | 0.60 | 0.3000 |") in text
    assert ("| transformer | structured_width-0.5 | onnxruntime 1.32.0 | 1.000 | 1.66x [1.47, 1.88] | REAL SPEEDUP | "
            "+60% [+55%, +65%] | ACCURACY LOST |") in text
    assert ("| transformer | unstructured-0.5 | onnxruntime 1.32.0 | 1.000 | 1.66x [1.47, 1.88] | REAL SPEEDUP | "
            "- | - |") in text
    # the width table compares heads+ffn with +width by their accuracy against dense, not by raw MSE
    width = next(line for line in text.splitlines() if line.startswith("| transformer | 0.5 |"))
    assert width.endswith("| +0.40% [-0.30%, +0.90%] ACCURACY HELD | +60% [+55%, +65%] ACCURACY LOST |")
    assert "caveat" not in text.lower()


def test_the_paper_widths_show_no_accuracy_and_say_it_is_no_result():
    paper = [_row("dense"), _judged("structured-0.5", (0.6, 0.55, 0.65), "ACCURACY LOST")]
    text = study.markdown(_study([_row("dense")], paper))
    section = text.split("## The Transformer at the paper's widths", 1)[1]
    assert "accuracy here is not a result" in section
    assert "ACCURACY" not in section and "+60%" not in section
    assert ("| structured-0.5 | onnxruntime 1.32.0 | 1.000 | 1.000 | 1.66x [1.47, 1.88] | REAL SPEEDUP | 1.95 |"
            in section)
