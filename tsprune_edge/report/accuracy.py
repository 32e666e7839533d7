"""Accuracy beside speed: a variant's test-MSE change against dense, its 95% interval, and the label it supports.

Both models are scored on the same test windows, so the errors are paired window by window: the change is
mean(variant) / mean(dense) - 1 over the per-window MSEs (the test MSE itself, as every window has the same number
of values). Test windows overlap: window i covers rows i .. i + span - 1 (span = seq_len + pred_len), so
neighbouring windows share almost all their data and their errors are strongly correlated (about pred_len windows
move together). An interval that treats them as independent is about 4x too narrow: it covered the true change in
under half of the simulated splits (benchmarks/results/accuracy_interval.md, as for every figure below).

The interval is a t interval on log(ratio) with the variance from overlapping batch means (Meketon & Schmeiser,
1984), applied to each window's influence on the log ratio, z_i = v_i / mean(v) - d_i / mean(d) (paired: one z
per window from both models). A batch is `BATCH_SPANS` spans of consecutive windows (one batch starting at every
window), so batches further than a span apart share no data and the batch means carry the windows' dependence;
the variance of the mean of z is the spread of the batch means scaled by the batch length, with
1.5 (n / batch - 1) degrees of freedom.
Why not a block bootstrap: a test split of ~2000 windows with a span of 192 holds only ~10 independent stretches;
a percentile interval from so few blocks is too narrow (no small-sample correction: a circular block bootstrap
covered 85-94%), while the t quantile carries the few degrees of freedom into the width. The batch means are one
cumulative sum: exact, deterministic and cheap. Batches of two spans rather than one: one span is 3-20% narrower
but covered 91-93% on persistent series (AR 0.95, 0.98), two spans 92-95% there and 93.8-97.4% elsewhere.
tests/test_accuracy_interval.py asserts 93-97% at the default data's shape.

The label judges the rise against a tolerance (default 1%: MLPerf gates accuracy at 99% of the reference):
ACCURACY HELD when the whole interval is at or below +tolerance, ACCURACY LOST when the whole interval is above it,
UNRESOLVED otherwise (or when there is no interval: a test split shorter than two spans).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tsprune_edge.errors import UserError
from tsprune_edge.export.manifest import torch_window_errors  # noqa: F401 (the bundle side, read by bench)
from tsprune_edge.report.stats import t_quantile

DEFAULT_MAX_MSE_RISE = 0.01  # --max-mse-rise: the largest test-MSE rise against dense that still holds accuracy
BATCH_SPANS = 2  # windows per batch, in window spans (seq_len + pred_len)
ACCURACY_HELD = "ACCURACY HELD"
ACCURACY_LOST = "ACCURACY LOST"
UNRESOLVED = "UNRESOLVED"
ACCURACY_LABELS = (ACCURACY_HELD, ACCURACY_LOST, UNRESOLVED)
SOURCES = ("board", "torch")  # the board's own outputs (bench --accuracy), else torch's at export
NOT_MEASURED = "test MSE not measured"


def check_max_rise(value: float) -> float:
    """--max-mse-rise as a fraction (0.01 = 1%), refused with the fix if it is not a finite number >= 0."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise UserError(f"--max-mse-rise {value} is not a fraction >= 0; give the tolerated test-MSE rise against "
                        f"dense as a fraction, e.g. {DEFAULT_MAX_MSE_RISE} for 1%")
    return float(value)


def mse_change(variant: Sequence[float], dense: Sequence[float], span: int,
               batch_spans: int = BATCH_SPANS) -> tuple[float, float | None, float | None]:
    """(change, low, high): mean(variant) / mean(dense) - 1 over paired per-window MSEs, with its 95% interval for
    windows overlapping by `span` rows; low and high are None when the split is shorter than two spans.
    `batch_spans` is there for the coverage benchmark to compare batch lengths."""
    v, d = np.asarray(variant, dtype=np.float64), np.asarray(dense, dtype=np.float64)
    if v.ndim != 1 or v.shape != d.shape or span < 1:
        raise ValueError(f"paired per-window errors of one length and a span >= 1 needed, got shapes {v.shape} "
                         f"and {d.shape}, span {span}")
    if not (np.isfinite(v).all() and np.isfinite(d).all() and (v >= 0).all() and (d >= 0).all()):
        raise ValueError("per-window MSEs must be finite and >= 0")
    n = len(v)
    if n == 0 or d.mean() == 0:
        raise ValueError("dense has no error to compare against (no windows, or every window exact)")
    ratio = v.mean() / d.mean()
    batch = min(batch_spans * span, n // 2)
    if batch < span or ratio == 0:
        return float(ratio - 1), None, None
    z = v / v.mean() - d / d.mean()
    sums = np.concatenate(([0.0], np.cumsum(z)))
    means = (sums[batch:] - sums[:-batch]) / batch
    variance = batch / ((n - batch + 1) * (n - batch)) * float(((means - z.mean()) ** 2).sum())
    freedom = 1.5 * (n / batch - 1)
    half = t95(freedom) * math.sqrt(variance)
    log_ratio = math.log(ratio)
    return float(ratio - 1), math.exp(log_ratio - half) - 1, math.exp(log_ratio + half) - 1


def t95(freedom: float) -> float:
    """Student's t two-sided 95% quantile at fractional degrees of freedom (>= 1): stats.t_quantile's, linear in
    1 / freedom between whole degrees below 10 (flooring them instead widened the interval: coverage 97%)."""
    if freedom >= 10:
        return float(t_quantile(freedom + 1))
    below = math.floor(freedom)
    if below == freedom:
        return float(t_quantile(below + 1))
    share = (1 / below - 1 / freedom) / (1 / below - 1 / (below + 1))
    return float((1 - share) * t_quantile(below + 1) + share * t_quantile(below + 2))


def accuracy_label(low: float | None, high: float | None, max_rise: float = DEFAULT_MAX_MSE_RISE) -> str:
    """HELD: the whole interval at or below +max_rise; LOST: the whole interval above it; UNRESOLVED otherwise."""
    if low is None or high is None:
        return UNRESOLVED
    if high <= max_rise:
        return ACCURACY_HELD
    if low > max_rise:
        return ACCURACY_LOST
    return UNRESOLVED


def accuracy_change(variant_errors: Sequence[float], dense_errors: Sequence[float], span: int, source: str,
                    max_rise: float = DEFAULT_MAX_MSE_RISE) -> dict:
    """The verdict row's accuracy fields for a variant whose per-window test MSEs (and dense's, on the same
    windows, from the same source) are given."""
    if source not in SOURCES:
        raise ValueError(f"accuracy source {source!r} is not one of {', '.join(SOURCES)}")
    if not np.isfinite(np.asarray(variant_errors, dtype=np.float64)).all():  # NaN or inf forecasts: no accuracy left
        return {"mse_change": math.inf, "mse_change_low": math.inf, "mse_change_high": math.inf,
                "accuracy_label": ACCURACY_LOST, "accuracy_source": source, "max_mse_rise": max_rise}
    change, low, high = mse_change(variant_errors, dense_errors, span)
    return {"mse_change": change, "mse_change_low": low, "mse_change_high": high,
            "accuracy_label": accuracy_label(low, high, max_rise), "accuracy_source": source,
            "max_mse_rise": max_rise}


def accuracy_fields(variant_board: dict | None, dense_board: dict | None, variant_torch: dict | None,
                    dense_torch: dict | None, max_rise: float = DEFAULT_MAX_MSE_RISE) -> dict:
    """The row's accuracy fields from the board's per-window errors where both the variant and its dense were
    scored on the board (bench --accuracy) on the same windows and dense's are finite, else from torch's at export,
    else all None. Each argument is a record
    with `per_window_mse` and `window_span` (the agent's accuracy result, or `torch_window_errors`)."""
    for source, variant, dense in (("board", variant_board, dense_board), ("torch", variant_torch, dense_torch)):
        if _usable(variant) and _usable(dense) and np.isfinite(dense["per_window_mse"]).all() \
                and len(variant["per_window_mse"]) == len(dense["per_window_mse"]):
            # a baseline at its own lookback forecasts the same rows window by window (test windows start
            # seq_len rows before the border); its errors stay correlated over the longer of the two spans
            return accuracy_change(variant["per_window_mse"], dense["per_window_mse"],
                                   max(variant["window_span"], dense["window_span"]), source, max_rise)
    return dict.fromkeys(("mse_change", "mse_change_low", "mse_change_high", "accuracy_label", "accuracy_source",
                          "max_mse_rise"))


def _usable(record: dict | None) -> bool:
    """A record with errors to compare (a failed pass has none)."""
    return bool(record) and bool(record.get("per_window_mse")) and bool(record.get("window_span"))


def percent(change: float, digits: int) -> str:
    """+0.6 -> '+60%' (digits 0); never '-0%'."""
    return f"{round(change * 100, digits) + 0.0:+.{digits}f}%"


def speed_phrase(speedup: float | None, low: float | None, high: float | None, label: str) -> str:
    """'1.66x faster [1.47, 1.88] REAL SPEEDUP', '0.91x as fast [0.88, 0.94] SLOWDOWN'; the label alone when no
    speedup was measured."""
    if speedup is None:
        return label
    word = "faster" if round(speedup, 2) > 1 else "as fast"
    interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
    return f"{speedup:.2f}x {word}{interval} {label}"


def accuracy_phrase(fields: dict | None) -> str:
    """'board test MSE +60% [+55%, +65%] ACCURACY LOST' from accuracy_change's fields; percent to 0 decimals from
    10% on, 1 from 1%, else 2, so that a change near a 1% tolerance shows on which side it lies."""
    if not fields or fields.get("mse_change") is None:
        return NOT_MEASURED
    values = [fields[k] for k in ("mse_change", "mse_change_low", "mse_change_high") if fields[k] is not None]
    largest = max(abs(v) for v in values) * 100
    digits = 0 if largest >= 9.5 else 1 if largest >= 0.995 else 2
    text = f"{fields['accuracy_source']} test MSE {percent(fields['mse_change'], digits)}"
    if fields["mse_change_low"] is None:
        text += " (no interval: test split under two window spans)"
    else:
        text += f" [{percent(fields['mse_change_low'], digits)}, {percent(fields['mse_change_high'], digits)}]"
    return f"{text} {fields['accuracy_label']}"


def headline(speedup: float | None, speed_low: float | None, speed_high: float | None, speed_label: str,
             accuracy: dict | None) -> str:
    """One line per variant: the speed verdict, then the accuracy verdict."""
    return f"{speed_phrase(speedup, speed_low, speed_high, speed_label)}, {accuracy_phrase(accuracy)}"
