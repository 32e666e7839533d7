"""The verdict's statistics: the paired estimator, its t interval (and that it holds its level by simulation), the
labels on constructed intervals, and reading Raspberry Pi throttling bits."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from tsprune_edge.devices.readings import since_boot, throttle_reason, throttled
from tsprune_edge.devices.runs import DEFAULT_ROUNDS
from tsprune_edge.report.coverage import Scenario, run_log_speedups, simulate
from tsprune_edge.report.stats import (
    EQUIVALENT,
    INCONCLUSIVE,
    LABELS,
    REAL_SPEEDUP,
    SLOWDOWN,
    SMALL_SLOWDOWN,
    SMALL_SPEEDUP,
    beyond_call_interval,
    geometric_interval,
    label,
    speedup_interval,
    t_quantile,
)


def test_the_interval_covers_the_true_speedup_at_the_default_rounds():
    """Thousands of synthetic runs (drift between rounds, a random walk within them, AR(1) latencies, preemption
    spikes) with a known true speedup: the 95% interval must cover it in at least 93% of runs."""
    result = simulate(Scenario(rounds=DEFAULT_ROUNDS), runs=4000, seed=17)
    assert result["coverage"] >= 0.93, result
    assert result["mean_estimate"] == pytest.approx(1.25, rel=0.005)  # the estimator is not biased
    assert result["median_half_width"] < 0.05


def test_the_simulation_catches_an_interval_too_narrow():
    """The same runs with the normal quantile in place of t's (too narrow at 3 rounds) fall well short of 95%:
    the coverage check can fail."""
    scenario = Scenario(rounds=3)
    logs = run_log_speedups(scenario, 2000, np.random.default_rng(3))
    half = 1.96 * logs.std(axis=1, ddof=1) / math.sqrt(3)
    covered = np.abs(logs.mean(axis=1) - math.log(scenario.true_speedup)) <= half
    assert covered.mean() < 0.85
    assert simulate(replace(scenario, rounds=3), runs=2000, seed=3)["coverage"] >= 0.93


def test_t_quantiles_match_the_tables():
    expected = {2: 12.7062, 3: 4.3027, 5: 2.7764, 10: 2.2622, 11: 2.2281, 21: 2.0860, 101: 1.9840}
    for rounds, value in expected.items():
        assert float(t_quantile(rounds)) == pytest.approx(value, abs=1e-4)


def test_the_geometric_interval_by_hand():
    found = geometric_interval([1.1, 1.2, 1.3])
    logs = np.log([1.1, 1.2, 1.3])
    half = 4.3027 * logs.std(ddof=1) / math.sqrt(3)
    assert found.estimate == pytest.approx((1.1 * 1.2 * 1.3) ** (1 / 3))
    assert (found.low, found.high) == pytest.approx((math.exp(logs.mean() - half), math.exp(logs.mean() + half)))
    assert found.rounds == 3
    assert geometric_interval([1.2]) is None and geometric_interval([1.0, 0.0]) is None


def test_drift_shared_by_a_round_cancels_in_the_paired_speedup():
    """Round levels that differ by 2x do not widen the interval of a variant that is always twice as fast."""
    drift = {1: 0.7, 2: 1.4, 3: 1.0, 4: 0.9}
    dense = {r: 1e-3 * f for r, f in drift.items()}
    variant = {r: 0.5e-3 * f * (1 + 0.001 * r) for r, f in drift.items()}
    variant[5] = 1.0  # a round the dense reference lacks (flagged) is not paired
    found = speedup_interval(variant, dense)
    assert found.rounds == 4 and found.estimate == pytest.approx(2 / 1.0025, rel=1e-3)
    assert found.high / found.low < 1.01


def test_efficiency_beyond_the_per_call_cost():
    """(dense - call) / (variant - call): 1.0 ms dense, 0.6 ms variant, 0.2 ms per call: 2x beyond the call."""
    dense, variant, call = {1: 1.0, 2: 1.1}, {1: 0.6, 2: 0.65}, {1: 0.2, 2: 0.2}
    found = beyond_call_interval(variant, dense, call)
    assert found.estimate == pytest.approx(math.sqrt(2.0 * (0.9 / 0.45)))
    assert beyond_call_interval({1: 0.1, 2: 0.6}, dense, call) is None  # a variant under the per-call cost


# Each label's definition, written out independently of label(): exactly one must hold for every interval.
BAND = 1.05
DEFINITIONS = {
    REAL_SPEEDUP: lambda lo, hi: lo >= BAND,
    SLOWDOWN: lambda lo, hi: hi <= 1 / BAND,
    EQUIVALENT: lambda lo, hi: 1 / BAND <= lo <= 1 <= hi <= BAND,
    SMALL_SPEEDUP: lambda lo, hi: 1 < lo < BAND and hi <= BAND,
    SMALL_SLOWDOWN: lambda lo, hi: 1 / BAND <= lo and 1 / BAND < hi < 1,
    INCONCLUSIVE: lambda lo, hi: (lo < BAND < hi or lo < 1 / BAND < hi),
}


@pytest.mark.parametrize("low, high, expected", [
    (1.10, 1.30, REAL_SPEEDUP), (1.05, 1.06, REAL_SPEEDUP),
    (0.70, 0.90, SLOWDOWN), (0.90, 1 / 1.05, SLOWDOWN),
    (0.97, 1.03, EQUIVALENT), (1 / 1.05, 1.05, EQUIVALENT), (1.0, 1.0, EQUIVALENT),
    (1.01, 1.04, SMALL_SPEEDUP), (1.04, 1.04, SMALL_SPEEDUP), (1.001, 1.05, SMALL_SPEEDUP),
    (0.96, 0.99, SMALL_SLOWDOWN),
    (0.74, 1.00, INCONCLUSIVE), (0.99, 1.20, INCONCLUSIVE), (0.90, 1.10, INCONCLUSIVE), (1.03, 1.07, INCONCLUSIVE),
    (0.94, 0.96, INCONCLUSIVE),
])
def test_each_label_on_constructed_intervals(low, high, expected):
    assert label(low, high, 0.05) == expected
    assert [name for name, holds in DEFINITIONS.items() if holds(low, high)] == [expected]


def test_the_labels_are_exhaustive_and_do_not_overlap():
    edges = sorted({1 / BAND, 1.0, BAND, 0.9, 0.97, 0.99, 1.01, 1.03, 1.1})
    for low in edges:
        for high in (e for e in edges if e >= low):
            holding = [name for name, holds in DEFINITIONS.items() if holds(low, high)]
            assert holding == [label(low, high, 0.05)], (low, high, holding)
    assert set(LABELS) == set(DEFINITIONS)


def _reading(before: str | None, after: str | None) -> dict:
    return {"environment_before": {"throttled": before}, "environment_after": {"throttled": after}}


def test_throttling_bits_now_and_since_boot():
    assert not throttled(_reading("throttled=0x0", "throttled=0x0"))
    assert not throttled(_reading(None, None))  # no vcgencmd: nothing to read
    history = _reading("throttled=0x50000", "throttled=0x50000")  # under-voltage and throttling since boot only
    assert throttle_reason(history) is None and since_boot(history) == ["under-voltage", "throttled"]
    assert throttle_reason(_reading("throttled=0x50000", "throttled=0x50005")) == (
        "throttled (under-voltage, throttled while measuring)")
    assert throttle_reason(_reading("throttled=0x4", "throttled=0x0")) == "throttled (throttled while measuring)"
    assert throttle_reason(_reading("throttled=0x0", "throttled=0x80000")) == (
        "throttled (soft temperature limit since boot changed during the measurement)")
    assert throttle_reason(_reading("(no output, exit 1)", "throttled=0x0")) is None
