"""Model zoo. Importing this package registers every model."""

from tsprune_edge.models import patchtst, transformer  # noqa: F401  (registration)
from tsprune_edge.models.registry import (
    ForecastConfig,
    TrainSchedule,
    available_models,
    create_model,
    model_entry,
    resolve_config,
)

__all__ = ["ForecastConfig", "TrainSchedule", "available_models", "create_model", "model_entry", "resolve_config"]
