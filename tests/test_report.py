"""The verdict on real bench runs of this machine: the agent measures a DLinear dense and unstructured-0.5 bundle
and a per-call probe; the report's figures follow the raw results, throttling bits edited into them flag exactly
the rounds they should, and `bench` adds rounds while a verdict is open."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from tests.refusals import assert_one_line_error
from tsprune_edge.devices import runs
from tsprune_edge.report.stats import label
from tsprune_edge.report.verdict import PROBE_VERDICT, TOO_FEW, undecided, verdict_rows
from tsprune_edge.variants import PROBE_VARIANT as PROBE

ONNX_ITEMS = ["dense__onnx__t1", "percall__onnx__t1", "unstructured-0.5__onnx__t1"]


def _items(run: Path) -> list[str]:
    return [item["id"] for item in json.loads((run / "plan.json").read_text())["items"]]


def _probe_formats(run: Path) -> list[str]:
    """The export's own probe (issue 17) may carry a TFLite artifact too; the one made here is ONNX only."""
    return [i.split("__")[1] for i in _items(run) if i.startswith(f"{PROBE}__")]


def _probe_model(artifact: dict) -> bytes:
    """An ONNX model with the artifact's inputs and output shape and next to no compute: the mean of the history
    broadcast over a zero forecast."""
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(i["name"], TensorProto.FLOAT, i["shape"]) for i in artifact["inputs"]]
    out = artifact["outputs"][0]
    zeros = helper.make_tensor("zeros", TensorProto.FLOAT, out["shape"], np.zeros(out["shape"], np.float32).ravel())
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", [artifact["inputs"][0]["name"]], ["mean"], keepdims=1),
         helper.make_node("Add", ["zeros", "mean"], [out["name"]])],
        "percall", inputs, [helper.make_tensor_value_info(out["name"], TensorProto.FLOAT, out["shape"])],
        initializer=[zeros])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10).SerializeToString()


def add_probe(export: Path) -> None:
    """A `percall` bundle beside the others, unless the export made one: the dense bundle's manifest and samples
    with the probe as its only (ONNX) artifact and the probe's own outputs as the expected forecasts."""
    import onnxruntime as ort
    import zstandard

    if (export / PROBE).is_dir():
        return
    probe = export / PROBE
    probe.mkdir()
    manifest = json.loads((export / "dense" / "manifest.json").read_text())
    artifact = manifest["artifacts"]["onnx"]
    model = _probe_model(artifact)
    (probe / "model.onnx").write_bytes(model)
    session = ort.InferenceSession(model)
    with np.load(export / "dense" / "samples.npz") as samples:
        arrays = dict(samples)
    names = [i["name"] for i in artifact["inputs"]]
    arrays["expected"] = np.concatenate([session.run(None, {names[0]: arrays["history"][i:i + 1],
                                                           names[1]: arrays["calendar"][i:i + 1]})[0]
                                         for i in range(len(arrays["history"]))])
    np.savez(probe / "samples.npz", **arrays)
    shutil.copy(export / "dense" / "test.npz", probe / "test.npz")
    shutil.copy(export / "dense" / "torch_test_errors.npy", probe / "torch_test_errors.npy")
    samples = (probe / "samples.npz").read_bytes()
    manifest["variant"] = PROBE
    manifest["artifacts"] = {"onnx": {**artifact, "sha256": hashlib.sha256(model).hexdigest(), "bytes": len(model),
                                      "zstd_bytes": len(zstandard.compress(model))}}
    manifest["samples"].update(sha256=hashlib.sha256(samples).hexdigest(), bytes=len(samples))
    (probe / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def probed(tmp_path_factory, bundles):
    export = tmp_path_factory.mktemp("probed") / "export"
    shutil.copytree(bundles, export)
    add_probe(export)
    return export


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, probed):
    from tsprune_edge.devices.bench import BenchRequest, bench

    results = tmp_path_factory.mktemp("results")
    summary = bench(BenchRequest(device="desktop", artifacts=probed, results=results, rounds=3, min_time=0.1,
                                 min_iters=20))
    return results / summary["run_id"]


def _raw(run: Path, item_id: str) -> dict[tuple[int, int], dict]:
    """An item's measurements by (round, pass): each round runs a forward pass and a mirrored one."""
    return {key: json.loads(p.read_text()) for key, p in runs.round_paths(run, item_id)}


def _round_p50(run: Path, item_id: str) -> dict[int, float]:
    """Each round's value: the geometric mean of its two passes' medians."""
    passes: dict[int, list[float]] = {}
    for (number, _), result in _raw(run, item_id).items():
        passes.setdefault(number, []).append(result["latency"]["p50"])
    assert all(len(p) == 2 for p in passes.values())
    return {number: statistics.geometric_mean(p) for number, p in passes.items()}


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    return copy


def _edit(run: Path, item_id: str, rounds, change) -> None:
    """Change both passes of the listed rounds."""
    for (number, _), path in runs.round_paths(run, item_id):
        if number in rounds:
            result = json.loads(path.read_text())
            change(result)
            path.write_text(json.dumps(result))


def _throttle(before: str, after: str):
    def change(result: dict) -> None:
        result["environment_before"]["throttled"], result["environment_after"]["throttled"] = before, after
    return change


def _row(rows: list[dict], variant: str, fmt: str = "onnx") -> dict:
    (row,) = [r for r in rows if r["variant"] == variant and r["format"] == fmt]
    return row


def test_report_on_a_real_run(cli, tmp_path, bench_run):
    out = tmp_path / "report"
    result = cli("report", str(bench_run), "--out", str(out))
    assert result.code == 0, result.err
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert [(r["variant"], r["format"]) for r in rows] == [
        ("dense", "onnx"), (PROBE, "onnx"), ("unstructured-0.5", "onnx"), ("dense", "tflite"),
        *[(PROBE, "tflite")] * ("tflite" in _probe_formats(bench_run)), ("unstructured-0.5", "tflite")]
    for row in rows:
        assert row["rounds"] == 3 and row["flags"] == [] and row["board_since_boot"] == []
        raw = _round_p50(bench_run, f"{row['variant']}__{row['format']}__t1")
        # p50 is the geometric mean of the round values, the estimator the speedup uses
        assert row["p50_ms"] == pytest.approx(statistics.geometric_mean(raw.values()) * 1e3)
        assert row["p50_low_ms"] < row["p50_ms"] < row["p50_high_ms"]
        assert row["warmup"].startswith(("stable in", "not stable within"))
        assert row["providers"] == ("CPUExecutionProvider" if row["format"] == "onnx" else None)
        assert sum(w.startswith("median under 1 ms") for w in row["warnings"]) == 1  # one line per kind
        if row["variant"] in ("dense", PROBE):
            assert "speedup" not in row and row.get("verdict", "") in ("", PROBE_VERDICT)
            continue
        dense = _round_p50(bench_run, f"dense__{row['format']}__t1")
        ratios = [dense[n] / raw[n] for n in raw]
        assert row["speedup"] == pytest.approx(statistics.geometric_mean(ratios))
        assert row["speedup_low"] < row["speedup"] < row["speedup_high"] and row["paired_rounds"] == 3
        assert row["judged_at_round"] == 3  # fixed rounds: one look, at the last round
        assert row["ratio"] == pytest.approx(1 / row["speedup"])
        # the label its interval gets (any label can come of a real run: the interval decides which)
        assert row["verdict"] == label(row["speedup_low"], row["speedup_high"], row["min_effect"])
        assert row["verdict"] in result.out
        assert row["predicted_speedup"] == pytest.approx(1.0)  # unstructured zeros do not cut dense MACs
        assert row.get("efficiency") is None and 0 < row["file_ratio"] < 1 and row["memory_ratio"] > 0
    assert _row(rows, PROBE)["verdict"] == PROBE_VERDICT
    with open(out / "report.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(rows) and table[2]["verdict"] == rows[2]["verdict"]
    assert table[0]["providers"] == "CPUExecutionProvider" and "median under 1 ms" in table[0]["warnings"]
    markdown = (out / "report.md").read_text()
    assert "| unstructured-0.5 |" in markdown and "warm-up stable in" in markdown
    assert f"| {PROBE} | onnx" in markdown and "What the agent reported" in markdown


def test_efficiency_beyond_the_per_call_cost_on_real_results(tmp_path, bench_run):
    """With the variant's MACs halved in the bundle facts, achieved / predicted and the efficiency beyond the
    probe's per-call cost follow the raw medians round by round."""
    run = _copy(bench_run, tmp_path)
    summary = json.loads((run / "bench.json").read_text())
    summary["bundles"]["unstructured-0.5"]["macs"] = summary["bundles"]["dense"]["macs"] / 2
    (run / "bench.json").write_text(json.dumps(summary))
    row = _row(verdict_rows(run), "unstructured-0.5")
    assert row["efficiency"] == pytest.approx(row["speedup"] / 2)
    assert row["efficiency_low"] == pytest.approx(row["speedup_low"] / 2)
    dense, variant, call = (_round_p50(run, f"{name}__onnx__t1") for name in ("dense", "unstructured-0.5", PROBE))
    beyond = [(dense[n] - call[n]) / (variant[n] - call[n]) for n in (1, 2, 3)]
    assert row["beyond_call_efficiency"] == pytest.approx(statistics.geometric_mean(beyond) / 2)
    assert row["beyond_call_efficiency_low"] < row["beyond_call_efficiency"] < row["beyond_call_efficiency_high"]
    tflite = _row(verdict_rows(run), "unstructured-0.5", "tflite")  # without a TFLite probe no beyond-call figure
    assert tflite["efficiency"] is not None
    assert ("beyond_call_efficiency" in tflite) == ("tflite" in _probe_formats(run))


def test_since_boot_throttling_is_context_and_current_throttling_flags_the_round(cli, tmp_path, bench_run):
    original = {(r["variant"], r["format"]): r for r in verdict_rows(bench_run)}
    run = _copy(bench_run, tmp_path)
    for item in _items(run):
        _edit(run, item, (1, 2, 3), _throttle("throttled=0x50000", "throttled=0x50000"))
    rows = verdict_rows(run)
    for row in rows:  # under-voltage and throttling in the past only: every round counts, every verdict stands
        assert row["flags"] == [] and row["board_since_boot"] == ["under-voltage", "throttled"]
        assert row.get("verdict") == original[row["variant"], row["format"]].get("verdict")
    out = tmp_path / "since-boot"
    assert cli("report", str(run), "--out", str(out)).code == 0
    assert (out / "report.md").read_text().count("The board reports since boot: under-voltage, throttled.") == 1

    _edit(run, "dense__onnx__t1", (2,), _throttle("throttled=0x50000", "throttled=0x50005"))
    rows = verdict_rows(run)
    dense, variant = _row(rows, "dense"), _row(rows, "unstructured-0.5")
    assert dense["flags"] == ["r2 throttled (under-voltage, throttled while measuring)",
                              "r2b throttled (under-voltage, throttled while measuring)"] and dense["rounds"] == 2
    assert variant["paired_rounds"] == 2 and variant["dense_flags"] == dense["flags"]
    assert variant["verdict"] == label(variant["speedup_low"], variant["speedup_high"], variant["min_effect"])
    assert _row(rows, "dense", "tflite")["flags"] == []


def test_a_run_whose_every_round_is_throttled_says_so(cli, tmp_path, bench_run):
    run = _copy(bench_run, tmp_path)
    for item in _items(run):
        _edit(run, item, (1, 2, 3), _throttle("throttled=0x0", "throttled=0x50005"))
    out = tmp_path / "report"
    result = cli("report", str(run), "--out", str(out))
    assert result.code == 0, result.err
    assert "Traceback" not in result.err and "Every round of this run was left out" in result.out
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert all(r["rounds"] == 0 and r["p50_ms"] is None and len(r["flags"]) == 6 for r in rows)  # 3 rounds x 2 passes
    assert {r["verdict"] for r in rows if r["variant"] not in ("dense", PROBE)} == {TOO_FEW}
    assert "Every round of this run was left out" in (out / "report.md").read_text()
    assert "Every round of this run was left out" in (out / "report.html").read_text()


def test_a_variant_on_other_providers_or_delegate_than_dense_is_not_judged(tmp_path, bench_run):
    run = _copy(bench_run, tmp_path)

    def xnnpack(result: dict) -> None:
        result["runtime"]["providers_used"] = ["XnnpackExecutionProvider", "CPUExecutionProvider"]

    def delegate(result: dict) -> None:  # dense on the builtin kernels, the variant on whatever really ran
        result["runtime"]["delegate"] = "none: the runtime's builtin kernels ran all 12 ops"

    _edit(run, "unstructured-0.5__onnx__t1", (2,), xnnpack)
    _edit(run, "dense__tflite__t1", (1, 2, 3), delegate)
    rows = verdict_rows(run)
    onnx, tflite = _row(rows, "unstructured-0.5"), _row(rows, "unstructured-0.5", "tflite")
    assert onnx["verdict"] == ("NOT JUDGED: providers differ from dense (CPUExecutionProvider / "
                               "XnnpackExecutionProvider,CPUExecutionProvider vs CPUExecutionProvider)")
    ran = _raw(run, "unstructured-0.5__tflite__t1")[1, 1]["runtime"]["delegate"]
    assert ran.startswith("XNNPACK (default delegate): ")  # the agent reads it from the interpreter and its log
    assert tflite["verdict"] == "NOT JUDGED: delegate differ from dense (XNNPACK (default delegate) vs none)"
    assert "speedup" not in onnx and "speedup" not in tflite
    assert undecided(run) == []  # a variant not judged for its setup is not something more rounds can settle


def test_bench_adds_rounds_while_a_verdict_is_open(tmp_path, probed):
    """One round gives no interval, so the variant is undecided and bench adds a second (the cap here)."""
    from tsprune_edge.devices.bench import BenchRequest, bench

    console = Console(file=io.StringIO(), width=200)
    summary = bench(BenchRequest(device="desktop", artifacts=probed, results=tmp_path, runtimes=("onnxruntime",),
                                 rounds=1, max_rounds=2, min_time=0.05, min_iters=10), console=console,
                    more_rounds=undecided)  # the report's rule, handed in: devices/ never imports the report
    said = console.file.getvalue()
    run = tmp_path / summary["run_id"]
    assert "undecided after 1 rounds: unstructured-0.5__onnx__t1; adding round 2 of at most 2" in said
    assert sorted(p.name for p in (run / "raw").glob("*__r*.json")) == sorted(
        f"{item}__r{n}{b}.json" for item in ONNX_ITEMS for n in (1, 2) for b in ("", "b"))
    plan = json.loads((run / "plan.json").read_text())
    assert (plan["rounds"], plan["first_rounds"], plan["max_rounds"]) == (2, 1, 2)  # the design the report reads
    assert summary["undecided"] == undecided(run)
    assert ("stopped undecided after 2 rounds (--max-rounds 2)" in said) == bool(summary["undecided"])
    assert all(item["rounds"] == 2 for item in summary["items"])


def test_report_refuses_what_is_not_a_run(cli, tmp_path):
    assert_one_line_error(cli("report", str(tmp_path), "--out", str(tmp_path / "r")), "no finished bench run")
    assert_one_line_error(cli("report", str(tmp_path), "--min-effect", "1.5"), "--min-effect must be in [0, 1)")


def test_each_variant_is_judged_against_dense_in_its_own_setting():
    """A TensorRT fp16 row is compared with dense under TensorRT fp16, never with dense under ONNX Runtime."""
    from tsprune_edge.report.verdict import same_setting

    trt = {"id": "structured-0.5__onnx__trt-fp16", "bundle": "structured-0.5"}
    ort = {"id": "structured-0.5__onnx__t4", "bundle": "structured-0.5"}
    assert same_setting(trt, "dense") == "dense__onnx__trt-fp16"
    assert same_setting(ort, "dense") == "dense__onnx__t4"
    assert same_setting(ort, "percall") == "percall__onnx__t4"


def test_one_engine_comparison_decides_both_the_verdict_and_the_probe():
    """The variant against dense (the verdict) and the probe against the variant (the efficiency beyond the
    per-call cost) go through one comparison: same providers, same kind of delegate, op counts aside."""
    from tsprune_edge.report.verdict import ItemRounds, engine_difference, judge

    def rounds(providers: str | None, delegate: str | None, p50: float) -> ItemRounds:
        return ItemRounds(medians={n: p50 * (1 + 0.001 * n) for n in range(1, 6)}, providers=providers,
                          delegate=delegate)

    dense = rounds("CPUExecutionProvider", "XNNPACK (default delegate): 18 of 20 ops in 2 delegate nodes", 2e-3)
    fewer_ops = rounds("CPUExecutionProvider", "XNNPACK (default delegate): 12 of 14 ops in 1 delegate nodes", 1e-3)
    assert engine_difference(fewer_ops, dense) is None
    verdict, speedup = judge(fewer_ops, dense, 0.05)
    assert verdict == "REAL SPEEDUP" and speedup.estimate == pytest.approx(2.0)
    other = rounds("XnnpackExecutionProvider", dense.delegate, 1e-3)
    assert engine_difference(other, dense) == ("providers", "XnnpackExecutionProvider", "CPUExecutionProvider")
    assert judge(other, dense, 0.05) == (
        "NOT JUDGED: providers differ from dense (XnnpackExecutionProvider vs CPUExecutionProvider)", None)
    builtin = rounds("CPUExecutionProvider", None, 1e-3)
    assert engine_difference(builtin, dense) == ("delegate", "none", "XNNPACK (default delegate)")
    assert judge(builtin, dense, 0.05)[0] == ("NOT JUDGED: delegate differ from dense "
                                              "(none vs XNNPACK (default delegate))")


def test_reading_a_report_or_a_sweep_folder_needs_no_torch():
    """The bundle names come from one torch-free module: the report, the sweep's runner and spec use them
    without importing torch (the sweep's runner imported export/probe.py, and with it torch, for one name)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from tsprune_edge.report import render, verdict\n"
            "from tsprune_edge.sweep.runner import cell_dirs\n"
            "from tsprune_edge.sweep.spec import Cell, SweepSpec\n"
            "dirs = cell_dirs(Cell('variant', 'dlinear', 'dense'))\n"
            "spec = SweepSpec(models=('dlinear',), methods=('structured',), sparsities=(0.5,), width_matched=True)\n"
            "print([str(d) for d in dirs], [c.variant for c in spec.variant_cells('dlinear')], 'torch' in sys.modules)")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout.split() == ["['export/dlinear/dense',", "'export/dlinear/percall']",
                                  "['structured-0.5',", "'structured_width-0.5']", "False"]


def test_export_and_sweep_name_a_variant_the_same_way():
    from tsprune_edge.export_job import ExportJob
    from tsprune_edge.sweep.spec import SweepSpec

    job = ExportJob(methods=("structured", "unstructured", "nm"), sparsity=0.5)
    spec = SweepSpec(models=("dlinear",), methods=("structured", "unstructured", "nm"), sparsities=(0.5,))
    assert list(job.variants()) == [c.variant for c in spec.variant_cells("dlinear")] == [
        "structured-0.5", "unstructured-0.5", "nm-0.5"]
    assert {r.method for r in job.variants().values()} == {"structured", "unstructured", "nm"}
