"""Running one compute cell in a worker (a local process or a Ray task).

A worker gets the cell, the spec and the input files as bytes, works in a scratch folder laid out like the sweep
folder, and returns the files it made as bytes. The driver alone writes into the sweep folder, so a worker on
another machine needs no shared disk, and a killed worker leaves nothing half-written behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from tsprune_edge.sweep.spec import BASELINE_METHOD, Cell, SweepSpec, dense_checkpoint, export_dir, model_dir
from tsprune_edge.variants import DENSE, PROBE_VARIANT

if TYPE_CHECKING:
    from tsprune_edge.prune.stage import PruneRequest


def run_cell(spec_record: dict, cell: Cell, inputs: dict[str, bytes]) -> dict:
    """{"outputs": {relative path: bytes}, "seconds": float, "error": str | None}; never raises for a cell's
    own failure, which is recorded instead, so one bad combination does not stop the sweep."""
    import torch

    from tsprune_edge.errors import ToolError

    spec = SweepSpec.from_json(spec_record)
    torch.set_num_threads(1)  # one core per worker: cells run side by side
    log = io.StringIO()
    console = Console(file=log, width=120, no_color=True)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tsprune-cell-") as scratch, _inside(Path(scratch)):
        for name, data in inputs.items():
            Path(name).parent.mkdir(parents=True, exist_ok=True)
            Path(name).write_bytes(data)
        try:
            made = _work(spec, cell, console)
            error = None
        except ToolError as exc:
            made, error = [], str(exc)
        except Exception as exc:  # a model/method combination that breaks: recorded, named, not fatal
            made, error = [], f"{type(exc).__name__}: {exc}".splitlines()[0]
        outputs = {str(p): p.read_bytes() for root in made for p in sorted(Path(root).rglob("*")) if p.is_file()}
    outputs[f"logs/{cell.id}.log"] = log.getvalue().encode()
    return {"outputs": outputs, "seconds": round(time.perf_counter() - began, 2), "error": error}


def _work(spec: SweepSpec, cell: Cell, console: Console) -> list[Path]:
    """Do the cell in the current (scratch) folder; returns the folders it wrote."""
    from tsprune_edge.export.bundle import write_bundles
    from tsprune_edge.prune.stage import PruneRequest, finetune_dense, prune_to_dir
    from tsprune_edge.workflow import train_to_dir

    if cell.kind == "train":  # the dense model, and a copy fine-tuned as every variant will be: the fair reference
        out = model_dir(cell.model, DENSE)
        train_to_dir(model=cell.model, data=spec.data, pred_len=spec.pred_len, preset=spec.preset,
                     epochs=spec.epochs, out=out, console=console)
        if not spec.finetune_epochs:
            return [out]
        method, sparsity = spec.variants()[0]
        finetune_dense(out / "model.pt", PruneRequest(method=method, sparsity=sparsity,
                                                      finetune_epochs=spec.finetune_epochs),
                       spec.dense_reference(cell.model).parent, console)
        return [out, spec.dense_reference(cell.model).parent]
    request = spec.export_request()
    staging = Path("staging")  # bundles are exported here, then moved to export/<model>/<variant>
    if cell.variant == DENSE:  # with the per-call probe beside it: the report's fixed cost per call
        write_bundles(staging, {DENSE: spec.dense_reference(cell.model)}, request, console, probe=True)
        return [*_moved(staging / DENSE, export_dir(cell.model) / DENSE),
                *_moved(staging / PROBE_VARIANT, export_dir(cell.model) / PROBE_VARIANT)]
    out = model_dir(cell.model, cell.variant)
    if cell.method == BASELINE_METHOD:  # trained (or reused from the cache) on the dense model's data and seed
        _baseline_to_dir(spec, cell, out, console)
        write_bundles(staging, {cell.variant: out / "model.pt"}, request, console)
        return [out, *_moved(staging / cell.variant, export_dir(cell.model) / cell.variant)]
    prune_to_dir(dense_checkpoint(cell.model), _prune_request(spec, cell, console), out, console,
                 reference=spec.dense_reference(cell.model) if spec.finetune_epochs else None)
    write_bundles(staging, {cell.variant: out / "model.pt"}, request, console)
    return [out, *_moved(staging / cell.variant, export_dir(cell.model) / cell.variant)]


def _baseline_to_dir(spec: SweepSpec, cell: Cell, out: Path, console: Console) -> None:
    """The baseline's checkpoint and metrics in `out`, copied from the checkpoint cache (trained there if new)."""
    import shutil

    from tsprune_edge.baselines import DEFAULT_CACHE, RunWindows, trained_baseline
    from tsprune_edge.checkpoint import load_checkpoint

    (baseline,) = [b for b in spec.baseline_specs() if b.variant == cell.variant]
    dense = load_checkpoint(dense_checkpoint(cell.model))
    path = trained_baseline(baseline, RunWindows.of_checkpoint(dense), dense.data["sha256"],
                            Path(spec.baseline_cache) if spec.baseline_cache else DEFAULT_CACHE, console)
    shutil.copytree(path.parent, out)


def _prune_request(spec: SweepSpec, cell: Cell, console: Console) -> PruneRequest:
    """The cell's pruning; a variant of more dimensions than the default is pruned at the ratio that removes the
    MACs the default dimensions remove at the cell's sparsity (refused, one line, where a model cannot)."""
    from tsprune_edge.checkpoint import load_checkpoint
    from tsprune_edge.prune.matched import matched_ratio
    from tsprune_edge.prune.stage import PruneRequest
    from tsprune_edge.prune.structured import DEFAULT_DIMENSIONS, StructuredConfig, check_config

    request = PruneRequest(method=cell.method, sparsity=cell.sparsity, finetune_epochs=spec.finetune_epochs,
                           **spec.prune_rounding())
    if cell.dims == DEFAULT_DIMENSIONS:
        return request
    model = load_checkpoint(dense_checkpoint(cell.model)).build_model()
    check_config(model, StructuredConfig(cell.sparsity, round_to=request.round_to, dims=cell.dims))
    matched = matched_ratio(model, cell.sparsity, cell.dims, request.round_to)
    console.print(f"{'+'.join(cell.dims)} at ratio {matched.ratio:g}: {matched.macs} MACs against "
                  f"{matched.target_macs} for {'+'.join(DEFAULT_DIMENSIONS)} at {cell.sparsity:g}")
    return dataclasses.replace(request, sparsity=matched.ratio, dims=cell.dims, matched=matched.record())


def _moved(source: Path, target: Path) -> list[Path]:
    target.parent.mkdir(parents=True, exist_ok=True)
    source.rename(target)
    return [target]


@contextlib.contextmanager
def _inside(folder: Path):
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)
