"""`--baselines` and `--baseline-cache`, declared once for every command that trains tiny forecasters beside its
run (`export`, `pipeline`, `sweep`, `fit`), and read once: names checked against the registry before anything is
written."""

from __future__ import annotations

from pathlib import Path

import typer

from tsprune_edge.cli.lists import comma_list


def baselines():
    return typer.Option("", help="Tiny forecasters to train beside the run (same data, split, seed and windows, "
                        "each with its published schedule; cached), export as baseline-<model> and bench with the "
                        "variants, comma-separated, e.g. sparsetsf,fits,dlinear; NAME:paper takes the authors' "
                        "lookback. The report puts them on the (latency, test MSE) Pareto front.")


def baseline_cache():
    return typer.Option(None, help="Where trained baselines are kept and reused (default "
                        "~/.cache/tsprune-edge/checkpoints).")


def resolve(text: str, cache: Path | None) -> dict:
    """The ExportJob fields the options set; an unknown name or preset is refused here, in one line."""
    from tsprune_edge.baselines import DEFAULT_CACHE, parse_baselines

    return {"baselines": parse_baselines(comma_list(text)), "baseline_cache": cache or DEFAULT_CACHE}
