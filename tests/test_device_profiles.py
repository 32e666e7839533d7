"""Device profiles: the built-in boards, and user TOML files that add or override one."""

from __future__ import annotations

import pytest

from tsprune_edge.devices.profiles import BUILT_IN, available_profiles, load_profile
from tsprune_edge.errors import UserError


@pytest.fixture
def profile_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path))
    return tmp_path


def test_built_in_boards(profile_dir):
    rpi4, nano, desktop = load_profile("rpi4"), load_profile("jetson-nano"), load_profile("desktop")
    assert rpi4.arch == "aarch64" and rpi4.cores == 4 and "Cortex-A72" in rpi4.description
    assert nano.runtimes == ("onnxruntime",) and nano.onnx_providers[0] == "TensorrtExecutionProvider"
    assert "Python 3.6" in nano.description
    assert desktop.local and not rpi4.local
    assert available_profiles() == list(BUILT_IN)


def test_each_board_names_the_engine_its_timings_must_come_from(profile_dir):
    """The Nano's ONNX Runtime must run on its GPU (TensorRT or CUDA); the others on the CPU. TensorRT keeps its
    engines under the board's workdir, beside the run folders that benches delete, with a workspace cap."""
    gpu = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    assert load_profile("jetson-nano").expected_engines == {"onnxruntime": gpu}
    for name in ("rpi4", "desktop"):
        assert load_profile(name).expected_engines == {"onnxruntime": ("CPUExecutionProvider",)}
    nano = load_profile("jetson-nano")
    assert (nano.engine_cache(), nano.trt_workspace_mb) == ("/tmp/tsprune-edge/engines", 256)
    (profile_dir / "jetson-nano.toml").write_text('workdir = "/home/nano/tsprune/"\ntrt_workspace_mb = 512\n'
                                                  'expected_engines = {onnxruntime = ["CPUExecutionProvider"]}\n')
    cpu = load_profile("jetson-nano")
    assert (cpu.engine_cache(), cpu.trt_workspace_mb) == ("/home/nano/tsprune/engines", 512)
    assert cpu.expected_engines == {"onnxruntime": ("CPUExecutionProvider",)}  # the CPU measured on purpose


def test_a_measurement_on_another_engine_than_the_profile_expects_is_not_judged(profile_dir, bundles, tmp_path):
    """A board whose profile expects CUDA, benched with this machine's CPU-only onnxruntime (the Nano with PyPI's
    wheel): every row says what ran and the fix, no speedup. Then a fallback inside run() on the CPU board."""
    import json
    import shutil

    from tsprune_edge.devices import runs
    from tsprune_edge.devices.bench import BenchRequest, bench
    from tsprune_edge.report.verdict import undecided, verdict_rows

    (profile_dir / "desktop.toml").write_text('expected_engines = {onnxruntime = ["CUDAExecutionProvider"]}\n')
    summary = bench(BenchRequest(device="desktop", artifacts=bundles, results=tmp_path, runtimes=("onnxruntime",),
                                 threads=(1,), rounds=2, min_time=0.05, min_iters=10))
    run = tmp_path / summary["run_id"]
    line = ("NOT JUDGED: ran on CPUExecutionProvider; the desktop profile expects CUDAExecutionProvider; fix: "
            "install NVIDIA's onnxruntime_gpu wheel in the board's venv (docs/boards.md), or measure the CPU on "
            'purpose: expected_engines = {onnxruntime = ["CPUExecutionProvider"]} in its profile file')
    rows = {r["variant"]: r for r in verdict_rows(run)}
    assert rows["dense"]["verdict"] == rows["unstructured-0.5"]["verdict"] == line
    assert "speedup" not in rows["unstructured-0.5"] and line in rows["unstructured-0.5"]["headline"]
    assert undecided(run) == []  # more rounds cannot judge it: bench adds none

    copy = tmp_path / "fell-back"
    shutil.copytree(run, copy)
    bench_json = json.loads((copy / "bench.json").read_text())
    bench_json["device"]["expected_engines"] = {"onnxruntime": ["CPUExecutionProvider"]}
    (copy / "bench.json").write_text(json.dumps(bench_json))
    assert "verdict" not in {r["variant"]: r for r in verdict_rows(copy)}["dense"]
    (key, path), *_ = runs.round_paths(copy, "unstructured-0.5__onnx__t1")
    result = json.loads(path.read_text())
    result["runtime"]["fallback"] = {"when": "run", "providers_before": ["CPUExecutionProvider"],
                                     "providers_after": ["CPUExecutionProvider"], "message": "EP Error"}
    path.write_text(json.dumps(result))
    assert {r["variant"]: r for r in verdict_rows(copy)}["unstructured-0.5"]["verdict"] == (
        f"NOT JUDGED: ran on CPUExecutionProvider after a provider fallback ({runs.measurement_name(key)} at run); "
        "the desktop profile expects CPUExecutionProvider; fix: the provider failed and ORT retried without it (its "
        "message: runtime.fallback in the raw results); free GPU memory or re-export with `tsprune-edge export "
        "--device desktop`, then bench again")


def test_a_user_file_overrides_only_the_keys_it_names(profile_dir):
    (profile_dir / "rpi4.toml").write_text('python = "/home/pi/venv/bin/python"\nthreads = [1, 2, 4]\n')
    profile = load_profile("rpi4")
    assert profile.python == "/home/pi/venv/bin/python" and profile.threads == (1, 2, 4)
    assert profile.arch == "aarch64" and profile.round_to == BUILT_IN["rpi4"].round_to


def test_a_user_file_adds_a_board(profile_dir):
    (profile_dir / "orangepi.toml").write_text(
        'description = "Orange Pi 5"\narch = "aarch64"\ncores = 8\nmemory_mb = 8192\n'
        'runtimes = ["tflite_runtime"]\n')
    assert "orangepi" in available_profiles()
    profile = load_profile("orangepi")
    assert profile.cores == 8 and profile.runtimes == ("tflite_runtime",) and profile.python == "python3"


@pytest.mark.parametrize("text, fragment", [
    ('colour = "red"\n', "unknown key 'colour'"),
    ('runtimes = ["tensorflow"]\n', "unknown runtime 'tensorflow'"),
    ("threads = []\n", "threads must be a list of positive integers"),
    ('cores = "four"\n', "cores must be a positive integer"),
    ("threads = 4\n", "threads must be a list"),
    ("cores = [\n", "not a readable TOML profile"),
    ('expected_engines = {tensorflow = ["CPU"]}\n', "expected_engines maps runtimes"),
    ("expected_engines = {onnxruntime = []}\n", "expected_engines maps runtimes"),
    ('expected_engines = {onnxruntime = "CPUExecutionProvider"}\n', "expected_engines must be a list"),
    ("trt_workspace_mb = 0\n", "trt_workspace_mb must be a positive integer"),
])
def test_bad_user_files_are_refused_in_one_line(profile_dir, text, fragment):
    (profile_dir / "rpi4.toml").write_text(text)
    with pytest.raises(UserError, match=fragment) as info:
        load_profile("rpi4")
    assert "\n" not in str(info.value)


def test_a_new_board_must_say_what_it_is(profile_dir):
    (profile_dir / "mystery.toml").write_text("cores = 2\n")
    with pytest.raises(UserError, match="a new profile needs description, arch, memory_mb"):
        load_profile("mystery")


def test_unknown_device_lists_the_known_ones(profile_dir):
    with pytest.raises(UserError, match="unknown device 'rpi5'; choose one of rpi4, jetson-nano, desktop"):
        load_profile("rpi5")


def test_runtimes_can_live_in_their_own_interpreters(profile_dir):
    (profile_dir / "rpi4.toml").write_text('host = "pi@raspberrypi.local"\n'
                                           '[interpreters]\ntflite_runtime = "/home/pi/tfl/bin/python"\n')
    profile = load_profile("rpi4")
    assert profile.host == "pi@raspberrypi.local"
    assert profile.interpreter("tflite_runtime") == "/home/pi/tfl/bin/python"
    assert profile.interpreter("onnxruntime") == "python3"
    (profile_dir / "rpi4.toml").write_text('[interpreters]\ntensorflow = "/usr/bin/python3"\n')
    with pytest.raises(UserError, match="interpreters maps runtimes"):
        load_profile("rpi4")
