"""Shared fixtures. Tests read the real benchmark CSVs from ../shared/data; they fail (never skip) without them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tsprune_edge.cli import main
from tsprune_edge.data import WindowSpec, load_forecast_data

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TSPRUNE_EDGE_SHARED_DATA", REPO.parent / "shared" / "data"))


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
