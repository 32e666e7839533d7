"""Standard splits, train-only scaling and sliding forecast windows, as the long-term forecasting literature uses them.

A window gives the deployment signature's inputs and its target:
  history  [seq_len, n_inputs]          scaled values before the forecast start
  calendar [seq_len + pred_len, n_cal]  calendar features of the history and of the forecast horizon
  target   [pred_len, n_targets]        scaled values to forecast
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tsprune_edge.data.calendar import calendar_features, features_for_step
from tsprune_edge.data.fetch import fetch, sha256_of, spec_for
from tsprune_edge.data.registry import DATASETS, SPLIT_RULES, SYNTHETIC, DatasetSpec, data_dir
from tsprune_edge.data.synthetic import synthetic_table
from tsprune_edge.data.table import SeriesTable, read_table
from tsprune_edge.errors import UserError

FEATURE_MODES = ("M", "S", "MS")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class WindowSpec:
    seq_len: int
    label_len: int
    pred_len: int

    def check(self) -> None:
        if self.pred_len <= 0:
            raise UserError(f"pred_len must be positive, got {self.pred_len}")
        if self.seq_len <= 0:
            raise UserError(f"seq_len must be positive, got {self.seq_len}")
        if not 0 <= self.label_len <= self.seq_len:
            raise UserError(f"label_len must be between 0 and seq_len ({self.seq_len}), got {self.label_len}")


@dataclass(frozen=True)
class Source:
    """Which data a model was trained on, enough to find and check it again."""

    name: str  # registered name, "synthetic", or the CSV's file name
    path: str | None  # None for built-in and registered data
    sha256: str | None

    def to_dict(self) -> dict:
        return {"name": self.name, "path": self.path, "sha256": self.sha256}


def split_borders(n_rows: int, split: str, seq_len: int) -> list[tuple[int, int]]:
    """Row ranges of train, val and test; val and test start seq_len rows early so their first target is the border."""
    if split in ("ett-hour", "ett-15min"):
        per_month = 30 * 24 * (4 if split == "ett-15min" else 1)
        ends = [12 * per_month, 16 * per_month, 20 * per_month]
        if n_rows < ends[-1]:
            raise UserError(f"an ETT file needs {ends[-1]} rows for its 12/4/4-month split, this one has {n_rows}")
    else:
        n_train, n_test = int(n_rows * 0.7), int(n_rows * 0.2)
        ends = [n_train, n_rows - n_test, n_rows]
    starts = [0, ends[0] - seq_len, ends[1] - seq_len]
    return [(max(start, 0), end) for start, end in zip(starts, ends, strict=True)]


@dataclass
class ForecastData:
    """Scaled splits of one series, and batches of windows drawn from them."""

    source: Source
    columns: tuple[str, ...]
    features: str
    target: str
    windows: WindowSpec
    calendar_names: tuple[str, ...]
    step_seconds: int
    borders: list[tuple[int, int]]
    mean: np.ndarray
    std: np.ndarray
    split: dict[str, str]  # {"rule": how rows are split, "source": why that rule}
    notices: tuple[str, ...]  # one line each for the user: irregular dates, a file resembling a registered one
    _values: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    _calendar: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    @property
    def input_columns(self) -> list[int]:
        return [self.columns.index(self.target)] if self.features == "S" else list(range(len(self.columns)))

    @property
    def target_columns(self) -> list[int]:
        return list(range(len(self.columns))) if self.features == "M" else [self.columns.index(self.target)]

    def n_windows(self, split: str) -> int:
        w = self.windows
        return len(self._values[split]) - w.seq_len - w.pred_len + 1

    def split_arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The scaled series of a split (every column) and its calendar features: what the windows are cut from."""
        return self._values[split], self._calendar[split]

    def window_arrays(self, split: str, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """history, calendar, target (float32 numpy) for windows beginning at `starts`."""
        w = self.windows
        values, calendar = self._values[split], self._calendar[split]
        starts = np.asarray(starts)[:, None]
        history = values[starts + np.arange(w.seq_len)][:, :, self.input_columns]
        cal = calendar[starts + np.arange(w.seq_len + w.pred_len)]
        target = values[starts + w.seq_len + np.arange(w.pred_len)][:, :, self.target_columns]
        return history, cal, target

    def batches(self, split: str, batch_size: int, shuffle: bool = False,
                rng: np.random.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = np.arange(self.n_windows(split))
        if shuffle:
            (rng or np.random.default_rng(0)).shuffle(order)
        for first in range(0, len(order), batch_size):
            arrays = self.window_arrays(split, order[first:first + batch_size])
            yield tuple(torch.from_numpy(a) for a in arrays)

    def scaling(self) -> dict:
        return {"columns": list(self.columns), "mean": self.mean.tolist(), "std": self.std.tolist()}

    def describe(self) -> dict:
        """What a checkpoint records to rebuild these windows and to explain the model's inputs."""
        return {
            **self.source.to_dict(),
            "features": self.features,
            "target": self.target,
            "seq_len": self.windows.seq_len,
            "label_len": self.windows.label_len,
            "pred_len": self.windows.pred_len,
            "columns": list(self.columns),
            "input_columns": [self.columns[i] for i in self.input_columns],
            "target_columns": [self.columns[i] for i in self.target_columns],
            "calendar_features": list(self.calendar_names),
            "step_seconds": self.step_seconds,
            "borders": [list(b) for b in self.borders],
            "split": dict(self.split),
            "notices": list(self.notices),
        }


@dataclass(frozen=True)
class _Resolved:
    table: SeriesTable
    source: Source
    spec: DatasetSpec | None  # the registered dataset whose split, target and step apply; None: a user CSV
    how: str  # why that split rule applies, as recorded in metrics and manifests
    notices: tuple[str, ...]

    @property
    def all_notices(self) -> tuple[str, ...]:
        """What the user is told: how the file was recognised, then what its dates hold."""
        return (*self.notices, *([self.table.date_notice] if self.table.date_notice else []))


def recognise(path: Path, digest: str, table: SeriesTable) -> tuple[DatasetSpec | None, str, tuple[str, ...]]:
    """The registered dataset a CSV is, by sha256; where no sha256 is known, by file name and shape."""
    for spec in DATASETS.values():
        if spec.sha256 == digest:
            return spec, f"registered {spec.name} recognised by sha256", ()
    named = next((spec for spec in DATASETS.values() if spec.filename == path.name), None)
    shape = (len(table.dates), len(table.columns))
    if named is None:
        return None, "CSV file, not a registered dataset", ()
    if named.sha256 is None and shape == named.shape and table.columns[-1] == named.target:
        how = (f"registered {named.name} recognised by file name and shape ({shape[0]} rows x {shape[1]} variables; "
               "no sha256 is known for it)")
        return named, how, (f"{path.name}: {how}",)
    differs = "sha256" if named.sha256 else "shape"
    how = f"CSV named like registered {named.name} but its {differs} differs"
    return None, how, (f"{path.name} has the name of registered {named.name} but not its {differs}: split "
                       f"{SPLIT_RULES['ratio']} as any CSV, not {SPLIT_RULES[named.split]}; use the official file "
                       "for figures comparable with the literature",)


# The last dataset read, keyed by its name and the file's identity: the early length check and the training that
# follows read a large CSV once.
_last: tuple[tuple, _Resolved] | None = None


def _identity(data: str) -> tuple | None:
    """What changes when the file behind `data` changes (None: it does not exist yet, nothing to reuse)."""
    if data == SYNTHETIC:
        return ()
    path = data_dir() / DATASETS[data].filename if data in DATASETS else Path(data)
    try:
        info = path.stat()
    except OSError:
        return None
    return (str(path.resolve()), info.st_ino, info.st_size, info.st_mtime_ns)


def _resolve(data: str, strict_dates: bool) -> _Resolved:
    """`_read` once per file: a second call for the same unchanged file reuses the first's table."""
    global _last
    identity = _identity(data)
    key = (data, strict_dates, identity)
    if identity is not None and _last is not None and _last[0] == key:
        return _last[1]
    resolved = _read(data, strict_dates)
    _last = (key, resolved) if identity is not None else None
    return resolved


def _read(data: str, strict_dates: bool) -> _Resolved:
    """Load a built-in, registered or CSV-path dataset with the split rule, target and step that apply to it."""
    if data == SYNTHETIC:
        return _Resolved(synthetic_table(), Source(SYNTHETIC, None, None), None, "built-in synthetic", ())
    if data in DATASETS:
        spec = DATASETS[data]
        path = data_dir() / spec.filename
        if not path.is_file():
            path = fetch(data)
        digest = sha256_of(path)
        if spec.sha256 and digest != spec.sha256:
            raise UserError(f"{path} is not the official {data} file (sha256 {digest[:12]}…); "
                            f"delete it and run `tsprune-edge data fetch {data}`")
        verified = "sha256 verified" if spec.sha256 else "sha256 unknown: not verified"
        return _Resolved(read_table(path, strict_dates), Source(data, None, digest), spec,
                         f"registered {data} by name ({verified})", ())
    path = Path(data)
    if path.suffix.lower() != ".csv" and not path.exists():
        spec_for(data)  # raises the unknown-name error with the list of names
    table = read_table(path, strict_dates)
    digest = sha256_of(path)
    spec, how, notices = recognise(path, digest, table)
    name = spec.name if spec else path.name
    return _Resolved(table, Source(name, str(path.resolve()), digest), spec, how, notices)


def same_source(data: str, recorded: dict) -> bool:
    """Whether `data`, as given to load_forecast_data, is the source a checkpoint recorded (`Source.to_dict`). A name
    matches by name; a CSV path by its bytes, since its recorded name depends on recognition (a registered file found
    by sha256 is recorded under the registered name, any other CSV under its file name, never its stem)."""
    if data == SYNTHETIC or data in DATASETS:
        return recorded["name"] == data
    path = Path(data)
    return path.is_file() and sha256_of(path) == recorded["sha256"]


def check_dates(data: str, strict: bool) -> tuple[str, ...]:
    """Read `data` once for its date rules (before a long job starts): raises what loading would, returns the
    notices."""
    return _resolve(data, strict).all_notices


def check_length(data: str, windows: WindowSpec, strict_dates: bool = False) -> None:
    """Refuse windows longer than a split of `data` holds, from the rows alone: in the time it takes to read the
    file, before a model is built or trained for a horizon the data cannot give."""
    windows.check()
    resolved = _resolve(data, strict_dates)
    _borders(resolved, resolved.spec.split if resolved.spec else "ratio", windows)


def _borders(resolved: _Resolved, split: str, windows: WindowSpec) -> list[tuple[int, int]]:
    """The split borders, each split long enough for one window."""
    name, rows = resolved.source.name, len(resolved.table.dates)
    if rows < 2:
        raise UserError(f"{name} has {rows} rows; a forecast needs far more")
    borders = split_borders(rows, split, windows.seq_len)
    need = windows.seq_len + windows.pred_len
    for part, (start, end) in zip(SPLITS, borders, strict=True):
        if end - start < need:
            raise UserError(f"{name} has too few rows for seq_len {windows.seq_len} + pred_len "
                            f"{windows.pred_len}: its {part} split holds {end - start} rows, needs at least {need}")
    return borders


def load_forecast_data(data: str, windows: WindowSpec, features: str = "M", target: str | None = None,
                       expected_sha256: str | None = None, strict_dates: bool = False) -> ForecastData:
    """Everything training, evaluation and export need to draw windows from `data`; `notices` holds what the user
    should be told (one line each)."""
    windows.check()
    if features not in FEATURE_MODES:
        raise UserError(f"features must be one of {', '.join(FEATURE_MODES)}, got {features!r}")
    resolved = _resolve(data, strict_dates)
    table, source, spec = resolved.table, resolved.source, resolved.spec
    split, default_target = (spec.split, spec.target) if spec else ("ratio", "OT")
    if expected_sha256 and source.sha256 != expected_sha256:
        raise UserError(f"{data} changed since the checkpoint was made (sha256 {source.sha256} != {expected_sha256})")
    target = target or default_target
    if target not in table.columns:
        if features != "M" or target != default_target:
            raise UserError(f"target column {target!r} is not in {source.name}; columns: {', '.join(table.columns)}")
        target = table.columns[-1]
    borders = _borders(resolved, split, windows)
    step = spec.step_seconds if spec else int(np.median(np.diff(table.dates).astype(np.int64)))
    train_rows = table.values[borders[0][0]:borders[0][1]]
    with np.errstate(over="ignore", invalid="ignore"):
        mean = train_rows.mean(axis=0)
        std = train_rows.std(axis=0)
        std[std == 0] = 1.0
        scaled = ((table.values - mean) / std).astype(np.float32)
    finite = np.isfinite(std) & np.isfinite(mean) & np.isfinite(scaled).all(axis=0)
    if not finite.all():  # refused before training: it would train to MSE nan
        raise UserError(f"{source.name}: column {table.columns[int(np.argmin(finite))]!r} does not scale to finite "
                        "float32 values (too large or too spread); rescale that column in the CSV")
    cal_names = features_for_step(step)
    calendar = calendar_features(table.dates, cal_names)
    result = ForecastData(source, table.columns, features, target, windows, cal_names, step, borders, mean, std,
                          {"rule": SPLIT_RULES[split], "source": resolved.how}, resolved.all_notices)
    for name, (start, end) in zip(SPLITS, borders, strict=True):
        result._values[name] = scaled[start:end]
        result._calendar[name] = calendar[start:end]
    return result
