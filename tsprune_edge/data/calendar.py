"""Calendar features: the integer parts of each timestamp that the data's frequency makes informative.

Recipe (also what a board must compute): month 1-12, day of month 1-31, weekday 0-6 (Monday 0),
hour 0-23, minute 0-59, each as float32. Daily data drops hour and minute, hourly data drops minute,
weekly and coarser data keeps month and day only.
"""

from __future__ import annotations

import numpy as np

ALL_FEATURES = ("month", "day", "weekday", "hour", "minute")
# What each feature is, for anyone (a board, another language) who must compute them from a timestamp.
DEFINITIONS = {
    "month": "month of the year, 1-12",
    "day": "day of the month, 1-31",
    "weekday": "day of the week, 0-6 with Monday 0",
    "hour": "hour of the day, 0-23",
    "minute": "minute of the hour, 0-59",
}
# Largest value of each feature: models divide by it to get inputs in [0, 1].
FEATURE_MAX = {"month": 12.0, "day": 31.0, "weekday": 6.0, "hour": 23.0, "minute": 59.0}


def features_for_step(step_seconds: int) -> tuple[str, ...]:
    """The features that vary at this sampling step."""
    if step_seconds < 3600:
        return ALL_FEATURES
    if step_seconds < 86400:
        return ALL_FEATURES[:4]
    if step_seconds < 7 * 86400:
        return ALL_FEATURES[:3]
    return ALL_FEATURES[:2]


def calendar_features(dates: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """[T, len(names)] float32 features of datetime64 `dates`."""
    days = dates.astype("datetime64[D]")
    months = dates.astype("datetime64[M]")
    columns = {
        "month": months.astype(np.int64) % 12 + 1,
        "day": (days - months.astype("datetime64[D]")).astype(np.int64) + 1,
        # 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
        "weekday": (days.astype(np.int64) + 3) % 7,
        "hour": (dates - days).astype("timedelta64[h]").astype(np.int64),
        "minute": (dates - dates.astype("datetime64[h]")).astype("timedelta64[m]").astype(np.int64),
    }
    return np.stack([columns[name] for name in names], axis=1).astype(np.float32)
