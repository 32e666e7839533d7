"""Named datasets of the long-term forecasting literature: where they come from and how they are split."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_ETT_RAW = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/"
# The Autoformer authors distribute these files only as a shared-drive folder, with no direct file URL.
_AUTOFORMER_BUNDLE = "https://github.com/thuml/Autoformer (dataset bundle linked from its README)"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    filename: str
    freq: str  # human-readable sampling step
    target: str
    split: str  # "ett-hour" | "ett-15min" | "ratio"
    source: str  # where a person finds it
    url: str | None = None  # direct download, where one exists
    sha256: str | None = None  # None: no published value we could verify
    licence: str = "see source"
    shape: tuple[int, int] | None = None  # rows, variables (without `date`) of the published file

    @property
    def step_seconds(self) -> int:
        return _STEP_SECONDS[self.freq]


_STEP_SECONDS = {"10min": 600, "15min": 900, "1h": 3600, "1d": 86400, "7d": 7 * 86400}
SPLIT_RULES = {"ett-hour": "ETT 12/4/4 months", "ett-15min": "ETT 12/4/4 months (15-minute rows)",
               "ratio": "70/10/20 by rows"}


_ETT_LICENCE = "CC BY-ND 4.0 (cite Informer, AAAI 2021)"
_ETT_HOURLY, _ETT_15MIN = (17420, 7), (69680, 7)

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("ETTh1", "ETTh1.csv", "1h", "OT", "ett-hour", _ETT_RAW, _ETT_RAW + "ETTh1.csv",
                    "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066", _ETT_LICENCE, _ETT_HOURLY),
        DatasetSpec("ETTh2", "ETTh2.csv", "1h", "OT", "ett-hour", _ETT_RAW, _ETT_RAW + "ETTh2.csv",
                    "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b", _ETT_LICENCE, _ETT_HOURLY),
        DatasetSpec("ETTm1", "ETTm1.csv", "15min", "OT", "ett-15min", _ETT_RAW, _ETT_RAW + "ETTm1.csv",
                    "6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e", _ETT_LICENCE, _ETT_15MIN),
        DatasetSpec("ETTm2", "ETTm2.csv", "15min", "OT", "ett-15min", _ETT_RAW, _ETT_RAW + "ETTm2.csv",
                    "db973ca252c6410a30d0469b13d696cf919648d0f3fd588c60f03fdbdbadd1fd", _ETT_LICENCE, _ETT_15MIN),
        DatasetSpec("weather", "weather.csv", "10min", "OT", "ratio", _AUTOFORMER_BUNDLE, None,
                    "34ee981d07313e51da2a50bb600072c8ae4a69cb4b0651f4cb93a069d7a2ba63",
                    "Max Planck BGC Jena weather station data", (52696, 21)),
        # No source we can reach states these two files' sha256: they are recognised by name and shape only.
        DatasetSpec("electricity", "electricity.csv", "1h", "OT", "ratio", _AUTOFORMER_BUNDLE, shape=(26304, 321)),
        DatasetSpec("traffic", "traffic.csv", "1h", "OT", "ratio", _AUTOFORMER_BUNDLE, shape=(17544, 862)),
        DatasetSpec("exchange_rate", "exchange_rate.csv", "1d", "OT", "ratio", _AUTOFORMER_BUNDLE, None,
                    "d55e7aa2641009814a18ba3279431b13f6d413b0eab195b9ff21988d8cf94e97",
                    "no data licence stated by the distributors", (7588, 8)),
        DatasetSpec("illness", "national_illness.csv", "7d", "OT", "ratio", _AUTOFORMER_BUNDLE, None,
                    "8594cecb98c6f2f9dc014eca11c4d5d1e38ad5ce6ed0592d4abe65b146fce395",
                    "no data licence stated by the distributors", (966, 7)),
    )
}

SYNTHETIC = "synthetic"


def data_dir() -> Path:
    """Where downloaded datasets live: $TSPRUNE_EDGE_DATA_DIR, else the user cache directory."""
    explicit = os.environ.get("TSPRUNE_EDGE_DATA_DIR")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tsprune-edge" / "datasets"


def available_datasets() -> list[str]:
    return [SYNTHETIC, *DATASETS]
