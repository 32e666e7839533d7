"""The names of the bundles an export or a sweep writes, without torch: a report, a sweep spec and the CLI's
output checks name them before (or without) loading any model, and every writer and reader must agree on them."""

from __future__ import annotations

from tsprune_edge.prune.dimensions import DEFAULT_DIMENSIONS

DENSE = "dense"  # the reference variant every export job writes
PROBE_VARIANT = "percall"  # the per-call probe bundle: the dense signature, next to no compute (export/probe.py)
CONTROL = "control"  # bench --control: a byte-different copy of dense, judged against it (export/control.py)


def variant_name(method: str, sparsity: float, dims: tuple[str, ...] = DEFAULT_DIMENSIONS) -> str:
    """`structured-0.5`; a structured variant that prunes more dimensions than the default names them, at the
    nominal sparsity whose MACs it matches: `structured_width-0.5`."""
    extra = [d for d in dims if d not in DEFAULT_DIMENSIONS]
    return f"{method}{''.join('_' + d for d in extra)}-{sparsity:g}"
BASELINE_PREFIX = "baseline-"  # --baselines: a tiny forecaster trained beside the run, e.g. `baseline-sparsetsf`


def baseline_variant(model: str, preset: str | None = None) -> str:
    """`baseline-sparsetsf`; at a preset other than the run's windows: `baseline-sparsetsf-paper`."""
    return f"{BASELINE_PREFIX}{model}" + (f"-{preset}" if preset else "")


def is_baseline(variant: str) -> bool:
    return str(variant).startswith(BASELINE_PREFIX)
