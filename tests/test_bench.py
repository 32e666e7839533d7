"""`tsprune-edge bench` on this machine (the desktop profile): the bundles of an export, measured in interleaved
rounds by the real agent, with percentiles, memory and correctness brought back as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_bad_input import assert_one_line_error

FAST = ("--rounds", "2", "--max-rounds", "2", "--min-time", "0.2", "--min-iters", "20")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """dense and unstructured-0.5 bundles of a DLinear trained one epoch on the built-in data (seconds)."""
    from tsprune_edge.export.bundle import ExportRequest
    from tsprune_edge.export_job import ExportJob, run_export_job

    root = tmp_path_factory.mktemp("bench")
    job = ExportJob(methods=("unstructured",), model="dlinear", epochs=1, finetune_epochs=0)
    run_export_job(job, ExportRequest(), root / "export", root / "runs")
    return root / "export"


def test_desktop_bench_measures_every_variant(cli, tmp_path, bundles, monkeypatch):
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    results = tmp_path / "results"
    result = cli("bench", "--device", "desktop", "--artifacts", str(bundles), "--results", str(results), *FAST)
    assert result.code == 0, result.err
    (run,) = results.iterdir()
    summary = json.loads((run / "bench.json").read_text())
    assert summary["machine"] == "x86_64" and summary["emulated"] is False
    assert summary["timing_label"] == "measured on the board"
    ids = [item["id"] for item in summary["items"]]
    assert ids == ["dense__onnx__t1", "unstructured-0.5__onnx__t1", "dense__tflite__t1",
                   "unstructured-0.5__tflite__t1"]
    for item in summary["items"]:
        assert item["rounds"] == 2 and not item["errors"], item
        assert item["correct"] and item["max_abs_error"] <= 1e-4
        assert 0 < item["p50_s"] <= item["p90_s"] <= item["p99_s"] and item["peak_rss_kib"] > 0
        assert item["runtime"] == ("onnxruntime" if item["format"] == "onnx" else "ai_edge_litert")
        assert f"{item['p50_s'] * 1e3:.3f}" in result.out
    raw = sorted(p.name for p in (run / "raw").glob("*__r*.json"))
    assert len(raw) == 8
    # Interleaved: round 1 of every item starts before round 2 of any.
    starts = {p.name: json.loads(p.read_text())["started_at"] for p in (run / "raw").glob("*__r*.json")}
    assert max(t for n, t in starts.items() if n.endswith("__r1.json")) < min(
        t for n, t in starts.items() if n.endswith("__r2.json"))
    assert json.loads((run / "state.json").read_text())["status"] == "done"
    assert not (Path("/tmp/tsprune-edge") / run.name).exists()  # the board's run folder is removed


@pytest.mark.parametrize("args, fragments", [
    (["--device", "rpi5"], ["unknown device 'rpi5'"]),
    (["--device", "desktop", "--host", "pi@example"], ["measured on this machine; drop --host"]),
    (["--device", "rpi4"], ["is a remote board: pass --host"]),
    (["--runtime", "tensorrt"], ["unknown runtime tensorrt"]),
    (["--threads", "one"], ["--threads takes comma-separated integers"]),
])
def test_bad_bench_options(cli, tmp_path, bundles, args, fragments, monkeypatch):
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    result = cli("bench", *args, "--artifacts", str(bundles), "--results", str(tmp_path / "results"))
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_no_bundles_is_refused(cli, tmp_path):
    result = cli("bench", "--artifacts", str(tmp_path / "empty"), "--results", str(tmp_path / "results"))
    assert_one_line_error(result, "no export bundles under", "tsprune-edge export")


def test_devices_list_show_and_check_on_this_machine(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    listed = cli("devices", "list")
    assert listed.code == 0 and all(name in listed.out for name in ("rpi4", "jetson-nano", "desktop"))
    shown = cli("devices", "show", "jetson-nano")
    assert shown.code == 0 and json.loads(shown.out)["onnx_providers"][0] == "TensorrtExecutionProvider"
    checked = cli("devices", "check", "--device", "desktop")
    assert checked.code == 0, checked.err
    assert "onnx: onnxruntime" in checked.out and "tflite: ai_edge_litert" in checked.out
    assert "x86_64" in checked.out
