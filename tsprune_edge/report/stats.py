"""One estimator for every latency figure, paired across interleaved rounds, and the labels its interval supports.

A round measures every item once, each in a fresh process, interleaved in time. Latencies within a round are
autocorrelated and share that process' level, so a round contributes one number: its median. The machine drifts
between rounds, and the drift hits every item of a round alike, so a comparison pairs rounds: per round the ratio
dense median / variant median, from which that round's drift cancels. Every figure is the geometric mean of such
per-round values (a latency: the round medians; a speedup: the per-round ratios), and its 95% interval is the
t interval of their mean log with rounds - 1 degrees of freedom. `tsprune_edge.report.coverage` checks by
simulation (drift between rounds, AR(1) within them) that it covers; benchmarks/results/coverage.md has the table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_ROUNDS = 2  # an interval needs at least two paired rounds
# Student's t 97.5% quantile for 1..9 degrees of freedom (exact to 4 decimals); from 10 on the Cornish-Fisher
# expansion below is within 1e-5 of it (checked against scipy.stats.t.ppf). numpy has no t quantile.
_T_SMALL = np.array([12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622])
_Z = 1.959963984540054

REAL_SPEEDUP = "REAL SPEEDUP"
SMALL_SPEEDUP = "SMALL SPEEDUP"
EQUIVALENT = "EQUIVALENT"
SMALL_SLOWDOWN = "SMALL SLOWDOWN"
SLOWDOWN = "SLOWDOWN"
INCONCLUSIVE = "INCONCLUSIVE"
LABELS = (REAL_SPEEDUP, SMALL_SPEEDUP, EQUIVALENT, SMALL_SLOWDOWN, SLOWDOWN, INCONCLUSIVE)


@dataclass(frozen=True)
class Interval:
    """A geometric mean of per-round values and its 95% interval."""

    estimate: float
    low: float
    high: float
    rounds: int

    def scaled(self, factor: float) -> Interval:
        return Interval(self.estimate * factor, self.low * factor, self.high * factor, self.rounds)

    def inverse(self) -> Interval:
        return Interval(1 / self.estimate, 1 / self.high, 1 / self.low, self.rounds)


def geometric_mean(values: Sequence[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


def t_quantile(rounds: np.ndarray | int) -> np.ndarray | float:
    """The two-sided 95% quantile of Student's t with rounds - 1 degrees of freedom (rounds >= 2)."""
    v = np.asarray(rounds, dtype=float) - 1
    z = _Z
    expansion = (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
                 + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
                 + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4))
    small = _T_SMALL[np.clip(v.astype(int), 1, len(_T_SMALL)) - 1]
    return np.where(v < 10, small, expansion)


def geometric_interval(values: Sequence[float]) -> Interval | None:
    """Geometric mean of positive per-round values with the t interval of their mean log; None with fewer than
    MIN_ROUNDS values (no spread to judge from) or a value that is not positive."""
    values = np.asarray(values, dtype=float)
    if len(values) < MIN_ROUNDS or not np.all(values > 0):
        return None
    logs = np.log(values)
    mean = float(logs.mean())
    half = float(t_quantile(len(logs)) * logs.std(ddof=1) / math.sqrt(len(logs)))
    return Interval(math.exp(mean), math.exp(mean - half), math.exp(mean + half), len(logs))


def paired(variant: dict[int, float], dense: dict[int, float]) -> list[int]:
    """The rounds both sides have (each a fresh, unflagged measurement)."""
    return sorted(set(variant) & set(dense))


def speedup_interval(variant: dict[int, float], dense: dict[int, float]) -> Interval | None:
    """dense / variant per round (round number -> median latency), combined over the rounds both have."""
    rounds = paired(variant, dense)
    return geometric_interval([dense[r] / variant[r] for r in rounds])


def label(low: float, high: float, min_effect: float) -> str:
    """What a speedup interval [low, high] (dense / variant) says, with the band 1 / (1 + min_effect) ..
    1 + min_effect around no change. Checked in this order, so every interval gets exactly one label:
    REAL SPEEDUP: the whole interval at or beyond 1 + min_effect (and above 1).
    SLOWDOWN: the whole interval at or below 1 / (1 + min_effect) (and below 1).
    INCONCLUSIVE: otherwise, if the interval reaches past either end of the band: too wide to say.
    SMALL SPEEDUP: inside the band and wholly above 1: real, but smaller than min_effect.
    SMALL SLOWDOWN: inside the band and wholly below 1.
    EQUIVALENT: inside the band and containing 1."""
    band = 1.0 + min_effect
    if low >= band and low > 1.0:
        return REAL_SPEEDUP
    if high <= 1.0 / band and high < 1.0:
        return SLOWDOWN
    if low < 1.0 / band or high > band:
        return INCONCLUSIVE
    if low > 1.0:
        return SMALL_SPEEDUP
    if high < 1.0:
        return SMALL_SLOWDOWN
    return EQUIVALENT


def beyond_call_interval(variant: dict[int, float], dense: dict[int, float],
                         percall: dict[int, float]) -> Interval | None:
    """(dense - per-call) / (variant - per-call) per round, over the rounds all three have: the speedup of the
    compute beyond the fixed cost of a call. None where a round's variant or dense is not above its per-call cost."""
    rounds = sorted(set(variant) & set(dense) & set(percall))
    values = [(dense[r] - percall[r]) / (variant[r] - percall[r]) for r in rounds
              if variant[r] > percall[r] and dense[r] > percall[r]]
    return geometric_interval(values) if len(values) == len(rounds) else None
