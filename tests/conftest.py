"""Shared fixtures. Tests read the real benchmark CSVs from ../shared/data; they fail (never skip) without them.

Where things go: fixtures two or more test modules use live here, at the widest scope their cost calls for (an
export is session-scoped and read-only: a test that changes it copies it first); plain helpers live in small
modules beside (tests/paths.py, refusals.py, tree.py, bench_args.py, cli_commands.py, inputs.py, sshd.py,
arm64_board.py). No test module imports another test module, nor this file.

Where a bad-input case goes (docs/hostile-input.md, "The suite"):
- a command line a command refuses, reproducible from the hostile workspace: a row of `CASES` in
  tests/test_hostile.py (a named test there when a row cannot say it: data loss, --force);
- inputs drawn by hypothesis, and refusals asserted on the function that makes them (guards, the CSV reader, the
  Ray probe): tests/test_hostile_properties.py;
- environment faults (a full disk, damaged caches, concurrency, signals): tests/test_faults.py;
- a refusal only a real artifact or service provokes (a trained model on real data, built bundles, a live sshd,
  an emulated board): beside that feature's tests, which build it already, asserted with
  `tests.refusals.assert_one_line_error`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.paths import REPO, SHARED_DATA  # noqa: F401 (REPO: for test modules that still import it from here)
from tests.tree import snapshot
from tsprune_edge.cli import main
from tsprune_edge.data import WindowSpec, load_forecast_data


@pytest.fixture
def shared_data(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real datasets, used as the dataset cache so registered names resolve without a download."""
    if not (SHARED_DATA / "ETTh1.csv").is_file():
        pytest.fail(f"the benchmark datasets are missing: expected {SHARED_DATA}/ETTh1.csv (../shared/data)")
    monkeypatch.setenv("TSPRUNE_EDGE_DATA_DIR", str(SHARED_DATA))
    return SHARED_DATA


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's real cache."""
    monkeypatch.setenv("TSPRUNE_EDGE_DATA_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def etth1_windows():
    """windows(seq_len, label_len) -> (history, calendar): three real ETTh1 test windows (pred_len 96)."""
    if not (SHARED_DATA / "ETTh1.csv").is_file():
        pytest.fail(f"the benchmark datasets are missing: expected {SHARED_DATA}/ETTh1.csv")
    cache = {}

    def windows(seq_len: int, label_len: int) -> tuple[np.ndarray, np.ndarray]:
        if (seq_len, label_len) not in cache:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("TSPRUNE_EDGE_DATA_DIR", str(SHARED_DATA))
                data = load_forecast_data("ETTh1", WindowSpec(seq_len, label_len, 96))
                history, calendar, _ = data.window_arrays("test", np.array([0, 1000, 2784]))
            cache[seq_len, label_len] = (history, calendar)
        return cache[seq_len, label_len]

    return windows


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture):
    """Run the real entry point in-process and capture exit code, stdout and stderr."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory):
    """dense, unstructured-0.5 and percall bundles of a DLinear trained one epoch on the built-in data, exported
    once per session (seconds). Read-only: a test that changes a bundle copies it first, and the teardown fails
    the session if any file changed."""
    from tsprune_edge.export.bundle import ExportRequest
    from tsprune_edge.export_job import ExportJob, run_export_job

    root = tmp_path_factory.mktemp("bundles")
    with pytest.MonkeyPatch.context() as patch:  # built before any test's own cache: give it one of its own
        patch.setenv("TSPRUNE_EDGE_DATA_DIR", str(root / "cache"))
        job = ExportJob(methods=("unstructured",), model="dlinear", epochs=1, finetune_epochs=0)
        run_export_job(job, ExportRequest(), root / "export", root / "runs")
    built = snapshot(root / "export")
    yield root / "export"
    changed = sorted(set(built.items()) ^ set(snapshot(root / "export").items()))
    assert not changed, f"a test changed the shared bundles (copy them first): {changed[:5]}"


@pytest.fixture(scope="session")
def onnx_run(tmp_path_factory: pytest.TempPathFactory, bundles) -> Path:
    """A real desktop bench of `bundles` in ONNX Runtime (3 rounds), once per session. Read-only: a test that edits
    its results copies the run first."""
    from tsprune_edge.devices.bench import BenchRequest, bench

    results = tmp_path_factory.mktemp("onnx-run")
    summary = bench(BenchRequest(device="desktop", artifacts=bundles, results=results, runtimes=("onnxruntime",),
                                 rounds=3, min_time=0.1, min_iters=50))
    return results / summary["run_id"]


@pytest.fixture(scope="module")
def sshd_server(tmp_path_factory: pytest.TempPathFactory):
    """One real loopback sshd per test module (tests/sshd.py); it fails, never skips, without OpenSSH."""
    from tests.sshd import running_sshd

    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="session")
def dense(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Transformer trained one epoch on illness (horizon 24): the dense checkpoint the fit tests prune.
    Read-only: shared by every test of the session."""
    from tsprune_edge.workflow import train_to_dir

    if not (SHARED_DATA / "national_illness.csv").is_file():
        pytest.fail(f"the benchmark datasets are missing: expected {SHARED_DATA}/national_illness.csv")
    out = tmp_path_factory.mktemp("dense")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TSPRUNE_EDGE_DATA_DIR", str(SHARED_DATA))
        train_to_dir(model="transformer", data="illness", pred_len=24, seq_len=36, label_len=18, preset="small",
                     epochs=1, out=out)
    return out / "model.pt"
