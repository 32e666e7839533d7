"""Wide datasets in the published format of electricity (321 variables) and traffic (862): recognised by name and
shape (no sha256 is known for them), split as the literature does, and carried at full width through train, export
and bench with the agent's accuracy pass. The real files are not in ../shared/data: the tests write files of the
same shape and date format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tsprune_edge.data import WindowSpec, load_forecast_data
from tsprune_edge.data.synthetic import write_wide_csv


@pytest.mark.parametrize("name, variables, rows, counts", [
    ("electricity", 321, 26304, (18221, 2537, 5165)),
    ("traffic", 862, 17544, (12089, 1661, 3413)),
])
def test_published_shape_is_recognised_and_split_as_the_literature(tmp_path, name, variables, rows, counts):
    path = write_wide_csv(tmp_path / f"{name}.csv", variables, rows)
    assert path.read_text().partition("\n")[0] == ",".join(["date", *map(str, range(variables - 1)), "OT"])
    data = load_forecast_data(str(path), WindowSpec(96, 48, 96))
    assert tuple(data.n_windows(s) for s in ("train", "val", "test")) == counts
    how = (f"registered {name} recognised by file name and shape ({rows} rows x {variables} variables; "
           "no sha256 is known for it)")
    assert data.split == {"rule": "70/10/20 by rows", "source": how} and data.notices == (f"{name}.csv: {how}",)
    assert data.source.name == name and data.step_seconds == 3600
    (tmp_path / "other").mkdir()
    other = write_wide_csv(tmp_path / "other" / f"{name}.csv", variables, 2000)
    assert load_forecast_data(str(other), WindowSpec(96, 48, 96)).split["source"] == (
        f"CSV named like registered {name} but its shape differs")


@pytest.mark.parametrize("variables", [321, 862])
def test_full_width_trains_exports_and_benches(cli, tmp_path, monkeypatch, variables):
    """Short series and the cheapest model (the width is what matters here); benchmarks/wide_datasets.py times
    dlinear, itransformer and patchtst on the full files and carries every model through the CLI (--cli-pass)."""
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    path = write_wide_csv(tmp_path / f"wide{variables}.csv", variables, 1000)
    trained = cli("train", "--model", "dlinear", "--data", str(path), "--epochs", "1", "--batch-size", "64",
                  "--out", str(tmp_path / "run"))
    assert trained.code == 0, trained.err
    bundle = _export_dense_and_unstructured(cli, tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert len(manifest["data"]["columns"]) == len(manifest["scaler"]["mean"]) == variables
    samples, test = np.load(bundle / "samples.npz"), np.load(bundle / "test.npz")
    assert samples["history"].shape[1:] == (96, variables) and samples["expected"].shape[1:] == (96, variables)
    assert test["values"].shape == (int(1000 * 0.2) + 96, variables)
    items = _bench_with_accuracy(cli, tmp_path)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    dense = items["dense"]
    assert dense["correct"] and not dense["errors"]
    assert dense["accuracy"]["windows"] == metrics["test"]["windows"] == int(1000 * 0.2) - 96 + 1
    assert dense["accuracy"]["mse"] == pytest.approx(metrics["test"]["mse"], rel=1e-3)


def test_a_transformer_at_862_variables_trains_exports_and_benches(cli, tmp_path, monkeypatch):
    """iTransformer (attention across the 862 variates: the cost grows with the square of the width) through train,
    export and bench with the accuracy pass. A short horizon lets the file be short, which keeps the test quick: 240
    rows is the fewest whose validation split (24 rows + seq_len) holds one window of seq_len + pred_len."""
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    rows, seq_len, pred_len, variables = 240, 48, 24, 862
    path = write_wide_csv(tmp_path / "traffic-like.csv", variables, rows)
    trained = cli("train", "--model", "itransformer", "--data", str(path), "--seq-len", str(seq_len), "--pred-len",
                  str(pred_len), "--epochs", "1", "--out", str(tmp_path / "run"))
    assert trained.code == 0, trained.err
    bundle = _export_dense_and_unstructured(cli, tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    signature = manifest["artifacts"]["onnx"]
    assert {i["name"]: i["shape"][1:] for i in signature["inputs"]}["history"] == [seq_len, variables]
    assert {o["name"]: o["shape"][1:] for o in signature["outputs"]} == {"forecast": [pred_len, variables]}
    samples, test = np.load(bundle / "samples.npz"), np.load(bundle / "test.npz")
    assert samples["history"].shape[1:] == (seq_len, variables)
    assert samples["expected"].shape[1:] == (pred_len, variables)
    assert test["values"].shape == (int(rows * 0.2) + seq_len, variables) and np.isfinite(test["values"]).all()
    assert manifest["test_split"]["windows"] == int(rows * 0.2) - pred_len + 1
    items = _bench_with_accuracy(cli, tmp_path)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for name in ("dense", "unstructured-0.5"):
        board = items[name]["accuracy"]
        assert items[name]["correct"] and not items[name]["errors"]
        assert board["windows"] == int(rows * 0.2) - pred_len + 1 and np.isfinite([board["mse"], board["mae"]]).all()
    assert items["dense"]["accuracy"]["mse"] == pytest.approx(metrics["test"]["mse"], rel=1e-3)


def _export_dense_and_unstructured(cli, tmp_path: Path) -> Path:
    """run/model.pt exported (ONNX) with an unstructured-0.5 variant beside it; returns the dense bundle."""
    exported = cli("export", "--checkpoint", str(tmp_path / "run" / "model.pt"), "--method", "unstructured",
                   "--finetune-epochs", "0", "--format", "onnx", "--out", str(tmp_path / "export"),
                   "--runs", str(tmp_path / "runs"))
    assert exported.code == 0, exported.err
    return tmp_path / "export" / "dense"


def _bench_with_accuracy(cli, tmp_path: Path) -> dict[str, dict]:
    """One quick round of every exported bundle on this machine with the accuracy pass; items by bundle."""
    benched = cli("bench", "--device", "desktop", "--runtime", "onnxruntime", "--accuracy",
                  "--artifacts", str(tmp_path / "export"), "--results", str(tmp_path / "results"),
                  "--rounds", "1", "--max-rounds", "1", "--min-time", "0.05", "--min-iters", "3")
    assert benched.code == 0, benched.err
    (run,) = (tmp_path / "results").iterdir()
    return {item["bundle"]: item for item in json.loads((run / "bench.json").read_text())["items"]}
