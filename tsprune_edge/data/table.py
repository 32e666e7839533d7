"""Reading the long-term forecasting CSV format: a `date` column, then one numeric column per variable."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tsprune_edge.errors import UserError

# ISO dates ("2016-07-01 00:00:00") and the slash form of the Autoformer bundle ("1990/1/1 0:00").
_DATE = re.compile(r"^\s*(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?\s*$")


@dataclass(frozen=True)
class SeriesTable:
    """A multivariate series: `values[t, v]` observed at `dates[t]`."""

    dates: np.ndarray  # datetime64[s], shape [T]
    values: np.ndarray  # float64, shape [T, V]
    columns: tuple[str, ...]

    def __post_init__(self) -> None:
        assert self.values.shape == (len(self.dates), len(self.columns))


def parse_date(text: str) -> np.datetime64:
    match = _DATE.match(text)
    if match is None:
        raise ValueError(text)
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
    return np.datetime64(f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}", "s")


def read_table(path: Path) -> SeriesTable:
    """Read and validate a CSV; every defect is a UserError naming the file, row and column."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; pass a CSV path or a registered dataset name (see `data list`)")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not a UTF-8 text CSV ({exc.reason})") from None
    if not rows:
        raise UserError(f"{path}: the file is empty; expected a header `date,<var1>,<var2>,...`")
    header = [name.strip() for name in rows[0]]
    if not header or header[0].lower() != "date":
        raise UserError(f"{path}: the first column must be `date`, found {header[0]!r}; "
                        "the format is `date,<var1>,<var2>,...`")
    if len(header) < 2:
        raise UserError(f"{path}: no variable columns after `date`")
    columns = tuple(header[1:])
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated or "" in columns:
        problem = f"{repeated[0]!r} appears twice" if repeated else "'' has no name"
        raise UserError(f"{path}: column {problem} in the header; give each column its own name")
    body = [row for row in rows[1:] if row]
    dates = np.empty(len(body), dtype="datetime64[s]")
    values = np.empty((len(body), len(columns)), dtype=np.float64)
    for i, row in enumerate(body):
        line = i + 2
        if len(row) != len(header):
            raise UserError(f"{path}: line {line} has {len(row)} cells, the header has {len(header)}")
        try:
            dates[i] = parse_date(row[0])
        except ValueError:
            raise UserError(f"{path}: line {line}: {row[0]!r} is not a date (expected YYYY-MM-DD HH:MM:SS)") from None
        for j, cell in enumerate(row[1:]):
            try:
                value = float(cell)
            except ValueError:
                raise UserError(f"{path}: line {line}, column {columns[j]!r}: {cell!r} is not a number") from None
            if not math.isfinite(value):
                raise UserError(f"{path}: line {line}, column {columns[j]!r} is {cell!r}; "
                                "fill or drop missing values before using the file")
            values[i, j] = value
    if len(body) and np.any(np.diff(dates) <= np.timedelta64(0, "s")):
        bad = int(np.argmax(np.diff(dates) <= np.timedelta64(0, "s"))) + 3
        raise UserError(f"{path}: line {bad}: dates must increase strictly")
    return SeriesTable(dates=dates, values=values, columns=columns)
