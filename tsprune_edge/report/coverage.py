"""Does the verdict's 95% interval hold its level, and how often does it call a true 1.05x a REAL SPEEDUP? Synthetic
bench runs with a known true speedup, measured as the board agent measures and judged as the report judges:

- the plan: `items` items, two runtimes of `items / 2` each (a dense reference, then its variants), run in the
  agent's own order (`round_order` from the agent: a rotated forward pass, then the mirrored pass);
- what spoils a measurement: a drift over the run (linear, and a random walk), a level shared by a round, each
  process' own level, AR(1) latencies with normal or heavy-tailed (t) innovations, preemption spikes, bimodal
  latencies inside a process, a noisy neighbour that slows every measurement of a burst;
- the estimator: each pass' median, the round's value their geometric mean, dense / variant paired by round, and
  the report's own `log_interval` and `labels` (stats.py) on them, with the design's quantile;
- adaptive rounds as bench adds them: after `rounds`, one more while any variant's label is unresolved
  (stats.UNRESOLVED), up to `max_rounds`; each variant judged at its own stopping look by the report's own
  `stopping_look` (stats.py), with the design's boundary.

Vectorised over runs with numpy. The test suite checks the default; benchmarks/coverage.py writes the table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tsprune_edge.devices.agent import round_order
from tsprune_edge.devices.runs import DEFAULT_MAX_ROUNDS, DEFAULT_ROUNDS
from tsprune_edge.report.stats import REAL_SPEEDUP, Design, labels, stopping_look

CELLS = 4_000_000  # latencies simulated at once: bounds memory (float64) at about 32 MB per array


@dataclass(frozen=True)
class Scenario:
    """How a synthetic run is planned and how it is noisy (all on the log scale, i.e. 0.05 is about 5%). The default
    noise gives the half-widths a real 5-round desktop run gave (about 1%: benchmarks/results/coverage.md)."""

    items: int = 8  # two runtimes, each a dense reference and items / 2 - 1 variants
    rounds: int = DEFAULT_ROUNDS
    max_rounds: int = DEFAULT_MAX_ROUNDS  # equal to rounds: fixed rounds
    passes: int = 2  # 2: the agent's forward and mirrored passes; 1: the forward pass alone (rotation only)
    true_speedup: float = 1.25  # every variant's
    min_effect: float = 0.05
    drift: float = 0.05  # linear drift over the planned rounds: the last measurement this much slower than the first
    walk: float = 0.0  # random-walk drift: its standard deviation after the planned rounds
    round_sd: float = 0.05  # a level shared by every measurement of a round
    process_sd: float = 0.007  # each fresh process' own level (memory placement, frequency)
    ar: float = 0.6  # AR(1) coefficient between successive latencies within a process
    noise_sd: float = 0.02  # marginal spread of a single latency
    tail_df: float = 0.0  # t-distributed innovations with this many degrees of freedom (0: normal)
    spike_rate: float = 0.02  # share of latencies hit by a preemption: longer by an exponential factor (mean 50%)
    bimodal_gap: float = 0.0  # latencies in a slow mode this much slower, each with a share drawn per process
    burst_rate: float = 0.0  # chance that a noisy neighbour starts at a measurement
    burst_length: int = 3  # measurements a burst lasts
    burst_size: float = 0.2  # how much slower a burst makes a measurement
    iterations: int = 50  # latencies per measurement
    naive: bool = False  # judge every look with t's quantile, as if the rounds had been fixed (optional stopping)


def simulate(scenario: Scenario, runs: int = 2000, seed: int = 0) -> dict:
    """Coverage of the speedup's 95% interval over `runs` synthetic runs (every variant of every run counted), the
    share of intervals labelled REAL SPEEDUP, each with its Monte Carlo standard error (over runs: the variants of
    a run share their dense reference, so they are not independent), the median half-width (log scale: about the
    relative half-width), the mean estimate, the mean round a variant was judged at and the mean rounds a run took
    (bench adds rounds while any variant is open)."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, CELLS // (scenario.max_rounds * scenario.passes * scenario.items * scenario.iterations))
    covered, real, halves, means, looks = [], [], [], [], []
    truth = np.log(scenario.true_speedup)
    for start in range(0, runs, per_chunk):
        logs = round_log_speedups(scenario, min(per_chunk, runs - start), rng)
        mean, half, look = judged(logs, scenario)
        covered.append(np.abs(mean - truth) <= half)
        real.append(labels(np.exp(mean - half), np.exp(mean + half), scenario.min_effect) == REAL_SPEEDUP)
        halves.append(half)
        means.append(mean)
        looks.append(look)
    covered, real, look = np.concatenate(covered), np.concatenate(real), np.concatenate(looks)
    return {**asdict(scenario), "runs": runs, "seed": seed, "coverage": float(covered.mean()),
            "coverage_se": _standard_error(covered), "real_speedup_share": float(real.mean()),
            "real_speedup_se": _standard_error(real), "median_half_width": float(np.median(np.concatenate(halves))),
            "mean_estimate": float(np.exp(np.concatenate(means).mean())), "mean_judged_round": float(look.mean()),
            "mean_rounds": float(look.max(axis=1).mean())}


def _standard_error(hits: np.ndarray) -> float:
    """Of the share of hits over (runs, variants): from the spread of the per-run shares."""
    return float(hits.mean(axis=1).std(ddof=1) / np.sqrt(len(hits)))


def judged(logs: np.ndarray, s: Scenario) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean log speedup, half-width and paired rounds per run and variant at each variant's own stopping look
    (`stats.stopping_look`, the report's rule). A run goes on while any of its variants is open, so it takes the
    most rounds any of them took. Naive: t's quantile at every look, as if each look were the only one."""
    design = Design(s.rounds, s.rounds) if s.naive else Design(s.rounds, s.max_rounds)
    return stopping_look(np.moveaxis(logs, 1, -1), design, s.min_effect)


def plan_layout(items: int) -> tuple[np.ndarray, np.ndarray]:
    """Which items are variants and the dense reference of each: two runtimes, each its dense item first."""
    half = items // 2
    dense = np.repeat([0, half], [half, items - half])
    variants = np.array([i for i in range(items) if i not in (0, half)])
    return variants, dense[variants]


def schedule(s: Scenario) -> np.ndarray:
    """The time slot (index in the run's sequence of measurements) of every (round, pass, item), from the agent's
    own `round_order`; with passes=1 the forward pass alone, i.e. rotation only."""
    slots = np.zeros((s.max_rounds, s.passes, s.items), dtype=int)
    t = 0
    for round_no in range(1, s.max_rounds + 1):
        for pass_no, item in round_order(list(range(s.items)), round_no):
            if pass_no <= s.passes:
                slots[round_no - 1, pass_no - 1, item] = t
                t += 1
    return slots


def round_log_speedups(s: Scenario, runs: int, rng: np.random.Generator) -> np.ndarray:
    """log(dense round value / variant round value) per run, round and variant, shape (runs, max_rounds, variants);
    a round's value is the geometric mean of its passes' medians, as `stats.round_values` makes it."""
    variants, reference = plan_layout(s.items)
    round_logs = pass_log_medians(s, runs, rng).mean(axis=2)  # log of the passes' geometric mean
    return round_logs[..., reference] - round_logs[..., variants]


def pass_log_medians(s: Scenario, runs: int, rng: np.random.Generator) -> np.ndarray:
    """The log median latency of every measurement, shape (runs, max_rounds, passes, items)."""
    variants, _ = plan_layout(s.items)
    slots = schedule(s)
    total = slots.max() + 1
    planned = s.rounds * s.passes * s.items
    shape = (runs, s.max_rounds, s.passes, s.items)
    truth = np.zeros(s.items)
    truth[variants] = -np.log(s.true_speedup)
    timeline = s.drift * np.arange(total) / planned  # the linear drift, then the random walk and the bursts
    timeline = timeline + np.cumsum(rng.normal(0, s.walk / np.sqrt(planned), (runs, total)), axis=1)
    starts = rng.random((runs, total)) < s.burst_rate
    burst = np.stack([np.roll(starts, k, axis=1) & (np.arange(total) >= k) for k in range(s.burst_length)]).any(0)
    timeline = timeline + s.burst_size * burst
    level = truth + timeline[:, slots] + rng.normal(0, s.round_sd, (runs, s.max_rounds, 1, 1))
    level += rng.normal(0, s.process_sd, shape)
    return np.median(latencies(s, shape, rng), axis=-1) + level


def latencies(s: Scenario, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Log latencies within each process around its level 0: AR(1) with normal or t innovations, a slow mode with
    a share drawn per process, preemption spikes."""
    innovation = s.noise_sd * np.sqrt(1 - s.ar**2)

    def shocks() -> np.ndarray:
        if not s.tail_df:
            return rng.normal(0, innovation, shape)
        return rng.standard_t(s.tail_df, shape) * innovation / np.sqrt(s.tail_df / (s.tail_df - 2))

    noise = shocks() / np.sqrt(1 - s.ar**2)  # about the stationary start
    series = np.empty((*shape, s.iterations))
    for i in range(s.iterations):
        noise = s.ar * noise + shocks()
        series[..., i] = noise
    if s.bimodal_gap:
        share = rng.uniform(0.2, 0.8, (*shape, 1))
        series += s.bimodal_gap * (rng.random(series.shape) < share)
    spikes = rng.random(series.shape) < s.spike_rate
    series[spikes] += np.log1p(rng.exponential(0.5, int(spikes.sum())))
    return series
