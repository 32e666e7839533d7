"""The full `tsprune-edge bench --device rpi4 --host ...` flow against an emulated arm64 board (Debian bookworm
arm64 under qemu-user) reached through a real loopback sshd: the board says aarch64, the agent's correctness check
passes there for ONNX (onnxruntime) and TFLite (tflite-runtime in its numpy<2 environment), and the timings are
labelled emulated. The board's root filesystem is built once (minutes) and cached; see scripts/arm64-board.sh."""

from __future__ import annotations

import json

import pytest

from tests.arm64_board import PYTHONS, emulated_board, unavailable_reason
from tests.sshd import running_sshd


@pytest.fixture(scope="module")
def board_ssh(tmp_path_factory):
    """An emulated Raspberry Pi 4 and a loopback sshd whose sessions (commands, scp, rsync) run inside it."""
    reason = unavailable_reason()
    if reason:
        pytest.fail(f"the emulated arm64 board cannot run here: {reason}")
    root = tmp_path_factory.mktemp("arm64")
    with emulated_board(root / "board") as board, running_sshd(
            root / "sshd", extra_config=[f"ForceCommand {board.wrapper}"]) as server:
        yield board, server


def test_bench_rpi4_on_the_emulated_board(cli, tmp_path, board_ssh, bundles, monkeypatch):
    board, server = board_ssh
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    # The board keeps each runtime in its own environment, as FIELD-NOTES recommends for a real Pi.
    (profiles / "rpi4.toml").write_text(
        f'python = "{PYTHONS["onnxruntime"]}"\nworkdir = "/tmp/tsprune-edge"\n[interpreters]\n'
        + "".join(f'{runtime} = "{python}"\n' for runtime, python in PYTHONS.items()))
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(profiles))
    results = tmp_path / "results"
    result = cli("bench", "--device", "rpi4", "--host", "board", "--ssh-config", str(server.ssh_config),
                 "--artifacts", str(bundles), "--results", str(results), "--rounds", "1", "--max-rounds", "1",
                 "--min-time", "0.1", "--min-iters", "5")
    assert result.code == 0, result.err
    (run,) = results.iterdir()
    summary = json.loads((run / "bench.json").read_text())
    assert summary["machine"] == "aarch64" and summary["emulated"] is True
    assert summary["timing_label"] == "emulated (qemu): not a board's timing"
    assert "emulated" in result.out
    runtimes = {item["format"]: item["runtime"] for item in summary["items"]}
    assert runtimes == {"onnx": "onnxruntime", "tflite": "tflite_runtime"}
    for item in summary["items"]:
        assert item["rounds"] == 1 and item["correct"] and item["max_abs_error"] <= 1e-4, item
    preflight = json.loads((run / "preflight.json").read_text())
    litert = preflight["interpreters"][PYTHONS["ai_edge_litert"]]["runtimes"]["ai_edge_litert"]
    assert litert["runs"], litert  # the third runtime also computes on aarch64
    assert board.run(["ls", "/tmp/tsprune-edge"]).stdout.strip() in ("", ".agent.lock")  # run folder removed
