"""The export job: a dense checkpoint (trained here unless given) and its pruned variants, exported side by side so
the bench always has the dense reference to compare with, and the per-call probe (`percall`) that measures the fixed
cost of one call in the same signature.

Accuracy is compared fairly: with fine-tuning, the exported dense reference is a copy of the dense checkpoint given
the same fine-tuning as the pruned variants (once per job, not per variant), so the latency and the accuracy of
"dense" refer to one model and every variant had the same training budget as it."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from torch import nn

from tsprune_edge.baselines import DEFAULT_CACHE, Baseline, RunWindows, check_baselines, test_metrics, trained_baseline
from tsprune_edge.checkpoint import load_checkpoint
from tsprune_edge.data.forecast import WindowSpec, check_dates, check_length, same_source
from tsprune_edge.defaults import (
    DEFAULT_DATA,
    DEFAULT_DISTILL,
    DEFAULT_EPOCHS,
    DEFAULT_FINETUNE_EPOCHS,
    DEFAULT_METHOD,
    DEFAULT_MODEL,
    DEFAULT_SPARSITY,
)
from tsprune_edge.errors import UserError
from tsprune_edge.export.bundle import ExportRequest, write_bundles
from tsprune_edge.export.runtimes import installed_tflite_runtimes
from tsprune_edge.models import create_model, model_entry, resolve_config
from tsprune_edge.prune.dimensions import DEFAULT_DIMENSIONS, DEFAULT_ROUND_TO
from tsprune_edge.prune.stage import PruneRequest, finetune_dense, prune_to_dir, structured_config
from tsprune_edge.prune.structured import check_config
from tsprune_edge.variants import is_baseline, variant_name
from tsprune_edge.workflow import train_to_dir


@dataclass(frozen=True)
class ExportJob:
    methods: tuple[str, ...] = (DEFAULT_METHOD,)
    sparsity: float = DEFAULT_SPARSITY
    finetune_epochs: int = DEFAULT_FINETUNE_EPOCHS
    distill: float = DEFAULT_DISTILL  # weight of dense's forecast in the variants' fine-tuning loss
    checkpoint: Path | None = None  # a dense checkpoint to start from; None trains one
    model: str | None = None  # None: the checkpoint's model, else DEFAULT_MODEL
    data: str | None = None  # None: DEFAULT_DATA (only when training)
    epochs: int = DEFAULT_EPOCHS  # training epochs when no checkpoint is given
    strict_dates: bool = False  # refuse duplicated timestamps and irregular steps in a CSV
    round_to: int = DEFAULT_ROUND_TO  # structured widths are multiples of this (a board profile's, or --round-to)
    round_to_source: str = "default"  # "default", "option" or "profile NAME"
    dims: tuple[str, ...] = DEFAULT_DIMENSIONS  # structured: the dimensions pruned (width too: d_model narrows)
    width_sparsity: float | None = None  # structured: fraction of d_model removed (default: sparsity)
    baselines: tuple[Baseline, ...] = ()  # tiny forecasters trained beside, exported as baseline-<model>
    baseline_cache: Path = DEFAULT_CACHE  # where trained baselines are kept for the next run

    def variants(self) -> dict[str, PruneRequest]:
        """Each pruned variant's request by its bundle name (`structured-0.5`, `structured_width-0.5` with width
        among the dims: the names a sweep gives them too)."""
        if not self.methods:
            raise UserError("--method needs at least one pruning method, for example structured")
        requests = [PruneRequest(method=m, sparsity=self.sparsity, finetune_epochs=self.finetune_epochs,
                                 distill=self.distill if self.finetune_epochs else 0.0,
                                 round_to=self.round_to, round_to_source=self.round_to_source, dims=self.dims,
                                 width_sparsity=self.width_sparsity)
                    for m in self.methods]
        for request in requests:
            request.validate()
        return {variant_name(r.method, r.sparsity, r.dims): r for r in requests}


def run_export_job(job: ExportJob, request: ExportRequest, out: Path, runs: Path,
                   console: Console | None = None) -> dict[str, dict]:
    """Train (or load), prune each method, fine-tune, fine-tune a copy of dense the same way, and write one bundle
    per variant under `out`; checkpoints go under `runs`. Every input is checked before any work starts."""
    console = console or Console(stderr=True)
    variants = job.variants()
    request.validate()
    check_exporters(request.formats)
    if job.checkpoint is not None:
        check_not_written(job.checkpoint, [runs / "dense-finetuned", *(runs / name for name in variants)])
        dense = check_dense_checkpoint(job.checkpoint, job.model, job.data)
        check_structured(load_checkpoint(dense).build_model(), variants.values())
        check_job_baselines(job)
    else:
        model = job.model or DEFAULT_MODEL
        model_entry(model)  # an unknown name fails here, not after training
        check_structured(create_model(model, "small", pred_len=96), variants.values())
        if job.strict_dates:  # a refused file is one line, before the training line
            check_dates(job.data or DEFAULT_DATA, strict=True)
        check_job_baselines(job)
        console.print(f"training {model} (small preset) on {job.data or DEFAULT_DATA} for {job.epochs} epochs")
        train_to_dir(model=model, data=job.data or DEFAULT_DATA, pred_len=96, preset="small", epochs=job.epochs,
                     strict_dates=job.strict_dates, out=runs / "dense", console=console)
        dense = runs / "dense" / "model.pt"
    reference = None
    if job.finetune_epochs:
        finetune_dense(dense, next(iter(variants.values())), runs / "dense-finetuned", console=console)
        reference = runs / "dense-finetuned" / "model.pt"
    checkpoints = {"dense": reference or dense}
    for name, prune_request in variants.items():
        prune_to_dir(dense, prune_request, runs / name, console=console, reference=reference)
        checkpoints[name] = runs / name / "model.pt"
    trained = load_checkpoint(dense)
    run = RunWindows.of_checkpoint(trained, job.strict_dates)  # the data as the main model read it, and its seed
    for baseline in job.baselines:
        checkpoints[baseline.variant] = trained_baseline(baseline, run, trained.data["sha256"], job.baseline_cache,
                                                         console)
    return write_bundles(out, checkpoints, request, console, probe=True)  # the per-call probe beside dense


def check_job_baselines(job: ExportJob) -> None:
    """Refuse, before any training or writing, a baseline the run's data cannot give windows for (the main
    model's windows are checked first: a file too short for both is refused as the main model's)."""
    if not job.baselines:
        return
    if job.checkpoint is not None:
        check_baselines(job.baselines, RunWindows.of_checkpoint(load_checkpoint(job.checkpoint), job.strict_dates))
        return
    config = resolve_config(job.model or DEFAULT_MODEL, "small", pred_len=96)
    run = RunWindows(job.data or DEFAULT_DATA, config.seq_len, config.label_len, 96, strict_dates=job.strict_dates)
    check_length(run.data, WindowSpec(run.seq_len, run.label_len, run.pred_len), job.strict_dates)
    check_baselines(job.baselines, run)


def check_structured(model: nn.Module, requests: Iterable[PruneRequest]) -> None:
    """Refuse, before training or fine-tuning, structured pruning this architecture cannot take (--dims, a ratio
    that empties a layer, a width that cannot be pruned): the checks `prune` runs, on the model to be pruned."""
    for request in requests:
        if request.method == "structured":
            check_config(model, structured_config(request))


def compared_accuracy(manifests: dict[str, dict]) -> tuple[dict[str, dict], str | None]:
    """Torch test metrics per bundle (a dense bundle's are its pruned variants' dense reference: the same model) and
    the sentence that says what training both had, e.g. 'dense and pruned: 3 epochs + 1 fine-tune epoch each'."""
    records = [m["pruning"] for m in manifests.values() if m["pruning"]]
    tests = {}
    for name, manifest in manifests.items():
        pruning = manifest["pruning"]
        if manifest.get("probe"):  # the per-call probe claims no accuracy
            continue
        if is_baseline(name):  # its own training: the metrics cached beside its checkpoint
            found = test_metrics(Path(manifest["model"]["checkpoint"]))
            if found:
                tests[name] = found
        elif pruning is not None:
            tests[name] = pruning["test"]["finetuned"] or pruning["test"]["pruned"]
        elif records:
            tests[name] = records[0]["test"]["dense"]
    return tests, records[0]["training_budget"]["comparison"] if records else None


def check_dense_checkpoint(path: Path, model: str | None, data: str | None) -> Path:
    """Refuse a checkpoint that is not the dense model the user named."""
    checkpoint = load_checkpoint(path)
    if model is not None and checkpoint.model_name != model:
        raise UserError(f"{path} holds a {checkpoint.model_name} model, not {model}; drop --model or pass a "
                        f"{model} checkpoint")
    if data is not None and not same_source(data, checkpoint.data):
        raise UserError(f"{path} was trained on {checkpoint.data['name']}, not {data}; drop --data")
    if checkpoint.pruning is not None:
        raise UserError(f"{path} is already pruned ({checkpoint.pruning['method']}); pass the dense checkpoint it "
                        f"came from ({checkpoint.pruning['source_checkpoint']}): export prunes it and keeps the "
                        "dense reference")
    return path


def check_not_written(checkpoint: Path, folders: list[Path]) -> None:
    """The user's checkpoint must not lie where this job writes checkpoints: it would be replaced."""
    for folder in folders:
        if checkpoint.resolve().is_relative_to(folder.resolve()):
            raise UserError(f"--checkpoint {checkpoint} lies in {folder}, where export writes its checkpoints; "
                            "copy it elsewhere or choose another --runs")


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
