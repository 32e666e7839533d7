"""The agent's TensorRT path (trtexec) and Jetson power checks, as far as they can be tested without a Jetson: the
argv lists it builds, the parsing of trtexec's real --exportTimes / --exportOutput layouts (TensorRT's
samples/common/sampleReporting.cpp, exportJSONTrace and exportJSONOutput) and of nvpmodel, jetson_clocks and
tegrastats output, and the one-line failures. None of it ran on a GPU here (docs/bench.md)."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path

import pytest

AGENT_PATH = Path(__file__).resolve().parents[1] / "devices" / "agent.py"
_spec = importlib.util.spec_from_file_location("board_agent_trt", AGENT_PATH)
agent = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(agent)

# trtexec 8.x writes "[", then each record on its own line, the first after "  ", the rest after ", ", then "]".
# Two warm-up iterations (compute started before --warmUp=100 ms) and three timed ones.
EXPORT_TIMES = """[
  { "startEnqMs" : 0.51, "endEnqMs" : 0.62, "startH2dMs" : 0.5, "endH2dMs" : 0.55, "startComputeMs" : 0.56, \
"endComputeMs" : 2.56, "startD2hMs" : 2.6, "endD2hMs" : 2.7, "h2dMs" : 0.05, "computeMs" : 2, "d2hMs" : 0.1, \
"latencyMs" : 2.15, "endToEndMs" : 2.2 }
, { "startEnqMs" : 50.1, "endEnqMs" : 50.2, "startH2dMs" : 50, "endH2dMs" : 50.1, "startComputeMs" : 50.1, \
"endComputeMs" : 51.1, "startD2hMs" : 51.1, "endD2hMs" : 51.2, "h2dMs" : 0.1, "computeMs" : 1, "d2hMs" : 0.1, \
"latencyMs" : 1.2, "endToEndMs" : 1.2 }
, { "startEnqMs" : 100.1, "endEnqMs" : 100.2, "startH2dMs" : 100, "endH2dMs" : 100.1, "startComputeMs" : 100.1, \
"endComputeMs" : 101.0, "startD2hMs" : 101.0, "endD2hMs" : 101.1, "h2dMs" : 0.1, "computeMs" : 0.9, "d2hMs" : 0.1, \
"latencyMs" : 1.1, "endToEndMs" : 1.1 }
, { "startEnqMs" : 101.2, "endEnqMs" : 101.3, "startH2dMs" : 101.2, "endH2dMs" : 101.3, "startComputeMs" : 101.3, \
"endComputeMs" : 102.3, "startD2hMs" : 102.3, "endD2hMs" : 102.4, "h2dMs" : 0.1, "computeMs" : 1, "d2hMs" : 0.1, \
"latencyMs" : 1.2, "endToEndMs" : 1.2 }
, { "startEnqMs" : 102.5, "endEnqMs" : 102.6, "startH2dMs" : 102.5, "endH2dMs" : 102.6, "startComputeMs" : 102.6, \
"endComputeMs" : 103.7, "startD2hMs" : 103.7, "endD2hMs" : 103.8, "h2dMs" : 0.1, "computeMs" : 1.1, "d2hMs" : 0.1, \
"latencyMs" : 1.3, "endToEndMs" : 1.3 }
]
"""


def test_export_times_drop_the_warm_up_and_become_the_usual_percentiles():
    parsed = agent.parse_export_times(EXPORT_TIMES, warmup_ms=100)
    assert parsed["warmup_iterations"] == 2
    assert parsed["latency_s"] == pytest.approx([1.1e-3, 1.2e-3, 1.3e-3])
    assert parsed["compute_s"] == pytest.approx([0.9e-3, 1.0e-3, 1.1e-3])
    latency = agent.summarise(parsed["latency_s"])
    assert latency["n"] == 3 and latency["p50"] == pytest.approx(1.2e-3) and latency["max"] == pytest.approx(1.3e-3)


@pytest.mark.parametrize("text, fragment", [
    ("[\n  { \"startComputeMs\" : 1", "is not JSON"),
    ('{"count": 3}', "not a list"),
    (EXPORT_TIMES, "no iteration after the 500 ms warm-up"),
])
def test_unusable_export_times_are_one_line(text, fragment):
    with pytest.raises(agent.AgentError, match=fragment) as caught:
        agent.parse_export_times(text, warmup_ms=500)
    assert "\n" not in str(caught.value)


def test_export_output_reads_the_named_binding():
    text = '[\n  { "name" : "forecast"\n  , "dimensions" : "1x2x3"\n  , "values" : [ 1, 2, 3, 4, 5, 6.5 ]\n  }\n]\n'
    shape, values = agent.parse_export_output(text, "forecast")
    assert shape == [1, 2, 3] and values[-1] == 6.5
    with pytest.raises(agent.AgentError, match="no output other"):
        agent.parse_export_output(text, "other")


def test_command_lines_are_argv_lists_that_survive_shell_quoting():
    build = agent.trtexec_build_argv("/usr/src/tensorrt/bin/trtexec", "/tmp/run 1/dense/model.onnx",
                                     "/tmp/run 1/dense/model.fp16.engine.part", "fp16")
    assert build[:3] == ["/usr/src/tensorrt/bin/trtexec", "--onnx=/tmp/run 1/dense/model.onnx",
                         "--saveEngine=/tmp/run 1/dense/model.fp16.engine.part"]
    assert "--fp16" in build and "--workspace=256" in build and "--iterations=1" in build
    assert "--fp16" not in agent.trtexec_build_argv("trtexec", "m.onnx", "m.engine", "fp32")
    assert shlex.split(shlex.join(build)) == build  # one argument per flag, spaces and all
    timing = agent.trtexec_time_argv("trtexec", "/w/e.engine", [("history", "/w/history.bin"),
                                                                ("calendar", "/w/calendar.bin")],
                                     "/w/times.json", "/w/out.json", min_time=2.5, min_iters=100, warmup_ms=200)
    assert "--loadInputs=history:/w/history.bin,calendar:/w/calendar.bin" in timing
    assert {"--exportTimes=/w/times.json", "--exportOutput=/w/out.json", "--warmUp=200", "--duration=3",
            "--iterations=100"} <= set(timing)
    with pytest.raises(agent.AgentError, match="separate its --loadInputs"):
        agent.trtexec_time_argv("trtexec", "e", [("history", "/w,1/h.bin")], "t", "o", 1, 1, 0)


PARSE_FAILURE = """&&&& RUNNING TensorRT.trtexec [TensorRT v8201] # trtexec --onnx=model.onnx
[12/01/2026-10:00:00] [I] [TRT] ----------------------------------------------------------------
[12/01/2026-10:00:01] [E] [TRT] ModelImporter.cpp:773: While parsing node number 12 [LayerNormalization -> "/ln/out"]:
[12/01/2026-10:00:01] [E] [TRT] ModelImporter.cpp:776: --- Begin node ---
[12/01/2026-10:00:01] [E] Failed to parse onnx file
[12/01/2026-10:00:01] [E] Engine set up failed
&&&& FAILED TensorRT.trtexec [TensorRT v8201] # trtexec --onnx=model.onnx
"""


def test_a_failed_engine_build_is_one_line_with_its_fix():
    line = agent.trtexec_failure(1, PARSE_FAILURE, "build a fp16 engine from model.onnx")
    assert line.startswith("trtexec could not build a fp16 engine from model.onnx: ModelImporter.cpp:773: While "
                           "parsing node number 12 [LayerNormalization")
    assert "tsprune-edge export --device jetson-nano" in line and "\n" not in line
    killed = agent.trtexec_failure(-9, "[I] Building engine\n", "build a fp32 engine from model.onnx")
    assert "killed by SIGKILL" in killed and "free memory" in killed


def test_trtexec_version_from_its_banner(tmp_path):
    fake = tmp_path / "trtexec"  # prints the banner line trtexec 8.2.1 starts every run with
    fake.write_text("#!/bin/sh\necho '&&&& RUNNING TensorRT.trtexec [TensorRT v8201] # trtexec --help'\n")
    fake.chmod(0o755)
    assert agent.trtexec_version(str(fake)) == "8.2.1"


def test_nvpmodel_and_jetson_clocks_outputs():
    assert agent.parse_nvpmodel((0, "NVPM WARN: fan mode is not set!\nNV Power Mode: MAXN\n0\n")) == {
        "name": "MAXN", "id": 0}
    assert agent.parse_nvpmodel((0, "NV Power Mode: 5W\n1\n")) == {"name": "5W", "id": 1}
    assert agent.parse_nvpmodel((1, "")) is None
    locked = ("SOC family:tegra210  Machine:NVIDIA Jetson Nano Developer Kit\nOnline CPUs: 0-3\n"
              "cpu0: Online=1 Governor=schedutil MinFreq=1479000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: "
              "WFI=0 c7=0\nGPU MinFreq=921600000 MaxFreq=921600000 CurrentFreq=921600000\n"
              "EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=1\nNV Power Mode: MAXN\n")
    assert agent.parse_jetson_clocks((0, locked)) is True  # jetson_clocks pins EMC by FreqOverride=1, MinFreq below
    assert agent.parse_jetson_clocks((0, locked.replace("FreqOverride=1", "FreqOverride=0"))) is False
    assert agent.parse_jetson_clocks((1, "must be run as root")) is None


def test_tegrastats_line():
    line = ("RAM 2186/3964MB (lfb 148x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) CPU [12%@1479,"
            "8%@1479,off,off] EMC_FREQ 3%@1600 GR3D_FREQ 61%@921 APE 25 PLL@27C CPU@29C GPU@27.5C")
    assert agent.parse_tegrastats(line) == {"ram_used_mb": 2186, "ram_total_mb": 3964, "gpu_load_percent": 61}
    assert agent.parse_tegrastats("no stats") is None


def test_preflight_without_trtexec_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(agent, "TRTEXEC", "/nonexistent/trtexec")
    monkeypatch.setenv("PATH", "/nonexistent")
    found = agent.probe_tensorrt()
    assert (found["importable"], found["runs"]) == (False, False)
    assert "/nonexistent/trtexec" in found["error"] and "TensorRT" in found["fix"]
    assert json.loads(json.dumps(found)) == found


def test_power_mode_below_maxn_and_unlocked_clocks_warn_with_the_fix(tmp_path, monkeypatch):
    # stand-ins for L4T's nvpmodel and jetson_clocks, printing what they print on a Nano in its 5 W mode
    (tmp_path / "nvpmodel").write_text("#!/bin/sh\nprintf 'NV Power Mode: 5W\\n1\\n'\n")
    (tmp_path / "jetson_clocks").write_text(
        "#!/bin/sh\necho 'cpu0: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=918000 CurrentFreq=612000'\n")
    for tool in ("nvpmodel", "jetson_clocks"):
        (tmp_path / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    state = agent.jetson_power()
    assert state["power_mode"] == {"name": "5W", "id": 1} and state["clocks_locked"] is False
    assert len(state["warnings"]) == 2
    assert "power mode is 5W, not MAXN" in state["warnings"][0]
    assert "sudo nvpmodel -m 0 && sudo jetson_clocks" in state["warnings"][0]
    assert "fix: sudo jetson_clocks" in state["warnings"][1]


def test_no_nvpmodel_means_not_a_jetson(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(agent.os.path, "exists", lambda path: False)
    assert agent.jetson_power() is None


def test_a_failed_engine_build_is_recorded_in_one_line_and_leaves_no_engine(tmp_path, monkeypatch):
    bin_dir, bundle = tmp_path / "bin", tmp_path / "bundle"
    bin_dir.mkdir()
    bundle.mkdir()
    log = tmp_path / "trtexec.log"
    log.write_text(PARSE_FAILURE)
    # a stand-in trtexec: the real banner for --help, the real parse-failure log (and a partial engine) otherwise
    (bin_dir / "trtexec").write_text(
        "#!/bin/sh\ncase \"$1\" in --help) head -n1 " + shlex.quote(str(log)) + "; exit 0;; esac\n"
        "for a; do case \"$a\" in --saveEngine=*) echo partial > \"${a#--saveEngine=}\";; esac; done\n"
        "cat " + shlex.quote(str(log)) + "; exit 1\n")
    (bin_dir / "trtexec").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    (bundle / "model.onnx").write_bytes(b"not parsed by the stand-in")
    (bundle / "manifest.json").write_text(json.dumps({"variant": "dense", "artifacts": {"onnx": {
        "file": "model.onnx", "inputs": [{"name": "history"}, {"name": "calendar"}],
        "outputs": [{"name": "forecast"}]}}}))
    out = tmp_path / "result.json"
    code = agent.main(["measure", "--bundle", str(bundle), "--format", "onnx", "--runtime", "tensorrt",
                       "--precision", "fp16", "--threads", "1", "--out", str(out)])
    assert code == agent.EXIT_FAILED
    result = json.loads(out.read_text())
    assert result["runtime"] == {"name": "tensorrt", "version": "8.2.1", "precision": "fp16",
                                 "trtexec": str(bin_dir / "trtexec"), "workspace_mb": 256}
    assert result["error"].startswith("trtexec could not build a fp16 engine from model.onnx: ModelImporter")
    assert "\n" not in result["error"]
    assert sorted(p.name for p in bundle.iterdir()) == ["manifest.json", "model.onnx"]  # no engine, no .part


# A stand-in trtexec for the engine cache: the real banner for --help; a build writes an engine file and logs its
# argv; a timing writes --exportTimes records after the warm-up and, as --exportOutput, the samples' expected
# forecast of the first window (what a correct engine computes), in trtexec 8.x's layouts.
FAKE_TRTEXEC = '''#!{python}
import json, sys
import numpy as np
flags = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
if "--help" in sys.argv:
    print("&&&& RUNNING TensorRT.trtexec [TensorRT v8201] # trtexec --help")
elif "--saveEngine" in flags:
    open(flags["--saveEngine"], "w").write("engine")
    open({log!r}, "a").write(json.dumps(sys.argv[1:]) + "\\n")
else:
    manifest = json.load(open({bundle!r} + "/manifest.json"))
    expected = np.load({bundle!r} + "/" + manifest["samples"]["file"])["expected"][:1]
    json.dump([{{"startComputeMs": 600.0 + i, "latencyMs": 1.0, "computeMs": 0.8}} for i in range(20)],
              open(flags["--exportTimes"], "w"))
    json.dump([{{"name": manifest["artifacts"]["onnx"]["outputs"][0]["name"],
                 "dimensions": "x".join(map(str, expected.shape)), "values": expected.ravel().tolist()}}],
              open(flags["--exportOutput"], "w"))
'''


def test_trtexec_engines_are_built_once_into_the_workdir_cache(bundles, tmp_path, monkeypatch):
    """Keyed by the artifact's sha256, the precision and the TensorRT version, in the cache folder (the board's
    workdir, not the run folder a bench deletes, nor the bundle): the second measurement loads the engine."""
    import sys

    bundle, bin_dir, cache, log = bundles / "dense", tmp_path / "bin", tmp_path / "work" / "engines", tmp_path / "log"
    bin_dir.mkdir()
    (bin_dir / "trtexec").write_text(FAKE_TRTEXEC.format(python=sys.executable, log=str(log), bundle=str(bundle)))
    (bin_dir / "trtexec").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    results = []
    for number in (1, 2):
        out = tmp_path / f"r{number}.json"
        code = agent.main(["measure", "--bundle", str(bundle), "--format", "onnx", "--runtime", "tensorrt",
                           "--precision", "fp16", "--threads", "1", "--min-time", "0.1", "--min-iters", "10",
                           "--max-warmup", "0.5", "--engine-cache", str(cache), "--trt-workspace-mb", "512",
                           "--out", str(out)])
        assert code == 0, out.read_text()
        results.append(json.loads(out.read_text()))
    sha = json.loads((bundle / "manifest.json").read_text())["artifacts"]["onnx"]["sha256"]
    name = f"{sha}.fp16.trt8.2.1.engine"
    assert sorted(p.name for p in cache.iterdir()) == [name]
    first, second = results[0]["engine"], results[1]["engine"]
    assert first["file"] == second["file"] == name and first["cache"] == second["cache"] == str(cache)
    assert first["built_this_round"] and first["build_s"] > 0
    assert not second["built_this_round"] and "build_s" not in second
    builds = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(builds) == 1 and "--workspace=512" in builds[0] and "--fp16" in builds[0]
    assert results[0]["runtime"]["workspace_mb"] == 512
    assert results[1]["latency"]["n"] == 20 and results[1]["correctness"]["within_tolerance"]


def test_ort_tensorrt_provider_gets_the_engine_cache_and_the_workspace_cap(tmp_path):
    cache = tmp_path / "engines"
    chosen = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert agent.ort_providers(chosen, str(cache), 256) == [
        ("TensorrtExecutionProvider", {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache),
                                       "trt_max_workspace_size": str(256 * 1024 * 1024)}),
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert cache.is_dir()
    assert agent.ort_providers(["CPUExecutionProvider"], str(cache), 256) == ["CPUExecutionProvider"]
    assert agent.ort_providers(chosen, None, 256) == chosen


def test_the_plan_hands_the_board_its_engine_cache(tmp_path):
    """The host puts the profile's cache and workspace into the TensorRT items (trtexec and ORT's provider), and
    the agent passes them to each worker."""
    from tsprune_edge.devices.bench import trt_options
    from tsprune_edge.devices.profiles import load_profile

    nano, rpi4 = load_profile("jetson-nano"), load_profile("rpi4")
    options = {"engine_cache": "/tmp/tsprune-edge/engines", "trt_workspace_mb": 256}
    assert trt_options(nano, "onnx") == trt_options(nano, "tensorrt") == options
    assert trt_options(rpi4, "onnx") == trt_options(nano, "tflite") == {}
    item = {"id": "dense__onnx__trt-fp16", "bundle": "dense", "format": "onnx", "runtime": "tensorrt",
            "threads": 1, "precision": "fp16", **options}
    agent.check_item(item)
    argv = agent.worker_argv(item, {"min_time": 1, "min_iters": 10}, "/w/dense", "/w/out.json")
    assert argv[argv.index("--engine-cache") + 1] == "/tmp/tsprune-edge/engines"
    assert argv[argv.index("--trt-workspace-mb") + 1] == "256"
    with pytest.raises(agent.AgentError, match="trt_workspace_mb is MB >= 1"):
        agent.check_item({**item, "trt_workspace_mb": 0})
