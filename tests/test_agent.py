"""The board agent, run as the board runs it: a subprocess on a real bundle, with the real runtimes installed here
(onnxruntime, ai-edge-litert; tflite-runtime is absent, which stands in for a board missing a runtime)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnxruntime
import pytest
from ai_edge_litert import __version__ as litert_version

from tests.agent_cli import AGENT, FAST, one_json_line, run_output, write_plan
from tests.agent_cli import agent as run_agent
from tsprune_edge.export.bundle import ExportRequest, write_bundles
from tsprune_edge.workflow import train_to_dir


def agent(*args: str) -> subprocess.CompletedProcess:
    return run_agent(sys.executable, *args, timeout=120)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A real dense DLinear bundle (ONNX + TFLite + samples): one epoch on the built-in synthetic data."""
    root = tmp_path_factory.mktemp("agent")
    train_to_dir(model="dlinear", data="synthetic", pred_len=96, preset="small", epochs=1, out=root / "ckpt")
    write_bundles(root / "export", {"dense": root / "ckpt" / "model.pt"}, ExportRequest())
    return root / "export" / "dense"


ITEMS = [{"id": "onnx-1t", "bundle": "export/dense", "format": "onnx", "runtime": "onnxruntime", "threads": 1},
         {"id": "tflite-1t", "bundle": "export/dense", "format": "tflite", "runtime": "ai_edge_litert", "threads": 1}]


@pytest.fixture(scope="module")
def first_run(bundle: Path) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """2 items x 2 rounds; the plan sits beside export/, so the items name the bundle relative to it."""
    root = bundle.parents[1]
    plan = write_plan(root / "plan.json", ITEMS, rounds=2)
    results = root / "results"
    return plan, results, agent("run", "--plan", str(plan), "--results", str(results))


def test_preflight_reports_runtimes_and_the_board():
    report = one_json_line(agent("preflight"))
    assert report["python"] == ".".join(map(str, sys.version_info[:3])) and report["executable"]
    assert report["machine"] and report["os"]
    assert report["numpy"]["importable"] and report["numpy"]["version"]
    runtimes = report["runtimes"]
    assert runtimes["onnxruntime"] == {"importable": True, "runs": True, "version": onnxruntime.__version__,
                                       "error": None, "fix": None}
    assert runtimes["ai_edge_litert"] == {"importable": True, "runs": True, "version": litert_version, "error": None,
                                          "fix": None}
    missing = runtimes["tflite_runtime"]
    assert not missing["importable"] and not missing["runs"] and missing["fix"] == "pip install tflite-runtime"
    assert missing["error"] == "import failed: ModuleNotFoundError: No module named 'tflite_runtime'"
    assert report["cpu"]["cores"] >= 1 and report["cpu"]["model"] and report["cpu"]["flags"]
    assert report["disk"]["free_bytes"] > 0 and report["mem_available_kib"] > 0


def test_verify_passes_then_names_a_flipped_byte(bundle, tmp_path):
    report = one_json_line(agent("verify", "--bundle", str(bundle)))
    assert report["ok"] and sorted(f["file"] for f in report["files"]) == ["model.onnx", "model.tflite",
                                                                           "samples.npz", "test.npz",
                                                                           "torch_test_errors.npy"]
    copy = shutil.copytree(bundle, tmp_path / "dense")
    data = bytearray((copy / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.tflite").write_bytes(bytes(data))
    proc = agent("verify", "--bundle", str(copy))
    report = one_json_line(proc)
    assert proc.returncode == 1 and not report["ok"]
    assert [f["file"] for f in report["files"] if not f["ok"]] == ["model.tflite"]


@pytest.mark.parametrize(("fmt", "runtime"), [("onnx", "onnxruntime"), ("tflite", "ai_edge_litert")])
def test_measure_times_and_checks_an_artifact(bundle, tmp_path, fmt, runtime):
    out = tmp_path / "result.json"
    proc = agent("measure", "--bundle", str(bundle), "--format", fmt, "--runtime", runtime, "--threads", "2",
                 *FAST, "--profile", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert one_json_line(proc)["ok"]
    result = json.loads(out.read_text())
    assert "error" not in result
    latencies, latency = result["latencies_s"], result["latency"]
    assert len(latencies) == latency["n"] >= 20 and sum(latencies) >= 0.19
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert latency["throughput_per_s"] == pytest.approx(latency["n"] / latency["total"])
    assert result["warmup"]["stopped"] in ("stable", "max_warmup") and result["warmup"]["seconds"] <= 1.5
    assert result["load_s"] > 0 and result["first_inference_s"] > 0
    assert all(value > 0 for value in result["memory_kib"].values())
    assert result["correctness"]["windows"] == 8 and result["correctness"]["max_abs_error"] <= 1e-4
    assert result["correctness"]["within_tolerance"] and result["artifact"]["sha256_ok"]
    assert result["runtime"]["name"] == runtime and result["runtime"]["version"]
    if fmt == "onnx":
        assert result["runtime"]["intra_op_num_threads"] == 2
        assert result["runtime"]["providers_used"] == ["CPUExecutionProvider"]
        assert result["profile"]["available"] and {op["op_name"] for op in result["profile"]["ops"]} >= {"Gemm"}
    else:
        assert result["runtime"]["num_threads"] == 2 and not result["profile"]["available"]
        assert result["runtime"]["delegate"] == tflite_delegate_seen_here(bundle / "model.tflite")
    for env in (result["environment_before"], result["environment_after"]):
        assert env["cpu_model"] and "temperatures" in env and "governor" in env


def test_measure_without_the_runtime_fails_in_one_line(bundle, tmp_path):
    out = tmp_path / "result.json"
    proc = agent("measure", "--bundle", str(bundle), "--format", "tflite", "--runtime", "tflite_runtime",
                 "--threads", "1", *FAST, "--out", str(out))
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    error = one_json_line(proc)["error"]
    assert error == json.loads(out.read_text())["error"]
    assert "tflite_runtime" in error and "pip install tflite-runtime" in error and "\n" not in error


def test_run_interleaves_rounds_in_fresh_workers(first_run):
    """Each round runs the items forward, then mirrored (A B | B A); round 2 starts one item later, so neither is
    always first. run.json records the order, every measurement's pass and position."""
    plan, results, proc = first_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events, final = run_output(proc)
    assert final["counts"] == {"measured": 8, "skipped": 0, "failed": 0}
    order = ["onnx-1t__r1.json", "tflite-1t__r1.json", "tflite-1t__r1b.json", "onnx-1t__r1b.json",
             "tflite-1t__r2.json", "onnx-1t__r2.json", "onnx-1t__r2b.json", "tflite-1t__r2b.json"]
    started = [json.loads((results / name).read_text())["started_at"] for name in order]
    assert started == sorted(started)
    assert len({json.loads((results / name).read_text())["pid"] for name in order}) == 8
    summary = json.loads((results / "run.json").read_text())
    assert summary["result_files"] == order and summary["errors"] == []
    assert summary["passes_per_round"] == 2
    assert summary["orders"] == [["onnx-1t", "tflite-1t", "tflite-1t", "onnx-1t"],
                                 ["tflite-1t", "onnx-1t", "onnx-1t", "tflite-1t"]]
    assert [(m["id"], m["round"], m["pass"], m["position"]) for m in summary["measurements"]] == [
        ("onnx-1t", 1, 1, 1), ("tflite-1t", 1, 1, 2), ("tflite-1t", 1, 2, 3), ("onnx-1t", 1, 2, 4),
        ("tflite-1t", 2, 1, 1), ("onnx-1t", 2, 1, 2), ("onnx-1t", 2, 2, 3), ("tflite-1t", 2, 2, 4)]
    # one event as each measurement starts and one as it ends, in the order they ran, with its p50
    assert [(e["event"], e["id"], e["round"], e["done"]) for e in events[:4]] == [
        ("measuring", "onnx-1t", 1, 0), ("measured", "onnx-1t", 1, 1),
        ("measuring", "tflite-1t", 1, 1), ("measured", "tflite-1t", 1, 2)]
    assert [(e["id"], e["position"]) for e in events[1::2]] == [
        (name.split("__")[0], m["position"]) for name, m in zip(order, summary["measurements"], strict=True)]
    for event, name in zip(events[1::2], order, strict=True):
        result = json.loads((results / name).read_text())
        assert event["p50_s"] == result["latency"]["p50"] and event["total"] == 8 and event["wall_s"] > 0
    assert summary["plan"] == json.loads(plan.read_text())
    assert summary["environment_start"]["time"] and summary["environment_end"]["time"]
    assert all(m["cooldown"] is not None for m in summary["measurements"])
    assert not (results / ".agent.lock").exists()


def test_run_resumes_past_a_stale_lock(first_run, tmp_path):
    plan, results, _ = first_run
    copy = shutil.copytree(results, tmp_path / "results")
    before = {p.name: p.read_bytes() for p in copy.glob("*__r*.json")}
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (copy / ".agent.lock").write_text(json.dumps({"pid": dead.pid, "started_at": 0}))
    proc = agent("run", "--plan", str(plan), "--results", str(copy))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events, final = run_output(proc)
    assert final["counts"] == {"measured": 0, "skipped": 8, "failed": 0}
    assert [e["event"] for e in events] == ["skipped"] * 8
    assert json.loads((copy / "run.json").read_text())["orders"] == [["onnx-1t", "tflite-1t", "tflite-1t", "onnx-1t"],
                                                                   ["tflite-1t", "onnx-1t", "onnx-1t", "tflite-1t"]]
    assert {p.name: p.read_bytes() for p in copy.glob("*__r*.json")} == before
    assert not (copy / ".agent.lock").exists()


def test_run_refuses_a_live_lock(first_run, tmp_path):
    plan, _, _ = first_run
    lock = tmp_path / ".agent.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "started_at": 0}))
    proc = agent("run", "--plan", str(plan), "--results", str(tmp_path))
    assert proc.returncode == 4
    assert f"locked by pid {os.getpid()}" in one_json_line(proc)["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".agent.lock"]


def test_run_records_a_failed_worker_and_goes_on(bundle, tmp_path):
    missing = {"id": "no-runtime", "bundle": "export/dense", "format": "tflite", "runtime": "tflite_runtime",
               "threads": 1}
    plan = write_plan(bundle.parents[1] / "plan-failing.json", [missing, ITEMS[0]], rounds=1)
    proc = agent("run", "--plan", str(plan), "--results", str(tmp_path))
    assert proc.returncode == 1
    events, final = run_output(proc)
    assert final["counts"] == {"measured": 2, "skipped": 0, "failed": 2}
    failed = [e for e in events if e["event"] == "failed"]
    assert len(failed) == 2 and all("cannot import tflite_runtime" in e["error"] for e in failed)
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["result_files"] == ["onnx-1t__r1.json", "onnx-1t__r1b.json"]
    assert [e.split(": ")[0] for e in summary["errors"]] == ["no-runtime round 1", "no-runtime round 1 pass 2"]


def test_agent_runs_on_python_3_6():
    """vermin has no `__main__` module, so `python -m vermin` fails: call its entry point with this interpreter."""
    vermin = "import sys, vermin; sys.argv[0] = 'vermin'; sys.exit(vermin.main())"
    proc = subprocess.run([sys.executable, "-c", vermin, "-t=3.6-", "--no-tips", "--violations", str(AGENT)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def tflite_delegate_seen_here(path: Path) -> str:
    """What the agent should report for `path`, counted here from ai-edge-litert's node list: the default delegate
    adds DELEGATE nodes at allocate_tensors; the ops it took are those without a builtin kernel left to run."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    plain = Interpreter(model_path=str(path),
                        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    plain.allocate_tensors()
    ops = len(plain._get_ops_details())
    delegated = Interpreter(model_path=str(path))
    delegated.allocate_tensors()
    nodes = [n["op_name"] for n in delegated._get_ops_details()]
    assert nodes[:ops] == [n["op_name"] for n in plain._get_ops_details()]  # the DELEGATE nodes come after the ops
    kept = sum(name == "BROADCAST_TO" for name in nodes[:ops])  # XNNPACK takes every other op of these models
    count = len(nodes) - ops
    return (f"XNNPACK (default delegate): {ops - kept} of {ops} ops in {count} delegate node"
            + ("s" if count > 1 else ""))


def test_tflite_delegate_says_none_when_no_delegate_ran(bundle):
    """Without the default delegate the runtime's builtin kernels run every op, and the agent says so."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    sys.path.insert(0, str(AGENT.parent))
    try:
        import agent as board_agent
    finally:
        sys.path.remove(str(AGENT.parent))
    plain = Interpreter(model_path=str(bundle / "model.tflite"),
                        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    plain.allocate_tensors()
    found = board_agent.tflite_delegate(plain, "")
    ops = len(plain._get_ops_details())
    assert found["delegate"] == f"none: the runtime's builtin kernels ran all {ops} ops"
    assert found["delegate_detail"]["delegate_nodes"] == 0 and found["delegate_detail"]["ops_delegated"] == 0
