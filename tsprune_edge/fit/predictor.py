"""Whole-model latency from per-layer widths: a least-squares line over the space's features.

latency = per-call term + a * FFN MACs + b * projection MACs + c * attention-core MACs + d * kept width fraction,
with a, b, c, d >= 0 (a layer never gets faster by being wider): features whose coefficient comes out negative are
dropped and the rest refitted (an active-set non-negative least squares; a few columns, so this is exact). The
per-call term is free: it absorbs every node's fixed cost, which pruning widths never removes. The width fraction
carries what scales with d_model but is no multiply-accumulate (layer norms, residual adds, moving averages).

Honesty: `leave_one_out` refits without each probe in turn and predicts it, the error a user should expect on a
model the fit has not seen; whole models measured later (the fitted candidates) are scored the same way.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from tsprune_edge.fit.space import FEATURES


@dataclass(frozen=True)
class Predictor:
    coefficients: tuple[float, ...]  # ms per unit of each feature in FEATURES

    def predict(self, features: list[float]) -> float:
        return float(np.dot(self.coefficients, features))

    def record(self) -> dict:
        return dict(zip(FEATURES, self.coefficients, strict=True))


def fit_predictor(features: list[list[float]], latencies_ms: list[float]) -> Predictor:
    """Non-negative least squares (the per-call term free) of latency on the features."""
    x, y = np.asarray(features, dtype=float), np.asarray(latencies_ms, dtype=float)
    active = [j for j in range(x.shape[1]) if j == 0 or np.ptp(x[:, j]) > 0]  # a constant column adds nothing
    while True:
        solution, *_ = np.linalg.lstsq(x[:, active], y, rcond=None)
        negative = [j for j, c in zip(active, solution, strict=True) if j and c < 0]
        if not negative:
            break
        worst = min(negative, key=lambda j: solution[active.index(j)])
        active.remove(worst)
    coefficients = np.zeros(x.shape[1])
    coefficients[active] = solution
    return Predictor(tuple(float(c) for c in coefficients))


def leave_one_out(features: list[list[float]], latencies_ms: list[float]) -> list[float]:
    """Relative error (predicted / measured - 1) of each point predicted by a fit on all the others."""
    errors = []
    for i in range(len(features)):
        rest = [j for j in range(len(features)) if j != i]
        predictor = fit_predictor([features[j] for j in rest], [latencies_ms[j] for j in rest])
        errors.append(predictor.predict(features[i]) / latencies_ms[i] - 1)
    return errors


def error_summary(errors: list[float]) -> dict:
    """Median and worst absolute relative error."""
    if not errors:
        return {"points": 0, "median_abs": None, "worst_abs": None}
    absolute = [abs(e) for e in errors]
    return {"points": len(errors), "median_abs": statistics.median(absolute), "worst_abs": max(absolute)}
