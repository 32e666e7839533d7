"""The literature's files as they are: registered files recognised wherever they come from, weather's date and
header quirks, and the window counts every published result uses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from tsprune_edge.data import WindowSpec, load_forecast_data
from tsprune_edge.data.forecast import check_dates
from tsprune_edge.data.table import read_table
from tsprune_edge.errors import UserError

# The header of the published weather.csv: spaces, parentheses, slashes, `**`, U+FFFD where the source lost µ and ².
WEATHER_COLUMNS = ("p (mbar)", "T (degC)", "Tpot (K)", "Tdew (degC)", "rh (%)", "VPmax (mbar)", "VPact (mbar)",
                   "VPdef (mbar)", "sh (g/kg)", "H2OC (mmol/mol)", "rho (g/m**3)", "wv (m/s)", "max. wv (m/s)",
                   "wd (deg)", "rain (mm)", "raining (s)", "SWDR (W/m\ufffd)", "PAR (\ufffdmol/m\ufffd/s)",
                   "max. PAR (\ufffdmol/m\ufffd/s)", "Tlog (degC)", "OT")


def write_quirky_weather(path: Path, rows: int = 1500, duplicate_at: int = 700, gap_at: int = 1100) -> Path:
    """weather's quirks in a short file: 10-minute steps, one timestamp twice (consecutive rows), one 100-minute
    gap, CRLF line ends, the published header."""
    steps = np.arange(rows, dtype=np.int64)
    steps[duplicate_at:] -= 1  # row `duplicate_at` repeats the timestamp before it
    steps[gap_at:] += 9  # 10 minutes become 100
    dates = np.datetime64("2020-01-01T00:10:00", "s") + steps * np.timedelta64(600, "s")
    values = np.sin(np.arange(rows)[:, None] / 24 + np.arange(len(WEATHER_COLUMNS))) * 10 + 1000
    lines = [",".join(["date", *WEATHER_COLUMNS])]
    lines += [str(d).replace("T", " ") + "," + ",".join(f"{v:.2f}" for v in row)
              for d, row in zip(dates, values, strict=True)]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    return path


def _csv(path: Path, dates: list[str]) -> Path:
    path.write_text("date,a,OT\n" + "".join(f"{d},{i},{i * 2}\n" for i, d in enumerate(dates)))
    return path


def test_duplicates_and_gaps_are_kept_and_said_once(tmp_path):
    path = write_quirky_weather(tmp_path / "jena.csv")
    table = read_table(path)
    assert table.columns == WEATHER_COLUMNS and len(table.dates) == 1500
    assert table.date_notice == (
        "jena.csv: 1 duplicated timestamp (first: line 702, 2020-01-05 20:40:00) and 1 irregular step (first: line "
        "1102, 100 min after the row before; the usual step is 10 min); rows kept as they are, split by row position "
        "as the literature does (--strict-dates refuses such files)")
    with pytest.raises(UserError, match=r"jena.csv: 1 duplicated timestamp .*--strict-dates refuses them"):
        read_table(path, strict_dates=True)


@pytest.mark.parametrize("dates, message", [
    (["2020-01-01 00:00:00", "2020-01-01 02:00:00", "2020-01-01 01:00:00"],
     r"line 4: date 2020-01-01T01:00:00 is earlier than the row before \(2020-01-01T02:00:00\); sort the file"),
    (["2020-01-01 00:00:00", "01.02.2020 01:00"], r"line 3: '01.02.2020 01:00' is not a date"),
])
def test_dates_that_go_backwards_or_do_not_parse_are_refused(tmp_path, dates, message):
    with pytest.raises(UserError, match=message):
        read_table(_csv(tmp_path / "user.csv", dates))


def test_regular_files_have_no_notice_and_calendar_comes_from_each_row(tmp_path, shared_data):
    for name in ("ETTh1.csv", "ETTm1.csv", "exchange_rate.csv", "national_illness.csv"):
        assert read_table(shared_data / name).date_notice is None, name
    path = write_quirky_weather(tmp_path / "jena.csv")
    data = load_forecast_data(str(path), WindowSpec(96, 48, 96))
    raw = read_table(path)
    rows = slice(data.borders[0][0], data.borders[0][1])
    _, calendar = data.split_arrays("train")
    minutes = (raw.dates[rows] - raw.dates[rows].astype("datetime64[h]")).astype("timedelta64[m]").astype(int)
    np.testing.assert_array_equal(calendar[:, 4], minutes)  # the repeated row repeats its own minute
    assert calendar[700, 4] == calendar[699, 4]


# Literature window counts (train / val / test) at the usual seq_len / pred_len.
LITERATURE = {
    "ETTh1": ("ETTh1.csv", (96, 96), (8449, 2785, 2785), "ETT 12/4/4 months"),
    "ETTh2": ("ETTh2.csv", (96, 96), (8449, 2785, 2785), "ETT 12/4/4 months"),
    "ETTm1": ("ETTm1.csv", (96, 96), (34369, 11425, 11425), "ETT 12/4/4 months (15-minute rows)"),
    "exchange_rate": ("exchange_rate.csv", (96, 96), (5120, 665, 1422), "70/10/20 by rows"),
    "illness": ("national_illness.csv", (36, 24), (617, 74, 170), "70/10/20 by rows"),
}


@pytest.mark.parametrize("name", LITERATURE)
def test_window_counts_match_the_literature_by_name_and_by_path(name, shared_data, tmp_path):
    filename, (seq_len, pred_len), counts, rule = LITERATURE[name]
    copy = tmp_path / "downloads" / filename
    copy.parent.mkdir()
    shutil.copy(shared_data / filename, copy)
    by_name = load_forecast_data(name, WindowSpec(seq_len, seq_len // 2, pred_len))
    by_path = load_forecast_data(str(copy), WindowSpec(seq_len, seq_len // 2, pred_len))
    for data in (by_name, by_path):
        assert tuple(data.n_windows(s) for s in ("train", "val", "test")) == counts
        assert data.split["rule"] == rule and data.source.name == name and data.notices == ()
    assert by_name.split["source"] == f"registered {name} by name (sha256 verified)"
    assert by_path.split["source"] == f"registered {name} recognised by sha256"
    assert by_path.borders == by_name.borders and by_path.step_seconds == by_name.step_seconds
    np.testing.assert_array_equal(by_path.split_arrays("test")[0], by_name.split_arrays("test")[0])


def test_a_file_that_only_resembles_a_registered_one_is_split_as_any_csv(shared_data, tmp_path):
    renamed = tmp_path / "renamed" / "ETTh1.csv"
    renamed.parent.mkdir()
    shutil.copy(shared_data / "ETTh2.csv", renamed)  # the bytes decide, not the name
    assert load_forecast_data(str(renamed), WindowSpec(96, 48, 96)).split == {
        "rule": "ETT 12/4/4 months", "source": "registered ETTh2 recognised by sha256"}
    lookalike = tmp_path / "ETTh1.csv"  # the official file re-saved with CRLF line ends: right name, other bytes
    lookalike.write_bytes((shared_data / "ETTh1.csv").read_bytes().replace(b"\n", b"\r\n"))
    data = load_forecast_data(str(lookalike), WindowSpec(96, 48, 96))
    assert data.split == {"rule": "70/10/20 by rows",
                          "source": "CSV named like registered ETTh1 but its sha256 differs"}
    assert data.notices == ("ETTh1.csv has the name of registered ETTh1 but not its sha256: split 70/10/20 by rows "
                            "as any CSV, not ETT 12/4/4 months; use the official file for figures comparable with "
                            "the literature",)
    assert data.n_windows("test") == int(17420 * 0.2) - 96 + 1
    assert check_dates(str(lookalike), strict=True) == data.notices


def test_path_and_name_train_to_the_same_metrics(cli, shared_data, tmp_path):
    common = ("--model", "dlinear", "--epochs", "1", "--batch-size", "256")
    by_name = cli("train", *common, "--data", "ETTh1", "--out", str(tmp_path / "name"))
    by_path = cli("train", *common, "--data", str(shared_data / "ETTh1.csv"), "--out", str(tmp_path / "path"))
    assert by_name.code == 0 and by_path.code == 0, by_name.err + by_path.err
    assert "warning" not in by_name.err + by_path.err
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("name", "path"))
    assert (a["val"]["windows"], a["test"]["windows"]) == (b["val"]["windows"], b["test"]["windows"]) == (2785, 2785)
    assert a["data"]["borders"][0] == [0, 8640]  # 8640 - 96 - 96 + 1 = 8449 training windows
    assert a["data"]["split"]["rule"] == b["data"]["split"]["rule"] == "ETT 12/4/4 months"
    assert b["data"]["split"]["source"] == "registered ETTh1 recognised by sha256"
    assert (a["val"], a["test"], a["naive_test"]) == (b["val"], b["test"], b["naive_test"])
    assert a["data"]["borders"] == b["data"]["borders"]
    assert b["data"]["path"] == str((shared_data / "ETTh1.csv").resolve())


def test_weather_quirks_train_export_and_bench_with_one_warning(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    path = write_quirky_weather(tmp_path / "jena (2020).csv")
    target = "rho (g/m**3)"
    trained = cli("train", "--model", "dlinear", "--data", str(path), "--features", "MS", "--target", target,
                  "--epochs", "1", "--out", str(tmp_path / "run"))
    exported = cli("export", "--checkpoint", str(tmp_path / "run" / "model.pt"), "--method", "unstructured",
                   "--finetune-epochs", "0", "--format", "onnx", "--out", str(tmp_path / "export"),
                   "--runs", str(tmp_path / "runs"))
    benched = cli("bench", "--device", "desktop", "--runtime", "onnxruntime", "--artifacts", str(tmp_path / "export"),
                  "--results", str(tmp_path / "results"), "--rounds", "1", "--min-time", "0.05", "--min-iters", "5")
    for result in (trained, exported, benched):
        assert result.code == 0, result.err
    warnings = [line for r in (trained, exported, benched) for line in r.err.splitlines() if "warning" in line]
    assert warnings == ["warning: jena (2020).csv: 1 duplicated timestamp (first: line 702, 2020-01-05 20:40:00) "
                        "and 1 irregular step (first: line 1102, 100 min after the row before; the usual step is "
                        "10 min); rows kept as they are, split by row position as the literature does "
                        "(--strict-dates refuses such files)"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data"]["columns"] == list(WEATHER_COLUMNS)
    assert metrics["data"]["target_columns"] == [target] and metrics["data"]["notices"] == [warnings[0][9:]]
    assert metrics["data"]["split"] == {"rule": "70/10/20 by rows", "source": "CSV file, not a registered dataset"}
    n_test = int(1500 * 0.2)
    assert metrics["test"]["windows"] == n_test - 96 + 1  # rows kept: counts by row position
    manifest = json.loads((tmp_path / "export" / "dense" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["data"]["columns"] == list(WEATHER_COLUMNS) and manifest["data"]["target"] == target
    assert manifest["data"]["split"] == metrics["data"]["split"]
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "export" / "dense" / "model.onnx")).metadata_props}
    assert json.loads(props["tsprune_edge.scaler"])["columns"] == list(WEATHER_COLUMNS)
    (run,) = (tmp_path / "results").iterdir()
    items = json.loads((run / "bench.json").read_text())["items"]
    assert sorted(item["bundle"] for item in items) == ["dense", "percall", "unstructured-0.5"]
    assert all(item["correct"] and not item["errors"] for item in items)
    strict = cli("train", "--model", "dlinear", "--data", str(path), "--strict-dates", "--out", str(tmp_path / "s"))
    assert strict.code == 2 and strict.err.count("\n") == 1 and "--strict-dates refuses them" in strict.err
    assert not (tmp_path / "s").exists()


def test_data_list_shows_each_sha256_or_says_it_is_unknown(cli):
    listing = cli("data", "list")
    assert listing.code == 0
    rows = {line.split()[1]: line for line in listing.out.splitlines() if line.startswith("│")}
    assert "f18de3ad269c" in rows["ETTh1"] and "34ee981d0731" in rows["weather"]
    assert "unknown: not verified" in rows["electricity"] and "unknown: not verified" in rows["traffic"]


def test_export_checks_data_by_the_identity_training_recorded(cli, shared_data, tmp_path):
    """`export --checkpoint X --data D` accepts D when it is the data X was trained on, however D is spelled: the
    registered name, the official file anywhere under any name, a user CSV by its path."""
    from tsprune_edge.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
    from tsprune_edge.export_job import check_dense_checkpoint
    from tsprune_edge.models import create_model

    copy = tmp_path / "downloads" / "etth1 copy.csv"  # the official bytes under another name: recorded as ETTh1
    copy.parent.mkdir()
    shutil.copy(shared_data / "ETTh1.csv", copy)
    hours = np.datetime64("2020-01-01T00:00:00", "s") + np.arange(1000) * np.timedelta64(3600, "s")
    mine = _csv(tmp_path / "mine.csv", [str(d).replace("T", " ") for d in hours])
    (tmp_path / "other").mkdir()
    other = _csv(tmp_path / "other" / "mine.csv", [str(d).replace("T", " ") for d in hours + 3600])  # other bytes
    checkpoints = {}
    for name, data in (("etth1", str(copy)), ("mine", str(mine))):
        loaded = load_forecast_data(data, WindowSpec(96, 48, 96))
        model = create_model("dlinear", "small", pred_len=96, enc_in=len(loaded.columns), c_out=len(loaded.columns))
        checkpoints[name] = tmp_path / f"{name}.pt"
        save_checkpoint(make_checkpoint(model, loaded.describe(), loaded.scaling(), {"preset": "small"}),
                        checkpoints[name])
    recorded = {name: load_checkpoint(path).data["name"] for name, path in checkpoints.items()}
    assert recorded == {"etth1": "ETTh1", "mine": "mine.csv"}  # neither is the file's stem
    for data in ("ETTh1", str(copy), str(shared_data / "ETTh1.csv")):
        assert check_dense_checkpoint(checkpoints["etth1"], "dlinear", data) == checkpoints["etth1"]
    assert check_dense_checkpoint(checkpoints["mine"], None, str(mine)) == checkpoints["mine"]
    for checkpoint, data, recorded in ((checkpoints["etth1"], "ETTh2", "ETTh1"),
                                       (checkpoints["etth1"], str(shared_data / "ETTh2.csv"), "ETTh1"),
                                       (checkpoints["mine"], str(other), "mine.csv"),
                                       (checkpoints["mine"], "synthetic", "mine.csv")):
        refused = cli("export", "--checkpoint", str(checkpoint), "--data", data, "--out", str(tmp_path / "x"),
                      "--runs", str(tmp_path / "runs"))
        assert refused.code == 2 and refused.err == f"error: {checkpoint} was trained on {recorded}, not {data}; " \
            "drop --data\n"
    assert not (tmp_path / "x").exists()
