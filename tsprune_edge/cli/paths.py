"""Where commands write and read when no folder is given: everything under `runs/`, so that a command run in a source
checkout never writes among the sources (the package folders `export/` and `devices/` sit at its top)."""

from __future__ import annotations

from pathlib import Path

RUNS = Path("runs")
BUNDLES = RUNS / "bundles"  # `export --out`, `bench --artifacts`
EXPORT_CHECKPOINTS = RUNS / "export"  # `export --runs`: the trained and pruned checkpoints behind the bundles
RESULTS = RUNS / "results"  # `bench --results`, what `report` reads without arguments
REPORT = RUNS / "report"  # `report --out`
PIPELINE = RUNS / "pipeline"  # `pipeline --out`
SWEEP = RUNS / "sweep"  # `sweep --out`
