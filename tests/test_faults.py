"""Faults of the environment, not of the input (bad input lives in test_hostile.py): a disk that fills up midway,
a log name planted in the temp folder, a board workdir holding someone else's folder, a horizon far beyond the
data, a bench run the report cannot judge. Each case asserts the one-line contract (the documented exit code,
exactly one `error:` line, no traceback) and that nothing outside the run's own files changed (sha256 snapshot).

The full-disk cases mount a real small tmpfs, which needs root (CI runs as root): without it they fail, they do not
skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PAGE = 4096  # tmpfs counts whole pages


def tree(root: Path) -> dict[str, tuple]:
    """Every path under `root`: folders by name, files and links with their target, size, mtime and sha256."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                state[key] = ("link", os.readlink(path))
            elif path.is_dir():
                state[key] = ("dir",)
            else:
                info = path.stat()
                state[key] = (info.st_size, info.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return state


@contextmanager
def small_disk(mount: Path, size: int) -> Iterator[Path]:
    """A real tmpfs of `size` bytes at `mount`, unmounted whatever happens."""
    if os.geteuid() != 0:
        pytest.fail("the full-disk tests mount a small tmpfs and need root (as CI runs them); run them as root")
    mount.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    assert done.returncode == 0, f"cannot mount a tmpfs at {mount}: {done.stderr}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def pages(size: int) -> int:
    return -(-size // PAGE) * PAGE


def assert_one_line(result, code: int, fragment: str, after_progress: bool = False) -> str:
    """Exit `code`, no traceback, one `error:` line holding `fragment`: the whole of stderr for a refusal, the last
    line after the progress of a command that failed midway."""
    assert result.code == code, (result.code, result.err[-3000:], result.out[-500:])
    assert "Traceback" not in result.err + result.out, result.err[-3000:]
    lines = result.err.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.err[-3000:]
    assert after_progress or len(lines) == 1, result.err[-3000:]
    assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained DLinear checkpoint on the built-in data: what evaluate and export start from (a second)."""
    from tsprune_edge.checkpoint import make_checkpoint, save_checkpoint
    from tsprune_edge.data import WindowSpec, load_forecast_data
    from tsprune_edge.models import create_model

    path = tmp_path_factory.mktemp("ck") / "model.pt"
    data = load_forecast_data("synthetic", WindowSpec(96, 48, 24))
    model = create_model("dlinear", "small", pred_len=24, enc_in=len(data.input_columns),
                         c_out=len(data.target_columns), calendar_features=data.calendar_names)
    save_checkpoint(make_checkpoint(model, data.describe(), data.scaling(), {"epochs": 0}), path)
    return path


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, checkpoint) -> Path:
    """A real run on this machine: dense and structured-0.5 ONNX bundles, two rounds each."""
    from tsprune_edge.devices.bench import BenchRequest, bench
    from tsprune_edge.export.bundle import ExportRequest
    from tsprune_edge.export_job import ExportJob, run_export_job

    root = tmp_path_factory.mktemp("benched")
    run_export_job(ExportJob(checkpoint=checkpoint, finetune_epochs=0), ExportRequest(formats=("onnx",)),
                   root / "export", root / "runs")
    summary = bench(BenchRequest(device="desktop", artifacts=root / "export", results=root / "results",
                                 runtimes=("onnxruntime",), rounds=2, min_time=0.05, min_iters=10))
    return root / "results" / summary["run_id"]


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- a disk that fills up midway: exit 4, one line naming the disk, nothing of the run left ------------------------

TRAIN = ("train", "--model", "dlinear", "--pred-len", "24", "--epochs", "1")


def test_train_on_a_disk_that_fills_after_the_checkpoint(cli, here):
    """The disk holds model.pt but not metrics.json: the line names metrics.json, and model.pt goes too (a folder
    with a checkpoint and no metrics would look like a finished run)."""
    reference = cli(*TRAIN, "--out", "reference")
    assert reference.code == 0, reference.err[-2000:]
    mine = b"my notes\n"
    size = pages((here / "reference" / "model.pt").stat().st_size) + pages(len(mine))
    with small_disk(here / "disk", size) as disk:
        (disk / "notes.txt").write_bytes(mine)  # the user's file in the folder given as --out
        before, around = tree(disk), tree(here / "reference")
        result = cli(*TRAIN, "--out", str(disk))
        line = assert_one_line(result, 4, f"the disk is full writing {disk / 'metrics.json'}", after_progress=True)
        assert line.endswith("free space on that disk or choose another --out"), line
        assert tree(disk) == before  # model.pt, written before the disk filled, is gone; notes.txt untouched
        assert tree(here / "reference") == around


def test_export_on_a_disk_that_fills_during_the_second_bundle(cli, here, checkpoint):
    with small_disk(here / "disk", 200 * 1024) as disk:
        (disk / "notes.txt").write_text("mine")
        before, neighbours = tree(disk), tree(checkpoint.parent)
        result = cli("export", "--checkpoint", str(checkpoint), "--format", "onnx", "--finetune-epochs", "0",
                     "--out", str(disk / "bundles"), "--runs", str(here / "runs"))
        line = assert_one_line(result, 4, f"the disk is full writing {disk / 'bundles'}", after_progress=True)
        assert "/structured-0.5/" in line, line  # dense was written: the disk filled midway
        assert tree(disk) == before  # no half bundle, no staging folder
        assert not (here / "runs").exists()  # the pruned checkpoint of the unfinished export
        assert tree(checkpoint.parent) == neighbours


def test_evaluate_on_a_full_disk(cli, here, checkpoint):
    with small_disk(here / "disk", 2 * PAGE) as disk:
        (disk / "filler").write_bytes(b"x" * 2 * PAGE)  # the user's file fills the disk
        before = tree(disk)
        result = cli("evaluate", str(checkpoint), "--out", str(disk / "eval.json"))
        assert_one_line(result, 4, f"the disk is full writing {disk / 'eval.json'}")
        assert tree(disk) == before  # no scratch file left beside it


def test_report_on_a_disk_that_fills_midway(cli, here, bench_run):
    run_before = tree(bench_run)
    with small_disk(here / "disk", 16 * PAGE) as disk:
        result = cli("report", str(bench_run), "--out", str(disk / "report"))
        assert_one_line(result, 4, "the disk is full writing", after_progress=True)
        assert "choose another --out" in result.err
        assert tree(disk) == {}
    assert tree(bench_run) == run_before


def test_bench_results_on_a_disk_that_fills_midway(cli, here, bench_run):
    """The rounds come back from the board onto a disk that fills: exit 4, the line names the raw file and
    --results; the fetch renames each file into place, so no raw file is left in part."""
    bundles = bench_run.parent.parent / "export"
    around = tree(bundles)
    with small_disk(here / "disk", 12 * PAGE) as disk:
        result = cli("bench", "--device", "desktop", "--artifacts", str(bundles), "--results", str(disk / "res"),
                     "--runtime", "onnxruntime", "--rounds", "2", "--min-time", "0.05", "--min-iters", "10")
        line = assert_one_line(result, 4, f"the disk is full writing {disk / 'res'}/", after_progress=True)
        assert "/raw/" in line and line.endswith("free space on that disk or choose another --results"), line
        assert not [p for p in (disk / "res").rglob("*.part")]
    assert tree(bundles) == around


def test_data_fetch_onto_a_full_disk(cli, here, shared_data):
    """Not "could not download ... check the network": the disk is full, the line says so and names --dest."""
    with small_disk(here / "disk", 256 * 1024) as disk:
        result = cli("data", "fetch", "ETTh1", "--mirror", shared_data.as_uri() + "/", "--dest", str(disk / "c"))
        assert_one_line(result, 4, f"the disk is full writing {disk / 'c' / 'ETTh1.csv'}; free space on that disk "
                        "or choose another --dest")
        assert tree(disk) == {}


# --- the temp folder's log name: never followed, never truncated, never in the way ---------------------------------

@pytest.fixture
def temp_folder(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir(mode=0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _user_file(tmp_path: Path) -> Path:
    path = tmp_path / "precious.txt"
    path.write_text("the user's own file\n" * 100)
    return path


def test_a_symlink_at_the_old_log_name_is_not_followed(cli, tmp_path, temp_folder):
    precious = _user_file(tmp_path)
    (temp_folder / f"tsprune-edge-{os.getuid()}.log").symlink_to(precious)
    before = tree(tmp_path)
    assert cli("models").code == 0
    after = tree(tmp_path)
    assert after[str(precious.relative_to(tmp_path))] == before[str(precious.relative_to(tmp_path))]
    assert after.pop(f"tmp/tsprune-edge-{os.getuid()}") == ("dir",)  # the private log folder and its log
    after.pop(f"tmp/tsprune-edge-{os.getuid()}/native.log")
    assert after == before


def test_a_symlink_at_the_log_folder_or_file_is_not_followed(cli, tmp_path, temp_folder):
    precious = _user_file(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (elsewhere / "native.log").symlink_to(precious)
    (temp_folder / f"tsprune-edge-{os.getuid()}").symlink_to(elsewhere)
    before = tree(tmp_path)
    assert cli("models").code == 0
    after = tree(tmp_path)
    fresh = [k for k in after if k not in before]  # the log went to a fresh name instead
    assert len(fresh) == 1 and fresh[0].startswith(f"tmp/tsprune-edge-{os.getuid()}-"), fresh
    del after[fresh[0]]
    assert after == before
    (temp_folder / f"tsprune-edge-{os.getuid()}").unlink()
    elsewhere.rename(temp_folder / f"tsprune-edge-{os.getuid()}")  # our own 0700 folder, a link inside it
    before = tree(tmp_path)
    assert cli("models").code == 0
    assert tree(precious.parent)[precious.name] == before[precious.name]


def test_a_folder_at_the_log_name_breaks_no_command(cli, tmp_path, temp_folder):
    (temp_folder / f"tsprune-edge-{os.getuid()}.log").mkdir()  # where the log used to go
    mine = temp_folder / f"tsprune-edge-{os.getuid()}"
    (mine / "native.log").mkdir(parents=True, mode=0o700)
    mine.chmod(0o700)
    result = cli("models")
    assert result.code == 0 and "dlinear" in result.out, result.err[-2000:]
    shutil.rmtree(mine)
    mine.mkdir(mode=0o777)  # a folder at the name that someone else owns and anyone can write: not used
    mine.chmod(0o777)
    os.chown(mine, 65534, 65534)
    assert cli("models").code == 0
    assert list(mine.iterdir()) == []


# --- devices check removes only what it made ------------------------------------------------------------------------

def test_devices_check_leaves_a_folder_it_did_not_make(cli, tmp_path, monkeypatch):
    profiles, workdir = tmp_path / "profiles", tmp_path / "workdir"
    profiles.mkdir()
    (profiles / "here.toml").write_text(f'description = "this machine"\narch = "x86_64"\ncores = 2\nmemory_mb = 1\n'
                                        f'local = true\npython = "{sys.executable}"\nworkdir = "{workdir}"\n')
    (workdir / "check").mkdir(parents=True)
    (workdir / "check" / "mine.txt").write_text("not the tool's")
    (workdir / "other-run").mkdir()
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(profiles))
    before = tree(workdir)
    result = cli("devices", "check", "--device", "here")
    assert result.code == 0, result.err[-2000:]
    assert "onnx: onnxruntime" in result.out
    assert tree(workdir) == before  # its own check folder is gone, nothing else touched


# --- cheap checks first -----------------------------------------------------------------------------------------------

def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def test_a_horizon_far_beyond_the_data_is_refused_at_once(tmp_path):
    """Under a 4 GiB address-space limit, as on a small machine: refused from the rows alone, before a model for
    that horizon is built (which exhausts the memory and was blamed on the window sizes)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tsprune_edge", "train", "--pred-len", "20000", "--out", "o"],
                          cwd=tmp_path, capture_output=True, text=True, preexec_fn=_limit_memory, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines() == ["error: synthetic has too few rows for seq_len 96 + pred_len 20000: its "
                                        "train split holds 6132 rows, needs at least 20096"], done.stderr[-2000:]
    assert time.monotonic() - started < 60
    assert list(tmp_path.iterdir()) == []


def test_running_out_of_memory_is_one_line_naming_the_limit(tmp_path):
    """A batch far too big for a 4 GiB address-space limit: exit 4 and the limit, not a traceback."""
    done = subprocess.run([sys.executable, "-m", "tsprune_edge", "train", "--batch-size", "6000", "--epochs", "1",
                           "--out", "o"], cwd=tmp_path, capture_output=True, text=True, preexec_fn=_limit_memory,
                          timeout=300)
    assert done.returncode == 4, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: out of memory (an allocation of "), lines
    assert "under this process's 4.0 GiB address-space limit (ulimit -v)" in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []


# --- a bench run the report cannot judge ------------------------------------------------------------------------------

def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "results" / run.name
    shutil.copytree(run, copy)
    return copy


def test_report_refuses_a_run_without_the_dense_measurement(cli, here, bench_run):
    run = _copy(bench_run, here)
    summary = json.loads((run / "bench.json").read_text())
    summary["items"] = [item for item in summary["items"] if item["bundle"] != "dense"]
    (run / "bench.json").write_text(json.dumps(summary))
    for path in (run / "raw").glob("dense__*"):
        path.unlink()
    before = tree(here)
    result = cli("report", str(run), "--out", "report")
    assert_one_line(result, 2, f"{run} holds no measurement of the dense bundle")
    assert tree(here) == before


@pytest.mark.parametrize("value", [0.0, -2e-5, float("nan")])
def test_report_refuses_a_latency_that_is_not_a_time(cli, here, bench_run, value):
    run = _copy(bench_run, here)
    raw = run / "raw" / "structured-0.5__onnx__t1__r2.json"
    result = json.loads(raw.read_text())
    result["latencies_s"][3] = value
    raw.write_text(json.dumps(result))
    before = tree(here)
    answer = cli("report", str(run), "--out", "report")
    assert_one_line(answer, 2, f"{raw}: a latency of {value!r} s is not a measurement")
    assert tree(here) == before
