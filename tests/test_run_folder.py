"""The bench run folder (devices/runs.py): one module reads and writes it, every file a command hands another carries
a format version (newer refused in one line, older read), and one bench owns a run folder at a time: two benches
started in the same second with the same --results never share a folder, `--resume` never takes a run another
bench holds or one that finished, and clean-up removes only what the run itself made."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.refusals import assert_one_line_error
from tsprune_edge.devices import runs
from tsprune_edge.errors import BoardError, UserError

CLI = [sys.executable, "-m", "tsprune_edge"]
FAST = ("--runtime", "onnxruntime", "--rounds", "2", "--max-rounds", "2", "--min-time", "0.1", "--min-iters", "10")
IDS = ["dense__onnx__t1", "percall__onnx__t1", "unstructured-0.5__onnx__t1"]
STAMP = "20261201-070000"
# Both benches see the same wall-clock second (the moment two benches start together); nothing else is changed.
SAME_SECOND = f"""import time
_strftime = time.strftime
def _pinned(fmt, *args):
    return {STAMP!r} if fmt == "%Y%m%d-%H%M%S" and not args else _strftime(fmt, *args)
time.strftime = _pinned
"""


def _sha(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, bundles):  # noqa: F811
    """Two benches of the same bundles started together into one --results, in the same second."""
    root = tmp_path_factory.mktemp("together")
    (root / "pin").mkdir()
    (root / "pin" / "sitecustomize.py").write_text(SAME_SECOND)
    env = {**os.environ, "PYTHONPATH": str(root / "pin"), "TSPRUNE_EDGE_DEVICES_DIR": str(root / "profiles")}
    argv = [*CLI, "bench", "--device", "desktop", "--artifacts", str(bundles), "--results", str(root / "results"),
            *FAST]
    logs = [(root / f"out{n}", root / f"err{n}") for n in range(2)]
    procs = [subprocess.Popen(argv, stdout=out.open("w"), stderr=err.open("w"), env=env) for out, err in logs]
    codes = [proc.wait(timeout=600) for proc in procs]
    return root / "results", [(code, out.read_text(), err.read_text())
                              for code, (out, err) in zip(codes, logs, strict=True)]


def test_two_benches_started_together_get_their_own_folders_and_keep_every_result(two_runs):
    results, done = two_runs
    for code, _, err in done:
        assert code == 0, err
    folders = sorted(p.name for p in results.iterdir())
    assert folders == [f"desktop-{STAMP}", f"desktop-{STAMP}-2"]
    owners = set()
    for name in folders:
        run = results / name
        summary = json.loads((run / "bench.json").read_text())
        assert summary["run_id"] == name and summary["format"] == "tsprune-edge/bench" and summary["version"] == 1
        assert [item["id"] for item in summary["items"]] == IDS
        assert all(item["rounds"] == 2 and not item["errors"] for item in summary["items"])
        assert sorted(p.name for p in runs.all_round_paths(run)) == sorted(f"{i}__r{r}{b}.json" for i in IDS
                                                                            for r in (1, 2) for b in ("", "b"))
        assert runs.read_state(run)["status"] == "done"
        owners.add(runs.read_owner(run))
        assert not Path(runs.read_state(run)["remote_dir"]).exists()  # each removed its own board folder only
    assert len(owners) == 2 and None not in owners
    printed = {out.splitlines()[-1] for _, out, _ in done}
    assert printed == {f"results: {results / name / 'bench.json'}" for name in folders}


def test_every_file_a_bench_writes_for_another_carries_its_format_and_version(two_runs):
    run = two_runs[0] / f"desktop-{STAMP}"
    for name, kind in (("bench.json", "bench"), ("state.json", "state"), ("plan.json", "plan"),
                       ("preflight.json", "preflight")):
        record = json.loads((run / name).read_text())
        assert (record["format"], record["version"]) == (f"tsprune-edge/{kind}", 1), name


def test_report_refuses_a_newer_bench_in_one_line_and_reads_a_version_0_run(two_runs, cli, tmp_path):
    source = two_runs[0] / f"desktop-{STAMP}"
    current = cli("report", str(source), "--out", str(tmp_path / "current"))
    assert current.code == 0, current.err
    assert json.loads((tmp_path / "current" / "report.json").read_text())["format"] == "tsprune-edge/report"
    # version 0: the files as benches wrote them before versions were recorded (no format, no version)
    old = tmp_path / "old" / source.name
    shutil.copytree(source, old)
    for name in ("bench.json", "state.json", "plan.json", "preflight.json"):
        record = json.loads((old / name).read_text())
        (old / name).write_text(json.dumps({k: v for k, v in record.items() if k not in ("format", "version")}))
    before = _sha(old)
    read = cli("report", str(old), "--out", str(tmp_path / "old-report"))
    assert read.code == 0, read.err
    rows = {json.dumps(r, sort_keys=True) for r in
            json.loads((tmp_path / "old-report" / "report.json").read_text())["rows"]}
    assert rows == {json.dumps(r, sort_keys=True) for r in
                    json.loads((tmp_path / "current" / "report.json").read_text())["rows"]}
    assert _sha(old) == before
    # a newer bench.json: one line, exit 2, nothing written
    newer = tmp_path / "newer" / source.name
    shutil.copytree(source, newer)
    record = json.loads((newer / "bench.json").read_text())
    (newer / "bench.json").write_text(json.dumps({**record, "version": 2}))
    refused = cli("report", str(newer), "--out", str(tmp_path / "newer-report"))
    assert_one_line_error(refused, f"{newer / 'bench.json'} was written by a newer tsprune-edge",
                          "tsprune-edge/bench version 2", "reads up to 1")
    assert not (tmp_path / "newer-report").exists()


def test_resume_refuses_a_run_another_bench_holds_and_a_finished_one(two_runs, cli, tmp_path, bundles):  # noqa: F811
    source = two_runs[0] / f"desktop-{STAMP}"
    results = tmp_path / "results"
    held = results / "desktop-20261202-080000"
    shutil.copytree(source, held)
    runs.write_state(held, {**runs.read_state(held), "status": "fetched"})  # measured, not summarised yet
    (held / "bench.json").unlink()
    before = _sha(results)
    with open(held / runs.LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live bench is on it
        refused = cli("bench", "--resume", "--device", "desktop", "--artifacts", str(bundles), "--results",
                      str(results), *FAST)
    assert_one_line_error(refused, f"another bench is running {held}", "wait for it to finish")
    assert _sha(results) == before
    # finished: its bench.json is written (state says fetched: stopped between the two last writes)
    shutil.copy(source / "bench.json", held / "bench.json")
    before = _sha(results)
    nothing = cli("bench", "--resume", "--device", "desktop", "--artifacts", str(bundles), "--results", str(results),
                  *FAST)
    assert_one_line_error(nothing, "nothing to resume for desktop under")
    assert _sha(results) == before and sorted(p.name for p in results.iterdir()) == [held.name]


def test_resume_after_the_board_lost_its_folder_measures_only_what_is_missing(two_runs, cli, tmp_path,
                                                                               bundles):  # noqa: F811
    source = two_runs[0] / f"desktop-{STAMP}"
    run = tmp_path / "results" / "desktop-20261203-090000"
    shutil.copytree(source, run)
    runs.write_state(run, {**runs.read_state(run), "status": "unfetched"})
    (run / "bench.json").unlink()
    missing = run / "raw" / "unstructured-0.5__onnx__t1__r2.json"
    missing.unlink()
    kept = {p.name: p.read_bytes() for p in runs.all_round_paths(run)}
    resumed = cli("bench", "--resume", "--device", "desktop", "--artifacts", str(bundles), "--results",
                  str(tmp_path / "results"), *FAST)
    assert resumed.code == 0, resumed.err
    assert {p.name: p.read_bytes() for p in runs.all_round_paths(run) if p.name in kept} == kept
    assert missing.is_file()
    record = json.loads((run / "raw" / "run.json").read_text())
    measured = [(m["id"], m["round"]) for m in record["measurements"] if m["status"] == "measured"]
    assert measured == [("unstructured-0.5__onnx__t1", 2)]
    assert runs.read_state(run)["status"] == "done"


def test_runs_round_trip_and_versions(tmp_path):
    run = tmp_path / "desktop-20261201-070000"
    run.mkdir()
    plan = {"items": [{"id": "dense__onnx__t1"}], "rounds": 2}
    runs.write_plan(run, plan)
    assert runs.read_plan(run) == {"format": "tsprune-edge/plan", "version": 1, **plan}
    runs.write_state(run, {"status": "started"})
    assert runs.read_state(run)["status"] == "started" and runs.unfinished_run(tmp_path, "desktop") == run
    for name in ("r10", "r2", "r1", "r1b"):
        (run / "raw").mkdir(exist_ok=True)
        (run / "raw" / f"dense__onnx__t1__{name}.json").write_text(json.dumps({"name": name}))
    (run / "raw" / "dense__onnx__t1__rx.json").write_text("{}")  # not a round file
    (run / "raw" / "dense__onnx__t10__r1.json").write_text("{}")  # another item
    assert [n for n, _ in runs.round_paths(run, "dense__onnx__t1")] == [(1, 1), (1, 2), (2, 1), (10, 1)]
    assert runs.read_rounds(run, "dense__onnx__t1") == {(1, 1): {"name": "r1"}, (1, 2): {"name": "r1b"},
                                                         (2, 1): {"name": "r2"}, (10, 1): {"name": "r10"}}
    assert [runs.measurement_name(k) for k in runs.read_rounds(run, "dense__onnx__t1")] == ["r1", "r1b", "r2", "r10"]
    assert runs.passes_per_round(run) == 2  # a mirrored file proves two passes where run.json is missing
    (run / "state.json").write_text(json.dumps({"format": "tsprune-edge/state", "version": 7, "status": "done"}))
    with pytest.raises(UserError, match="state.json was written by a newer tsprune-edge"):
        runs.unfinished_run(tmp_path, "desktop")
    (run / "state.json").write_text(json.dumps({"format": "tsprune-edge/plan", "version": 1}))
    with pytest.raises(UserError, match="is a tsprune-edge/plan file, not tsprune-edge/state"):
        runs.read_state(run)
    (run / "raw" / "dense__onnx__t1__r2.json").write_text('{"laten')
    with pytest.raises(UserError, match=r"dense__onnx__t1__r2.json is damaged or not from this tsprune-edge"):
        runs.read_rounds(run, "dense__onnx__t1")


def test_the_agent_reads_a_stamped_plan(tmp_path):
    from tsprune_edge.devices.agent import load_plan

    item = {"id": "dense__onnx__t1", "bundle": "dense", "format": "onnx", "runtime": "onnxruntime", "threads": 1}
    path = runs.write_plan(tmp_path, {"items": [item], "rounds": 2, "min_time": 0.1, "min_iters": 10,
                                      "cooldown": None})
    assert load_plan(str(path))["items"] == [item]


def test_clean_up_removes_only_what_carries_this_runs_owner_mark(tmp_path):
    from tsprune_edge.devices.bench import board_folder, remove_board_folder
    from tsprune_edge.devices.transport import LocalTransport

    mine = runs.claim(tmp_path / "results", "desktop", resume=False)
    board = tmp_path / "board" / "desktop-x"
    with mine, LocalTransport() as transport:
        assert board_folder(transport, str(board), mine) is True
        assert (board / ".tsprune-owner").read_text().strip() == mine.owner
        with pytest.raises(BoardError, match="could not create the run folder"):  # never made twice
            board_folder(transport, str(board), mine)
        assert remove_board_folder(transport, str(board), "another-run") is False and board.is_dir()
        assert remove_board_folder(transport, str(board), mine.owner) is True and not board.exists()
        (mine.path / runs.OWNER).write_text("someone-else\n")  # not provably ours any more: kept
        mine.discard()
        assert mine.path.is_dir()
        (mine.path / runs.OWNER).write_text(mine.owner + "\n")
        mine.discard()
        assert not (tmp_path / "results").exists()  # made for this run, and left empty: removed too


def test_reading_a_run_or_a_manifest_loads_no_torch_and_devices_never_import_the_report():
    code = ("import sys, tsprune_edge.devices.bench, tsprune_edge.devices.runs, tsprune_edge.export.manifest; "
            "print(sorted(m for m in sys.modules if m in ('torch', 'onnx') or m.startswith('tsprune_edge.report')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
    sources = "".join(p.read_text() for p in (Path(__file__).parents[1] / "devices").glob("*.py"))
    assert "tsprune_edge.report" not in sources


@pytest.mark.parametrize("change, fragment", [
    (lambda m: [m], "is not a version 1 tsprune-edge/bundle manifest"),
    (lambda m: {**m, "model": "dlinear"}, "manifest.json: model is a str"),
    (lambda m: {k: v for k, v in m.items() if k != "artifacts"}, "manifest.json: artifacts is missing"),
    (lambda m: {**m, "artifacts": {**m["artifacts"], "onnx": {**m["artifacts"]["onnx"], "opset": "20"}}},
     "manifest.json: artifacts.onnx.opset is a str"),
])
def test_a_manifest_of_the_wrong_shape_is_one_line(cli, tmp_path, bundles, change, fragment):  # noqa: F811
    artifacts = tmp_path / "export"
    shutil.copytree(bundles / "dense", artifacts / "dense")
    manifest = json.loads((artifacts / "dense" / "manifest.json").read_text())
    (artifacts / "dense" / "manifest.json").write_text(json.dumps(change(manifest)))
    result = cli("bench", "--device", "desktop", "--artifacts", str(artifacts), "--results", str(tmp_path / "r"),
                 *FAST)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "r").exists()


def test_the_latest_finished_run_is_found_by_the_time_in_its_name(tmp_path):
    """What `report` and the benchmarks read: runs of any device ordered by their time (a `-10` suffix after `-9`),
    unfinished runs and foreign folders never the latest; a run folder given is itself."""
    for name in ("desktop-20260101-000000-9", "desktop-20260101-000000-10", "jetson-nano-20251231-235959",
                 "notes", "rpi4-20260101-000001"):
        (tmp_path / name).mkdir()
        (tmp_path / name / runs.BENCH).write_text("{}")
    (tmp_path / "desktop-20260102-000000").mkdir()  # unfinished: a state, no bench.json
    (tmp_path / "desktop-20260102-000000" / runs.STATE).write_text("{}")
    assert [p.name for p in runs.finished_runs(tmp_path)] == [
        "notes", "jetson-nano-20251231-235959", "desktop-20260101-000000-9", "desktop-20260101-000000-10",
        "rpi4-20260101-000001"]
    assert runs.latest_run(tmp_path) == tmp_path / "rpi4-20260101-000001"
    assert runs.latest_run(tmp_path / "notes") == tmp_path / "notes"
    assert runs.latest_run(tmp_path / "desktop-20260102-000000") is None
