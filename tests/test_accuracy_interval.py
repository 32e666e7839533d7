"""The test-MSE change against dense: its interval on overlapping windows (exact on constructed inputs, and that
it holds its level by simulation on AR(1) series), the accuracy labels, the source chosen and the headline."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from tsprune_edge.errors import UserError
from tsprune_edge.report.accuracy import (
    ACCURACY_HELD,
    ACCURACY_LOST,
    DEFAULT_MAX_MSE_RISE,
    UNRESOLVED,
    accuracy_change,
    accuracy_fields,
    accuracy_label,
    check_max_rise,
    headline,
    mse_change,
    percent,
    t95,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
simulation = importlib.import_module("accuracy_interval")  # benchmarks/accuracy_interval.py


def test_the_interval_on_four_windows_is_the_overlapping_batch_means_t_interval():
    """span 1: batches of 2 windows, 3 overlapping batch means of z = v / 1.5 - 1 = (1/3, -1/3, -1/3, 1/3):
    0, -1/3, 0; variance of the mean 2 / (3 * 2) * 1/9 = 1/27; 1.5 degrees of freedom."""
    change, low, high = mse_change([2.0, 1.0, 1.0, 2.0], [1.0, 1.0, 1.0, 1.0], span=1)
    t = 12.7062 / 3 + 2 * 4.3027 / 3  # between 1 and 2 degrees of freedom, linear in 1 / freedom
    assert change == 0.5 and t95(1.5) == pytest.approx(t, rel=1e-12)
    assert low == pytest.approx(1.5 * math.exp(-t / math.sqrt(27)) - 1, rel=1e-12)
    assert high == pytest.approx(1.5 * math.exp(t / math.sqrt(27)) - 1, rel=1e-12)


def test_whole_degrees_of_freedom_take_the_tables_quantile():
    assert [t95(f) for f in (1, 2, 5, 9)] == [12.7062, 4.3027, 2.5706, 2.2622]
    assert t95(30) == pytest.approx(2.0423, abs=1e-4)


def test_identical_and_proportional_errors_have_no_spread():
    dense = np.linspace(0.5, 1.5, 40)
    assert mse_change(dense, dense, span=4) == (0.0, 0.0, 0.0)
    change, low, high = mse_change(1.25 * dense, dense, span=4)
    assert change == low == high == pytest.approx(0.25, abs=1e-12)


def test_a_split_shorter_than_two_spans_has_no_interval():
    assert mse_change([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 1.0, 1.0, 1.0, 1.0], span=3) == (2.0, None, None)


@pytest.mark.parametrize("variant,dense,span", [([1.0], [1.0, 2.0], 1), ([1.0, 2.0], [1.0, 2.0], 0),
                                                ([1.0, -2.0], [1.0, 2.0], 1), ([1.0, 2.0], [0.0, 0.0], 1),
                                                ([1.0, float("nan")], [1.0, 2.0], 1)])
def test_errors_that_cannot_be_compared_are_refused(variant, dense, span):
    with pytest.raises(ValueError):
        mse_change(variant, dense, span)


@pytest.mark.parametrize("low,high,max_rise,expected", [
    (-0.02, 0.01, DEFAULT_MAX_MSE_RISE, ACCURACY_HELD),  # the tolerance itself still holds
    (-0.02, 0.0100001, DEFAULT_MAX_MSE_RISE, UNRESOLVED),
    (0.01, 0.03, DEFAULT_MAX_MSE_RISE, UNRESOLVED),  # could be exactly at the tolerance
    (0.0100001, 0.03, DEFAULT_MAX_MSE_RISE, ACCURACY_LOST),
    (0.55, 0.65, DEFAULT_MAX_MSE_RISE, ACCURACY_LOST),
    (-0.3, -0.1, DEFAULT_MAX_MSE_RISE, ACCURACY_HELD),  # better than dense
    (0.02, 0.04, 0.05, ACCURACY_HELD),
    (None, None, DEFAULT_MAX_MSE_RISE, UNRESOLVED),
])
def test_accuracy_labels(low, high, max_rise, expected):
    assert accuracy_label(low, high, max_rise) == expected


def test_accuracy_change_gives_the_rows_fields():
    dense = np.linspace(0.5, 1.5, 40)
    assert accuracy_change(dense, dense, 4, "board") == {
        "mse_change": 0.0, "mse_change_low": 0.0, "mse_change_high": 0.0, "accuracy_label": ACCURACY_HELD,
        "accuracy_source": "board", "max_mse_rise": 0.01}
    with pytest.raises(ValueError):
        accuracy_change(dense, dense, 4, "host")


def test_the_boards_errors_come_first_then_torchs():
    dense = {"per_window_mse": [1.0, 1.0, 1.0, 1.0], "window_span": 1}
    board = {"per_window_mse": [2.0, 1.0, 1.0, 2.0], "window_span": 1, "mse": 1.5}
    torch = {"per_window_mse": [1.0, 1.0, 1.0, 1.0], "window_span": 1}
    assert accuracy_fields(board, dense, torch, dense)["accuracy_source"] == "board"
    assert accuracy_fields(board, dense, torch, dense)["mse_change"] == 0.5
    fallback = accuracy_fields({"error": "bundle has no test split"}, dense, torch, dense)
    assert fallback["accuracy_source"] == "torch" and fallback["mse_change"] == 0.0
    assert accuracy_fields(board, None, torch, dense)["accuracy_source"] == "torch"  # dense not scored on the board
    shorter = {"per_window_mse": [1.0, 1.0], "window_span": 1}
    assert accuracy_fields(board, shorter, torch, dense)["accuracy_source"] == "torch"  # other windows: not paired
    broken_dense = {"per_window_mse": [1.0, 1.0, float("inf"), 1.0], "window_span": 1}
    assert accuracy_fields(board, broken_dense, torch, dense)["accuracy_source"] == "torch"
    nothing = accuracy_fields(None, None, None, dense)
    assert set(nothing.values()) == {None} and "accuracy_label" in nothing


def test_a_variant_that_forecasts_nan_has_lost_its_accuracy():
    fields = accuracy_fields({"per_window_mse": [1.0, float("nan")], "window_span": 1},
                             {"per_window_mse": [1.0, 1.0], "window_span": 1}, None, None)
    assert fields["accuracy_label"] == ACCURACY_LOST and fields["mse_change"] == math.inf
    assert headline(0.5, 0.4, 0.6, "SLOWDOWN", fields) == ("0.50x as fast [0.40, 0.60] SLOWDOWN, board test MSE "
                                                           "+inf% [+inf%, +inf%] ACCURACY LOST")


@pytest.mark.parametrize("value", [-0.01, float("nan"), float("inf"), "1%"])
def test_a_bad_tolerance_is_refused_with_the_fix(value):
    with pytest.raises(UserError, match=r"--max-mse-rise .* is not a fraction >= 0; give .* e\.g\. 0\.01 for 1%"):
        check_max_rise(value)


def test_a_good_tolerance_passes():
    assert check_max_rise(0) == 0.0 and check_max_rise(0.02) == 0.02


def _fields(change, low, high, label, source="board"):
    return {"mse_change": change, "mse_change_low": low, "mse_change_high": high, "accuracy_label": label,
            "accuracy_source": source, "max_mse_rise": 0.01}


@pytest.mark.parametrize("speed,accuracy,expected", [
    ((1.66, 1.47, 1.88, "REAL SPEEDUP"), _fields(0.6, 0.55, 0.65, ACCURACY_LOST, "torch"),
     "1.66x faster [1.47, 1.88] REAL SPEEDUP, torch test MSE +60% [+55%, +65%] ACCURACY LOST"),
    ((0.91, 0.88, 0.94, "SLOWDOWN"), _fields(0.003, -0.002, 0.008, ACCURACY_HELD),
     "0.91x as fast [0.88, 0.94] SLOWDOWN, board test MSE +0.30% [-0.20%, +0.80%] ACCURACY HELD"),
    ((1.004, 0.99, 1.02, "EQUIVALENT"), _fields(0.009, 0.004, 0.014, UNRESOLVED),
     "1.00x as fast [0.99, 1.02] EQUIVALENT, board test MSE +0.9% [+0.4%, +1.4%] UNRESOLVED"),
    ((1.07, 1.04, 1.10, "SMALL SPEEDUP"), _fields(-0.12, -0.2, -0.04, ACCURACY_HELD),
     "1.07x faster [1.04, 1.10] SMALL SPEEDUP, board test MSE -12% [-20%, -4%] ACCURACY HELD"),
    ((1.3, 1.1, 1.5, "REAL SPEEDUP"), _fields(0.002, None, None, UNRESOLVED, "torch"),
     "1.30x faster [1.10, 1.50] REAL SPEEDUP, torch test MSE +0.20% (no interval: test split under two window "
     "spans) UNRESOLVED"),
    ((None, None, None, "NOT JUDGED: under 2 paired rounds"), None,
     "NOT JUDGED: under 2 paired rounds, test MSE not measured"),
])
def test_the_headline_joins_speed_and_accuracy(speed, accuracy, expected):
    assert headline(*speed, accuracy) == expected


def test_percent_never_says_minus_zero():
    assert percent(-0.00001, 1) == "+0.0%" and percent(0.6, 0) == "+60%" and percent(-0.0449, 1) == "-4.5%"


@pytest.mark.parametrize("case", [simulation.DEFAULT_CASE, simulation.CASES[1]], ids=["default", "near-tolerance"])
def test_the_interval_covers_95_percent_on_overlapping_windows(case):
    """2000 simulated test splits of the default data's shape (1657 windows of 96 + 96 rows, AR(1) 0.9): the
    coverage's standard error is 0.5 points, so [93%, 97%] fails an interval 20% too narrow or too wide."""
    result = simulation.simulate(case, reps=2000, seed=1, compare=False)
    assert 0.93 <= result["coverage_report"] <= 0.97, result


def test_the_simulation_catches_an_interval_that_ignores_the_overlap():
    result = simulation.simulate(simulation.DEFAULT_CASE, reps=300, seed=2)
    assert result["coverage_independent"] < 0.7 and 0.9 <= result["coverage_report"], result
