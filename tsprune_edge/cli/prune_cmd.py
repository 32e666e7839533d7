"""`tsprune-edge prune`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from tsprune_edge.cli import guards
from tsprune_edge.cli import pruning_options as options
from tsprune_edge.errors import UserError

_console = Console(stderr=True)


def parse_nm(text: str) -> tuple[int, int]:
    try:
        n, m = (int(part) for part in text.split(":"))
    except ValueError:
        raise UserError(f"--nm takes N:M, for example 2:4; got {text!r}") from None
    return n, m


def prune_command(
    checkpoint: Path = typer.Argument(..., help="A dense model.pt written by `tsprune-edge train`."),
    method: str = options.method(),
    sparsity: float = options.sparsity(),
    finetune_epochs: int = typer.Option(0, help="Fine-tuning epochs after pruning (masks stay in force)."),
    lr: float = typer.Option(None, help="Fine-tuning learning rate (default: the model's published one)."),
    gradual: bool = typer.Option(False, help="Ramp the sparsity cubically over the fine-tuning epochs."),
    ranking: str = typer.Option("uniform", help="structured: uniform (same ratio in every layer) or global."),
    steps: int = typer.Option(1, help="structured: reach the sparsity in this many prune + fine-tune steps "
                              "(study: 50 unless given)."),
    dims: str = options.dims(),
    width_sparsity: float = options.width_sparsity(),
    device: str = options.device(),
    round_to: int = options.round_to(),
    include_fourier: bool = typer.Option(False, help="Also prune FEDformer's complex Fourier weights."),
    nm: str = typer.Option("2:4", help="nm: keep N of every M consecutive weights."),
    seed: int = typer.Option(2021, help="Seed for fine-tuning and random pruning."),
    out: Path = typer.Option(None, help="Output directory (default: beside the checkpoint, "
                             "<dir>-<method>-<sparsity>)."),
    force: bool = typer.Option(False, "--force", help="Overwrite files an earlier run left in OUT."),
) -> None:
    """Prune a trained checkpoint; writes OUT/model.pt (the pruned model) and OUT/pruning.json."""
    from tsprune_edge.prune.stage import PruneRequest, prune_to_dir

    pruning = options.pruning(method, sparsity, dims, width_sparsity, device, round_to)
    if ranking not in ("uniform", "global"):
        raise UserError(f"--ranking must be uniform or global, got {ranking!r}")
    n, m = parse_nm(nm)
    request = PruneRequest(method=method, finetune_epochs=finetune_epochs, lr=lr, gradual=gradual,
                           global_ranking=ranking == "global", steps=steps, include_fourier=include_fourier, n=n, m=m,
                           seed=seed, **pruning.fields)
    guards.number("--steps", steps, 1)
    guards.number("--lr", lr, 0, low_open=True)
    guards.seed(seed)
    request.validate()
    out = out or checkpoint.parent.with_name(f"{checkpoint.parent.name}-{method}-{sparsity:g}")
    guards.output_dir(out, writes=("model.pt", "pruning.json"), inputs=[checkpoint], force=force)
    summary = prune_to_dir(checkpoint, request, out, console=_console)
    test = summary["test"]
    finetuned = test["finetuned"]
    before, after = summary["before"], summary["after"]
    accuracy = f"test MSE {test['source']['mse']:.4f} dense, {test['pruned']['mse']:.4f} pruned"
    if finetuned:
        accuracy += (f"; after fine-tuning {finetuned['mse']:.4f} pruned vs {test['dense']['mse']:.4f} dense "
                     f"({summary['training_budget']['comparison']})")
    print(f"{summary['model']} {method} {sparsity:g}: nonzero params {before['nonzero_parameters']:,} -> "
          f"{after['nonzero_parameters']:,}, MACs {before['macs']:,} -> {after['macs']:,}; {accuracy} "
          f"-> {out / 'model.pt'}")
