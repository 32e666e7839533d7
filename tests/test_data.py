"""Datasets: the CSV format, standard splits, train-only scaling, window alignment, calendar features."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsprune_edge.data import WindowSpec, load_forecast_data
from tsprune_edge.data.calendar import calendar_features, features_for_step
from tsprune_edge.data.synthetic import ROWS, synthetic_table
from tsprune_edge.data.table import parse_date, read_table


def test_reads_etth1_as_published(shared_data):
    table = read_table(shared_data / "ETTh1.csv")
    assert table.values.shape == (17420, 7)
    assert table.columns == ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
    assert str(table.dates[0]) == "2016-07-01T00:00:00"
    assert str(table.dates[-1]) == "2018-06-26T19:00:00"
    assert table.values[0, -1] == pytest.approx(30.5310001373291)


def test_reads_slash_dates_of_exchange_rate(shared_data):
    table = read_table(shared_data / "exchange_rate.csv")
    assert table.values.shape == (7588, 8)
    assert str(table.dates[0]) == "1990-01-01T00:00:00"
    assert str(table.dates[-1]) == "2010-10-10T00:00:00"


def test_etth1_standard_split_and_window_counts(shared_data):
    data = load_forecast_data("ETTh1", WindowSpec(96, 48, 96))
    assert data.borders == [(0, 8640), (8640 - 96, 11520), (11520 - 96, 14400)]
    assert [data.n_windows(s) for s in ("train", "val", "test")] == [8449, 2785, 2785]
    assert data.source.sha256 == "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066"


def test_ettm1_split_is_four_times_finer(shared_data):
    data = load_forecast_data("ETTm1", WindowSpec(96, 48, 96))
    assert data.borders[-1] == (4 * 11520 - 96, 4 * 14400)
    assert data.calendar_names == ("month", "day", "weekday", "hour", "minute")


def test_ratio_split_for_other_datasets(shared_data):
    data = load_forecast_data("illness", WindowSpec(36, 18, 24))
    n = 966
    n_train, n_test = int(n * 0.7), int(n * 0.2)
    assert data.borders == [(0, n_train), (n_train - 36, n - n_test), (n - n_test - 36, n)]
    assert data.calendar_names == ("month", "day")


def test_scaler_is_fitted_on_training_rows_only(shared_data):
    data = load_forecast_data("ETTh1", WindowSpec(96, 48, 96))
    raw = read_table(shared_data / "ETTh1.csv").values
    np.testing.assert_allclose(data.mean, raw[:8640].mean(axis=0))
    np.testing.assert_allclose(data.std, raw[:8640].std(axis=0))
    assert not np.allclose(data.mean, raw[:14400].mean(axis=0))
    train = data._values["train"]
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(train.std(axis=0), 1, atol=1e-4)


def test_first_test_target_is_the_border_row(shared_data):
    data = load_forecast_data("ETTh1", WindowSpec(96, 48, 96))
    raw = read_table(shared_data / "ETTh1.csv")
    history, calendar, target = data.window_arrays("test", np.array([0]))
    expected_target = (raw.values[11520:11616] - data.mean) / data.std
    expected_history = (raw.values[11424:11520] - data.mean) / data.std
    np.testing.assert_allclose(target[0], expected_target, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(history[0], expected_history, rtol=1e-5, atol=1e-5)
    expected_calendar = calendar_features(raw.dates[11424:11616], data.calendar_names)
    np.testing.assert_array_equal(calendar[0], expected_calendar)
    assert calendar.shape == (1, 192, 4)


@pytest.mark.parametrize(("mode", "n_in", "n_out"), [("M", 7, 7), ("S", 1, 1), ("MS", 7, 1)])
def test_feature_modes(shared_data, mode, n_in, n_out):
    data = load_forecast_data("ETTh1", WindowSpec(96, 48, 24), features=mode)
    history, calendar, target = data.window_arrays("train", np.array([0, 5]))
    assert history.shape == (2, 96, n_in)
    assert target.shape == (2, 24, n_out)
    if mode != "M":  # the target column is OT, the last one
        np.testing.assert_array_equal(target[1], data._values["train"][5 + 96:5 + 120, -1:])


def test_batches_cover_every_window_once(shared_data):
    data = load_forecast_data("illness", WindowSpec(36, 18, 24))
    seen = sum(h.shape[0] for h, _, _ in data.batches("train", 64, shuffle=True, rng=np.random.default_rng(1)))
    assert seen == data.n_windows("train")


def test_calendar_features_of_known_dates():
    dates = np.array(["2016-07-01T00:00:00", "2018-06-26T19:45:00", "2020-02-29T23:59:00"], dtype="datetime64[s]")
    features = calendar_features(dates, ("month", "day", "weekday", "hour", "minute"))
    # 2016-07-01 was a Friday, 2018-06-26 a Tuesday, 2020-02-29 a Saturday (Monday = 0)
    np.testing.assert_array_equal(features, [[7, 1, 4, 0, 0], [6, 26, 1, 19, 45], [2, 29, 5, 23, 59]])


@given(st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 12, 31)))
def test_calendar_features_agree_with_python_datetime(moment):
    moment = moment.replace(microsecond=0)
    dates = np.array([np.datetime64(moment, "s")])
    got = calendar_features(dates, ("month", "day", "weekday", "hour", "minute"))[0]
    assert got.tolist() == [moment.month, moment.day, moment.weekday(), moment.hour, moment.minute]
    assert parse_date(moment.strftime("%Y/%m/%d %H:%M:%S")) == dates[0]


def test_features_follow_the_sampling_step():
    assert features_for_step(900) == ("month", "day", "weekday", "hour", "minute")
    assert features_for_step(3600) == ("month", "day", "weekday", "hour")
    assert features_for_step(86400) == ("month", "day", "weekday")
    assert features_for_step(7 * 86400) == ("month", "day")


def test_synthetic_is_deterministic_seasonal_and_big_enough():
    a, b = synthetic_table(), synthetic_table()
    np.testing.assert_array_equal(a.values, b.values)
    assert a.values.shape == (ROWS, 7) and a.columns[-1] == "OT"
    load = a.values[:, 0] - a.values[:, 0].mean()
    daily = np.corrcoef(load[:-24], load[24:])[0, 1]
    half_day = np.corrcoef(load[:-12], load[12:])[0, 1]
    assert daily > 0.8 > half_day
    data = load_forecast_data("synthetic", WindowSpec(96, 48, 720))  # the longest horizon of the literature
    assert min(data.n_windows(s) for s in ("train", "val", "test")) > 0
