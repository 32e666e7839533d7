"""`--baselines sparsetsf,fits,dlinear`: the tiny forecasters a user would deploy instead of a pruned model, trained
beside the run on its data, split, seed, target and horizon, each with its own published schedule (the registry's
`TrainSchedule`, the one source `train` and benchmarks/train_baselines.py use), exported and benched as bundles of
their own (`variants.baseline_variant`).

A baseline takes the run's seq_len (so its test windows are the run's, paired window by window) unless its name
carries a preset: `sparsetsf:paper` is the authors' lookback 720. Test windows start seq_len rows before the test
border, so at any lookback they forecast the same rows and still pair one to one.

Trained baselines are cached per (model, preset, dataset bytes, features, target, seed, schedule, seq_len,
label_len, pred_len) under the checkpoint cache, so a second run reuses them (and says so)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from tsprune_edge.errors import UserError
from tsprune_edge.variants import baseline_variant

DEFAULT_PRESET = "small"  # at the run's seq_len; any other preset brings its own lookback
DEFAULT_CACHE = Path.home() / ".cache" / "tsprune-edge" / "checkpoints"
KEY_FILE = "key.json"


@dataclass(frozen=True)
class Baseline:
    model: str
    preset: str = DEFAULT_PRESET

    @property
    def variant(self) -> str:
        return baseline_variant(self.model, None if self.preset == DEFAULT_PRESET else self.preset)

    @property
    def text(self) -> str:
        return self.model if self.preset == DEFAULT_PRESET else f"{self.model}:{self.preset}"


@dataclass(frozen=True)
class RunWindows:
    """What the main model was (or will be) trained on: the baselines get the same."""

    data: str  # a registered name or a CSV path
    seq_len: int
    label_len: int
    pred_len: int
    features: str = "M"
    target: str | None = None
    seed: int = 2021
    strict_dates: bool = False

    @classmethod
    def of_checkpoint(cls, checkpoint, strict_dates: bool = False) -> RunWindows:
        d = checkpoint.data
        return cls(d["path"] or d["name"], d["seq_len"], d["label_len"], d["pred_len"], d["features"], d["target"],
                   int((checkpoint.training or {}).get("seed", 2021)), strict_dates)


def parse_baselines(names: tuple[str, ...]) -> tuple[Baseline, ...]:
    """('sparsetsf', 'fits:paper') (the CLI's comma_list of --baselines) -> Baselines, each name registered and
    each preset one the model has. No names: no import of the registry (and torch), as a sweep spec is read."""
    if not names:
        return ()
    from tsprune_edge.models import available_models, model_entry

    found = []
    for part in names:
        name, _, preset = part.partition(":")
        if name not in available_models():
            raise UserError(f"unknown baseline {name!r} in --baselines; registered models: "
                            f"{', '.join(available_models())}")
        preset = preset or DEFAULT_PRESET
        if preset not in model_entry(name).presets:
            raise UserError(f"baseline {name} has no preset {preset!r}; write {name} (the run's seq_len) or "
                            f"{name}:PRESET with one of {', '.join(model_entry(name).presets)}")
        found.append(Baseline(name, preset))
    return tuple(dict.fromkeys(found))


def windows_of(baseline: Baseline, run: RunWindows) -> tuple[int, int]:
    """(seq_len, label_len) the baseline trains at: the run's, or its preset's lookback."""
    from tsprune_edge.models import resolve_config

    if baseline.preset == DEFAULT_PRESET:
        return run.seq_len, run.label_len
    config = resolve_config(baseline.model, baseline.preset)
    return config.seq_len, min(run.label_len, config.seq_len)


def check_baselines(baselines: tuple[Baseline, ...], run: RunWindows) -> None:
    """Before any training: every baseline's windows fit the data's splits and the model builds at them."""
    import torch

    from tsprune_edge.data.forecast import WindowSpec, check_length
    from tsprune_edge.models import create_model

    for baseline in baselines:
        seq_len, label_len = windows_of(baseline, run)
        try:
            check_length(run.data, WindowSpec(seq_len, label_len, run.pred_len), run.strict_dates)
        except UserError as refusal:
            shorter = f", or {baseline.model} at the run's seq_len" if baseline.preset != DEFAULT_PRESET else ""
            raise UserError(f"baseline {baseline.text} cannot take {Path(run.data).name}: "
                            f"{str(refusal).split('; ')[0]}; drop {baseline.text} from --baselines{shorter}, or "
                            "give more rows") from None
        try:
            net = create_model(baseline.model, baseline.preset, seq_len=seq_len, label_len=label_len,
                               pred_len=run.pred_len)
            with torch.no_grad():
                net(torch.zeros(1, seq_len, net.config.enc_in),
                    torch.zeros(1, seq_len + run.pred_len, len(net.config.calendar_features)))
        except (RuntimeError, ValueError) as exc:
            raise UserError(f"baseline {baseline.text} cannot forecast {run.pred_len} steps from {seq_len} "
                            f"({str(exc).splitlines()[0]}); drop it from --baselines") from None


def cache_key(baseline: Baseline, run: RunWindows, data_sha256: str) -> dict:
    """What decides a trained baseline: the model, its preset and published schedule, the data's bytes and use,
    the seed and the windows."""
    from tsprune_edge.models import model_entry

    seq_len, label_len = windows_of(baseline, run)
    return {"model": baseline.model, "preset": baseline.preset, "data_sha256": data_sha256,
            "features": run.features, "target": run.target, "seed": run.seed,
            "schedule": dataclasses.asdict(model_entry(baseline.model).schedule),
            "seq_len": seq_len, "label_len": label_len, "pred_len": run.pred_len}


def entry_dir(cache: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache) / f"baseline-{key['model']}-{key['preset']}-{digest}"


def trained_baseline(baseline: Baseline, run: RunWindows, data_sha256: str, cache: Path,
                     console: Console) -> Path:
    """The baseline's model.pt: from the cache when an entry of the same key is there ("reused"), else trained now
    with its published schedule and put in the cache whole (a temporary folder renamed), so an interrupted run
    leaves no half entry."""
    from tsprune_edge.checkpoint import load_checkpoint
    from tsprune_edge.models import model_entry
    from tsprune_edge.workflow import train_to_dir

    key = cache_key(baseline, run, data_sha256)
    folder = entry_dir(cache, key)
    schedule = model_entry(baseline.model).schedule
    if _readable(folder, key, load_checkpoint):
        console.print(f"baseline {baseline.text}: reused {folder / 'model.pt'} (same data, seed, schedule and "
                      "windows)")
        return folder / "model.pt"
    seq_len, label_len = windows_of(baseline, run)
    console.print(f"baseline {baseline.text}: training at seq_len {seq_len}, pred_len {run.pred_len} with its "
                  f"published schedule (lr {schedule.lr:g}, batch {schedule.batch_size}, at most "
                  f"{schedule.max_epochs} epochs, patience {schedule.patience})")
    Path(cache).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".training-", dir=cache))
    try:
        metrics = train_to_dir(model=baseline.model, data=run.data, pred_len=run.pred_len, preset=baseline.preset,
                               out=work, features=run.features, target=run.target, seq_len=seq_len,
                               label_len=label_len, seed=run.seed, strict_dates=run.strict_dates, console=console)
        if metrics["data"]["sha256"] != data_sha256:
            raise UserError(f"{run.data} changed while the run trained; run it again")
        (work / KEY_FILE).write_text(json.dumps(key, indent=1, sort_keys=True))
        if folder.exists() and not _readable(folder, key, load_checkpoint):  # the tool's own file, replaced
            shutil.rmtree(folder)
        try:
            os.replace(work, folder)
        except OSError:  # another worker of a sweep put the same entry there meanwhile: keep that one
            if not _readable(folder, key, load_checkpoint):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    console.print(f"baseline {baseline.text}: test MSE {metrics['test']['mse']:.4f}, cached in {folder}")
    return folder / "model.pt"


def _readable(folder: Path, key: dict, load) -> bool:
    try:
        if json.loads((folder / KEY_FILE).read_text()) != key:
            return False
        json.loads((folder / "metrics.json").read_text())
        load(folder / "model.pt")
        return True
    except (OSError, ValueError, UserError):
        return False


def test_metrics(checkpoint_path: Path) -> dict | None:
    """A cached baseline's torch test metrics (metrics.json beside its model.pt), or None."""
    try:
        return json.loads((Path(checkpoint_path).parent / "metrics.json").read_text())["test"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
