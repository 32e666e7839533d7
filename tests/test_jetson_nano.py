"""Jetson Nano as a first-class board: `export --device jetson-nano` writes what its runtimes read (opset 13, IR 7,
dense weights, ONNX only), `bench --device jetson-nano` refuses what they cannot read before it connects, and the
export runs end to end on an emulated Nano-class board (Debian bullseye arm64 under qemu-user, Python 3.9, a
Cortex-A57 cpuinfo, stock: no runtime) reached through a real loopback sshd, after `devices setup` installed the
Nano's numpy 1.19.4 and ONNX Runtime 1.10.0 in a venv and recorded OPENBLAS_CORETYPE=ARMV8 for the agent. The
board's root filesystem is built once (minutes) and cached; see scripts/jetson-board.sh."""

from __future__ import annotations

import json

import onnx
import pytest

from tests.arm64_board import JETSON_SCRIPT, emulated_board, logging_wrapper, unavailable_reason
from tests.refusals import assert_one_line_error
from tests.sshd import running_sshd
from tsprune_edge.cli import main
from tsprune_edge.devices.profiles import BUILT_IN
from tsprune_edge.devices.setup_plan import NUMPY_WORKAROUND, PINS, RECORD, venv_python
from tsprune_edge.export.onnx_level import read_level

VARIANTS = ("dense", "structured-0.5", "unstructured-0.5")


def _cli(*args: str) -> None:
    try:
        main(list(args))
    except SystemExit as exc:
        assert exc.code in (0, None), f"{args} exited {exc.code}"


@pytest.fixture(scope="module")
def nano_export(tmp_path_factory):
    """The issue's export for the Nano, with the Transformer (LayerNorm and GELU inside) trained one epoch."""
    root = tmp_path_factory.mktemp("nano")
    _cli("export", "--device", "jetson-nano", "--sparsity", "0.5", "--method", "structured,unstructured",
         "--epochs", "1", "--finetune-epochs", "0", "--out", str(root / "export"), "--runs", str(root / "runs"))
    return root


def test_nano_bundles_are_what_its_runtimes_read(nano_export):
    for variant in VARIANTS:
        bundle = nano_export / "export" / variant
        manifest = json.loads((bundle / "manifest.json").read_text())
        assert set(manifest["artifacts"]) == {"onnx"}  # the Nano has no TFLite wheel
        artifact = manifest["artifacts"]["onnx"]
        level = read_level(onnx.load(str(bundle / "model.onnx")))
        assert (level.opset, level.ir_version) == (artifact["opset"], artifact["ir_version"]) == (13, 7)
        assert not {"LayerNormalization", "Gelu"} & level.op_types and level.sparse_initializers == 0
        assert artifact["readers"]["onnxruntime 1.10"] == {"reads": True}
        assert artifact["readers"]["tensorrt 8.0/8.2"] == {"reads": True}
        assert artifact["tensors"] == []  # stored dense: TensorRT is not known to read sparse initializers
        (validation,) = artifact["validation"]
        assert validation["max_abs_error"] <= 1e-4 and validation["tolerance"] == 1e-4


def test_bench_refuses_an_opset_20_bundle_before_connecting(cli, nano_export, tmp_path):
    out = tmp_path / "export20"
    result = cli("export", "--checkpoint", str(nano_export / "runs" / "dense" / "model.pt"), "--method",
                 "unstructured", "--format", "onnx", "--finetune-epochs", "0", "--out", str(out), "--runs",
                 str(tmp_path / "runs"))
    assert result.code == 0, result.err
    manifest = json.loads((out / "dense" / "manifest.json").read_text())
    assert manifest["artifacts"]["onnx"]["readers"]["onnxruntime 1.10"] == {"reads": False, "why_not": "IR 10 > 8"}
    results = tmp_path / "results"
    # 192.0.2.1 (TEST-NET) would hang or fail differently if the bench tried to connect
    result = cli("bench", "--device", "jetson-nano", "--host", "pi@192.0.2.1", "--artifacts", str(out),
                 "--results", str(results))
    assert_one_line_error(result, "dense/model.onnx is opset 20, IR 10", "(opset 13, IR 7)",
                          "tsprune-edge export --device jetson-nano")
    assert not results.exists()


def test_bench_refuses_a_format_the_board_has_no_runtime_for(cli, nano_export, tmp_path):
    result = cli("bench", "--device", "jetson-nano", "--host", "pi@192.0.2.1", "--runtime", "tflite",
                 "--artifacts", str(nano_export / "export"), "--results", str(tmp_path / "results"))
    assert_one_line_error(result, "jetson-nano has no runtime for the tflite artifacts",
                          "--runtime onnxruntime")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("opset", ["9", "22"])
def test_an_opset_the_exporter_cannot_write_is_refused_before_training(cli, tmp_path, opset):
    result = cli("export", "--onnx-opset", opset, "--out", str(tmp_path / "export"), "--runs", str(tmp_path / "runs"))
    assert_one_line_error(result, f"ONNX opset {opset} cannot be written", "13 to 21")
    assert not (tmp_path / "export").exists() and not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def nano_board(tmp_path_factory):
    """The stock emulated Nano-class board and a loopback sshd whose sessions run inside it; every session's
    command line is logged to `commands.log` beside the board."""
    reason = unavailable_reason()
    if reason:
        pytest.fail(f"the emulated Jetson board cannot run here: {reason} (run scripts/ci-apt.sh as root)")
    root = tmp_path_factory.mktemp("jetson")
    with emulated_board(root / "board", cpu="cortex-a57", script=JETSON_SCRIPT, pythons={}) as board:
        wrapper = logging_wrapper(root / "logging-wrapper", board.wrapper, root / "commands.log")
        with running_sshd(root / "sshd", extra_config=[f"ForceCommand {wrapper}"]) as server:
            yield board, server, root / "commands.log"


def test_setup_then_bench_jetson_nano_on_the_emulated_board(cli, tmp_path, nano_export, nano_board, monkeypatch):
    board, server, commands = nano_board
    profile = BUILT_IN["jetson-nano"]
    python = venv_python(profile)
    stock = board.run(["python3", "-c", "import platform, numpy; print(platform.python_version(), numpy.__version__)"])
    assert stock.stdout.split()[0].startswith("3.9.") and stock.stdout.split()[1] == "1.19.5"  # Debian's
    assert board.run(["python3", "-c", "import onnxruntime"]).returncode == 1  # stock: no runtime anywhere
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))  # the built-in jetson-nano profile
    ssh = ("--host", "board", "--ssh-config", str(server.ssh_config))
    result = cli("devices", "setup", "--device", "jetson-nano", *ssh)
    assert result.code == 0, result.err
    # Python 3.9 gets the Nano's own pins (setup_plan.PINS): the same numpy and ONNX Runtime as JetPack 4.6's 3.6
    pins = PINS[3, 9]
    assert pins.runtimes == PINS[3, 6].runtimes and pins.env == PINS[3, 6].env == NUMPY_WORKAROUND
    record = json.loads(board.host_path(f"{profile.workdir}/{RECORD}").read_text())
    assert (record["python"], record["env"], record["runtimes"]) == (
        python, {"OPENBLAS_CORETYPE": "ARMV8"}, {"onnxruntime": "1.10.0"})
    assert (record["packages"]["numpy"], record["packages"]["onnxruntime"]) == ("1.19.4", "1.10.0")
    assert "CPU-only onnxruntime 1.10.0" in result.out  # no --wheel: said so
    assert result.out.splitlines()[-1] == (f"set up: jetson-nano runs {python} (onnxruntime 1.10.0; env "
                                           f"OPENBLAS_CORETYPE=ARMV8); recorded in {profile.workdir}/{RECORD}")
    results = tmp_path / "results"
    result = cli("bench", "--device", "jetson-nano", *ssh, "--artifacts", str(nano_export / "export"),
                 "--results", str(results), "--rounds", "1", "--max-rounds", "1", "--threads", "1",
                 "--min-time", "0.1", "--min-iters", "3")
    assert result.code == 0, result.err
    (run,) = results.iterdir()
    summary = json.loads((run / "bench.json").read_text())
    assert summary["machine"] == "aarch64" and summary["emulated"] is True
    assert summary["timing_label"] == "emulated (qemu): not a board's timing" and "emulated" in result.out
    assert [item["bundle"] for item in summary["items"]] == ["dense", "percall", *VARIANTS[1:]]  # probe too
    for item in summary["items"]:
        assert (item["runtime"], item["runtime_version"], item["rounds"]) == ("onnxruntime", "1.10.0", 1), item
        assert item["correct"] and item["max_abs_error"] <= 1e-4 and item["power_warnings"] == [], item
    preflight = json.loads((run / "preflight.json").read_text())
    assert list(preflight["interpreters"]) == [python]  # the venv setup made
    (report,) = preflight["interpreters"].values()
    assert report["cpu"]["arm_cpu_part"] == "0xd07"  # Cortex-A57, the Nano's CPU
    assert report["runtimes"]["tensorrt"]["runs"] is False  # no trtexec in the emulated board: ORT rows only
    assert report["jetson_power"] is None  # no nvpmodel either
    # every agent process the bench started ran the venv's python with the numpy workaround in its environment
    agents = [line for line in commands.read_text().splitlines() if "/agent.py " in line]
    assert {line.split("/agent.py ")[1].split()[0] for line in agents} >= {"preflight", "run"}
    assert all(line.startswith(f"env OPENBLAS_CORETYPE=ARMV8 {python} ") for line in agents), agents
