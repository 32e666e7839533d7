"""Reading the long-term forecasting CSV format: a `date` column, then one numeric column per variable."""

from __future__ import annotations

import csv
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
    date_notice: str | None = None  # duplicated timestamps or irregular steps, kept as they are

    def __post_init__(self) -> None:
        assert self.values.shape == (len(self.dates), len(self.columns))


def parse_date(text: str) -> np.datetime64:
    match = _DATE.match(text)
    if match is None:
        raise ValueError(text)
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
    return np.datetime64(f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}", "s")


def read_table(path: Path, strict_dates: bool = False) -> SeriesTable:
    """Read and validate a CSV; every defect is a UserError naming the file, row and column.

    Dates that go backwards or do not parse are refused. Duplicated timestamps and irregular steps are kept as they
    are (the published weather file has both and the literature splits it by row) and summed up in `date_notice`,
    unless `strict_dates` refuses them too."""
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
    body = [(number, row) for number, row in enumerate(rows[1:], start=2) if row]
    dates = np.empty(len(body), dtype="datetime64[s]")
    values = np.empty((len(body), len(columns)), dtype=np.float64)
    for i, (line, row) in enumerate(body):
        if len(row) != len(header):
            raise UserError(f"{path}: line {line} has {len(row)} cells, the header has {len(header)}")
        try:
            dates[i] = parse_date(row[0])
        except ValueError:
            raise UserError(f"{path}: line {line}: {row[0]!r} is not a date (expected YYYY-MM-DD HH:MM:SS)") from None
        try:
            values[i] = row[1:]  # numpy parses the whole row at once: wide files (862 variables) load in seconds
        except ValueError:
            for j, cell in enumerate(row[1:]):
                try:
                    float(cell)
                except ValueError:
                    raise UserError(f"{path}: line {line}, column {columns[j]!r}: {cell!r} is not a number") from None
    not_finite = ~np.isfinite(values)
    if not_finite.any():
        i, j = (int(k) for k in np.argwhere(not_finite)[0])
        line, row = body[i]
        raise UserError(f"{path}: line {line}, column {columns[j]!r} is {row[j + 1]!r}; "
                        "fill or drop missing values before using the file")
    notice = date_notice(path, dates, [line for line, _ in body], strict_dates)
    return SeriesTable(dates=dates, values=values, columns=columns, date_notice=notice)


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def date_notice(path: Path, dates: np.ndarray, lines: list[int], strict: bool) -> str | None:
    """Refuse dates that go backwards; describe duplicated timestamps and irregular steps in one line (or refuse
    them when `strict`). Steps of 28 days or more (months, years) vary by nature and are not called irregular."""
    if len(dates) < 2:
        return None
    steps = np.diff(dates).astype(np.int64)
    backwards = np.flatnonzero(steps < 0)
    if len(backwards):
        i = int(backwards[0]) + 1
        raise UserError(f"{path}: line {lines[i]}: date {dates[i]} is earlier than the row before ({dates[i - 1]}); "
                        "sort the file by date")
    usual = int(np.median(steps))
    duplicates = np.flatnonzero(steps == 0)
    irregular = np.flatnonzero((steps != usual) & (steps != 0)) if 0 < usual < 28 * 86400 else np.array([], int)
    parts = []
    if len(duplicates):
        i = int(duplicates[0]) + 1
        parts.append(f"{len(duplicates)} duplicated timestamp{'s' * (len(duplicates) > 1)} "
                     f"(first: line {lines[i]}, {str(dates[i]).replace('T', ' ')})")
    if len(irregular):
        i = int(irregular[0]) + 1
        parts.append(f"{len(irregular)} irregular step{'s' * (len(irregular) > 1)} (first: line {lines[i]}, "
                     f"{_duration(int(steps[i - 1]))} after the row before; the usual step is {_duration(usual)})")
    if not parts:
        return None
    if strict:
        raise UserError(f"{path.name}: {' and '.join(parts)}; --strict-dates refuses them: fix the dates or drop "
                        "--strict-dates to keep the rows as they are")
    return (f"{path.name}: {' and '.join(parts)}; rows kept as they are, split by row position as the literature does "
            "(--strict-dates refuses such files)")
