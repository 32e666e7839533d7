"""Model registry: `create_model(name, preset=..., **config)` and `available_models()`.

Every model has one deployment signature, which export and the board agent rely on:

    forecast = model(history, calendar)
    history  float32 [batch, seq_len, enc_in]            scaled past values
    calendar float32 [batch, seq_len + pred_len, n_cal]  calendar features (see data/calendar.py) of
                                                         the history and of the forecast horizon
    forecast float32 [batch, pred_len, c_out]            scaled forecast

Models that do not use calendar features still take the input, so every artifact has the same inputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from tsprune_edge.errors import UserError


@dataclass
class ForecastConfig:
    """Fields every model shares: window sizes and the widths the data decides."""

    seq_len: int = 96
    label_len: int = 48
    pred_len: int = 96
    enc_in: int = 7
    c_out: int = 7
    calendar_features: tuple[str, ...] = ("month", "day", "weekday", "hour")
    target_index: int = -1  # position of the target among the inputs, used when c_out == 1 < enc_in


@dataclass(frozen=True)
class TrainSchedule:
    """A model's published optimisation recipe."""

    lr: float
    batch_size: int
    max_epochs: int
    lr_decay: str  # "halve": lr * 0.5**(epoch-1);  "hold3": lr for 3 epochs, then * 0.9 each epoch
    patience: int = 3


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    config_cls: type[ForecastConfig]
    presets: dict[str, dict] = field(default_factory=dict)
    schedule: TrainSchedule = TrainSchedule(1e-4, 32, 10, "halve")
    summary: str = ""
    tiny: bool = False  # a forecaster of a few thousand MACs a user would deploy instead of a pruned Transformer


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, config_cls: type[ForecastConfig], presets: dict[str, dict],
                   schedule: TrainSchedule, summary: str, tiny: bool = False) -> Callable:
    def decorate(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelEntry(name, cls, config_cls, presets, schedule, summary, tiny)
        return cls

    return decorate


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def tiny_models() -> list[str]:
    """The registered tiny forecasters (SparseTSF, FITS, DLinear): the alternatives the leaderboard places pruning
    against."""
    return sorted(name for name, entry in _REGISTRY.items() if entry.tiny)


def model_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; available: {', '.join(available_models())}") from None


def resolve_config(name: str, preset: str | None = None, **overrides) -> ForecastConfig:
    """The model's config: its dataclass defaults, then the preset, then non-None overrides."""
    entry = model_entry(name)
    values: dict = {}
    if preset is not None:
        if preset not in entry.presets:
            raise UserError(f"model {name} has no preset {preset!r}; presets: {', '.join(entry.presets)}")
        values.update(entry.presets[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(entry.config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"model {name} has no setting {', '.join(unknown)}; settings: {', '.join(sorted(known))}")
    if "calendar_features" in values:
        values["calendar_features"] = tuple(values["calendar_features"])
    return entry.config_cls(**values)


def create_model(name: str, preset: str | None = None, **overrides) -> nn.Module:
    """Build a model; the resolved config is attached as `model.config` and its name as `model.name`."""
    config = resolve_config(name, preset, **overrides)
    model = model_entry(name).builder(config)
    model.config = config
    model.name = name
    return model
