"""`tsprune-edge data list|fetch`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from tsprune_edge.cli import guards
from tsprune_edge.cli.output import table_console
from tsprune_edge.data.fetch import fetch
from tsprune_edge.data.registry import DATASETS, SPLIT_RULES, data_dir
from tsprune_edge.data.synthetic import ROWS

app = typer.Typer(help="Named datasets: list them, download them into the cache.", no_args_is_help=True)


@app.command("list")
def list_command() -> None:
    """List the built-in and registered datasets and whether each is in the cache."""
    table = Table(title=f"datasets (cache: {data_dir()})")
    for column in ("name", "step", "target", "split", "sha256", "cached", "source"):
        table.add_column(column)
    table.add_row("synthetic", "1h", "OT", SPLIT_RULES["ratio"], "-", "built in",
                  f"generated, {ROWS} rows, 7 variables")
    for spec in DATASETS.values():
        cached = "yes" if (data_dir() / spec.filename).is_file() else "no"
        # No invented digests: a file without a published sha256 is recognised by name and shape only.
        digest = f"{spec.sha256[:12]}…" if spec.sha256 else "unknown: not verified"
        table.add_row(spec.name, spec.freq, spec.target, SPLIT_RULES[spec.split], digest, cached,
                      spec.url or spec.source)
    table_console().print(table)


@app.command("fetch")
def fetch_command(
    name: str = typer.Argument(..., help="A registered dataset name (see `data list`)."),
    mirror: str = typer.Option(None, help="Base URL of a copy holding the same file names; checked by sha256."),
    dest: Path = typer.Option(None, help="Directory to save into (default: the cache, $TSPRUNE_EDGE_DATA_DIR)."),
    force: bool = typer.Option(False, "--force", help="Replace a file of that name in DEST that does not verify."),
) -> None:
    """Download a dataset, verify its sha256 and save it atomically."""
    guards.writable_dir(dest or data_dir(), "--dest")
    path = fetch(name, mirror=mirror, dest_dir=dest, force=force)
    print(path)
