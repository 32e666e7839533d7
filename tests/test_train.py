"""Training, checkpoints and evaluation on real data, through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tsprune_edge.checkpoint import load_checkpoint
from tsprune_edge.models import available_models
from tsprune_edge.models.registry import TrainSchedule
from tsprune_edge.train import learning_rate


def test_published_learning_rate_schedules():
    halve = TrainSchedule(1e-4, 32, 10, "halve")
    assert [learning_rate(halve, e) for e in (1, 2, 3)] == pytest.approx([1e-4, 5e-5, 2.5e-5])
    hold = TrainSchedule(1e-4, 128, 100, "hold3")
    assert [learning_rate(hold, e) for e in (1, 3, 4, 5)] == pytest.approx([1e-4, 1e-4, 9e-5, 8.1e-5])


def test_train_then_evaluate_reproduces_the_metrics(cli, shared_data, tmp_path):
    out = tmp_path / "run"
    result = cli("train", "--model", "patchtst", "--data", "illness", "--pred-len", "24", "--seq-len", "36",
                 "--label-len", "18", "--epochs", "2", "--out", str(out))
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.pt"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["name"] == "illness" and metrics["data"]["pred_len"] == 24
    assert metrics["training"]["epochs_run"] == 2 and len(metrics["training"]["history"]) == 2
    assert metrics["test"]["windows"] == 170

    checkpoint = load_checkpoint(out / "model.pt")  # weights_only=True inside
    assert checkpoint.model_name == "patchtst" and checkpoint.config["seq_len"] == 36
    assert checkpoint.scaling["columns"][-1] == "OT" and len(checkpoint.scaling["mean"]) == 7
    assert torch.load(out / "model.pt", weights_only=True)["format"] == "tsprune-edge/checkpoint"

    evaluated = cli("evaluate", str(out / "model.pt"))
    assert evaluated.code == 0, evaluated.err
    again = json.loads((out / "evaluation-test.json").read_text())
    assert again["mse"] == pytest.approx(metrics["test"]["mse"], rel=1e-6)
    assert again["mae"] == pytest.approx(metrics["test"]["mae"], rel=1e-6)
    assert f"MSE {metrics['test']['mse']:.4f}" in evaluated.out


def test_training_is_reproducible_with_a_seed(cli, shared_data, tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert cli("train", "--model", "patchtst", "--data", "illness", "--pred-len", "24", "--seq-len", "36",
                   "--label-len", "18", "--epochs", "1", "--seed", "7", "--out", str(out)).code == 0
        runs.append(json.loads((out / "metrics.json").read_text())["test"]["mse"])
    assert runs[0] == runs[1]


def test_evaluate_refuses_a_changed_dataset(cli, shared_data, tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_bytes((shared_data / "national_illness.csv").read_bytes())
    out = tmp_path / "run"
    assert cli("train", "--model", "patchtst", "--data", str(csv), "--pred-len", "24", "--seq-len", "36",
               "--label-len", "18", "--epochs", "1", "--out", str(out)).code == 0
    csv.write_text(csv.read_text().replace("176569", "176570"))
    result = cli("evaluate", str(out / "model.pt"))
    assert result.code == 2 and "changed since the checkpoint was made" in result.err


@pytest.mark.slow
def test_patchtst_small_reaches_published_accuracy_on_etth1(cli, shared_data, tmp_path):
    """Acceptance: PatchTST small preset, ETTh1 pred_len 96, test MSE <= 0.45 (published ~0.414)."""
    out = tmp_path / "run"
    result = cli("train", "--model", "patchtst", "--data", "ETTh1", "--pred-len", "96", "--epochs", "10",
                 "--out", str(out))
    assert result.code == 0, result.err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["mse"] <= 0.45
    assert metrics["test"]["mse"] < metrics["naive_test"]["mse"]


@pytest.mark.parametrize("name", available_models())
def test_every_model_trains_and_evaluates_through_the_cli(name, cli, shared_data, tmp_path):
    """`tsprune-edge train --model M` works for every registered name (one epoch on the smallest real dataset)."""
    out = tmp_path / name
    result = cli("train", "--model", name, "--data", "illness", "--pred-len", "24", "--seq-len", "36",
                 "--label-len", "18", "--epochs", "1", "--out", str(out))
    assert result.code == 0, result.err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == name and metrics["training"]["epochs_run"] == 1
    assert np.isfinite(metrics["test"]["mse"])
    evaluated = cli("evaluate", str(out / "model.pt"))
    assert evaluated.code == 0, evaluated.err
    assert json.loads((out / "evaluation-test.json").read_text())["mse"] == pytest.approx(metrics["test"]["mse"])


def _dlinear_on_illness():
    from tsprune_edge.data.forecast import WindowSpec, load_forecast_data
    from tsprune_edge.models import create_model

    data = load_forecast_data("illness", WindowSpec(36, 18, 24), "M", None)
    model = create_model("dlinear", "small", seq_len=36, label_len=18, pred_len=24, enc_in=7, c_out=7,
                         calendar_features=data.calendar_names)
    return model, data


@pytest.mark.parametrize("distill", [0.25, 0.5])
def test_distillation_weighs_the_target_and_the_teachers_forecast(shared_data, distill):
    """Loss = (1 - d) * MSE(target) + d * MSE(teacher). With lr 0 the student never moves: against a teacher that is
    its own copy the second term is 0, so each epoch's loss is exactly (1 - d) times the plain one; against a
    teacher that forecasts 0 it is the plain loss plus d * (mean square forecast - plain loss)."""
    import copy

    from torch import nn

    from tsprune_edge.train import train

    model, data = _dlinear_on_illness()
    frozen = TrainSchedule(0.0, 32, 1, "halve")

    def epoch_loss(**teaching) -> float:
        student = copy.deepcopy(model)
        return train(student, data, frozen, **teaching).history[0]["train_loss"]

    plain = epoch_loss()
    assert epoch_loss(teacher=copy.deepcopy(model), distill=distill) == pytest.approx((1 - distill) * plain, rel=1e-6)
    zero = copy.deepcopy(model)
    for parameter in zero.parameters():
        nn.init.zeros_(parameter)
    square = 0.0
    batches = 0
    with torch.no_grad():
        for history, calendar, _ in data.batches("train", 32, shuffle=True, rng=np.random.default_rng(2021)):
            square, batches = square + float((model(history, calendar) ** 2).mean()), batches + 1
    assert epoch_loss(teacher=zero, distill=distill) == pytest.approx(
        (1 - distill) * plain + distill * square / batches, rel=1e-6)
