"""The pruning options of every command that prunes by method and sparsity (`prune`, `export`, `pipeline`), declared
once with their defaults and help, and the one function that checks them and resolves the board's round_to: a
width-pruned bundle is exported exactly as `prune --dims heads,ffn,width` prunes.

Each factory returns a fresh typer option (a command's signature takes it as the parameter's default)."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from tsprune_edge.cli import guards
from tsprune_edge.cli.lists import comma_list
from tsprune_edge.defaults import DEFAULT_METHOD, DEFAULT_SPARSITY
from tsprune_edge.prune.dimensions import DEFAULT_DIMENSIONS, DEFAULT_ROUND_TO, DIMENSIONS

METHODS_HELP = ("structured (heads, neurons, width), study (the study's global structured method), unstructured "
                "(global magnitude), nm (N:M), block (1x4), or the baselines layerwise and random")


def method(*, several: bool = False, also: str = ""):
    which = "Pruning methods, comma-separated: " if several else "Pruning method: "
    return typer.Option(DEFAULT_METHOD, help=f"{which}{METHODS_HELP}.{' ' + also if also else ''}")


def sparsity():
    return typer.Option(DEFAULT_SPARSITY, help="Fraction to remove, in [0, 1): of the prunable weights (mask "
                        "methods), of the heads, FFN neurons and width of each layer (structured) or of the "
                        "parameters (study).")


def dims():
    return typer.Option(",".join(DEFAULT_DIMENSIONS), help="structured: dimensions to prune, a subset of "
                        f"{','.join(DIMENSIONS)} (width narrows the model width d_model).")


def width_sparsity():
    return typer.Option(None, help="structured: fraction of d_model to remove (default: --sparsity).")


def device(also: str = ""):
    return typer.Option(None, help="The board the model is for (`tsprune-edge devices list`): structured pruning "
                        f"keeps widths that are multiples of its profile's round_to.{' ' + also if also else ''}")


def round_to(default_from: str = "the --device profile's"):
    return typer.Option(None, help=f"structured: kept widths are multiples of this (default: {default_from}, else "
                        f"{DEFAULT_ROUND_TO}).")


@dataclass(frozen=True)
class Pruning:
    """What the pruning options resolved to; `fields` are the PruneRequest (and ExportJob) fields they set."""

    methods: tuple[str, ...]
    sparsity: float
    dims: tuple[str, ...]
    width_sparsity: float | None
    round_to: int
    round_to_source: str

    @property
    def fields(self) -> dict:
        return {"sparsity": self.sparsity, "dims": self.dims, "width_sparsity": self.width_sparsity,
                "round_to": self.round_to, "round_to_source": self.round_to_source}


def pruning(method: str, sparsity: float, dims: str, width_sparsity: float | None, device: str | None,
            round_to: int | None, *, several: bool = False, dense_allowed: bool = True) -> Pruning:
    """Check the options (an unknown device first, then the numbers) and resolve round_to; each method's own
    rules (dims only with structured, ...) are checked by its PruneRequest. `several`: --method is a list;
    `dense_allowed`: sparsity 0 is accepted."""
    from tsprune_edge.devices.profiles import resolve_round_to

    rounding, source = resolve_round_to(device, round_to)
    guards.number("--sparsity", sparsity, 0, 1, low_open=not dense_allowed, high_open=True)
    guards.number("--width-sparsity", width_sparsity, 0, 1, high_open=True)
    methods = comma_list(method) if several else (method,)
    return Pruning(methods, sparsity, comma_list(dims), width_sparsity, rounding, source)
