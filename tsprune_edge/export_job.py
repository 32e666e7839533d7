"""The export job: a dense checkpoint (trained here unless given) and its pruned variants, exported side by side so
the bench always has the dense reference to compare with, and the per-call probe (`percall`) that measures the fixed
cost of one call in the same signature."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from tsprune_edge.checkpoint import load_checkpoint
from tsprune_edge.errors import UserError
from tsprune_edge.export.bundle import ExportRequest, write_bundles
from tsprune_edge.export.runtimes import installed_tflite_runtimes
from tsprune_edge.models import model_entry
from tsprune_edge.prune.stage import PruneRequest, prune_to_dir
from tsprune_edge.workflow import train_to_dir

DEFAULT_MODEL = "transformer"
DEFAULT_DATA = "synthetic"  # built in: the default job needs no download


@dataclass(frozen=True)
class ExportJob:
    methods: tuple[str, ...] = ("structured",)
    sparsity: float = 0.5
    finetune_epochs: int = 1
    checkpoint: Path | None = None  # a dense checkpoint to start from; None trains one
    model: str | None = None  # None: the checkpoint's model, else DEFAULT_MODEL
    data: str | None = None  # None: DEFAULT_DATA (only when training)
    epochs: int = 3  # training epochs when no checkpoint is given
    strict_dates: bool = False  # refuse duplicated timestamps and irregular steps in a CSV

    def prune_requests(self) -> list[PruneRequest]:
        if not self.methods:
            raise UserError("--method needs at least one pruning method, for example structured")
        requests = [PruneRequest(method=m, sparsity=self.sparsity, finetune_epochs=self.finetune_epochs)
                    for m in self.methods]
        for request in requests:
            request.validate()
        return requests


def variant_name(request: PruneRequest) -> str:
    return f"{request.method}-{request.sparsity:g}"


def run_export_job(job: ExportJob, request: ExportRequest, out: Path, runs: Path,
                   console: Console | None = None) -> dict[str, dict]:
    """Train (or load), prune each method, fine-tune, and write one bundle per variant under `out`; checkpoints go
    under `runs`. Every input is checked before any work starts."""
    console = console or Console(stderr=True)
    prune_requests = job.prune_requests()
    request.validate()
    check_exporters(request.formats)
    if job.checkpoint is not None:
        dense = check_dense_checkpoint(job.checkpoint, job.model, job.data)
    else:
        model = job.model or DEFAULT_MODEL
        model_entry(model)  # an unknown name fails here, not after training
        console.print(f"training {model} (small preset) on {job.data or DEFAULT_DATA} for {job.epochs} epochs")
        train_to_dir(model=model, data=job.data or DEFAULT_DATA, pred_len=96, preset="small", epochs=job.epochs,
                     strict_dates=job.strict_dates, out=runs / "dense", console=console)
        dense = runs / "dense" / "model.pt"
    checkpoints = {"dense": dense}
    for prune_request in prune_requests:
        name = variant_name(prune_request)
        prune_to_dir(dense, prune_request, runs / name, console=console)
        checkpoints[name] = runs / name / "model.pt"
    return write_bundles(out, checkpoints, request, console, probe=True)  # the per-call probe beside dense


def check_dense_checkpoint(path: Path, model: str | None, data: str | None) -> Path:
    """Refuse a checkpoint that is not the dense model the user named."""
    checkpoint = load_checkpoint(path)
    if model is not None and checkpoint.model_name != model:
        raise UserError(f"{path} holds a {checkpoint.model_name} model, not {model}; drop --model or pass a "
                        f"{model} checkpoint")
    if data is not None and checkpoint.data["name"] != Path(data).stem:
        raise UserError(f"{path} was trained on {checkpoint.data['name']}, not {data}; drop --data")
    if checkpoint.pruning is not None:
        raise UserError(f"{path} is already pruned ({checkpoint.pruning['method']}); pass the dense checkpoint it "
                        f"came from ({checkpoint.pruning['source_checkpoint']}): export prunes it and keeps the "
                        "dense reference")
    return path


def check_exporters(formats: tuple[str, ...]) -> None:
    """TFLite needs litert-torch to convert and a TFLite runtime to validate: say so before any training."""
    if "tflite" not in formats:
        return
    try:
        importlib.import_module("litert_torch")
    except ImportError:
        raise UserError("--format tflite needs litert-torch: pip install 'tsprune-edge[tflite]', "
                        "or pass --format onnx") from None
    if not installed_tflite_runtimes():
        raise UserError("--format tflite needs ai-edge-litert or tflite-runtime to validate the artifact: "
                        "pip install 'tsprune-edge[tflite]', or pass --format onnx")
