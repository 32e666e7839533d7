"""A fit step (a round, the uniform comparison, the latency table) taken up where an interrupted run left it: the
pruned candidate of the same request is reused, its complete bundles are not exported again, a bench run of the
step that finished is read back and one that was interrupted is resumed (the agent skips every measurement it has),
so nothing measured is measured again."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from rich.console import Console

from tsprune_edge.devices import runs
from tsprune_edge.errors import ToolError
from tsprune_edge.export.bundle import MANIFEST, PROBE_VARIANT, ExportRequest, write_bundles
from tsprune_edge.fit.measure import Target, latency_rows, measure
from tsprune_edge.prune.stage import PruneRequest, prune_to_dir


def pruned(checkpoint: Path, request: PruneRequest, folder: Path, reference: Path | None,
           console: Console) -> tuple[dict, bool]:
    """The candidate in `folder` if an earlier run pruned it with this very request (pruning.json is written last,
    atomically), else pruned now; returns its summary and whether it was reused."""
    summary_path = Path(folder) / "pruning.json"
    if summary_path.is_file() and (Path(folder) / "model.pt").is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError):
            summary = None
        wanted = json.loads(json.dumps(dataclasses.asdict(request), default=str))
        if isinstance(summary, dict) and summary.get("request") == wanted \
                and summary.get("dense_reference") == (str(reference) if reference and request.finetune_epochs
                                                       else None):
            console.print(f"{Path(folder).name}: pruned and fine-tuned by the interrupted run, reused")
            return summary, True
    return prune_to_dir(checkpoint, request, folder, console=console, reference=reference), False


def exported(export: Path, checkpoints: dict[str, Path], request: ExportRequest, console: Console,
             reuse: bool) -> None:
    """Export the bundles (with the per-call probe) unless `reuse` and every one is complete (export replaces all
    of them at once, so complete bundles are the ones of the models given)."""
    names = [*checkpoints, PROBE_VARIANT]
    if reuse and all((Path(export) / name / MANIFEST).is_file() for name in names):
        return
    write_bundles(export, checkpoints, request, console, probe=True)


def run_names(results: Path) -> list[str]:
    """The bench runs under `results` now: a step records them before it starts, so its own are the others."""
    return sorted(p.name for p in Path(results).iterdir() if p.is_dir()) if Path(results).is_dir() else []


def measured(target: Target, export: Path, results: Path, before: list[str],
             console: Console) -> tuple[Path, dict[str, dict]]:
    """The step's bench: its run that finished read back, else measured (an interrupted run of it resumed)."""
    for name in reversed([n for n in run_names(results) if n not in before]):
        run = Path(results) / name
        if _done(run):
            console.print(f"bench {name}: finished by the interrupted run, read back")
            return run, latency_rows(target, run)
    return measure(target, export, results, console)


def _done(run: Path) -> bool:
    """A bench run whose measurement finished and was summarised (read through the run folder's owner)."""
    try:
        return runs.read_state(run).get("status") == runs.DONE and (run / runs.BENCH).is_file()
    except ToolError:  # a damaged state file: not a finished run, so it is resumed or measured again
        return False
