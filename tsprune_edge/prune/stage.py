"""The prune stage: checkpoint -> pruned (and fine-tuned) checkpoint + pruning.json."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from torch import nn

from tsprune_edge.atomic import write_json_atomic
from tsprune_edge.checkpoint import Checkpoint, load_checkpoint, make_checkpoint, save_checkpoint
from tsprune_edge.data.fetch import sha256_of
from tsprune_edge.data.forecast import ForecastData
from tsprune_edge.errors import UserError
from tsprune_edge.models import model_entry
from tsprune_edge.prune.analysis import summarize
from tsprune_edge.prune.dimensions import DEFAULT_ROUND_TO
from tsprune_edge.prune.masks import MASK_METHODS, Masks, cubic_ramp, prunable_units
from tsprune_edge.prune.structured import (
    DEFAULT_DIMENSIONS,
    StructuredConfig,
    StructuredPruner,
    check_config,
    ffn_layers,
    graph_attentions,
    hand_attentions,
    lag_layers,
)
from tsprune_edge.prune.study import StudyPruner
from tsprune_edge.prune.width import NORM_TYPES, has_width
from tsprune_edge.train import Metrics, evaluate, train
from tsprune_edge.workflow import checkpoint_data, training_budget

METHODS = ("unstructured", "structured", "study", "nm", "block", "layerwise", "random")
STRUCTURED_METHODS = ("structured", "study")  # layers get narrower
STUDY_STEPS = 50  # the study's iterative steps
# The study's density grid: 0.8^n for n = 1..9 (sparsity 1 - 0.8^n).
STUDY_DENSITIES = tuple(round(0.8**n, 6) for n in range(1, 10))


@dataclass(frozen=True)
class PruneRequest:
    method: str
    sparsity: float
    finetune_epochs: int = 0
    lr: float | None = None  # fine-tuning lr (default: the model's published lr)
    distill: float = 0.0  # weight of the unpruned model's forecast in the fine-tuning loss (knowledge distillation)
    gradual: bool = False  # mask methods: cubic sparsity ramp over the fine-tuning epochs
    global_ranking: bool = False  # structured: rank heads/neurons across layers instead of a uniform ratio
    steps: int = 1  # structured: reach the ratio in this many steps, fine-tuning spread between them
    round_to: int = DEFAULT_ROUND_TO  # structured: kept widths are multiples of this
    round_to_source: str = "default"  # where round_to came from: "default", "option" or "profile NAME"
    include_fourier: bool = False  # mask methods: also prune FEDformer's complex Fourier weights
    n: int = 2  # nm: keep n of every m
    m: int = 4
    seed: int = 2021
    dims: tuple[str, ...] = DEFAULT_DIMENSIONS  # structured: the dimensions pruned (heads, ffn, width)
    width_sparsity: float | None = None  # structured: fraction of d_model removed (default: sparsity)
    matched: dict | None = None  # the MACs match this ratio was chosen for (a sweep's width rows), as recorded
    layer_targets: tuple[tuple[str, int], ...] | None = None  # structured: units per named layer (a latency fit's)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown pruning method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not 0.0 <= self.sparsity < 1.0:
            raise UserError(f"--sparsity must be in [0, 1), got {self.sparsity:g}")
        if self.finetune_epochs < 0:
            raise UserError(f"--finetune-epochs must be 0 or more, got {self.finetune_epochs}")
        if self.round_to < 1:
            where = ("--round-to" if self.round_to_source in ("option", "default")
                     else f"round_to of {self.round_to_source}")
            raise UserError(f"{where} must be at least 1, got {self.round_to}")
        if not 0.0 <= self.distill < 1.0:
            raise UserError(f"--distill must be in [0, 1), got {self.distill:g}")
        if self.lr is not None and self.lr <= 0:
            raise UserError(f"--lr must be positive, got {self.lr:g}")
        if self.method == "nm":
            if not 1 <= self.n < self.m:
                raise UserError(f"N:M sparsity needs 1 <= N < M, got {self.n}:{self.m}; for example --nm 2:4")
            if abs(self.sparsity - (1 - self.n / self.m)) > 1e-9:
                raise UserError(f"{self.n}:{self.m} sparsity is {1 - self.n / self.m:g}, not --sparsity "
                                f"{self.sparsity:g}; pass --sparsity {1 - self.n / self.m:g} or another --nm")
        if self.gradual and (self.method not in MASK_METHODS or self.method == "nm"):
            raise UserError("--gradual ramps magnitude, random or block masks; structured pruning uses --steps")
        if self.gradual and self.finetune_epochs < 1:
            raise UserError("--gradual ramps the sparsity over fine-tuning: pass --finetune-epochs 1 or more")
        if self.steps != 1 and self.method not in STRUCTURED_METHODS:
            raise UserError("--steps applies to structured pruning; mask methods ramp with --gradual")
        if (self.dims != DEFAULT_DIMENSIONS or self.width_sparsity is not None) and self.method != "structured":
            raise UserError("--dims and --width-sparsity apply to --method structured (study prunes every "
                            "dimension by one global ranking)")

    @property
    def step_count(self) -> int:
        """Structured steps; `study` runs the study's 50 unless --steps says otherwise."""
        return STUDY_STEPS if self.method == "study" and self.steps == 1 else self.steps


def prune_to_dir(checkpoint_path: Path, request: PruneRequest, out: Path, console: Console | None = None,
                 reference: Path | None = None) -> dict:
    """Prune a trained checkpoint, fine-tune, and write out/model.pt and out/pruning.json; returns the summary.

    Accuracy is compared fairly: with fine-tuning, the dense reference is the dense model given the same
    fine-tuning (`reference`, written once by `finetune_dense` for several variants, else fine-tuned here in
    memory); `test.source` is the checkpoint as given, `test.dense` the reference."""
    console = console or Console(stderr=True)
    request.validate()
    checkpoint = _dense_checkpoint(checkpoint_path)
    dense = checkpoint.build_model()
    if request.method == "structured":
        check_config(dense, structured_config(request))
    data = checkpoint_data(checkpoint)
    prunable = {u.name.rsplit(".", 1)[0] for u in prunable_units(dense, request.include_fourier)}
    before = summarize(dense, prunable)
    test_source = evaluate(dense, data, "test")

    console.print(f"pruning {checkpoint.model_name}: {request.method} at sparsity {request.sparsity:g}")
    one_shot = copy.deepcopy(dense)
    achieved, _ = apply_pruning(one_shot, request, data, epochs=0, console=console)
    test_pruned = evaluate(one_shot, data, "test")
    final, finetune, test_finetuned = one_shot, None, None
    test_dense, dense_training = test_source, checkpoint.training
    if request.finetune_epochs:
        final = copy.deepcopy(dense)
        achieved, finetune = apply_pruning(final, request, data, epochs=request.finetune_epochs, console=console)
        test_finetuned = evaluate(final, data, "test")
        reference_model, dense_training = _reference(checkpoint_path, checkpoint, dense, request, data, reference,
                                                     console)
        test_dense = evaluate(reference_model, data, "test")
    after = summarize(final, prunable if request.method not in STRUCTURED_METHODS else None)
    training = {**checkpoint.training, "finetune": finetune}

    summary = {
        "method": request.method,
        "requested_sparsity": request.sparsity,
        "achieved": achieved,
        "request": dataclasses.asdict(request),
        "source_checkpoint": str(checkpoint_path),
        "model": checkpoint.model_name,
        "data": checkpoint.data["name"],
        "before": {k: v for k, v in before.items() if k != "layers"},
        "after": {k: v for k, v in after.items() if k != "layers"},
        "parameter_reduction": round(1 - after["parameters"] / before["parameters"], 6),
        "mac_reduction": round(1 - after["macs"] / before["macs"], 6),
        "test": {"source": _metrics(test_source), "dense": _metrics(test_dense), "pruned": _metrics(test_pruned),
                 "finetuned": _metrics(test_finetuned) if test_finetuned else None},
        "training_budget": compared_budgets(dense_training, training),
        "dense_reference": str(reference) if reference is not None and request.finetune_epochs else None,
        "round_to": ({"round_to": request.round_to, "source": request.round_to_source}
                     if request.method == "structured" else None),
        "finetune": finetune,
    }
    summary["layers"] = merge_layer_tables(before["layers"], after["layers"])
    out = Path(out)
    record = {k: v for k, v in summary.items() if k != "layers"}
    save_checkpoint(make_checkpoint(final, checkpoint.data, checkpoint.scaling, training, pruning=record),
                    out / "model.pt")
    write_json_atomic(out / "pruning.json", summary)
    return summary


def finetune_dense(checkpoint_path: Path, request: PruneRequest, out: Path, console: Console | None = None) -> dict:
    """The fair dense reference for variants pruned with `request`: a copy of the dense checkpoint given the very
    fine-tuning they get (the same epochs split the same way, learning rate, fresh Adam, seed and so data order),
    written to out/model.pt (the checkpoint given is never touched). Returns its training budget and test metrics."""
    console = console or Console(stderr=True)
    request.validate()
    checkpoint = _dense_checkpoint(checkpoint_path)
    model, data = checkpoint.build_model(), checkpoint_data(checkpoint)
    console.print(f"fine-tuning a copy of dense {checkpoint.model_name} as the pruned models are "
                  f"({request.finetune_epochs} epochs): the fair dense reference")
    finetune = {**finetune_like_pruning(model, request, data, console), "source_sha256": sha256_of(checkpoint_path)}
    training = {**checkpoint.training, "finetune": finetune}
    save_checkpoint(make_checkpoint(model, checkpoint.data, checkpoint.scaling, training), Path(out) / "model.pt")
    return {"training_budget": training_budget(training), "test": _metrics(evaluate(model, data, "test"))}


def finetune_like_pruning(model: nn.Module, request: PruneRequest, data: ForecastData, console: Console) -> dict:
    """Fine-tune a dense model in place exactly as `apply_pruning` fine-tunes a pruned one, minus the pruning and
    the distillation: dense would be its own teacher, which only holds it back, so the reference is the best dense
    model the same epochs, learning rate and data order give (the stricter comparison)."""
    plain = dataclasses.replace(request, distill=0.0)
    runs = [_finetune(model, data, plain, share, console, keep_best=not request.gradual)
            for share in finetune_shares(request, request.finetune_epochs) if share]
    model.eval()
    return {"runs": runs, "epochs": sum(r["epochs_run"] for r in runs), "treatment": finetune_treatment(request)}


def finetune_shares(request: PruneRequest, epochs: int) -> list[int]:
    """Fine-tuning epochs per pruning step: structured pruning spreads them over its steps, the last ones first."""
    steps = request.steps if request.method == "structured" else 1
    return [epochs // steps + (1 if step >= steps - epochs % steps else 0) for step in range(steps)]


def finetune_treatment(request: PruneRequest) -> dict:
    """What makes two fine-tunings the same: recorded with a dense reference, checked against each variant."""
    return {"shares": finetune_shares(request, request.finetune_epochs), "lr": request.lr, "seed": request.seed,
            "keep_best": not request.gradual}


def compared_budgets(dense_training: dict, pruned_training: dict) -> dict:
    """Both training budgets and the sentence a table prints: 'dense and pruned: 3 epochs + 1 fine-tune epoch
    each' when they are equal (they always are here), else both."""
    dense, pruned = training_budget(dense_training), training_budget(pruned_training)
    same = {k: v for k, v in dense.items() if k != "text"} == {k: v for k, v in pruned.items() if k != "text"}
    comparison = (f"dense and pruned: {dense['text']} each" if same
                  else f"dense: {dense['text']}; pruned: {pruned['text']}")
    return {"dense": dense, "pruned": pruned, "comparison": comparison}


def _dense_checkpoint(path: Path) -> Checkpoint:
    checkpoint = load_checkpoint(path)
    if checkpoint.pruning is not None:
        raise UserError(f"{path} is already pruned ({checkpoint.pruning['method']}); "
                        "prune the dense checkpoint that `tsprune-edge train` wrote")
    return checkpoint


def _reference(source_path: Path, source: Checkpoint, dense: nn.Module, request: PruneRequest, data: ForecastData,
               reference: Path | None, console: Console) -> tuple[nn.Module, dict]:
    """The dense model fine-tuned as the variant was, and its training record: loaded from `reference` (checked to
    be `source_path` fine-tuned the same way), or fine-tuned here."""
    if reference is None:
        model = copy.deepcopy(dense)
        console.print(f"fine-tuning a copy of dense for {request.finetune_epochs} epochs: the fair reference")
        return model, {**source.training, "finetune": finetune_like_pruning(model, request, data, console)}
    checkpoint = load_checkpoint(reference)
    finetune = checkpoint.training.get("finetune") or {}
    if (checkpoint.pruning is not None or finetune.get("source_sha256") != sha256_of(source_path)
            or finetune.get("treatment") != finetune_treatment(request)):
        raise UserError(f"{reference} is not {source_path} fine-tuned as this pruning fine-tunes "
                        f"({request.finetune_epochs} epochs); write it with finetune_dense or pass no reference")
    return checkpoint.build_model(), checkpoint.training


def structured_config(request: PruneRequest) -> StructuredConfig:
    return StructuredConfig(request.sparsity, request.global_ranking, request.steps, request.round_to,
                            request.dims, request.width_sparsity, request.layer_targets)


def apply_pruning(model: nn.Module, request: PruneRequest, data: ForecastData, epochs: int,
                  console: Console) -> tuple[dict, dict | None]:
    """Prune `model` in place, fine-tuning it for `epochs`; returns what was achieved and the fine-tuning record
    (None without fine-tuning)."""
    runs: list[dict] = []
    teacher = copy.deepcopy(model) if request.distill and epochs else None  # dense, before pruning
    if request.method == "structured":
        pruner = StructuredPruner(model, structured_config(request))
        for share in finetune_shares(request, epochs):
            pruner.step()
            if share:
                runs.append(_finetune(model, data, request, share, console, teacher=teacher))
        achieved = structured_achieved(model)
    elif request.method == "study":
        pruner = StudyPruner(model, request.sparsity, request.step_count)
        pruner.run()
        if epochs:
            runs.append(_finetune(model, data, request, epochs, console, teacher=teacher))
        achieved = {**structured_achieved(model), "parameter_sparsity": round(pruner.achieved_sparsity(), 6),
                    "steps": len(pruner.history) - 1}
    else:
        masks = Masks(model, request.method, request.include_fourier, request.n, request.m, seed=request.seed)
        if request.gradual and epochs:
            def ramp(epoch: int) -> None:
                masks.compute(cubic_ramp(request.sparsity, epoch, epochs))
                masks.apply()

            runs.append(_finetune(model, data, request, epochs, console, after_step=masks.apply,
                                  before_epoch=ramp, keep_best=False, teacher=teacher))
        else:
            masks.compute(request.sparsity)
            masks.apply()
            if epochs:
                runs.append(_finetune(model, data, request, epochs, console, after_step=masks.apply,
                                      teacher=teacher))
        achieved = masks.achieved(prunable_units(model, request.include_fourier))
    model.eval()
    return achieved, ({"runs": runs, "epochs": sum(r["epochs_run"] for r in runs)} if epochs else None)


def _finetune(model: nn.Module, data: ForecastData, request: PruneRequest, epochs: int, console: Console,
              **hooks) -> dict:
    schedule = model_entry(model.name).schedule
    schedule = dataclasses.replace(schedule, max_epochs=epochs, lr=request.lr or schedule.lr)
    result = train(model, data, schedule, seed=request.seed, console=console, distill=request.distill, **hooks)
    return {"schedule": dataclasses.asdict(schedule), **dataclasses.asdict(result)}


def structured_achieved(model: nn.Module) -> dict:
    """What structured pruning left: heads per attention and widths per FFN / time-linear layer."""
    names = {m: n for n, m in model.named_modules()}
    return {
        "heads": {names[m]: m.n_heads for m in graph_attentions(model) + hand_attentions(model)},
        "ffn_widths": {names[m]: m.out_features for m in ffn_layers(model)},
        "input_lags": {names[m]: m.layers[0].in_features for m in lag_layers(model)},
        "widths": {names[m]: m.weight.shape[0] for m in model.modules() if isinstance(m, NORM_TYPES)}
        if has_width(model) else {},
    }


def merge_layer_tables(before: list[dict], after: list[dict]) -> list[dict]:
    """One row per layer with its shape and MACs before and after, density and whether it was pruned."""
    previous = {row["layer"]: row for row in before}
    rows = []
    for row in after:
        old = previous.get(row["layer"], {})
        rows.append({
            "layer": row["layer"], "type": row["type"],
            "shape_before": old.get("shape"), "shape": row["shape"],
            "weights": row["weights"], "nonzero": row["nonzero"], "density": row["density"],
            "macs_before": old.get("macs"), "macs": row["macs"],
            "pruned": row["pruned"] or row["shape"] != old.get("shape") or row["density"] < old.get("density", 1),
        })
    return rows


def _metrics(metrics: Metrics) -> dict:
    return {"mse": metrics.mse, "mae": metrics.mae, "windows": metrics.windows}
