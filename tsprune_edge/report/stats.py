"""One estimator for every latency figure, paired across interleaved rounds, its interval for the design that was
run, and the labels that interval supports.

A round measures every item twice, each time in a fresh process: a forward pass, then the same items in mirrored
order (A B C D | D C B A), so a drift that is linear within the round hits every item alike. Latencies within a
process are autocorrelated and share that process' level, so a pass contributes one number per item, its median,
and a round the geometric mean of its passes' medians (`round_values`). The machine drifts between rounds, and
that drift hits every item of a round alike, so a comparison pairs rounds: per round the ratio dense / variant,
from which that round's drift cancels. Every figure is the geometric mean of such per-round values, and its 95%
interval is the t interval of their mean log with rounds - 1 degrees of freedom. Where bench may add rounds while a
verdict is open (rounds r0 .. R), each variant is judged at its own stopping look (`stopping_look`: the first look
whose label is resolved, else the last) with an error-spending boundary in place of the t quantile
(`boundaries(r0, R)`: 4% of the 5% at the first look, the rest spread evenly over the later ones), so the interval
holds 95% whichever look a variant stops at. `tsprune_edge.report.coverage` checks by simulation that it covers,
calling these very functions; benchmarks/results/coverage.md has the table.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tsprune_edge.devices.runs import DEFAULT_ROUNDS

MIN_ROUNDS = 2  # an interval needs at least two paired rounds
# Student's t 97.5% quantile for 1..9 degrees of freedom (exact to 4 decimals); from 10 on the Cornish-Fisher
# expansion below is within 1e-5 of it (checked against scipy.stats.t.ppf). numpy has no t quantile.
_T_SMALL = np.array([12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622])
_Z = 1.959963984540054
LEVEL = 0.95
FIRST_LOOK_SPEND = 0.04  # of the 5% an adaptive design may miss, what its first look spends (see `boundaries`)
CALIBRATION_RUNS = 200_000  # Monte Carlo replications behind `boundaries`: each look's spend within about 0.05%
CALIBRATION_SEED = 20261206  # fixed: the same design always gets the same boundary

# The labels: direction (faster, slower, neither) and size against the minimum effect m (beyond m, within m,
# unresolved), the eight combinations the interval can establish (no direction and beyond m cannot happen).
REAL_SPEEDUP = "REAL SPEEDUP"
FASTER = "FASTER"
SMALL_SPEEDUP = "SMALL SPEEDUP"
EQUIVALENT = "EQUIVALENT"
SMALL_SLOWDOWN = "SMALL SLOWDOWN"
SLOWER = "SLOWER"
SLOWDOWN = "SLOWDOWN"
INCONCLUSIVE = "INCONCLUSIVE"
LABELS = (REAL_SPEEDUP, FASTER, SMALL_SPEEDUP, EQUIVALENT, SMALL_SLOWDOWN, SLOWER, SLOWDOWN, INCONCLUSIVE)
# What each label says, with {effect} the minimum effect as a percentage: the one text docs, legends and reports use.
MEANINGS = {
    REAL_SPEEDUP: "faster by at least {effect}: the whole interval at or above {band}",
    FASTER: "faster, but whether by {effect} is unresolved: the interval is above 1 and straddles {band}",
    SMALL_SPEEDUP: "faster by less than {effect}: the interval is above 1 and at or below {band}",
    EQUIVALENT: "no change of {effect} either way: the interval contains 1 and lies within {inverse}-{band}",
    SMALL_SLOWDOWN: "slower by less than {effect}: the interval is below 1 and at or above {inverse}",
    SLOWER: "slower, but whether by {effect} is unresolved: the interval is below 1 and straddles {inverse}",
    SLOWDOWN: "slower by at least {effect}: the whole interval at or below {inverse}",
    INCONCLUSIVE: "neither direction nor size: the interval contains 1 and reaches past {inverse} or {band}",
}
# Labels whose size against the minimum effect is unresolved: what another round could still settle.
UNRESOLVED = (FASTER, SLOWER, INCONCLUSIVE)


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


@dataclass(frozen=True)
class Design:
    """When bench looks at the intervals: after `rounds`, then after every added round up to `max_rounds` while a
    verdict is unresolved. Equal: fixed rounds, one look."""

    rounds: int = DEFAULT_ROUNDS
    max_rounds: int = DEFAULT_ROUNDS

    @classmethod
    def of_plan(cls, plan: Mapping) -> Design:
        """The design a run's plan.json records: `first_rounds` (the rounds asked for; `rounds` grows as bench adds
        some) and `max_rounds`. A plan from before the design was recorded is read as fixed at its rounds."""
        first = int(plan.get("first_rounds", plan["rounds"]))
        return cls(first, max(first, int(plan.get("max_rounds") or first)))

    def quantile(self, rounds: int, look: int | None = None) -> float:
        """The multiplier of the standard error of `rounds` paired rounds at the look after round `look` (default
        `rounds`): t's for a fixed design, the boundary at that look for an adaptive one (`boundaries`), never
        below t's at `rounds` (rounds left out of the pairs make a look the calibration did not see)."""
        t = float(t_quantile(rounds))
        if self.max_rounds <= self.rounds:
            return t
        first = max(self.rounds, MIN_ROUNDS)
        at = min(max(rounds if look is None else look, first), self.max_rounds)
        return max(t, boundaries(self.rounds, self.max_rounds)[at - first])


FIXED = Design(DEFAULT_ROUNDS, DEFAULT_ROUNDS)


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


@functools.cache
def boundaries(first: int, last: int) -> tuple[float, ...]:
    """The multiplier of the standard error at each look after first, first + 1, .., last paired rounds: an
    error-spending boundary for t statistics (Lan and DeMets 1983, by Monte Carlo for the unknown variance). Of
    the 5% the intervals may miss over all looks together, FIRST_LOOK_SPEND goes to the first look (a variant far
    from the band's ends stops there, so its coverage is 96%) and the rest is spread evenly over the later looks:
    P(|T_n| > b_n at some look n) = 5% for iid normal log ratios, T_n the t statistic of the first n. Intervals of
    mean log +- b_n x standard error then hold 95% jointly, so stopping on any look keeps 95% (a repeated
    confidence interval, Jennison and Turnbull 1989). Each b_n is the survivors' quantile that spends its share,
    from CALIBRATION_RUNS replications with a fixed seed; first == last is the t quantile itself."""
    first = max(first, MIN_ROUNDS)
    if last <= first:
        return (float(t_quantile(first)),)
    rng = np.random.default_rng(CALIBRATION_SEED)
    sums, squares = np.zeros(CALIBRATION_RUNS), np.zeros(CALIBRATION_RUNS)
    inside = np.ones(CALIBRATION_RUNS, dtype=bool)
    found = []
    for n in range(1, last + 1):
        draws = rng.standard_normal(CALIBRATION_RUNS)
        sums += draws
        squares += draws**2
        if n < first:
            continue
        spent = FIRST_LOOK_SPEND + (1 - LEVEL - FIRST_LOOK_SPEND) * (n - first) / (last - first)
        mean = sums / n
        t = np.abs(mean) * np.sqrt(n * (n - 1) / (squares - n * mean**2))
        crossing = round(spent * CALIBRATION_RUNS) - int(np.count_nonzero(~inside))  # runs this look may add
        survivors = np.sort(t[inside])
        found.append(float(survivors[len(survivors) - 1 - crossing]))
        inside &= t <= found[-1]
    return tuple(found)


def log_interval(logs: np.ndarray, design: Design | None = None,
                 look: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and half-width of the 95% interval of per-round logs along the last axis (rounds, at least
    MIN_ROUNDS), with the quantile `design` allows for that many rounds at the look after round `look` (default:
    as many as the rounds; t's for fixed rounds, the default). Vectorised over the leading axes, so the coverage
    simulation runs the very arithmetic the report does."""
    logs = np.asarray(logs, dtype=float)
    rounds = logs.shape[-1]
    quantile = (design or Design(rounds, rounds)).quantile(rounds, look)
    return logs.mean(axis=-1), quantile * logs.std(axis=-1, ddof=1) / math.sqrt(rounds)


def geometric_interval(values: Sequence[float], design: Design | None = None) -> Interval | None:
    """Geometric mean of positive per-round values with the interval of their mean log (`log_interval`); None with
    fewer than MIN_ROUNDS values (no spread to judge from) or a value that is not positive."""
    values = np.asarray(values, dtype=float)
    if len(values) < MIN_ROUNDS or not np.all(values > 0):
        return None
    mean, half = (float(v) for v in log_interval(np.log(values), design))
    return Interval(math.exp(mean), math.exp(mean - half), math.exp(mean + half), len(values))


def round_values(medians: Mapping[tuple[int, int], float], passes: int) -> dict[int, float]:
    """One value per round from its passes' medians ((round, pass) -> median latency, pass from 1): their
    geometric mean, for the rounds whose every pass counts. A round with a pass left out is left out whole: its
    other pass alone would carry the order effect the mirrored pass cancels. Runs from before the mirrored pass
    have passes=1 and their round medians pass through."""
    rounds: dict[int, list[float]] = {}
    for (number, _), median in sorted(medians.items()):
        rounds.setdefault(number, []).append(median)
    return {number: geometric_mean(values) for number, values in rounds.items() if len(values) == passes}


def paired(variant: dict[int, float], dense: dict[int, float]) -> list[int]:
    """The rounds both sides have (each a fresh, unflagged measurement)."""
    return sorted(set(variant) & set(dense))


def speedup_interval(variant: dict[int, float], dense: dict[int, float],
                     design: Design | None = None) -> Interval | None:
    """dense / variant per round (round number -> round value, `round_values`), over the rounds both have."""
    rounds = paired(variant, dense)
    return geometric_interval([dense[r] / variant[r] for r in rounds], design)


def stopping_look(logs: np.ndarray, design: Design, min_effect: float,
                  rounds: Sequence[int] | None = None) -> tuple[np.ndarray, ...]:
    """Mean, half-width (`log_interval`) and paired rounds counted at the look where each comparison is judged.
    `logs` are per-round log ratios along the last axis, of rounds `rounds` (default 1, 2, ..: none left out).
    The looks are bench's: after round design.rounds, design.rounds + 1, .. the last, each over the paired rounds
    measured by then (at least MIN_ROUNDS); a comparison is judged at the first whose label is resolved (not in
    UNRESOLVED), else the last. The rule bench adds rounds by, applied to each comparison alone: later rounds were
    measured for the others, so what they would say of one already resolved does not count. Deterministic from the
    stored rounds; vectorised over the leading axes, so the coverage simulation stops as the report does."""
    logs = np.asarray(logs, dtype=float)
    numbers = np.arange(1, logs.shape[-1] + 1) if rounds is None else np.asarray(rounds)
    last = int(numbers[-1])
    looks = [look for look in range(design.rounds, last + 1) if np.count_nonzero(numbers <= look) >= MIN_ROUNDS]
    for k, look in enumerate(looks or [last]):
        n = int(np.count_nonzero(numbers <= look))
        m, h = log_interval(logs[..., :n], design, look)
        if k == 0:
            mean, half, counted, open_ = m, h, np.full(m.shape, n), np.ones(m.shape, dtype=bool)
        mean, half, counted = np.where(open_, m, mean), np.where(open_, h, half), np.where(open_, n, counted)
        open_ &= np.isin(labels(np.exp(m - h), np.exp(m + h), min_effect), UNRESOLVED)
    return mean, half, counted


def judged_speedup(variant: dict[int, float], dense: dict[int, float], design: Design,
                   min_effect: float) -> Interval | None:
    """The speedup (`speedup_interval`) at the comparison's own stopping look (`stopping_look`): its `rounds` are
    the paired rounds that count, the first of those both sides have. None as `geometric_interval` gives None."""
    rounds = paired(variant, dense)
    values = np.array([dense[r] / variant[r] for r in rounds])
    if len(values) < MIN_ROUNDS or not np.all(values > 0):
        return None
    mean, half, counted = (float(v) for v in stopping_look(np.log(values), design, min_effect, rounds))
    return Interval(math.exp(mean), math.exp(mean - half), math.exp(mean + half), int(counted))


def labels(low: np.ndarray, high: np.ndarray, min_effect: float) -> np.ndarray:
    """What speedup intervals [low, high] (dense / variant) say, elementwise, with the band 1 / (1 + min_effect) ..
    1 + min_effect around no change: the direction (wholly above 1, wholly below, or containing 1) and the size
    against min_effect (wholly beyond the band's end, wholly within it, or straddling it). The eight combinations
    that can occur, checked in this order, so every interval gets exactly one (MEANINGS says each in words):
    REAL SPEEDUP: low >= 1 + m.                      SLOWDOWN: high <= 1 / (1 + m).
    FASTER: low > 1 and high > 1 + m.                SMALL SPEEDUP: low > 1 (and high <= 1 + m).
    SLOWER: high < 1 and low < 1 / (1 + m).          SMALL SLOWDOWN: high < 1 (and low >= 1 / (1 + m)).
    INCONCLUSIVE: containing 1 and reaching past either end of the band.
    EQUIVALENT: containing 1, within the band.
    An interval wholly on one side of 1 is never INCONCLUSIVE: its direction is found (TOST's "different", pyperf's
    "faster"), and the label says whether its size against m is found too."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    band = 1.0 + min_effect
    conditions = [(low >= band) & (low > 1.0), (high <= 1.0 / band) & (high < 1.0), (low > 1.0) & (high > band),
                  low > 1.0, (high < 1.0) & (low < 1.0 / band), high < 1.0, (low < 1.0 / band) | (high > band)]
    return np.select(conditions, [REAL_SPEEDUP, SLOWDOWN, FASTER, SMALL_SPEEDUP, SLOWER, SMALL_SLOWDOWN,
                                  INCONCLUSIVE], EQUIVALENT)


def label(low: float, high: float, min_effect: float) -> str:
    """The label of one speedup interval (`labels`)."""
    return str(labels(low, high, min_effect))


def meaning(verdict: str, min_effect: float) -> str:
    """A label in words, its size against the minimum effect said (`MEANINGS`)."""
    return MEANINGS[verdict].format(effect=f"{min_effect * 100:g}%", band=f"{1 + min_effect:.4g}",
                                    inverse=f"{1 / (1 + min_effect):.4g}")


def legend(min_effect: float) -> str:
    """Every label and what it says, in one sentence each: the legend of tables and the study."""
    return " ".join(f"{name}: {meaning(name, min_effect)}." for name in LABELS)


def beyond_call_interval(variant: dict[int, float], dense: dict[int, float], percall: dict[int, float],
                         design: Design | None = None) -> Interval | None:
    """(dense - per-call) / (variant - per-call) per round, over the rounds all three have: the speedup of the
    compute beyond the fixed cost of a call. None where a round's variant or dense is not above its per-call cost."""
    rounds = sorted(set(variant) & set(dense) & set(percall))
    values = [(dense[r] - percall[r]) / (variant[r] - percall[r]) for r in rounds
              if variant[r] > percall[r] and dense[r] > percall[r]]
    return geometric_interval(values, design) if len(values) == len(rounds) else None
