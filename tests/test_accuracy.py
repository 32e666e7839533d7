"""`bench --accuracy`: the bundle's test split run through the artifact on the board gives the torch model's test
MSE and MAE, because the agent cuts exactly the windows torch's evaluate scores; window by window too, against the
per-window errors the bundle records from torch."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.bench_args import FAST
from tsprune_edge.checkpoint import load_checkpoint
from tsprune_edge.data import WindowSpec, load_forecast_data
from tsprune_edge.devices import agent
from tsprune_edge.devices.bench import bundle_facts
from tsprune_edge.errors import UserError
from tsprune_edge.export.manifest import load_manifest
from tsprune_edge.export.reference import save_test_split
from tsprune_edge.report.accuracy import accuracy_fields, torch_window_errors

NO_SPLIT = "bundle has no test split: re-export it with this version of tsprune-edge"


def _split(bundle: Path, manifest: dict) -> list[tuple[list[np.ndarray], np.ndarray]]:
    """Every (inputs, target) window the agent cuts from the bundle's test.npz."""
    series, record = agent.load_test_split(str(bundle), manifest, manifest["artifacts"]["onnx"])
    return list(agent.split_windows(series, record))


def _torch_test(manifests: dict[str, dict], variant: str) -> dict:
    """The torch test metrics the prune stage recorded (dense's sit in each pruned bundle's record)."""
    if variant == "dense":
        return next(bundle_facts(m)["torch_test_dense"] for m in manifests.values() if m["pruning"])
    return bundle_facts(manifests[variant])["torch_test"]


@pytest.fixture(scope="module")
def manifests(bundles):
    return {p.name: load_manifest(p) for p in sorted(bundles.iterdir())}


@pytest.mark.parametrize("features", ["M", "S", "MS"])
def test_the_agent_cuts_the_windows_torch_evaluates(tmp_path, features):
    """Inputs and targets of every test window, bit for bit, whichever columns are inputs and targets."""
    data = load_forecast_data("synthetic", WindowSpec(96, 48, 96), features)
    record = save_test_split(data, tmp_path / "test.npz")
    n_inputs = len(data.input_columns)
    artifact = {"inputs": [{"dtype": "float32"}, {"dtype": "float32"}]}
    series, _ = agent.load_test_split(str(tmp_path), {"test_split": {"file": "test.npz", **record}}, artifact)
    windows = list(agent.split_windows(series, record))
    history, calendar, target = data.window_arrays("test", np.arange(data.n_windows("test")))
    assert len(windows) == record["windows"] == len(history) == 1657
    assert np.array_equal(np.concatenate([inputs[0] for inputs, _ in windows]), history)
    assert np.array_equal(np.concatenate([inputs[1] for inputs, _ in windows]), calendar)
    assert np.array_equal(np.concatenate([t for _, t in windows]), target)
    assert series[0].shape == (1848, n_inputs) and target.shape[-1] == (7 if features == "M" else 1)


@pytest.mark.parametrize("variant", ["dense", "unstructured-0.5"])
def test_torch_on_the_bundles_split_reproduces_its_test_metrics(bundles, manifests, variant):
    manifest = manifests[variant]
    windows = _split(bundles / variant, manifest)
    model = load_checkpoint(Path(manifest["model"]["checkpoint"])).build_model()
    with torch.no_grad():
        forecast = model(*(torch.from_numpy(np.concatenate([w[0][i] for w in windows])) for i in range(2)))
    error = (forecast - torch.from_numpy(np.concatenate([w[1] for w in windows]))).double()
    expected = _torch_test(manifests, variant)
    assert len(windows) == expected["windows"] == manifest["test_split"]["windows"]
    assert float((error ** 2).mean()) == pytest.approx(expected["mse"], rel=1e-6)
    assert float(error.abs().mean()) == pytest.approx(expected["mae"], rel=1e-6)


@pytest.mark.parametrize("variant", ["dense", "unstructured-0.5"])
def test_bundles_record_torchs_error_on_every_test_window(bundles, manifests, variant):
    """Their mean is the test MSE the prune stage recorded; the agent's verify checks the file."""
    manifest = manifests[variant]
    errors = torch_window_errors(bundles / variant, manifest)
    assert len(errors["per_window_mse"]) == manifest["test_split"]["windows"] == 1657
    assert errors["window_span"] == manifest["test_split"]["seq_len"] + manifest["test_split"]["pred_len"] == 192
    assert np.mean(errors["per_window_mse"]) == pytest.approx(_torch_test(manifests, variant)["mse"], rel=1e-6)
    verified = agent.verify_bundle(str(bundles / variant))
    assert verified["ok"] and "torch_test_errors.npy" in [f["file"] for f in verified["files"]]


def test_torch_errors_that_differ_from_the_manifest_are_refused(tmp_path, bundles, manifests):
    copy = shutil.copytree(bundles / "dense", tmp_path / "dense")
    values = np.load(copy / "torch_test_errors.npy")
    np.save(copy / "torch_test_errors.npy", values * 0.5)
    with pytest.raises(UserError, match="differs from the sha256 its manifest records; re-export the bundle"):
        torch_window_errors(copy, manifests["dense"])
    assert not agent.verify_bundle(str(copy))["ok"]
    assert torch_window_errors(copy, {**manifests["dense"], "torch_test_errors": None}) is None  # int8, older


def test_bench_accuracy_on_the_board_matches_torch(cli, tmp_path, bundles, manifests, monkeypatch):
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    results = tmp_path / "results"
    ran = cli("bench", "--device", "desktop", "--accuracy", "--artifacts", str(bundles), "--results", str(results),
              *FAST)
    assert ran.code == 0, ran.err
    (run,) = results.iterdir()
    measured = json.loads((run / "bench.json").read_text())["items"]
    probes = [i for i in measured if i["probe"]]  # the per-call probe claims no accuracy: none is measured
    assert [(i["bundle"], i["format"]) for i in probes] == [("percall", "onnx"), ("percall", "tflite")]
    assert not any(i.get("accuracy") for i in probes)
    items = [i for i in measured if not i["probe"]]
    assert [(i["bundle"], i["format"]) for i in items] == [("dense", "onnx"), ("unstructured-0.5", "onnx"),
                                                            ("dense", "tflite"), ("unstructured-0.5", "tflite")]
    boards = {}
    for item in items:
        torch_test, board = _torch_test(manifests, item["bundle"]), item["accuracy"]
        assert set(board) == {"mse", "mae", "windows"} and board["windows"] == torch_test["windows"] == 1657
        assert board["mse"] == pytest.approx(torch_test["mse"], rel=1e-4), item["id"]
        assert board["mae"] == pytest.approx(torch_test["mae"], rel=1e-4), item["id"]
        first, second = (json.loads((run / "raw" / f"{item['id']}__r{n}.json").read_text()) for n in (1, 2))
        assert first["accuracy"]["seconds"] > 0 and "accuracy" not in second  # one pass, in round 1 only
        per_window = first["accuracy"]["per_window_mse"]
        assert len(per_window) == 1657 and first["accuracy"]["window_span"] == 96 + 96
        assert np.mean(per_window) == pytest.approx(board["mse"], rel=1e-6)
        torch_windows = torch_window_errors(bundles / item["bundle"], manifests[item["bundle"]])["per_window_mse"]
        assert np.allclose(per_window, torch_windows, rtol=1e-3, atol=1e-6), item["id"]
        boards[item["bundle"], item["format"]] = first["accuracy"]
    for fmt in ("onnx", "tflite"):  # the interval from the board's outputs is torch's, to float32 rounding
        torch_errors = [torch_window_errors(bundles / v, manifests[v]) for v in ("unstructured-0.5", "dense")]
        on_board = accuracy_fields(boards["unstructured-0.5", fmt], boards["dense", fmt], *torch_errors)
        in_torch = accuracy_fields(None, None, *torch_errors)
        assert (on_board["accuracy_source"], in_torch["accuracy_source"]) == ("board", "torch")
        for key in ("mse_change", "mse_change_low", "mse_change_high"):
            assert on_board[key] == pytest.approx(in_torch[key], abs=1e-4), (fmt, key)

    out = tmp_path / "report"
    reported = cli("report", str(run), "--out", str(out))
    assert reported.code == 0, reported.err
    reported_rows = json.loads((out / "report.json").read_text())["rows"]
    rows = [r for r in reported_rows if r["variant"] != "percall"]
    assert all(r["board_mse"] is None for r in reported_rows if r["variant"] == "percall")
    assert [(r["board_mse"], r["board_mae"]) for r in rows] == [(i["accuracy"]["mse"], i["accuracy"]["mae"])
                                                                for i in items]
    with open(out / "report.csv", newline="") as handle:
        table = [r for r in csv.DictReader(handle) if r["variant"] != "percall"]
    assert [float(r["board_mse"]) for r in table] == [r["board_mse"] for r in rows]
    assert [float(r["board_mae"]) for r in table] == [r["board_mae"] for r in rows]
    markdown = (out / "report.md").read_text()
    assert "| torch MSE | board MSE |" in markdown
    for row in rows:
        assert f"| {row['torch_mse']:.4f} | {row['board_mse']:.4f} |" in markdown


def test_a_bundle_without_a_test_split_says_so_and_is_still_timed(cli, tmp_path, bundles, monkeypatch):
    """A bundle exported before test splits existed: verify passes, timing succeeds, accuracy names the fix."""
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    old = shutil.copytree(bundles / "dense", tmp_path / "artifacts" / "dense")
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["test_split"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    (old / "test.npz").unlink()
    results = tmp_path / "results"
    ran = cli("bench", "--device", "desktop", "--accuracy", "--runtime", "onnxruntime", "--artifacts",
              str(old.parent), "--results", str(results), *FAST)
    assert ran.code == 0, ran.err
    (run,) = results.iterdir()
    (item,) = json.loads((run / "bench.json").read_text())["items"]
    assert item["rounds"] == 2 and not item["errors"] and item["correct"] and item["p50_s"] > 0
    assert item["accuracy"] == {"error": NO_SPLIT}
    reported = cli("report", str(run), "--out", str(tmp_path / "report"))
    assert reported.code == 0, reported.err
    (row,) = json.loads((tmp_path / "report" / "report.json").read_text())["rows"]
    assert row["board_mse"] is None and row["board_mae"] is None
