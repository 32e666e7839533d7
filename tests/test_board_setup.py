"""Issue 24's first contact, on the emulated stock Raspberry Pi OS bookworm board (scripts/pi-os-board.sh: the
system Python is EXTERNALLY-MANAGED and has no runtime) reached through a real loopback sshd: `devices setup`
takes it to ready (a venv under the profile's workdir), `bench` then runs in that venv and `report` gives a
verdict, a second setup changes nothing, and `--offline` sets up a fresh board whose sessions have no network at
all. The board's root filesystem is built once (minutes) and cached; each setup's emulated pip installs take
minutes of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.arm64_board import PI_OS_SCRIPT, REPO, emulated_board, unavailable_reason
from tests.sshd import running_sshd
from tests.tree import snapshot
from tsprune_edge.devices.profiles import BUILT_IN
from tsprune_edge.devices.setup_plan import PINS, RECORD, venv_python
from tsprune_edge.report.stats import LABELS

CLI = [sys.executable, "-m", "tsprune_edge"]
PROFILE = BUILT_IN["rpi4"]
VENV_PYTHON = venv_python(PROFILE)  # setup's venv and record live under the profile's workdir on the board
VENV = VENV_PYTHON.rsplit("/bin/", 1)[0]
SETUP_RECORD = f"{PROFILE.workdir.rstrip('/')}/{RECORD}"
# runtime -> the version setup pins for Pi OS bookworm's Python 3.11 (tflite_runtime is not installed there)
VERSIONS = {runtime: next(r.split("==")[1] for r in reqs if r.split("==")[0].replace("-", "_") == runtime)
            for runtime, reqs in PINS[3, 11].runtimes.items()}
SETUP_TIMEOUT_S = 1800  # emulated pip installs: onnxruntime, ai-edge-litert and numpy 2 under qemu


def _board_ssh(tmp_path_factory, name: str, offline: bool = False):
    reason = unavailable_reason()
    if reason:
        pytest.fail(f"the emulated arm64 board cannot run here: {reason} (run scripts/ci-apt.sh as root)")
    root = tmp_path_factory.mktemp(name)
    with emulated_board(root / "board", script=PI_OS_SCRIPT, pythons={}) as board:
        wrapper = board.offline_wrapper if offline else board.wrapper
        with running_sshd(root / "sshd", extra_config=[f"ForceCommand {wrapper}"]) as server:
            yield board, server


@pytest.fixture(scope="module")
def pi_os(tmp_path_factory):
    """A stock Pi OS board and a loopback sshd whose sessions (commands, scp, rsync) run inside it."""
    yield from _board_ssh(tmp_path_factory, "pi-os")


@pytest.fixture
def pi_os_offline(tmp_path_factory):
    """Another stock Pi OS board, fresh, whose sessions run in a network namespace of their own: no network."""
    yield from _board_ssh(tmp_path_factory, "pi-os-offline", offline=True)


@pytest.fixture(scope="module")
def host_env(tmp_path_factory):
    """The CLI's environment: the built-in rpi4 profile (an empty profile directory), and a wheel cache of its own
    so `--offline` really downloads."""
    return {"TSPRUNE_EDGE_DEVICES_DIR": str(tmp_path_factory.mktemp("profiles")),
            "TSPRUNE_EDGE_WHEEL_CACHE": str(tmp_path_factory.mktemp("wheels"))}


def _tsprune(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=SETUP_TIMEOUT_S,
                          env={**os.environ, **env}, cwd=REPO)


def _ssh(server, command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-F", str(server.ssh_config), "board", command], capture_output=True, text=True,
                          errors="replace", timeout=timeout)


def _preflight(board, server, python: str, runtime: str) -> dict:
    """The agent's preflight of one runtime under `python`, run through the board's sshd."""
    board.copy_in(REPO / "devices" / "agent.py", "/root/agent.py")
    proc = _ssh(server, f"{python} agent.py preflight --runtime {runtime}")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def set_up(pi_os, host_env):
    """`devices setup --device rpi4` on the stock board, once for the module: (board, server, done, record)."""
    board, server = pi_os
    done = _tsprune(host_env, "devices", "setup", "--device", "rpi4", "--host", "board", "--ssh-config",
                    str(server.ssh_config))
    record = board.host_path(SETUP_RECORD)
    return board, server, done, json.loads(record.read_text()) if record.is_file() else None


def test_the_stock_board_is_a_fresh_pi_os(pi_os):
    board, server = pi_os
    assert board.host_path("/usr/lib/python3.11/EXTERNALLY-MANAGED").is_file()
    version = _ssh(server, "python3 -c 'import platform; print(platform.python_version())'").stdout.strip()
    assert version == "3.11.2"
    assert list(board.host_path("/opt").iterdir()) == []  # no runtime venvs (scripts/arm64-board.sh adds those)
    for module in ("onnxruntime", "tflite_runtime", "ai_edge_litert"):
        proc = _ssh(server, f"python3 -c 'import {module}'")
        assert proc.returncode == 1 and f"No module named '{module}'" in proc.stderr, proc.stderr
    # PEP 668: pip refuses the system Python, as on a fresh Pi OS bookworm (nothing is fetched: --no-index)
    proc = _ssh(server, "python3 -m pip install --no-index six")
    assert proc.returncode == 1 and "externally-managed-environment" in proc.stderr, proc.stderr


def test_the_agent_points_a_stock_board_at_devices_setup(pi_os):
    board, server = pi_os
    for runtime in ("onnxruntime", "ai_edge_litert"):
        found = _preflight(board, server, "python3", runtime)["runtimes"][runtime]
        assert (found["importable"], found["runs"]) == (False, False), found
        assert "tsprune-edge devices setup" in found["fix"], found["fix"]
        assert "pip install" not in found["fix"], found["fix"]  # it fails there: externally-managed-environment


def test_setup_makes_the_venv_and_records_it_last(set_up):
    board, _, done, record = set_up
    assert done.returncode == 0, done.stderr
    assert record is not None, done.stderr
    assert (record["device"], record["python"], record["base_python"]) == ("rpi4", VENV_PYTHON, "python3")
    assert (record["python_version"], record["machine"], record["how"]) == ("3.11.2", "aarch64", "online")
    assert record["runtimes"] == VERSIONS and record["env"] == {} and record["wheel"] is None
    assert board.host_path(VENV_PYTHON).exists()
    assert not board.host_path(f"{PROFILE.workdir}/setup-wheels").exists()  # online: nothing copied over
    versions = ", ".join(f"{runtime} {version}" for runtime, version in VERSIONS.items())
    assert done.stdout.splitlines()[-1] == f"set up: rpi4 runs {VENV_PYTHON} ({versions}); recorded in {SETUP_RECORD}"
    # the system Python is untouched: still no runtime there
    assert board.run(["python3", "-c", "import onnxruntime"]).returncode == 1


def test_bench_after_setup_runs_in_the_venv_and_gives_a_verdict(set_up, host_env, bundles, tmp_path):
    board, server, done, _ = set_up
    assert done.returncode == 0, done.stderr
    results = tmp_path / "results"
    bench = _tsprune(host_env, "bench", "--device", "rpi4", "--host", "board", "--ssh-config", str(server.ssh_config),
                     "--artifacts", str(bundles), "--results", str(results), "--rounds", "2", "--max-rounds", "2",
                     "--threads", "1", "--min-time", "0.1", "--min-iters", "5")
    assert bench.returncode == 0, bench.stderr
    (run,) = results.iterdir()
    summary = json.loads((run / "bench.json").read_text())
    assert (summary["machine"], summary["emulated"]) == ("aarch64", True)
    preflight = json.loads((run / "preflight.json").read_text())
    assert list(preflight["interpreters"]) == [VENV_PYTHON]  # the venv setup made, for every runtime
    runtimes = {item["format"]: (item["runtime"], item["runtime_version"]) for item in summary["items"]}
    assert runtimes == {"onnx": ("onnxruntime", VERSIONS["onnxruntime"]),
                        "tflite": ("ai_edge_litert", VERSIONS["ai_edge_litert"])}
    for item in summary["items"]:
        assert item["rounds"] == 2 and item["correct"] and item["max_abs_error"] <= 1e-4, item
    report = _tsprune(host_env, "report", str(run), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    rows = json.loads((tmp_path / "report" / "report.json").read_text())["rows"]
    judged = [row for row in rows if row["variant"] == "unstructured-0.5"]
    assert sorted((row["format"], row["threads"]) for row in judged) == [("onnx", 1), ("tflite", 1)]
    for row in judged:
        assert row["verdict"] in LABELS and row["verdict"] in report.stdout, row
        assert 0 < row["speedup_low"] < row["speedup"] < row["speedup_high"] and row["paired_rounds"] == 2, row
        assert row["p50_ms"] > 0 and row["emulated"] is True, row


def test_a_second_setup_changes_nothing(set_up, host_env):
    board, server, done, record = set_up
    assert done.returncode == 0, done.stderr
    venv_before = snapshot(board.host_path(VENV))
    record_before = board.host_path(SETUP_RECORD).read_bytes()
    again = _tsprune(host_env, "devices", "setup", "--device", "rpi4", "--host", "board", "--ssh-config",
                     str(server.ssh_config))
    assert again.returncode == 0, again.stderr
    versions = ", ".join(f"{runtime} {version}" for runtime, version in VERSIONS.items())
    assert again.stdout == f"already set up: rpi4 runs {VENV_PYTHON} ({versions}); nothing changed\n"
    assert board.host_path(SETUP_RECORD).read_bytes() == record_before
    assert snapshot(board.host_path(VENV)) == venv_before


def test_offline_setup_on_a_board_without_network(pi_os_offline, host_env):
    board, server = pi_os_offline
    # the board's sessions see only a loopback that is down: pip cannot reach any index from there
    assert [line.split(":")[0].strip() for line in _ssh(server, "cat /proc/net/dev").stdout.splitlines()[2:]] == ["lo"]
    proc = _ssh(server, "python3 -m venv /tmp/probe && /tmp/probe/bin/pip install --retries 1 --timeout 5 six")
    assert proc.returncode == 1 and "No matching distribution found for six" in proc.stderr, proc.stderr
    assert "Failed to establish a new connection" in proc.stderr, proc.stderr
    _ssh(server, "rm -rf /tmp/probe")
    done = _tsprune(host_env, "devices", "setup", "--device", "rpi4", "--host", "board", "--ssh-config",
                    str(server.ssh_config), "--offline")
    assert done.returncode == 0, done.stderr
    record = json.loads(board.host_path(SETUP_RECORD).read_text())
    assert (record["python"], record["how"], record["runtimes"]) == (VENV_PYTHON, "offline", VERSIONS)
    assert not board.host_path(f"{PROFILE.workdir}/setup-wheels").exists()  # the copied wheels are removed
    for runtime in VERSIONS:
        found = _preflight(board, server, VENV_PYTHON, runtime)["runtimes"][runtime]
        assert (found["importable"], found["runs"], found["version"]) == (True, True, VERSIONS[runtime]), found
