"""Median latency ratios with hierarchical bootstrap confidence intervals, and the verdict they support.

Rounds are the unit of replication (each is a fresh process, interleaved with the other variants), so the
bootstrap resamples rounds first and then latencies within each drawn round, for the variant and the dense
reference alike. The ratio is median(variant) / median(dense): below 1 is faster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REAL_SPEEDUP = "REAL SPEEDUP"
NO_CHANGE = "NO SIGNIFICANT CHANGE"
SLOWDOWN = "SLOWDOWN"
BOOTSTRAP = 2000
MAX_DRAWS = 2000  # latencies drawn per round and resample: enough for a median, bounded memory


@dataclass(frozen=True)
class Ratio:
    ratio: float  # median(variant) / median(dense) over all rounds' latencies
    low: float  # 95% bootstrap interval of the ratio
    high: float

    @property
    def speedup(self) -> float:
        return 1.0 / self.ratio


def median_ratio(variant: list[np.ndarray], dense: list[np.ndarray], seed: int = 0,
                 resamples: int = BOOTSTRAP) -> Ratio:
    """Ratio of pooled medians and its hierarchical bootstrap 95% interval; each list holds one array per round."""
    point = float(np.median(np.concatenate(variant)) / np.median(np.concatenate(dense)))
    rng = np.random.default_rng(seed)
    ratios = _bootstrap_medians(variant, rng, resamples) / _bootstrap_medians(dense, rng, resamples)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return Ratio(point, float(low), float(high))


def _bootstrap_medians(rounds: list[np.ndarray], rng: np.random.Generator, resamples: int) -> np.ndarray:
    draws = min(MAX_DRAWS, min(len(r) for r in rounds))
    medians = np.empty(resamples)
    for i in range(resamples):
        chosen = rng.integers(len(rounds), size=len(rounds))
        pooled = np.concatenate([rng.choice(rounds[c], size=draws) for c in chosen])
        medians[i] = np.median(pooled)
    return medians


def verdict(ratio: Ratio, min_effect: float) -> str:
    """REAL SPEEDUP only if the whole interval is at least `min_effect` faster; SLOWDOWN if it is wholly at least
    that much slower; anything else is not a change this run can vouch for."""
    if ratio.high <= 1.0 / (1.0 + min_effect):
        return REAL_SPEEDUP
    if ratio.low >= 1.0 + min_effect:
        return SLOWDOWN
    return NO_CHANGE
