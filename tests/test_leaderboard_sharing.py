"""The leaderboard's two processes: claims, the train-ahead registration, and the stop while latency is measured.

Helper processes here are real processes (a sleeping Python whose command line names leaderboard.py, as a
train-ahead run's does); each test stops the ones it started."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sharing = importlib.import_module("leaderboard_sharing")
leaderboard = importlib.import_module("leaderboard")


@pytest.fixture
def spawn():
    """Start a sleeping process (its command line names leaderboard.py unless told otherwise); all are killed after."""
    started = []

    def start(names_leaderboard: bool = True) -> subprocess.Popen:
        argv = [sys.executable, "-c", "import time; time.sleep(120)"] + (["leaderboard.py"] if names_leaderboard
                                                                          else ["other.py"])
        process = subprocess.Popen(argv)
        started.append(process)
        deadline = time.monotonic() + 10
        while not sharing.is_leaderboard(process.pid) and names_leaderboard and time.monotonic() < deadline:
            time.sleep(0.02)  # /proc shows the exec'd command line a moment after Popen returns
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def gone(process: subprocess.Popen) -> int:
    process.kill()
    process.wait()
    return process.pid


def test_quiet_stops_every_registered_helper_and_continues_it_after(tmp_path, spawn):
    helper = spawn()
    (tmp_path / "sharing" / "helpers").mkdir(parents=True)
    (tmp_path / "sharing" / "helpers" / str(helper.pid)).write_text("")
    assert sharing.process_state(helper.pid) in ("S", "R")
    with sharing.quiet(tmp_path) as stopped:
        assert stopped == [helper.pid]
        assert sharing.process_state(helper.pid) == "T"
    assert sharing.process_state(helper.pid) in ("S", "R")
    with pytest.raises(RuntimeError), sharing.quiet(tmp_path):  # a failed measurement still lets it go on
        assert sharing.process_state(helper.pid) == "T"
        raise RuntimeError("measurement failed")
    assert sharing.process_state(helper.pid) in ("S", "R")


def test_a_stale_or_foreign_pid_is_never_signalled_and_its_file_goes(tmp_path, spawn):
    foreign, dead = spawn(names_leaderboard=False), gone(spawn())
    helpers = tmp_path / "sharing" / "helpers"
    helpers.mkdir(parents=True)
    for pid in (foreign.pid, dead, os.getpid()):
        (helpers / str(pid)).write_text("")
    with sharing.quiet(tmp_path) as stopped:
        assert stopped == []
        assert sharing.process_state(foreign.pid) in ("S", "R")
    assert list(helpers.iterdir()) == []


def test_registered_lasts_for_the_block_and_quiet_finds_it(tmp_path):
    mine = tmp_path / "sharing" / "helpers" / str(os.getpid())
    with sharing.registered(tmp_path):
        assert mine.is_file()
        assert sharing.helpers(tmp_path) == []  # this process never stops itself
    assert not mine.exists()


def test_a_claim_held_by_a_live_process_is_refused_and_taken_over_when_it_is_gone(tmp_path, spawn):
    other = spawn()
    claims = tmp_path / "sharing" / "claims"
    claims.mkdir(parents=True)
    (claims / "dense--ETTm1--fits--L96--s2021").write_text(str(other.pid))
    assert sharing.claim(tmp_path, "dense--ETTm1--fits--L96--s2021") is False
    assert sharing.holder(tmp_path, "dense--ETTm1--fits--L96--s2021") == other.pid
    sharing.release(tmp_path, "dense--ETTm1--fits--L96--s2021")  # not ours: stays
    assert (claims / "dense--ETTm1--fits--L96--s2021").read_text() == str(other.pid)
    gone(other)
    assert sharing.claim(tmp_path, "dense--ETTm1--fits--L96--s2021") is True
    assert (claims / "dense--ETTm1--fits--L96--s2021").read_text() == str(os.getpid())
    sharing.release(tmp_path, "dense--ETTm1--fits--L96--s2021")
    assert not (claims / "dense--ETTm1--fits--L96--s2021").exists()


def test_run_claimed_waits_for_the_other_process_and_reads_its_record(tmp_path, spawn):
    other, cells, name = spawn(), tmp_path / "cells", "dense--ETTm1--fits--L96--s2021"
    cells.mkdir()
    (tmp_path / "sharing" / "claims").mkdir(parents=True)
    (tmp_path / "sharing" / "claims" / name).write_text(str(other.pid))

    def finish():
        time.sleep(0.3)
        (cells / f"{name}.json").write_text(json.dumps({"status": "ok", "process": "train-ahead"}))

    threading.Thread(target=finish).start()

    def compute():
        raise AssertionError("computed twice")

    assert leaderboard.run_claimed(tmp_path, cells, name, compute, poll_s=0.05) == {"status": "ok",
                                                                                   "process": "train-ahead"}


def test_measured_says_how_many_helpers_it_stopped(tmp_path, spawn):
    helper = spawn()
    (tmp_path / "sharing" / "helpers").mkdir(parents=True)
    (tmp_path / "sharing" / "helpers" / str(helper.pid)).write_text("")
    states = []
    record = leaderboard.measured(tmp_path, lambda: states.append(sharing.process_state(helper.pid)) or {"p50": 1})
    assert states == ["T"] and record == {"p50": 1, "train_ahead_stopped": 1}


def test_the_main_run_trains_with_one_thread_only_while_a_helper_is_registered(tmp_path, spawn):
    import torch

    full = leaderboard.full_threads()
    try:
        assert leaderboard.share_cores(tmp_path) == full == torch.get_num_threads()
        helper = spawn()
        (tmp_path / "sharing" / "helpers" / str(helper.pid)).write_text("")
        assert leaderboard.share_cores(tmp_path) == 1 == torch.get_num_threads()
        record = leaderboard.measured(tmp_path, lambda: {"threads": torch.get_num_threads()})
        assert record == {"threads": full, "train_ahead_stopped": 1}  # measuring: the helper stopped, all threads
        gone(helper)
        assert leaderboard.share_cores(tmp_path) == full == torch.get_num_threads()
    finally:
        torch.set_num_threads(full)


def test_train_ahead_takes_each_dataset_from_the_last_model_and_skips_carried_sections():
    order = leaderboard.ahead_order(["ETTh1", "ETTm1"], ["autoformer", "fits"], [1, 2], {("ETTh1", 96)})
    assert order == ["dense--ETTm1--fits--L96--s1", "dense--ETTm1--fits--L96--s2",
                     "dense--ETTm1--autoformer--L96--s1", "dense--ETTm1--autoformer--L96--s2"]


def test_train_ahead_and_summarize_together_are_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as stopped:
        leaderboard.parse(["--train-ahead", "--summarize"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == ("error: --train-ahead trains cells and --summarize only rewrites the results; "
                                       "give one of them\n")


def test_a_train_ahead_run_trains_dense_cells_with_one_thread_and_writes_no_results(tmp_path, shared_data):
    record, work, results = tmp_path / "record", tmp_path / "work", tmp_path / "results"
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "leaderboard.py"), "--train-ahead",
                          "--datasets", "ETTh2", "--models", "sparsetsf", "--seeds", "1", "--max-epochs", "1",
                          "--record", str(record), "--work", str(work), "--results", str(results),
                          "--data-dir", str(shared_data), "--nice", "0"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    cell = json.loads((record / "dense--ETTh2--sparsetsf--L96--s2021.json").read_text())
    assert cell["status"] == "ok" and cell["process"] == "train-ahead" and cell["torch_threads"] == 1
    assert cell["epochs_run"] == 1 and cell["test"]["mse"] > 0
    assert sorted(p.name for p in record.iterdir()) == ["checkpoints", "dense--ETTh2--sparsetsf--L96--s2021.json"]
    assert (record / "checkpoints" / cell["checkpoint"]).is_file()  # kept: its pruned cells are not settled
    assert list((work / "sharing" / "helpers").iterdir()) == [] and list((work / "sharing" / "claims").iterdir()) == []
    assert not results.exists()
    assert "train-ahead: 1 dense cell computed" in run.stderr


def test_kill_unwinds_a_train_ahead_run_its_registration_and_claim_go(tmp_path, shared_data):
    work = tmp_path / "work"
    run = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "leaderboard.py"), "--train-ahead",
                            "--datasets", "ETTh2", "--models", "transformer", "--seeds", "1", "--max-epochs", "1",
                            "--record", str(tmp_path / "record"), "--work", str(work), "--results",
                            str(tmp_path / "results"), "--data-dir", str(shared_data), "--nice", "0"],
                           stderr=subprocess.PIPE, text=True)
    claims = work / "sharing" / "claims"
    deadline = time.monotonic() + 120
    while not (claims.is_dir() and any(claims.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p.name for p in claims.iterdir()] == ["dense--ETTh2--transformer--L96--s2021"]
    assert [p.name for p in (work / "sharing" / "helpers").iterdir()] == [str(run.pid)]
    run.terminate()
    assert run.wait(timeout=60) == 143, run.stderr.read()
    assert list(claims.iterdir()) == [] and list((work / "sharing" / "helpers").iterdir()) == []
    assert not (tmp_path / "record" / "dense--ETTh2--transformer--L96--s2021.json").exists()
