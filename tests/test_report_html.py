"""The report's HTML page, plots and per-op profile diff: on a real `bench --profile` run of a transformer (dense and
structured-0.5) on this machine, and on hand-made rows for the arithmetic and the edge cases."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image

from tests.bench_args import FAST
from tsprune_edge.cli import main
from tsprune_edge.report.html import html_report
from tsprune_edge.report.plots import (
    LABEL_GAP_PX,
    TITLES,
    figures,
    latency_figure,
    mse_figure,
    pareto_figure,
    pareto_front,
)
from tsprune_edge.report.profile_diff import profile_diff, shows_diff
from tsprune_edge.report.remedies import LEVERS, closing_levers, kind_of
from tsprune_edge.report.stats import INCONCLUSIVE, REAL_SPEEDUP
from tsprune_edge.report.verdict import verdict_rows

IMAGE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def profiled_run(tmp_path_factory):
    """A transformer trained one epoch on the built-in data, pruned structured-0.5, measured with `bench --profile`."""
    from tsprune_edge.export.bundle import ExportRequest
    from tsprune_edge.export_job import ExportJob, run_export_job

    root = tmp_path_factory.mktemp("profiled")
    job = ExportJob(methods=("structured",), model="transformer", epochs=1, finetune_epochs=0)
    run_export_job(job, ExportRequest(), root / "export", root / "runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(root / "profiles"))
        try:
            main(["bench", "--device", "desktop", "--artifacts", str(root / "export"), "--results",
                  str(root / "results"), "--profile", *FAST])
        except SystemExit as exc:
            assert not exc.code, f"bench --profile failed with {exc.code}"
    (run,) = (root / "results").iterdir()
    return run


def _raw(run, item_id: str) -> dict:
    return json.loads((run / "raw" / f"{item_id}__r1.json").read_text())


def _png_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.verify()
    return image.size


def test_the_html_report_is_self_contained_with_four_plots(cli, tmp_path, profiled_run):
    out = tmp_path / "report"
    result = cli("report", str(profiled_run), "--out", str(out))
    assert result.code == 0, result.err
    page = (out / "report.html").read_text()
    images = IMAGE.findall(page)
    assert len(images) == 4 and page.count("<img") == 4
    for data in images:
        width, height = _png_size(base64.b64decode(data, validate=True))
        assert width > 300 and height > 200
    for external in ("http://", "https://", "<script src", "<link"):
        assert external not in page
    assert "<h1>Verdict: desktop (x86_64)</h1>" in page and "95% t interval" in page
    assert "Emulated board" not in page
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert page.count("<table>") == 1 + sum(shows_diff(r) for r in rows)
    for row in rows:
        assert f"<td>{row['variant']}</td>" in page
    markdown = (out / "report.md").read_text()
    for name in TITLES:
        png = out / "plots" / f"{name}.png"
        assert f"](plots/{name}.png)" in markdown and str(png) in result.out
        _png_size(png.read_bytes())
    (structured,) = [r for r in rows if r["variant"] == "structured-0.5" and r["format"] == "onnx"]
    shown = shows_diff(structured)  # timing decides; the hand-made rows below test both ways
    assert ("### structured-0.5 (transformer), onnx" in markdown) == shown
    assert ("<h3>structured-0.5 (transformer), onnx" in page) == shown
    assert "Where the time goes" in markdown and "Where the time goes" in page  # the diff, or that none falls short


def test_the_profile_diff_is_the_round_one_profiles(profiled_run):
    rows = verdict_rows(profiled_run)
    assert [r["variant"] for r in rows if "profile_diff" in r] == ["structured-0.5"]
    (row,) = [r for r in rows if "profile_diff" in r]
    assert row["format"] == "onnx"
    diff = row["profile_diff"]
    dense, variant = _raw(profiled_run, "dense__onnx__t1"), _raw(profiled_run, "structured-0.5__onnx__t1")
    dense_ops = {op["op_name"]: op["us_per_inference"] for op in dense["profile"]["ops"]}
    variant_ops = {op["op_name"]: op["us_per_inference"] for op in variant["profile"]["ops"]}
    assert {"MatMul", "Softmax"} <= set(dense_ops) and len(dense_ops) >= 5
    assert {op["op"] for op in diff["ops"]} == set(dense_ops) | set(variant_ops)
    assert [op["variant_us"] for op in diff["ops"]] == sorted(variant_ops.values(), reverse=True) + [0.0] * len(
        set(dense_ops) - set(variant_ops))  # where the variant's time goes first
    for op in diff["ops"]:
        assert op["dense_us"] == dense_ops.get(op["op"], 0.0) and op["variant_us"] == variant_ops.get(op["op"], 0.0)
    assert sum(op["share"] for op in diff["ops"]) == pytest.approx(1.0)
    for measured, side in ((dense, "dense"), (variant, "variant")):
        ops = dense_ops if side == "dense" else variant_ops
        run_us = measured["profile"]["model_run_us"]  # the profiled runs' median, the same runs as the kernels
        assert run_us > 0 and measured["profile"]["warmup_runs"] >= 5
        outside = run_us - sum(ops.values())
        assert diff[f"{side}_p50_us"] == pytest.approx(measured["latency"]["p50"] * 1e6)
        assert diff["outside"][f"{side}_us"] == pytest.approx(max(outside, 0.0))
    assert diff["outside"]["measurable"] == (not diff["flags"]) and diff["outside"]["base"] == "profiled run"
    assert diff["predicted_speedup"] == pytest.approx(row["predicted_speedup"]) and row["predicted_speedup"] > 1.5
    kept = next(line for line in diff["explanation"] if line.startswith("Kept pace"))
    behind = next((line for line in diff["explanation"] if "Fell behind" in line), "")
    cost = diff["profiler_cost"]  # what profiling added over the unprofiled p50, spread over the nodes run
    for side, measured in (("dense", dense), ("variant", variant)):
        nodes = sum(op["calls_per_inference"] for op in measured["profile"]["ops"])
        assert cost[side]["nodes"] == nodes >= len(measured["profile"]["ops"])
        assert cost[side]["added_us"] == pytest.approx(run_us_of(measured) - measured["latency"]["p50"] * 1e6)
    assert f"{cost['dense']['profiled_run_us']:.0f} µs" in diff["explanation"][1]
    named = re.findall(r"(\w+) (?:\d+\.\d+x|new)", kept + behind)
    assert named and set(named) <= set(dense_ops) | set(variant_ops)
    for op in diff["ops"]:  # each op in exactly one of the two lists (the first TOP_BEHIND of those behind)
        assert (f" {op['op']} " in kept) == op["kept_pace"]


def run_us_of(measured: dict) -> float:
    return measured["profile"]["model_run_us"]


def _profiled(p50_us: float, ops: dict[str, float]) -> dict:
    return {"latency": {"p50": p50_us * 1e-6}, "profile": {"available": True, "iterations": 20, "ops": [
        {"op_name": name, "total_us": us * 20, "calls": 20, "us_per_inference": us} for name, us in ops.items()]}}


def test_the_shortfall_is_split_between_ops_and_outside_kernels():
    dense = _profiled(1000, {"MatMul": 600, "Softmax": 100, "LayerNormalization": 100})
    variant = _profiled(650, {"MatMul": 300, "Softmax": 100, "LayerNormalization": 50})
    diff = profile_diff(dense, variant, 2.0)
    by_op = {op["op"]: op for op in diff["ops"]}
    assert [op["op"] for op in diff["ops"]] == ["MatMul", "Softmax", "LayerNormalization"]
    assert by_op["MatMul"]["ratio"] == 0.5 and by_op["MatMul"]["share"] == pytest.approx(300 / 450)
    assert by_op["MatMul"]["kept_pace"] and by_op["LayerNormalization"]["kept_pace"]
    assert not by_op["Softmax"]["kept_pace"] and by_op["Softmax"]["excess_us"] == pytest.approx(50)
    outside = diff["outside"]
    assert outside["measurable"] and outside["dense_us"] == pytest.approx(200)
    assert outside["variant_us"] == pytest.approx(200) and outside["excess_us"] == pytest.approx(100)
    assert diff["predicted_us"] == pytest.approx(500) and diff["shortfall_us"] == pytest.approx(150)
    assert sum(op["excess_us"] for op in diff["ops"]) + outside["excess_us"] == pytest.approx(diff["shortfall_us"])
    text = "\n".join(diff["explanation"])
    assert "150 µs short" in text and "Kept pace with the MACs: MatMul 0.50x, LayerNormalization 0.50x." in text
    assert "Softmax 1.00x (+50 µs, 33% of the time lost)" in text and "(+100 µs, 67% of the time lost)" in text
    assert diff["time_lost_us"] == pytest.approx(150) and diff["profiler_cost"] is None  # no profiled run time
    assert diff["flags"] == []
    assert diff["explanation"][-1] == f"What would close it: {LEVERS['outside']}; {LEVERS['softmax']}."  # by excess


def test_the_levers_follow_the_kinds_that_lost_time():
    dense = _profiled(1000, {"MatMul": 500, "SkipLayerNormalization": 200, "Reshape": 100, "Add": 100})
    variant = _profiled(700, {"MatMul": 250, "SkipLayerNormalization": 200, "Reshape": 95, "Add": 55})
    diff = profile_diff(dense, variant, 2.0)  # behind: norms +100, Reshape +45; outside +50
    assert closing_levers(diff) == [LEVERS["width"], LEVERS["outside"], LEVERS["shape"]]  # Add kept pace
    assert kind_of("Softmax") == "softmax" and kind_of("Gelu") == "elementwise" and kind_of("Gemm") == "matmul"
    met = profile_diff(dense, _profiled(450, {"MatMul": 250, "SkipLayerNormalization": 100, "Reshape": 50}), 2.0)
    assert met["shortfall_us"] < 0 and not any(line.startswith("What would") for line in met["explanation"])


def test_kernels_beyond_the_p50_clamp_outside_time_and_say_so():
    diff = profile_diff(_profiled(500, {"Gemm": 400, "Reshape": 300}), _profiled(400, {"Gemm": 200, "Add": 50}),
                        None)
    assert diff["outside"] == {"dense_us": 0.0, "variant_us": pytest.approx(150), "measurable": False,
                               "share_of_p50": pytest.approx(150 / 400), "ratio": None, "excess_us": None,
                               "base": "p50"}  # a profile without the run's time (an older agent): the p50
    assert len(diff["flags"]) == 1 and "exceeds the p50 (dense 500 µs, variant 400 µs)" in diff["flags"][0]
    by_op = {op["op"]: op for op in diff["ops"]}
    assert by_op["Add"]["ratio"] is None and by_op["Reshape"]["variant_us"] == 0.0
    assert "against no change, 1.00x" in diff["explanation"][0]
    assert "Add new (+50 µs, 100% of the time lost)" in diff["explanation"][2]
    assert not diff["explanation"][-1].startswith("What would")  # faster than no change: nothing to close


def _row(**fields) -> dict:
    row = {"run": "desktop-1", "device": "desktop", "machine": "x86_64", "emulated": False, "variant": "dense",
           "model": "transformer", "method": "dense", "sparsity": 0.0, "format": "onnx", "runtime": "onnxruntime 1",
           "threads": 1, "rounds": 2, "flags": [], "p50_ms": 2.0, "macs": 100, "max_abs_error": 1e-6,
           "torch_mse": 0.5}
    return {**row, **fields}


def _variant(name: str, sparsity: float, p50: float, **fields) -> dict:
    """A pruned row against a dense p50 of 2 ms: ratio interval [0.9, 1.2] x the ratio, MACs predict 2x."""
    ratio = p50 / 2.0
    judged = {"ratio": ratio, "ratio_low": ratio * 0.9, "ratio_high": ratio * 1.2, "speedup": 1 / ratio,
              "speedup_low": 1 / ratio / 1.2, "speedup_high": 1 / ratio / 0.9, "verdict": REAL_SPEEDUP,
              "min_effect": 0.05, "predicted_speedup": 2.0, "efficiency": 1 / ratio / 2.0}
    return _row(variant=name, method=name.split("-")[0], sparsity=sparsity, p50_ms=p50, **{**judged, **fields})


def test_the_pareto_front_keeps_only_undominated_points():
    points = [(1.0, 5.0), (2.0, 3.0), (3.0, 4.0), (4.0, 1.0), (2.0, 3.0), (5.0, 5.0), (4.0, 2.0)]
    assert pareto_front(points) == [0, 1, 3, 4]  # (3, 4), (5, 5), (4, 2) each have a point below-left
    assert pareto_front([(1.0, 1.0)]) == [0] and pareto_front([]) == []


def test_latency_error_bars_are_the_ratio_interval_on_the_variant():
    figure = latency_figure([_row(), _variant("structured-0.5", 0.5, 1.0)])
    (ax,) = figure.axes
    (container,) = ax.containers
    assert list(container.lines[0].get_xdata()) == [0.0, 0.5] and list(container.lines[0].get_ydata()) == [2.0, 1.0]
    segment = container.lines[2][0].get_segments()[1]
    assert segment[0][1] == pytest.approx(0.9) and segment[1][1] == pytest.approx(1.2)
    assert ax.get_yscale() == "log"  # latencies span 12 µs to milliseconds


def test_the_pareto_plot_labels_the_front_first_where_labels_do_not_collide():
    """Log latency axis; the front is labelled first, and of two points closer than a label's size only the first
    gets one."""
    rows = [_row(p50_ms=2.0, torch_mse=0.50), _variant("structured-0.5", 0.5, 1.0, torch_mse=0.60),
            _variant("structured-0.51", 0.51, 1.001, torch_mse=0.5999),  # on the front, on top of the one above
            _variant("unstructured-0.5", 0.5, 2.1, torch_mse=0.55),  # dominated by dense
            _variant("structured-0.8", 0.8, 0.1, torch_mse=0.9)]
    (ax,) = pareto_figure(rows).axes
    assert ax.get_xscale() == "log"
    labels = {t.get_text(): t for t in ax.texts}
    assert {"dense", "structured-0.5", "structured-0.8"} <= set(labels) and "structured-0.51" not in labels
    positions = [ax.transData.transform(t.xy) for t in labels.values()]
    for i, (x, y) in enumerate(positions):
        assert all(abs(x - a) >= LABEL_GAP_PX[0] or abs(y - b) >= LABEL_GAP_PX[1] for a, b in positions[i + 1:])
    _png_size(figures(rows)["pareto"])


def test_plots_take_few_rows_and_missing_values():
    rows = [_row(torch_mse=None), _variant("structured-0.5", 0.5, 1.0, torch_mse=None),
            _variant("unstructured-0.5", 0.5, float("nan"), torch_mse=None, predicted_speedup=None)]
    images = figures(rows)
    assert list(images) == list(TITLES)
    for png in images.values():
        _png_size(png)
    (ax,) = mse_figure(rows).axes
    assert [t.get_text() for t in ax.texts] == ["no test MSE recorded"]
    for png in figures([]).values():
        _png_size(png)


def test_board_mse_gets_its_own_dashed_lines_when_present():
    rows = [_row(board_mse=0.6), _variant("structured-0.5", 0.5, 1.0, torch_mse=0.7, board_mse=0.8),
            _row(format="tflite"), _variant("structured-0.5", 0.5, 1.0, torch_mse=0.7, format="tflite")]
    (ax,) = mse_figure(rows).axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"torch structured", "board structured onnx"}
    assert list(lines["board structured onnx"].get_ydata()) == [0.6, 0.8]
    assert lines["board structured onnx"].get_linestyle() == "--"


def test_the_page_escapes_strings_and_shows_diffs_of_rows_that_fall_short():
    dense = _profiled(1000, {"MatMul": 600, "Softmax": 100})
    variant = _profiled(650, {"MatMul": 300, "Softmax": 100})
    short = _variant("structured-0.5", 0.5, 1.3, profile_diff=profile_diff(dense, variant, 2.0))
    fine = _variant("structured-0.7", 0.7, 0.7, profile_diff=profile_diff(dense, variant, 2.0), efficiency=0.95)
    unclear = _variant("structured-0.3", 0.3, 1.9, profile_diff=profile_diff(dense, variant, 2.0), efficiency=None,
                       verdict=INCONCLUSIVE)
    rows = [_row(device="<b>board</b>", emulated=True), short, fine, unclear]
    assert [shows_diff(r) for r in rows] == [False, True, False, True]
    page = html_report(rows, figures(rows))
    assert "&lt;b&gt;board&lt;/b&gt;" in page and "<b>board</b>" not in page
    assert "Emulated board &lt;b&gt;board&lt;/b&gt;" in page
    assert "<h3>structured-0.5 (transformer)" in page and "<h3>structured-0.3 (transformer)" in page
    assert "<h3>structured-0.7" not in page and "achieved / predicted 0.77 reaches below 0.85" in page
    assert page.count("<td>Softmax</td>") == 2
    quiet = html_report([rows[0], fine], {})
    assert "Every profiled variant reached 85%" in quiet and "<h3>" not in quiet
