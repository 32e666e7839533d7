"""The labels: one per combination of direction and size against the minimum effect, each asserted exactly on a
constructed run (per-round latencies whose paired interval is the one named), and on every interval edge."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tsprune_edge.report.stats import (
    EQUIVALENT,
    FASTER,
    INCONCLUSIVE,
    LABELS,
    MEANINGS,
    REAL_SPEEDUP,
    SLOWDOWN,
    SLOWER,
    SMALL_SLOWDOWN,
    SMALL_SPEEDUP,
    UNRESOLVED,
    label,
    legend,
    meaning,
    speedup_interval,
    t_quantile,
)

SPREAD = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])  # five rounds' log deviations, mean 0


def constructed_run(estimate: float, low: float, high: float) -> tuple[dict[int, float], dict[int, float]]:
    """Five paired rounds of (variant, dense) latencies in seconds whose speedup interval is estimate [low, high]
    (geometric: low * high == estimate**2), the dense latency drifting from round to round."""
    half = math.log(high / low) / 2
    scale = half / (float(t_quantile(5)) * SPREAD.std(ddof=1) / math.sqrt(5))
    ratios = np.exp(math.log(estimate) + scale * SPREAD)
    dense = {r: 1e-3 * (1 + 0.1 * r) for r in range(1, 6)}
    return {r: dense[r] / ratio for r, ratio in zip(dense, ratios, strict=True)}, dense


@pytest.mark.parametrize("estimate, low, high, expected", [
    (1.25, 1.20, 1.30, REAL_SPEEDUP),
    (1.07, 1.04, 1.10, FASTER),  # wholly above 1, crossing 1.05: faster, size against 5% unresolved
    (1.02, 1.01, 1.03, SMALL_SPEEDUP),
    (1.00, 0.98, 1.02, EQUIVALENT),
    (0.98, 0.97, 0.99, SMALL_SLOWDOWN),
    (0.956, 0.949, 0.964, SLOWER),  # wholly below 1, crossing 1 / 1.05
    (0.80, 0.75, 0.85, SLOWDOWN),
    (1.00, 0.90, 1.11, INCONCLUSIVE),
])
def test_each_label_on_a_constructed_run(estimate, low, high, expected):
    variant, dense = constructed_run(math.sqrt(low * high), low, high)
    found = speedup_interval(variant, dense)
    assert (found.low, found.high) == pytest.approx((low, high), rel=1e-9)
    assert label(found.low, found.high, 0.05) == expected
    assert found.estimate == pytest.approx(estimate, abs=0.003)


def test_an_interval_wholly_on_one_side_of_1_is_never_inconclusive():
    for low, high in ((1.0001, 5.0), (1.04, 1.10), (0.2, 0.9999), (0.949, 0.964)):
        assert label(low, high, 0.05) not in (INCONCLUSIVE, EQUIVALENT)


# Each label's definition, written out independently of label(): exactly one must hold for every interval.
BAND = 1.05
DEFINITIONS = {
    REAL_SPEEDUP: lambda lo, hi: lo >= BAND,
    FASTER: lambda lo, hi: 1 < lo < BAND < hi,
    SMALL_SPEEDUP: lambda lo, hi: 1 < lo < BAND and hi <= BAND,
    EQUIVALENT: lambda lo, hi: 1 / BAND <= lo <= 1 <= hi <= BAND,
    SMALL_SLOWDOWN: lambda lo, hi: 1 / BAND <= lo and 1 / BAND < hi < 1,
    SLOWER: lambda lo, hi: lo < 1 / BAND < hi < 1,
    SLOWDOWN: lambda lo, hi: hi <= 1 / BAND,
    INCONCLUSIVE: lambda lo, hi: lo <= 1 <= hi and (lo < 1 / BAND or hi > BAND),
}


@pytest.mark.parametrize("low, high, expected", [
    (1.05, 1.06, REAL_SPEEDUP), (0.90, 1 / 1.05, SLOWDOWN), (1 / 1.05, 1.05, EQUIVALENT), (1.0, 1.0, EQUIVALENT),
    (1.04, 1.04, SMALL_SPEEDUP), (1.001, 1.05, SMALL_SPEEDUP), (1.001, 1.0501, FASTER), (1.0, 1.06, INCONCLUSIVE),
    (0.94, 0.96, SLOWER), (0.951, 0.999, SLOWER), (1 / 1.05, 0.999, SMALL_SLOWDOWN), (0.74, 1.00, INCONCLUSIVE),
])
def test_the_edges(low, high, expected):
    assert label(low, high, 0.05) == expected
    assert [name for name, holds in DEFINITIONS.items() if holds(low, high)] == [expected]


def test_the_labels_are_exhaustive_and_do_not_overlap():
    edges = sorted({1 / BAND, 1.0, BAND, 0.9, 0.95, 0.97, 0.99, 1.01, 1.03, 1.07, 1.1})
    for low in edges:
        for high in (e for e in edges if e >= low):
            holding = [name for name, holds in DEFINITIONS.items() if holds(low, high)]
            assert holding == [label(low, high, 0.05)], (low, high, holding)
    assert set(LABELS) == set(DEFINITIONS) == set(MEANINGS) and len(LABELS) == 8
    assert set(UNRESOLVED) == {FASTER, SLOWER, INCONCLUSIVE}


def test_the_words_say_the_size_against_the_minimum_effect():
    assert meaning(FASTER, 0.05) == ("faster, but whether by 5% is unresolved: the interval is above 1 and "
                                     "straddles 1.05")
    assert meaning(SLOWDOWN, 0.02) == "slower by at least 2%: the whole interval at or below 0.9804"
    assert legend(0.05).startswith("REAL SPEEDUP: faster by at least 5%: the whole interval at or above 1.05. ")
    assert legend(0.05).count(": ") == 2 * len(LABELS)
