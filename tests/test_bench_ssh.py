"""`tsprune-edge bench` over SSH to a real sshd on 127.0.0.1, and its faults: each gives one line and loses nothing
measured. The "board" is this machine behind sshd; tests/test_emulated_board.py runs the same flow on arm64."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bench_args import FAST
from tests.refusals import assert_one_line_error
from tests.sshd import descendants, free_port, make_key, running_sshd
from tsprune_edge.errors import BoardError


def write_profile(folder: Path, workdir: Path, runtimes=("onnxruntime", "ai_edge_litert")) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loopback.toml").write_text(
        'description = "this machine behind a loopback sshd"\narch = "x86_64"\ncores = 2\nmemory_mb = 0\n'
        f'python = "{sys.executable}"\nworkdir = "{workdir}"\nhost = "board"\n'
        f"runtimes = {json.dumps(list(runtimes))}\n")


@pytest.fixture
def board(tmp_path, monkeypatch, sshd_server):
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    write_profile(tmp_path / "profiles", tmp_path / "board")
    return sshd_server


def assert_fails_with(result, *fragments: str) -> None:
    """Progress lines may come first; the failure is the last line, one line, no traceback."""
    assert result.code == 2, (result.code, result.err)
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in result.err, result.err
    for fragment in fragments:
        assert fragment in last, (fragment, last)


def _bench(cli, tmp_path, artifacts, config, *args):
    return cli("bench", "--device", "loopback", "--ssh-config", str(config), "--artifacts", str(artifacts),
               "--results", str(tmp_path / "results"), *FAST, *args)


def test_ssh_bench_copies_verifies_measures_and_cleans_up(cli, tmp_path, board, bundles):
    result = _bench(cli, tmp_path, bundles, board.ssh_config)
    assert result.code == 0, result.err
    (run,) = (tmp_path / "results").iterdir()
    summary = json.loads((run / "bench.json").read_text())
    assert summary["transport"] == f"ssh {board.user}@127.0.0.1:{board.port}"
    assert summary["machine"] == "x86_64" and not summary["emulated"]
    assert len(summary["items"]) == 6 and all(i["rounds"] == 2 and i["correct"] for i in summary["items"])
    # the agent's progress crossed the connection: one live line per measurement, in the order the board ran them
    progress = [line for line in result.err.splitlines() if line.startswith("  [")]
    ran = [item_id.split("__")[0] for order in summary["order"]["rounds"] for item_id in order]
    assert [line.split("] round ")[0] for line in progress] == [f"  [{k}/24" for k in range(1, 25)]  # 2 passes a round
    assert [line.split(" ")[5] for line in progress] == ran
    assert not (tmp_path / "board" / run.name).exists()  # removed without --keep
    assert json.loads((run / "preflight.json").read_text())["machine"] == "x86_64"


def test_connection_refused(cli, tmp_path, board, bundles):
    config = tmp_path / "closed_config"
    config.write_text(board.ssh_config.read_text().replace(f"Port {board.port}", f"Port {free_port()}"))
    result = _bench(cli, tmp_path, bundles, config)
    assert_one_line_error(result, "connection refused")


def test_wrong_key(cli, tmp_path, board, bundles):
    make_key(tmp_path / "stranger")
    config = tmp_path / "stranger_config"
    config.write_text(board.ssh_config.read_text().replace(str(board.identity), str(tmp_path / "stranger")))
    result = _bench(cli, tmp_path, bundles, config)
    assert_one_line_error(result, "refused our key")


def test_missing_runtime_names_the_fix(cli, tmp_path, board, bundles):
    write_profile(tmp_path / "profiles", tmp_path / "board", runtimes=("tflite_runtime",))
    result = _bench(cli, tmp_path, bundles, board.ssh_config, "--runtime", "tflite")
    assert_fails_with(result, "tflite: tflite_runtime does not run on loopback", "fix: pip install")
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
    assert not any((tmp_path / "board").glob("loopback-*"))  # nothing measured, nothing left on the board


def test_corrupt_artifact_is_named_here_and_caught_by_checksum_on_the_board(cli, tmp_path, board,
                                                                           bundles):
    """The CLI names a bad local bundle before any copy; past that check (a file damaged on the way), the board's
    own sha256 check stops the run."""
    from rich.console import Console

    from tsprune_edge.devices.bench import BenchRequest, bench

    copy = tmp_path / "export"
    shutil.copytree(bundles, copy)
    model = copy / "dense" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    result = _bench(cli, tmp_path, copy, board.ssh_config)
    assert_fails_with(result, "dense: model.onnx missing or not what manifest.json records", "before any copy")
    assert not (tmp_path / "results").exists()
    request = BenchRequest(device="loopback", artifacts=copy, results=tmp_path / "library", rounds=1, min_time=0.2,
                           min_iters=20, ssh_config=board.ssh_config)
    with pytest.raises(BoardError, match="dense: checksum mismatch on the board for model.onnx"):
        bench(request, console=Console(quiet=True))


def _drop_ssh_sessions(sshd_pid: int) -> None:
    """Kill every sshd process serving a connection (not the commands they started), as a dropped link would."""
    for pid in descendants(sshd_pid):
        try:
            if Path(f"/proc/{pid}/comm").read_text().startswith("sshd"):
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def test_sshd_killed_mid_run_then_resume_loses_nothing(tmp_path, bundles, monkeypatch):
    """The connection dies while the board measures; the agent goes on there. `--resume` on a new sshd waits for
    it, measures what is missing, and brings everything back: every result measured before the drop is kept."""
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    write_profile(tmp_path / "profiles", tmp_path / "board")
    results = tmp_path / "results"
    argv = [sys.executable, "-m", "tsprune_edge", "bench", "--device", "loopback", "--artifacts", str(bundles),
            "--results", str(results), "--rounds", "3", "--max-rounds", "3", "--min-time", "0.5", "--min-iters", "20"]
    with running_sshd(tmp_path / "sshd1") as first:
        bench = subprocess.Popen([*argv, "--ssh-config", str(first.ssh_config)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env={**os.environ})
        remote_results = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = list((tmp_path / "board").glob("loopback-*/results/*__r1.json"))
            if found:
                remote_results = found[0].parent
                break
            time.sleep(0.2)
        assert remote_results is not None, "the board never started measuring"
        _drop_ssh_sessions(first.pid)  # the network drops: sshd's sessions die, the agent on the board goes on
    # sshd is gone now too.
    out, err = bench.communicate(timeout=120)
    assert bench.returncode == 3, err.decode()  # the board failed mid-run: exit 3, what it measured is kept
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in err.decode(), err.decode()
    (run,) = results.iterdir()
    assert json.loads((run / "state.json").read_text())["status"] != "done", err.decode()
    with running_sshd(tmp_path / "sshd2") as second:
        resumed = subprocess.run([*argv, "--resume", "--ssh-config", str(second.ssh_config)], capture_output=True,
                                 timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()
    summary = json.loads((run / "bench.json").read_text())
    assert all(item["rounds"] == 3 and item["correct"] for item in summary["items"])
    assert sorted(p.name for p in (run / "raw").glob("*__r*.json")) == sorted(
        f"{item['id']}__r{r}{b}.json" for item in summary["items"] for r in (1, 2, 3) for b in ("", "b"))


def test_devices_check_over_ssh_names_the_missing_runtime(cli, tmp_path, board):
    result = cli("devices", "check", "--device", "loopback", "--ssh-config", str(board.ssh_config))
    assert result.code == 0, result.err
    assert "onnx: onnxruntime" in result.out and "tflite: ai_edge_litert" in result.out
    write_profile(tmp_path / "profiles", tmp_path / "board", runtimes=("tflite_runtime",))
    result = cli("devices", "check", "--device", "loopback", "--ssh-config", str(board.ssh_config))
    assert result.code == 0, result.err
    assert "pip install tflite-runtime" in result.out and "tflite: no runtime runs on this board" in result.out


def known_hosts_only(board, tmp_path) -> Path:
    """An ssh config that only trusts the loopback sshd's host key: the port and key come from the options."""
    config = tmp_path / "known_hosts_config"
    config.write_text(f"Host *\n    UserKnownHostsFile {board.known_hosts}\n    GlobalKnownHostsFile /dev/null\n")
    return config


def test_port_and_identity_reach_the_board_for_check_and_bench(cli, tmp_path, board, bundles):
    """`--port` and `--identity` as a user passes them (no Port or IdentityFile in any config), then the same
    board as ssh://user@host:port: ssh runs the agent, rsync copies the bundles and fetches the results."""
    config = known_hosts_only(board, tmp_path)
    result = cli("devices", "check", "--device", "loopback", "--host", board.destination, "--port",
                 str(board.port), "--identity", str(board.identity), "--ssh-config", str(config))
    assert result.code == 0, result.err
    assert "onnx: onnxruntime" in result.out
    result = cli("bench", "--device", "loopback", "--host", f"ssh://{board.user}@127.0.0.1:{board.port}",
                 "--identity", str(board.identity), "--ssh-config", str(config), "--artifacts", str(bundles),
                 "--results", str(tmp_path / "results"), "--runtime", "onnxruntime", "--threads", "1", *FAST)
    assert result.code == 0, result.err
    (run,) = (tmp_path / "results").iterdir()
    summary = json.loads((run / "bench.json").read_text())
    assert summary["transport"] == f"ssh {board.user}@127.0.0.1:{board.port}"
    assert len(summary["items"]) == 3 and all(i["rounds"] == 2 and i["correct"] for i in summary["items"])


def test_a_bad_port_is_refused_before_connecting(cli, tmp_path, board):
    result = cli("devices", "check", "--device", "loopback", "--port", "70000")
    assert_one_line_error(result, "--port must be in [1, 65535], got 70000")
    result = cli("devices", "check", "--device", "loopback", "--host", "ssh://pi@127.0.0.1:2222", "--port", "22")
    assert_one_line_error(result, "'ssh://pi@127.0.0.1:2222' names port 2222 but --port says 22")
