"""Does the speedup's 95% interval hold its level? Synthetic bench runs with a known true speedup, measured the way
the board agent measures: rounds, each item a fresh process, latencies autocorrelated within a process, the machine
drifting between rounds and between the measurements of a round. Vectorised over runs with numpy, so thousands of
runs take seconds. The test suite checks the default settings; benchmarks/coverage.py writes the table."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tsprune_edge.devices.runs import DEFAULT_ROUNDS
from tsprune_edge.report.stats import t_quantile

CHUNK = 500  # runs simulated at once: bounds memory at CHUNK x rounds x 2 x iterations doubles


@dataclass(frozen=True)
class Scenario:
    """How a synthetic run is noisy (all on the log scale, i.e. 0.05 is about 5%)."""

    rounds: int = DEFAULT_ROUNDS
    true_speedup: float = 1.25
    drift_sd: float = 0.05  # a factor shared by every item of a round (cancels in the paired ratio)
    step_sd: float = 0.01  # the machine's random walk from one measurement to the next within a round
    process_sd: float = 0.01  # each fresh process' own level (memory placement, frequency)
    ar: float = 0.6  # AR(1) coefficient between successive latencies within a process
    noise_sd: float = 0.05  # marginal spread of a single latency
    spike_rate: float = 0.02  # share of latencies hit by a preemption: longer by an exponential factor (mean 50%)
    slow_process_rate: float = 0.0  # share of processes that land 10% slower (a neighbour, a bad core)
    order_effect: float = 0.0  # the second item of a round is this much slower (order rotated each round)
    iterations: int = 100


def simulate(scenario: Scenario, runs: int = 4000, seed: int = 0) -> dict:
    """Coverage of the 95% interval of the speedup over `runs` synthetic runs, with the median half-width of the
    interval (log scale, about the relative half-width) and the mean estimate."""
    rng = np.random.default_rng(seed)
    covered, halves, estimates = [], [], []
    for start in range(0, runs, CHUNK):
        logs = run_log_speedups(scenario, min(CHUNK, runs - start), rng)
        mean = logs.mean(axis=1)
        half = t_quantile(scenario.rounds) * logs.std(axis=1, ddof=1) / np.sqrt(scenario.rounds)
        truth = np.log(scenario.true_speedup)
        covered.append(np.abs(mean - truth) <= half)
        halves.append(half)
        estimates.append(mean)
    return {**asdict(scenario), "runs": runs, "seed": seed, "coverage": float(np.concatenate(covered).mean()),
            "median_half_width": float(np.median(np.concatenate(halves))),
            "mean_estimate": float(np.exp(np.concatenate(estimates).mean()))}


def run_log_speedups(s: Scenario, runs: int, rng: np.random.Generator) -> np.ndarray:
    """log(dense median / variant median) per run and round, shape (runs, rounds)."""
    shape = (runs, s.rounds, 2)  # item 0 is dense, item 1 the variant
    level = np.zeros(shape) + np.log([1.0, 1.0 / s.true_speedup])
    level += rng.normal(0, s.drift_sd, (runs, s.rounds, 1))
    level += rng.normal(0, s.process_sd, shape) + np.log(1.1) * (rng.random(shape) < s.slow_process_rate)
    second = (np.arange(s.rounds) % 2)[None, :, None] != np.array([0, 1])[None, None, :]  # rotated order
    level += second * (rng.normal(0, s.step_sd, (runs, s.rounds, 1)) + s.order_effect)
    innovation = s.noise_sd * np.sqrt(1 - s.ar**2)
    noise = rng.normal(0, s.noise_sd, shape)  # the stationary start
    series = np.empty((*shape, s.iterations))
    for i in range(s.iterations):
        noise = s.ar * noise + rng.normal(0, innovation, shape)
        series[..., i] = noise
    spikes = (rng.random(series.shape) < s.spike_rate) * rng.exponential(0.5, series.shape)
    median = np.median(np.exp(series + level[..., None]) * (1 + spikes), axis=-1)
    return np.log(median[..., 0]) - np.log(median[..., 1])
