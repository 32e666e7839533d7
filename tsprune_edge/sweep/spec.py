"""What a sweep is: the grid (models x methods x sparsities), how each cell is trained, pruned, exported and
measured, and the cells that grid expands to.

A sweep folder holds one spec (`sweep.json`); every cell writes its files and then a marker under `cells/`, so an
interrupted sweep resumes by skipping the cells that have a marker.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from tsprune_edge.devices.runs import DEFAULT_MAX_ROUNDS, DEFAULT_MIN_TIME, DEFAULT_ROUNDS
from tsprune_edge.errors import UserError
from tsprune_edge.prune.dimensions import DEFAULT_DIMENSIONS, DIMENSIONS
from tsprune_edge.report.verdict import DEFAULT_MIN_EFFECT
from tsprune_edge.variants import DENSE, variant_name

SPEC_FILE = "sweep.json"
SPEC_FORMAT = "tsprune-edge/sweep"
SPEC_VERSION = 2  # 2: the dense reference is fine-tuned as the variants are (models/<model>/dense-finetuned)
DENSE_FINETUNED = "dense-finetuned"
BASELINE_METHOD = "baseline"  # a variant cell that trains a --baselines model on the dense model's data


@dataclass(frozen=True)
class SweepSpec:
    models: tuple[str, ...]
    methods: tuple[str, ...] = ("unstructured", "structured")
    sparsities: tuple[float, ...] = (0.5, 0.8)
    data: str = "ETTh1"
    preset: str = "small"
    pred_len: int = 96
    epochs: int | None = None  # None: each model's published schedule (with early stopping)
    finetune_epochs: int = 1
    formats: tuple[str, ...] = ("onnx", "tflite")
    device: str = "desktop"
    host: str | None = None
    port: int | None = None  # the board's SSH port
    identity: str | None = None  # the key file the board accepts
    threads: tuple[int, ...] = (1,)
    rounds: int = DEFAULT_ROUNDS
    max_rounds: int | None = DEFAULT_MAX_ROUNDS  # bench adds rounds up to this while a verdict is undecided
    min_effect: float = DEFAULT_MIN_EFFECT  # the report's band, and the rule that adds rounds judges by it too
    min_time: float = DEFAULT_MIN_TIME
    min_iters: int = 100
    profile: bool = True  # ORT per-op times in round 1: the report's where-the-time-goes diff
    accuracy: bool = False  # the test split through every artifact on the device
    width_matched: bool = False  # also prune heads, FFN and width at the MACs each structured variant reached
    round_to: int | None = None  # structured widths are multiples of this; None: the device profile's
    baselines: tuple[str, ...] = ()  # --baselines: tiny forecasters trained beside each model (`NAME[:PRESET]`)
    baseline_cache: str | None = None  # where trained baselines are kept; None: baselines.DEFAULT_CACHE

    def validate(self) -> None:
        """Every option checked before any work starts, each failure one line."""
        from tsprune_edge.models import model_entry, resolve_config
        from tsprune_edge.prune.stage import PruneRequest

        if not self.models or not self.methods or not self.sparsities:
            raise UserError("a sweep needs at least one model, one method and one sparsity")
        for model in self.models:
            model_entry(model)
            resolve_config(model, self.preset)
        for method in self.methods:
            for sparsity in self.sparsities:
                PruneRequest(method=method, sparsity=sparsity, finetune_epochs=self.finetune_epochs,
                             **self.prune_rounding()).validate()
                if sparsity == 0:
                    raise UserError("--sparsities must be above 0: the dense model is always in the sweep")
        for model in self.models:
            refusal = self.structured_refusal(model)
            if refusal:
                raise UserError(f"{refusal}; drop {model} from --models or structured from --methods")
        if self.width_matched and "structured" not in self.methods:
            raise UserError("--width-matched prunes the width at each structured variant's MACs: add structured "
                            "to --methods")
        self.check_baselines()
        if self.epochs is not None and self.epochs < 1:
            raise UserError(f"--epochs must be 1 or more, got {self.epochs}")
        self.export_request().validate()
        self.bench_request(Path("."), Path(".")).validate()

    def baseline_specs(self):
        """The --baselines, parsed (an unknown name or preset refused in one line)."""
        from tsprune_edge.baselines import parse_baselines

        return parse_baselines(self.baselines)

    def check_baselines(self) -> None:
        """Every baseline at every model's windows fits the data: refused before any cell runs."""
        from tsprune_edge.baselines import RunWindows, check_baselines
        from tsprune_edge.models import resolve_config

        baselines = self.baseline_specs()
        for model in self.models if baselines else ():
            config = resolve_config(model, self.preset, pred_len=self.pred_len)
            check_baselines(baselines, RunWindows(self.data, config.seq_len, config.label_len, self.pred_len))

    def export_request(self):
        """What every cell exports: the sweep's formats at the ONNX level and encoding the device's runtimes load
        (as `export --device` writes them)."""
        from tsprune_edge.devices.profiles import load_profile
        from tsprune_edge.export.bundle import ExportRequest

        return ExportRequest(formats=self.formats, **load_profile(self.device).export_fields())

    def prune_rounding(self) -> dict:
        """PruneRequest's round_to and its source: --round-to, else the device profile's channel alignment (as
        `prune --device`)."""
        from tsprune_edge.devices.profiles import resolve_round_to

        round_to, source = resolve_round_to(self.device, self.round_to)
        return {"round_to": round_to, "round_to_source": source}

    def structured_refusal(self, model: str) -> str | None:
        """Why structured pruning cannot take `model` at all (no heads, neurons or lags: the check each cell makes
        after training, made on an untrained model before any work), or None where it can or is not asked. A
        sparsity too high for one layer stays the cell's own failure: the rest of the sweep goes on."""
        from tsprune_edge.models import create_model
        from tsprune_edge.prune.structured import StructuredConfig, check_config

        if "structured" not in self.methods:
            return None
        try:
            check_config(create_model(model, self.preset), StructuredConfig(0.0, dims=DEFAULT_DIMENSIONS))
        except UserError as refusal:
            return str(refusal)
        return None

    def dense_reference(self, model: str) -> Path:
        """The checkpoint the dense bundle is exported from and the variants' accuracy is compared with: with
        fine-tuning, dense given the same fine-tuning (the train cell writes it), else the trained dense."""
        return model_dir(model, DENSE_FINETUNED) / "model.pt" if self.finetune_epochs else dense_checkpoint(model)

    def variants(self) -> list[tuple[str, float]]:
        return [(method, sparsity) for method in self.methods for sparsity in self.sparsities]

    def variant_cells(self, model: str) -> list[Cell]:
        """Every pruned variant of `model`; with `width_matched`, each structured variant gets a twin that prunes
        the width too, at the ratio that removes the same MACs (`prune.matched`); then one cell per baseline."""
        cells = [Cell("variant", model, variant_name(m, s), m, s) for m, s in self.variants()]
        if self.width_matched:
            cells += [Cell("variant", model, variant_name(m, s, DIMENSIONS), m, s, DIMENSIONS)
                      for m, s in self.variants() if m == "structured"]
        return cells + [Cell("variant", model, b.variant, BASELINE_METHOD) for b in self.baseline_specs()]

    def bench_request(self, artifacts: Path, results: Path, resume: bool = False):
        from tsprune_edge.devices.bench import BenchRequest

        runtimes = tuple({"onnx": "onnxruntime", "tflite": "tflite"}.get(f, f) for f in self.formats)
        return BenchRequest(device=self.device, host=self.host, artifacts=artifacts, runtimes=runtimes,
                            threads=self.threads, rounds=self.rounds, max_rounds=self.max_rounds,
                            min_time=self.min_time,
                            min_iters=self.min_iters, profile=self.profile, accuracy=self.accuracy,
                            results=results, resume=resume, port=self.port,
                            identity=Path(self.identity) if self.identity else None)

    def to_json(self) -> dict:
        return {"format": SPEC_FORMAT, "version": SPEC_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, record: dict) -> SweepSpec:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items() if k in fields}
        return cls(**values)


@dataclass(frozen=True)
class Cell:
    """One unit of work. `train` makes a model's dense checkpoint; `variant` prunes, fine-tunes and exports one
    variant (the dense variant only exports); `bench` measures all of a model's bundles in one interleaved run,
    so every variant has its dense reference from the same run."""

    kind: str  # train | variant | bench
    model: str
    variant: str | None = None
    method: str | None = None
    sparsity: float | None = None
    dims: tuple[str, ...] = DEFAULT_DIMENSIONS  # structured: pruned dimensions; beyond the default, at matched MACs

    @property
    def id(self) -> str:
        return "--".join(part for part in (self.kind, self.model, self.variant) if part)

    @property
    def needs(self) -> tuple[str, ...]:
        if self.kind == "train":
            return ()
        if self.kind == "variant":
            return (Cell("train", self.model).id,)
        return ()  # bench: waits for all of its model's variant cells (see runner)


def expand(spec: SweepSpec) -> list[Cell]:
    """Train cells first, then variant cells, then one bench cell per model."""
    cells = [Cell("train", model) for model in spec.models]
    for model in spec.models:
        cells.append(Cell("variant", model, DENSE))
        cells += spec.variant_cells(model)
    cells += [Cell("bench", model) for model in spec.models]
    return cells


def dense_checkpoint(model: str) -> Path:
    """Paths inside a sweep folder, relative so that a worker can rebuild them in its own scratch folder."""
    return Path("models") / model / DENSE / "model.pt"


def model_dir(model: str, variant: str) -> Path:
    return Path("models") / model / variant


def export_dir(model: str) -> Path:
    return Path("export") / model


def results_dir(model: str) -> Path:
    return Path("results") / model


def load_or_write_spec(out: Path, spec: SweepSpec) -> bool:
    """Write the spec into a new sweep folder; in an existing one, accept only the same spec. True: resuming."""
    path = Path(out) / SPEC_FILE
    if not path.is_file():
        from tsprune_edge.atomic import write_json_atomic

        write_json_atomic(path, spec.to_json())
        return False
    try:
        record = json.loads(path.read_text())
        stored = SweepSpec.from_json(record)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path} is not a sweep spec ({exc}); choose another --out") from None
    if record.get("version") != SPEC_VERSION:
        raise UserError(f"{out} holds a sweep of an earlier tsprune-edge (spec version {record.get('version')}, its "
                        f"dense reference not fine-tuned as the variants are); choose another --out")
    if stored != spec:
        differ = [f.name for f in dataclasses.fields(SweepSpec) if getattr(stored, f.name) != getattr(spec, f.name)]
        raise UserError(f"{out} holds a different sweep ({', '.join(differ)} differ); re-run with the same options "
                        "to resume it, or choose another --out")
    return True
