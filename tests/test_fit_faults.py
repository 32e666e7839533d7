"""`tsprune-edge fit` under faults, on the real small Transformer of tests/test_fit.py measured on this machine:
Ctrl-C (SIGINT to a real process) before the latency table, during it and during the first round, each followed by
the same command, which finishes without measuring any probe twice; damaged cache entries set aside and measured
again; an edited fit.json and another request into a fit's folder refused in one line; a remote board without
--host refused at once, with nothing written."""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import onnxruntime
import pytest
from rich.console import Console

from tests.bench_args import QUICK_FIT as QUICK
from tests.paths import SHARED_DATA
from tsprune_edge.checkpoint import load_checkpoint
from tsprune_edge.fit.loop import FitRequest, _dense_reference
from tsprune_edge.fit.measure import Target
from tsprune_edge.fit.sensitivity import Sensitivity, cached_sensitivity
from tsprune_edge.fit.space import pruning_space
from tsprune_edge.fit.table import table_path
from tsprune_edge.prune.stage import PruneRequest
from tsprune_edge.workflow import checkpoint_data

CLI = [sys.executable, "-m", "tsprune_edge", "fit"]
TABLE_ITEMS = 11  # dense, 9 probes, the per-call probe
ROUND_ITEMS = 3  # dense, fit-1, the per-call probe
ROUNDS = 2 * 2  # measurements per item: QUICK's 2 bench rounds, each a forward and a mirrored pass


class Running:
    """A real `tsprune-edge fit` process whose stderr is read line by line as it comes."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "TSPRUNE_EDGE_DATA_DIR": str(SHARED_DATA)}
        self.proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.err: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def interrupt_when(self, pattern: str, timeout: float = 600) -> None:
        """SIGINT as soon as a line of stderr matches `pattern` (as a user's Ctrl-C at that point)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.lines.get(timeout=deadline - time.monotonic())
            if line is None:
                return  # it ended before that point: the caller's assertions say so
            self.err.append(line)
            if re.search(pattern, line):
                self.proc.send_signal(signal.SIGINT)
                return
        raise AssertionError(f"no line matched {pattern!r} in {timeout} s")

    def finish(self, timeout: float = 600) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        while not self.lines.empty():
            line = self.lines.get()
            if line is not None:
                self.err.append(line)
        return code, "\n".join(self.err)


def _results(folder: Path) -> dict[str, str]:
    """Measurement result files (item__rN.json) fetched under `folder`: name -> sha256."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*__r*.json")}


def _agent_counts(run: Path) -> dict[str, int]:
    """How the agent's last run of `run` treated each measurement: measured now, or skipped as already done."""
    measurements = json.loads((run / "raw" / "run.json").read_text())["measurements"]
    return {status: sum(m["status"] == status for m in measurements) for status in ("measured", "skipped")}


@pytest.fixture(scope="module")
def interrupted(dense, tmp_path_factory):
    """One fit interrupted three times and then finished by the same command; what each stop left behind."""
    root = tmp_path_factory.mktemp("interrupted")
    cache, out = root / "cache", root / "fit"
    args = [str(dense), "--speedup", "1.25", "--device", "desktop", "--max-rounds", "1", *QUICK, "--cache",
            str(cache), "--out", str(out)]
    stops = {}
    for point, pattern in (("before the table", r"exporting probe-"),
                           ("during the table", rf"\[3/{TABLE_ITEMS * ROUNDS}\]"),
                           ("during round 1", rf"\[2/{ROUND_ITEMS * ROUNDS}\]")):
        fit = Running(args)
        fit.interrupt_when(pattern)
        code, err = fit.finish()
        stops[point] = {"code": code, "err": err, "results": _results(cache), "out": _results(out),
                        "out_exists": out.exists(),
                        "fit_json": (out / "fit.json").read_text() if (out / "fit.json").is_file() else None}
    other = subprocess.run([*CLI, *[("1.5" if a == "1.25" else a) for a in args]], capture_output=True, text=True,
                           env={**os.environ, "TSPRUNE_EDGE_DATA_DIR": str(SHARED_DATA)}, timeout=300)
    other_left = (out / "fit.json").read_text()
    final = Running(args)
    code, err = final.finish()
    return {"cache": cache, "out": out, "args": args, "stops": stops, "other": other, "other_left": other_left,
            "code": code, "err": err, "stdout": final.proc.stdout.read()}


def test_an_interrupted_fit_continues_with_the_same_command_and_measures_nothing_twice(interrupted):
    stops = interrupted["stops"]
    for point, stop in stops.items():
        assert stop["code"] == 130, (point, stop["err"][-2000:])
        assert stop["err"].splitlines()[-1].startswith("error: interrupted"), point
        assert "finished and measured files are kept" in stop["err"].splitlines()[-1]
    before, during, in_round = stops.values()
    assert before["results"] == {} and not before["out_exists"]  # nothing measured yet, nothing in OUT
    probes_done = during["results"]
    assert 3 <= len(probes_done) < TABLE_ITEMS * ROUNDS and not during["out_exists"]
    # interrupted in its first round: OUT says what it is, and which request made it
    state = json.loads(in_round["fit_json"])
    assert (state["format"], state["version"], state["status"]) == ("tsprune-edge/fit", 1, "running")
    assert state["candidates"] == [] and state["current"]["step"] == "fit-1"
    assert state["request"]["speedup"] == 1.25
    round_done = in_round["out"]
    assert 2 <= len(round_done) < ROUND_ITEMS * ROUNDS

    out, cache = interrupted["out"], interrupted["cache"]
    # another request into that folder: one line naming what differs, the folder untouched
    other = interrupted["other"]
    assert other.returncode == 2 and len(other.stderr.splitlines()) == 1
    assert other.stderr.startswith(f"error: {out} holds an unfinished fit of another request (--speedup 1.25, now "
                                   "1.5); rerun that command to continue it")
    assert interrupted["other_left"] == in_round["fit_json"]

    # the same command finishes, reusing every measurement made before
    assert interrupted["code"] == 0, interrupted["err"][-3000:]
    err = interrupted["err"]
    assert "nothing measured" in err and "sensitivity:" not in err  # table and sensitivity from the cache
    assert "fit-1: pruned and fine-tuned by the interrupted run, reused" in err and "exporting" not in err
    table = next(cache.glob("*.run"))
    measured = _results(table)
    assert len(measured) == TABLE_ITEMS * ROUNDS
    assert {name: measured[name] for name in probes_done} == probes_done  # the same files: not measured again
    assert _agent_counts(table) == {"measured": TABLE_ITEMS * ROUNDS - len(probes_done),
                                    "skipped": len(probes_done)}
    record = json.loads((out / "fit.json").read_text())
    (candidate,) = record["candidates"]
    assert record["current"] is None and record["status"] == (  # the one round's verdict, not any status
        "unreachable" if not candidate["met"] else "met" if candidate["budget_used"] >= 0.85 else "met, underused")
    run = Path(candidate["run"])
    assert {name: sha for name, sha in _results(run).items() if name in round_done} == round_done
    assert len(_results(run)) == ROUND_ITEMS * ROUNDS
    assert _agent_counts(run) == {"measured": ROUND_ITEMS * ROUNDS - len(round_done), "skipped": len(round_done)}
    # the round's run, resumed, and a second independent one only where the first landed within the scatter
    second_look = abs(1.25 / candidate["speedup"] - 1) < record["headroom"]["band"]
    assert [r["run"] for r in candidate["runs"]][0] == str(run) and len(candidate["runs"]) == 1 + second_look
    assert sorted(p.name for p in (out / "results").iterdir()) == sorted(Path(r["run"]).name
                                                                         for r in candidate["runs"])
    assert f"-> {out / 'fit.json'}" in interrupted["stdout"]


def test_a_truncated_latency_table_is_set_aside_and_measured_again(interrupted, cli, tmp_path, shared_data):
    cache = tmp_path / "cache"
    cache.mkdir()
    table = next(p for p in interrupted["cache"].glob("desktop-*.json"))
    damaged = table.read_bytes()[: len(table.read_bytes()) // 2]
    (cache / table.name).write_bytes(damaged)
    dense_ms = json.loads(table.read_text())["probes"][0]["p50_ms"]
    result = cli("fit", interrupted["args"][0], "--budget-ms", f"{dense_ms * 3:.6f}", "--device", "desktop", *QUICK,
                 "--cache", str(cache), "--out", str(tmp_path / "fit"))
    said = [line for line in result.err.splitlines() if "damaged" in line]
    assert said == [f"latency table {cache / table.name} is damaged (JSONDecodeError): set aside as "
                    f"{table.name}.damaged, measuring it again"]
    assert (cache / f"{table.name}.damaged").read_bytes() == damaged  # renamed, not deleted
    again = json.loads((cache / table.name).read_text())
    assert [p["name"] for p in again["probes"]] == [p["name"] for p in json.loads(table.read_text())["probes"]]
    assert len(_results(cache / table.name.replace(".json", ".run"))) == TABLE_ITEMS * ROUNDS
    # measured again, then the budget is refused as before: one error line, nothing in OUT
    assert result.code == 2 and result.err.splitlines()[-1].startswith("error: nothing to do")
    assert not (tmp_path / "fit").exists()


def test_a_table_measured_under_another_runtime_version_is_measured_again(interrupted, cli, tmp_path,
                                                                         shared_data):
    cache = tmp_path / "cache"
    cache.mkdir()
    source = next(p for p in interrupted["cache"].glob("desktop-*.json"))
    table = json.loads(source.read_text())
    assert table["identity"]["runtime_version"] == onnxruntime.__version__
    older = {**table["identity"], "runtime_version": "1.17.0"}
    stale = table_path(cache, table["key"], older)
    stale.write_text(json.dumps({**table, "identity": older}))
    before = stale.read_bytes()
    dense_ms = next(p["p50_ms"] for p in table["probes"] if p["name"] == "dense")
    result = cli("fit", interrupted["args"][0], "--budget-ms", f"{dense_ms * 3:.6f}", "--device", "desktop", *QUICK,
                 "--cache", str(cache), "--out", str(tmp_path / "fit"))
    said = [line for line in result.err.splitlines() if "elsewhere" in line]
    assert said == [f"latency table: {stale.name} was measured elsewhere (runtime_version 1.17.0, now "
                    f"{onnxruntime.__version__}): not this board's timings, measuring them again"]
    assert stale.read_bytes() == before  # kept as it was, beside the new one
    fresh = table_path(cache, table["key"], table["identity"])
    assert fresh != stale and json.loads(fresh.read_text())["identity"] == table["identity"]
    assert len(_results(fresh.with_suffix(".run"))) == TABLE_ITEMS * ROUNDS  # every probe measured again
    assert result.code == 2 and result.err.splitlines()[-1].startswith("error: nothing to do")


def test_a_truncated_sensitivity_table_is_set_aside_and_measured_again(interrupted, dense, tmp_path,
                                                                        shared_data):
    stored = next(interrupted["cache"].glob("sensitivity-*.json"))
    damaged = stored.read_bytes()[:100]
    (tmp_path / stored.name).write_bytes(damaged)
    checkpoint = load_checkpoint(dense)
    model = checkpoint.build_model()
    said = io.StringIO()
    table = cached_sensitivity(dense, model, pruning_space(model, 8), checkpoint_data(checkpoint), tmp_path,
                               Console(file=said, width=300))
    assert said.getvalue().splitlines()[0] == (f"sensitivity table {tmp_path / stored.name} is damaged "
                                               f"(JSONDecodeError): set aside as {stored.name}.damaged, measuring "
                                               "it again")
    assert (tmp_path / f"{stored.name}.damaged").read_bytes() == damaged
    first = Sensitivity.from_record(json.loads(stored.read_text())["table"])  # the same windows, the same numbers
    assert table.dense_mse == pytest.approx(first.dense_mse, rel=1e-9)
    assert _levels(table) == pytest.approx(_levels(first), rel=1e-9) and table.width == pytest.approx(first.width)
    assert json.loads((tmp_path / stored.name).read_text())["table"] == table.record()


def _levels(table: Sensitivity) -> dict[tuple[str, int], float]:
    return {(path, kept): mse for path, levels in table.layers.items() for kept, mse in levels.items()}


def test_a_truncated_dense_reference_is_set_aside_and_fine_tuned_again(dense, tmp_path, shared_data):
    request = FitRequest(checkpoint=dense, target=Target("desktop"), out=tmp_path / "fit", finetune_epochs=1,
                         cache=tmp_path / "cache")
    base = PruneRequest(method="structured", sparsity=0.0, finetune_epochs=1, round_to=8)
    path = _dense_reference(request, base, Console(quiet=True))
    damaged = path.read_bytes()[:1000]
    path.write_bytes(damaged)
    said = io.StringIO()
    assert _dense_reference(request, base, Console(file=said, width=300)) == path
    assert said.getvalue().splitlines()[0] == (f"dense reference {path} is damaged: set aside as "
                                               f"{path.parent.name}.damaged, fine-tuning it again")
    assert (path.parent.with_name(path.parent.name + ".damaged") / "model.pt").read_bytes() == damaged
    assert load_checkpoint(path).training["finetune"]["epochs"] == 1


@pytest.mark.parametrize(("text", "problem"), [
    ('{"status": "running", "request": {', "cannot be read (JSONDecodeError"),
    ('[]', "is not a tsprune-edge/fit file (a JSON list, not an object)"),
    ('{"status": ["running"], "request": {}, "candidates": []}', "is damaged or was edited (status ['running'])"),
    ('{"status": "running", "request": {}, "candidates": [{"round": "1"}]}',
     "is damaged or was edited (candidate 1: round)"),
    ('{"format": "tsprune-edge/fit", "version": 2, "status": "met", "request": {}, "candidates": []}',
     "was written by a newer tsprune-edge (tsprune-edge/fit version 2; this one reads up to 1)"),
])
def test_an_edited_fit_json_is_one_line_naming_it(cli, dense, tmp_path, text, problem):
    out = tmp_path / "fit"
    out.mkdir()
    (out / "fit.json").write_text(text)
    result = cli("fit", str(dense), "--speedup", "2", *QUICK, "--cache", str(tmp_path / "cache"), "--out", str(out))
    assert result.code == 2 and len(result.err.splitlines()) == 1
    assert result.err.startswith(f"error: {out / 'fit.json'} {problem}")
    assert (out / "fit.json").read_text() == text and not (tmp_path / "cache").exists()


def test_a_board_that_cannot_be_reached_as_asked_is_refused_at_once(cli, dense, tmp_path):
    for extra, message in ((("--device", "rpi4"), "--device rpi4 is a remote board: pass --host user@address"),
                           (("--device", "desktop", "--host", "pi@board"),
                            "--device desktop is measured on this machine; drop --host")):
        began = time.monotonic()
        result = cli("fit", str(dense), "--speedup", "2", *extra, *QUICK, "--cache", str(tmp_path / "cache"),
                     "--out", str(tmp_path / "fit"))
        assert time.monotonic() - began < 2.0
        assert result.code == 2 and len(result.err.splitlines()) == 1 and message in result.err
        assert sorted(p.name for p in tmp_path.iterdir()) == []  # no cache folder, no OUT
