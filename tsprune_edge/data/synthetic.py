"""The built-in offline dataset: deterministic, hourly, 7 variables with daily, weekly and yearly cycles."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tsprune_edge.data.table import SeriesTable

ROWS = 8760  # one year of hours: 70/10/20 splits leave every window size the presets use
COLUMNS = ("load_a", "load_b", "load_c", "load_d", "temp_in", "temp_out", "OT")
_SEED = 20240901


def synthetic_table() -> SeriesTable:
    """Seasonal signals, a slow trend, AR(1) noise and cross-variable coupling; OT lags the loads."""
    rng = np.random.default_rng(_SEED)
    t = np.arange(ROWS, dtype=np.float64)
    daily = 2 * np.pi * t / 24
    weekly = 2 * np.pi * t / 168
    yearly = 2 * np.pi * t / ROWS
    noise = np.zeros((ROWS, len(COLUMNS)))
    shocks = rng.normal(scale=0.3, size=(ROWS, len(COLUMNS)))
    for i in range(1, ROWS):
        noise[i] = 0.8 * noise[i - 1] + shocks[i]
    loads = [
        10 + 3 * np.sin(daily + phase) + 1.5 * np.sin(weekly + 2 * phase) + 0.5 * np.sin(2 * daily) + 0.0004 * t
        for phase in (0.0, 0.7, 1.4, 2.1)
    ]
    temp_out = 12 + 8 * np.sin(yearly - 1.2) + 4 * np.sin(daily - 2.0)
    temp_in = 21 + 0.15 * (temp_out - 12) + 0.3 * loads[0] / 10
    values = np.stack([*loads, temp_in, temp_out, np.zeros(ROWS)], axis=1) + noise
    lagged = np.roll(values[:, 0] + values[:, 1], 3)
    lagged[:3] = lagged[3]
    values[:, 6] = 25 + 0.6 * lagged + 0.4 * values[:, 5] + noise[:, 6]
    start = np.datetime64("2020-01-01T00:00:00", "s")
    dates = start + np.arange(ROWS) * np.timedelta64(3600, "s")
    return SeriesTable(dates=dates, values=values, columns=COLUMNS)


def write_wide_csv(path: Path, variables: int, rows: int, seed: int = 0) -> Path:
    """A file in the published format of electricity (321 variables) or traffic (862): `date,0,1,...,OT`, hourly
    `2016-07-01 02:00:00` dates, daily and weekly cycles per variable. For tests and benchmarks of wide data, whose
    real files are not redistributable here."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)[:, None]
    phase = rng.uniform(0, 2 * np.pi, size=(1, variables))
    level = rng.uniform(1, 100, size=(1, variables))
    values = level * (1.2 + np.sin(2 * np.pi * t / 24 + phase) + 0.3 * np.sin(2 * np.pi * t / 168 + phase))
    values += rng.normal(scale=0.05, size=values.shape) * level
    dates = np.datetime64("2016-07-01T02:00:00", "s") + np.arange(rows) * np.timedelta64(3600, "s")
    header = ",".join(["date", *map(str, range(variables - 1)), "OT"])
    # Values on a grid of 0.1 steps, formatted once per grid point: writing 15 million cells stays fast.
    grid = np.clip(np.rint(values * 10), 0, 19999).astype(np.int64)
    text = np.array([f"{k / 10:.1f}" for k in range(20000)], dtype=object)
    with Path(path).open("w", newline="") as handle:
        for line in (header, *(str(d).replace("T", " ") + "," + ",".join(r) for d, r in
                               zip(dates, text[grid].tolist(), strict=True))):
            handle.write(line + "\n")
    return Path(path)
