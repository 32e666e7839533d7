"""Model zoo. Importing this package registers every model: each module here that defines one registers it
with `@register_model` when imported, so adding a model is adding its file."""

import importlib
import pkgutil

from tsprune_edge.models.registry import (
    ForecastConfig,
    TrainSchedule,
    available_models,
    create_model,
    model_entry,
    resolve_config,
    tiny_models,
)

_INFRASTRUCTURE = {"registry", "layers", "deployment", "decomposition"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _INFRASTRUCTURE:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ForecastConfig", "TrainSchedule", "available_models", "create_model", "model_entry", "resolve_config",
           "tiny_models"]
