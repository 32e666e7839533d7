"""Smoke test of the emulated arm64 board: the agent's preflight runs a real inference with each runtime on aarch64.

The first run on a machine builds the board (about 8 minutes on 2 cores) and caches it; later runs restore it in
seconds. Where no board can run at all (not root, not x86_64 Linux, packages missing) the test fails and says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.arm64_board import emulated_board, unavailable_reason

AGENT = Path(__file__).resolve().parents[1] / "devices" / "agent.py"


def test_agent_preflight_on_emulated_arm64_board(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason:
        pytest.fail(f"the emulated arm64 board cannot run here: {reason} (run scripts/ci-apt.sh as root)")
    with emulated_board(tmp_path) as board:
        assert board.run(["uname", "-m"], check=True).stdout.strip() == "aarch64"
        board.copy_in(AGENT, "/root/agent.py")
        for runtime, python in board.pythons.items():
            proc = board.run([python, "agent.py", "preflight", "--runtime", runtime], timeout=300)
            assert proc.returncode == 0, proc.stderr
            report = json.loads(proc.stdout.strip().splitlines()[-1])
            assert (report["machine"], report["emulated"]) == ("aarch64", True), report
            assert report["cpu"]["arm_cpu_part"] == "0xd08", report["cpu"]
            found = report["runtimes"][runtime]
            assert found["importable"] and found["runs"], (runtime, found)
