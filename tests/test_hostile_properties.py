"""Property tests: any out-of-range number for a numeric option, and any CSV content, is refused in one line or
read correctly; never a traceback or another exception.

The home of bad input drawn by hypothesis, and of refusals asserted on the function that makes them (guards, the
CSV reader, the Ray probe); command-line cases are rows in tests/test_hostile.py (the rule: tests/conftest.py)."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.refusals import assert_one_line_error
from tsprune_edge.cli import guards
from tsprune_edge.data.table import read_table
from tsprune_edge.errors import UserError

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(option=st.sampled_from(["--epochs", "--batch-size", "--pred-len", "--seq-len"]),
       value=st.integers(max_value=0))
def test_non_positive_integers_for_train(cli, tmp_path, option, value):
    line = assert_one_line_error(cli("train", option, str(value), "--out", str(tmp_path / "out")))
    assert option in line
    assert not (tmp_path / "out").exists()


@FAST
@given(value=st.one_of(st.floats(max_value=0), st.just(math.nan), st.just(math.inf)))
def test_learning_rates_that_cannot_train(cli, tmp_path, value):
    line = assert_one_line_error(cli("train", "--lr", repr(value), "--out", str(tmp_path / "out")))
    assert "--lr must be" in line


@FAST
@given(value=st.one_of(st.floats(min_value=1.0), st.floats(max_value=0, exclude_max=True), st.just(math.nan)))
def test_sparsities_outside_the_unit_interval(cli, tmp_path, value):
    line = assert_one_line_error(cli("export", "--sparsity", repr(value), "--out", str(tmp_path / "e")))
    assert "--sparsity must be" in line


@FAST
@given(value=st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32)))
def test_seeds_out_of_range(cli, tmp_path, value):
    assert "--seed must be in" in assert_one_line_error(cli("prune", "x.pt", "--seed", str(value)))


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers()),
       low=st.floats(-10, 10), width=st.floats(0, 10))
def test_number_accepts_exactly_the_closed_range(value, low, width):
    high = low + width
    inside = math.isfinite(value) and low <= value <= high
    try:
        guards.number("--x", value, low, high)
        assert inside
    except UserError as exc:
        assert not inside and str(exc).startswith("--x must be")


_CELL = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                  st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.lists(st.text(max_size=4), min_size=1, max_size=4), rows=st.lists(
    st.tuples(st.datetimes(min_value=datetime(1990, 1, 1)), st.lists(_CELL, max_size=4)),
    max_size=6))
def test_any_csv_is_read_or_refused_in_one_line(tmp_path: Path, header, rows):
    path = tmp_path / "any.csv"
    lines = [",".join(["date", *header])] + [",".join([str(d), *cells]) for d, cells in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        table = read_table(path)
    except UserError as exc:
        assert "\n" not in str(exc).strip() and str(path) in str(exc)
        return
    assert np.isfinite(table.values).all()
    assert table.values.shape == (len(table.dates), len(table.columns))
    assert len(set(table.columns)) == len(table.columns) and "" not in table.columns


@pytest.mark.parametrize("path", ["/proc/x", "/sys/y/z"])
def test_system_folders_are_never_outputs(path):
    with pytest.raises(UserError, match="is a system folder"):
        guards.writable_dir(Path(path))


def test_ray_probe_refuses_a_silent_listener_and_a_web_server():
    """Ray retries a dead or foreign address for minutes (and may end the process): the probe answers first."""
    import socket
    import threading

    from tsprune_edge.sweep.executors import check_ray_address

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with pytest.raises(UserError, match="no answer; waited at most 1 s"):
            check_ray_address(f"127.0.0.1:{silent.getsockname()[1]}", timeout=1.0)
    with socket.socket() as web:
        web.bind(("127.0.0.1", 0))
        web.listen(1)

        def answer() -> None:
            conn, _ = web.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        server = threading.Thread(target=answer, daemon=True)
        server.start()
        with pytest.raises(UserError, match="is not a Ray cluster"):
            check_ray_address(f"127.0.0.1:{web.getsockname()[1]}", timeout=5.0)
        server.join(5)
