"""Datasets: the CSV format, named datasets, the built-in synthetic series, splits and windows."""

from tsprune_edge.data.forecast import FEATURE_MODES, ForecastData, WindowSpec, load_forecast_data
from tsprune_edge.data.registry import DATASETS, SYNTHETIC, available_datasets

__all__ = ["DATASETS", "FEATURE_MODES", "SYNTHETIC", "ForecastData", "WindowSpec", "available_datasets",
           "load_forecast_data"]
