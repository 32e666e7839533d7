"""The board agent under the Jetson Nano's Python: real CPython 3.6 with numpy 1.19.5 and onnxruntime 1.10.0 (the
last cp36 wheels, tests/py36.py), on a bundle exported as `export --device jetson-nano` writes it (opset 13, IR 7:
what ORT 1.10 loads). Preflight, verify, measure, --profile and a two-item run, as the board runs them; and ORT's
own fallback inside run(), which the agent must flag."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import onnx
import pytest

from tests import py36
from tests.agent_cli import AGENT, FAST, agent, one_json_line, run_output, write_plan
from tsprune_edge.devices.profiles import load_profile
from tsprune_edge.export.bundle import ExportRequest, write_bundles
from tsprune_edge.workflow import train_to_dir


@pytest.fixture(scope="session")
def python36() -> Path:
    """The venv's interpreter, built on first use (tens of seconds, from PyPI); CI builds it in scripts/setup.sh.
    Without CPython 3.6 the tests fail, never skip: CI has it."""
    try:
        return py36.python()
    except py36.Missing as exc:
        pytest.fail(f"the agent's Python 3.6 tests need {exc}")


@pytest.fixture(scope="module")
def nano_bundle(tmp_path_factory) -> Path:
    """A dense DLinear bundle, ONNX only, at the Nano profile's export fields (one epoch on synthetic data)."""
    root = tmp_path_factory.mktemp("py36")
    train_to_dir(model="dlinear", data="synthetic", pred_len=96, preset="small", epochs=1, out=root / "ckpt")
    request = ExportRequest(formats=("onnx",), **load_profile("jetson-nano").export_fields())
    write_bundles(root / "export", {"dense": root / "ckpt" / "model.pt"}, request)
    return root / "export" / "dense"


def test_the_bundle_is_what_ort_1_10_loads(nano_bundle):
    model = onnx.load(str(nano_bundle / "model.onnx"))
    assert (model.ir_version, model.opset_import[0].version) == (7, 13)


def test_preflight_under_python_3_6(python36):
    report = one_json_line(agent(python36, "preflight", "--runtime", "onnxruntime,tflite_runtime"))
    assert report["python"] == "3.6.15" and report["executable"] == str(python36)
    assert report["numpy"] == {"importable": True, "version": "1.19.5", "error": None, "fix": None}
    assert report["runtimes"]["onnxruntime"] == {"importable": True, "runs": True, "version": "1.10.0",
                                                 "error": None, "fix": None}
    missing = report["runtimes"]["tflite_runtime"]
    assert (missing["importable"], missing["runs"]) == (False, False)
    assert missing["fix"] == "no TFLite wheel exists for Python 3.6 (Jetson Nano): use onnxruntime, or a newer Python"


def test_verify_under_python_3_6(python36, nano_bundle):
    proc = agent(python36, "verify", "--bundle", str(nano_bundle))
    report = one_json_line(proc)
    assert proc.returncode == 0 and report["ok"]
    assert sorted(f["file"] for f in report["files"]) == ["model.onnx", "samples.npz", "test.npz",
                                                           "torch_test_errors.npy"]


def measure36(python36: Path, bundle: Path, out: Path, *extra: str) -> dict:
    proc = agent(python36, "measure", "--bundle", str(bundle), "--format", "onnx", "--runtime", "onnxruntime",
                 "--threads", "2", *FAST, *extra, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["ok"]
    return json.loads(out.read_text())


def test_measure_and_profile_under_python_3_6(python36, nano_bundle, tmp_path):
    result = measure36(python36, nano_bundle, tmp_path / "result.json", "--profile", "--accuracy")
    assert "error" not in result and result["system"]["python"] == "3.6.15"
    assert result["runtime"]["name"] == "onnxruntime" and result["runtime"]["version"] == "1.10.0"
    assert result["runtime"]["numpy"] == "1.19.5" and result["runtime"]["intra_op_num_threads"] == 2
    assert result["runtime"]["providers_used"] == ["CPUExecutionProvider"] and result["runtime"]["fallback"] is None
    assert len(result["latencies_s"]) == result["latency"]["n"] >= 20
    assert result["correctness"]["windows"] == 8 and result["correctness"]["within_tolerance"]
    assert result["accuracy"]["windows"] > 0 and result["accuracy"]["mse"] > 0
    assert result["profile"]["available"] and {op["op_name"] for op in result["profile"]["ops"]} >= {"MatMul", "Add"}
    assert not [w for w in result["warnings"] if w.startswith(("providers missing", "provider fallback"))]


def test_gpu_providers_this_build_lacks_are_named(python36, nano_bundle, tmp_path):
    """PyPI's cp36 ORT is CPU-only, like the Nano's wheel from PyPI: asked for TensorRT and CUDA, it runs on CPU,
    and the result says so rather than only listing the providers used."""
    providers = ",".join(load_profile("jetson-nano").onnx_providers)
    result = measure36(python36, nano_bundle, tmp_path / "result.json", "--providers", providers)
    assert result["runtime"]["providers_missing"] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    assert result["runtime"]["providers_used"] == ["CPUExecutionProvider"] and result["runtime"]["fallback"] is None
    assert "providers missing: TensorrtExecutionProvider, CUDAExecutionProvider not in this onnxruntime build; " \
           "ran on CPUExecutionProvider" in result["warnings"]


# ORT's run() catches C.EPFail (a provider that cannot run the graph), prints, moves the session to its fallback
# providers and retries. No provider in a CPU-only build raises EPFail, so the session's native half is made to
# raise it on its first run, as a failing CUDA or TensorRT provider does; ORT's own fallback code does the rest.
# (ORT 1.10's constructor fallback, tried the same way, dies in std::bad_alloc when it re-creates the session: the
# agent's load-time check reads the providers and ORT's message, untested here.)
FAILING_PROVIDER = """
import sys
sys.path.insert(0, sys.argv[1])
import onnxruntime
from onnxruntime.capi.onnxruntime_pybind11_state import EPFail

class FailsOnce:
    def __init__(self, sess):
        self.sess, self.failed = sess, False
    def run(self, *args):
        if not self.failed:
            self.failed = True
            raise EPFail("[ONNXRuntimeError] : 11 : EP_FAIL : forced provider failure")
        return self.sess.run(*args)
    def __getattr__(self, name):
        return getattr(self.sess, name)

create = onnxruntime.InferenceSession._create_inference_session
def failing_once(self, *args, **kwargs):
    create(self, *args, **kwargs)
    if not getattr(self, "forced", False):
        self.forced = True
        self._sess = FailsOnce(self._sess)
onnxruntime.InferenceSession._create_inference_session = failing_once
import agent
sys.exit(agent.main(sys.argv[2:]))
"""


def test_a_provider_failing_inside_run_is_flagged(python36, nano_bundle, tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [str(python36), "-c", FAILING_PROVIDER, str(AGENT.parent), "measure", "--bundle", str(nano_bundle),
         "--format", "onnx", "--runtime", "onnxruntime", "--threads", "1", *FAST, "--out", str(out)],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    fallback = result["runtime"]["fallback"]
    message = ("EP Error: [ONNXRuntimeError] : 11 : EP_FAIL : forced provider failure using ['CPUExecutionProvider'] "
               "Falling back to ['CPUExecutionProvider'] and retrying.")
    assert fallback == {"when": "run", "providers_before": ["CPUExecutionProvider"],
                        "providers_after": ["CPUExecutionProvider"], "message": message}
    assert (f"provider fallback: at run, CPUExecutionProvider -> CPUExecutionProvider ({message})"
            in result["warnings"])
    assert "Falling back to" in proc.stdout  # passed on, not hidden: the summary stays the last line
    assert json.loads(proc.stdout.strip().splitlines()[-1])["ok"]


def test_a_two_item_run_under_python_3_6(python36, nano_bundle):
    root = nano_bundle.parents[1]
    items = [{"id": f"dense__onnx__t{t}", "bundle": "export/dense", "format": "onnx", "runtime": "onnxruntime",
              "threads": t, "python": str(python36)} for t in (1, 2)]
    plan = write_plan(root / "plan36.json", items, rounds=1)
    proc = agent(python36, "run", "--plan", str(plan), "--results", str(root / "results36"))
    events, summary = run_output(proc)
    assert proc.returncode == 0 and summary["ok"], proc.stdout + proc.stderr
    assert summary["counts"] == {"measured": 4, "skipped": 0, "failed": 0}
    assert [e["event"] for e in events] == ["measuring", "measured"] * 4
    run = json.loads((root / "results36" / "run.json").read_text())
    assert run["system"]["python"] == "3.6.15"
    for name in run["result_files"]:
        result = json.loads((root / "results36" / name).read_text())
        assert result["runtime"]["version"] == "1.10.0" and result["correctness"]["within_tolerance"]
