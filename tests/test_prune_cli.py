"""`tsprune-edge prune` end to end on real data: files, reported figures, masks kept through fine-tuning,
pruned checkpoints that load and evaluate, and one-line refusals of bad input."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

from tests.paths import SHARED_DATA
from tsprune_edge.checkpoint import load_checkpoint
from tsprune_edge.export.artifacts import export_onnx, export_tflite
from tsprune_edge.export.runtimes import run_onnx, run_tflite
from tsprune_edge.prune.masks import Masks, prunable_units
from tsprune_edge.workflow import train_to_dir

WINDOW = ("--pred-len", "24", "--seq-len", "36", "--label-len", "18")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Dense transformer and DLinear checkpoints trained one epoch on the real illness data."""
    if not (SHARED_DATA / "national_illness.csv").is_file():
        pytest.fail(f"the benchmark datasets are missing: expected {SHARED_DATA}/national_illness.csv")
    paths = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TSPRUNE_EDGE_DATA_DIR", str(SHARED_DATA))
        for name in ("transformer", "dlinear"):
            out = tmp_path_factory.mktemp(name)
            train_to_dir(model=name, data="illness", pred_len=24, seq_len=36, label_len=18, preset="small",
                         epochs=1, out=out)
            paths[name] = out / "model.pt"
    return paths


def test_structured_prune_with_finetuning_writes_a_loadable_pruned_model(cli, shared_data, trained, tmp_path):
    out = tmp_path / "pruned"
    result = cli("prune", str(trained["transformer"]), "--method", "structured", "--sparsity", "0.5",
                 "--finetune-epochs", "1", "--out", str(out))
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "pruning.json"]
    report = json.loads((out / "pruning.json").read_text())
    assert report["method"] == "structured" and report["requested_sparsity"] == 0.5
    assert report["mac_reduction"] >= 0.4 and report["after"]["macs"] < report["before"]["macs"]
    assert report["achieved"]["heads"] == {"encoder.0.attention": 2, "encoder.1.attention": 2,
                                           "decoder.0.self_attention": 2, "decoder.0.cross_attention": 2}
    assert set(report["achieved"]["ffn_widths"].values()) == {128}
    for stage in ("dense", "pruned", "finetuned"):
        assert report["test"][stage]["mse"] > 0 and report["test"][stage]["windows"] == 170
    assert report["finetune"]["epochs"] == 1
    rows = {row["layer"]: row for row in report["layers"]}
    assert rows["encoder.0.ffn.linear1"]["shape_before"] == [256, 64]
    assert rows["encoder.0.ffn.linear1"]["shape"] == [128, 64] and rows["encoder.0.ffn.linear1"]["pruned"]
    assert not rows["projection"]["pruned"]

    checkpoint = load_checkpoint(out / "model.pt")
    assert checkpoint.pruning["method"] == "structured" and checkpoint.architecture is not None
    model = checkpoint.build_model()
    assert model.encoder[0].attention.n_heads == 2 and model.encoder[0].ffn.linear1.out_features == 128
    evaluated = cli("evaluate", str(out / "model.pt"))
    assert evaluated.code == 0, evaluated.err
    assert json.loads((out / "evaluation-test.json").read_text())["mse"] == \
        pytest.approx(report["test"]["finetuned"]["mse"], rel=1e-6)


def test_unstructured_masks_stay_in_force_through_finetuning(cli, shared_data, trained, tmp_path):
    out = tmp_path / "pruned"
    result = cli("prune", str(trained["transformer"]), "--method", "unstructured", "--sparsity", "0.6",
                 "--finetune-epochs", "1", "--out", str(out))
    assert result.code == 0, result.err
    report = json.loads((out / "pruning.json").read_text())
    assert abs(report["achieved"]["sparsity_of_prunable"] - 0.6) <= 0.005
    assert report["test"]["finetuned"]["mse"] != report["test"]["pruned"]["mse"]  # the weights did train

    dense = load_checkpoint(trained["transformer"]).build_model()
    masks = Masks(dense, "unstructured")
    masks.compute(0.6)
    tuned = load_checkpoint(out / "model.pt").build_model()
    tuned_weights = {u.name: u.tensors[0] for u in prunable_units(tuned)}
    for unit in masks.units:  # the zeros chosen before fine-tuning are exactly the zeros after it
        assert torch.equal(tuned_weights[unit.name] == 0, masks.masks[unit.name] == 0), unit.name
    assert tuned.projection.weight.count_nonzero() == tuned.projection.weight.numel()


def test_gradual_schedule_ends_at_the_target(cli, shared_data, trained, tmp_path):
    out = tmp_path / "pruned"
    result = cli("prune", str(trained["transformer"]), "--method", "unstructured", "--sparsity", "0.8",
                 "--finetune-epochs", "2", "--gradual", "--out", str(out))
    assert result.code == 0, result.err
    report = json.loads((out / "pruning.json").read_text())
    assert abs(report["achieved"]["sparsity_of_prunable"] - 0.8) <= 0.005
    assert report["finetune"]["runs"][0]["epochs_run"] == 2


def test_dlinear_structured_pruning_drops_input_lags(cli, shared_data, trained, tmp_path):
    out = tmp_path / "pruned"
    assert cli("prune", str(trained["dlinear"]), "--sparsity", "0.5", "--out", str(out)).code == 0
    report = json.loads((out / "pruning.json").read_text())
    assert report["achieved"]["input_lags"] == {"seasonal_linear": 16, "trend_linear": 16}  # 36 -> 18 -> 16
    assert report["mac_reduction"] >= 0.4
    model = load_checkpoint(out / "model.pt").build_model()
    assert model.seasonal_linear.lags.shape == (16,) and model.seasonal_linear.layers[0].in_features == 16


def test_structured_width_through_the_cli_removes_most_macs_and_exports(cli, shared_data, trained, tmp_path):
    out = tmp_path / "pruned"
    result = cli("prune", str(trained["transformer"]), "--method", "structured", "--dims", "heads,ffn,width",
                 "--sparsity", "0.5", "--out", str(out))
    assert result.code == 0, result.err
    report = json.loads((out / "pruning.json").read_text())
    assert report["mac_reduction"] >= 0.6
    assert set(report["achieved"]["widths"].values()) == {32}  # d_model 64 -> 32, a multiple of --round-to 8
    model = load_checkpoint(out / "model.pt").build_model()
    assert model.encoder[0].norm1.normalized_shape == (32,)
    cfg = model.config
    history = torch.randn(1, cfg.seq_len, cfg.enc_in)
    calendar = torch.ones(1, cfg.seq_len + cfg.pred_len, len(cfg.calendar_features))
    with torch.no_grad():
        expected = model(history, calendar).numpy()
    for export, run, filename in ((export_onnx, run_onnx, "model.onnx"), (export_tflite, run_tflite, "model.tflite")):
        artifact = export(model, (history, calendar), tmp_path / filename)
        assert abs(run(artifact, history.numpy(), calendar.numpy()) - expected).max() <= 1e-4, filename


def test_study_method_prunes_the_width_to_the_requested_parameter_sparsity(cli, shared_data, trained, tmp_path):
    out = tmp_path / "pruned"
    result = cli("prune", str(trained["transformer"]), "--method", "study", "--sparsity", "0.5", "--out", str(out))
    assert result.code == 0, result.err
    report = json.loads((out / "pruning.json").read_text())
    assert abs(report["parameter_reduction"] - 0.5) <= 0.005, report["parameter_reduction"]
    assert report["achieved"]["steps"] >= 50
    widths = report["achieved"]["widths"]
    assert max(widths.values()) < 64, widths  # the width is pruned (the study does not round it)
    assert load_checkpoint(out / "model.pt").build_model().encoder_norm.normalized_shape == (widths["encoder_norm"],)


@pytest.mark.parametrize("args, message", [
    (("--sparsity", "1.0"), r"^error: --sparsity must be in \[0, 1\), got 1$"),
    (("--sparsity", "-0.1"), r"^error: --sparsity must be in \[0, 1\), got -0.1$"),
    (("--method", "magic"), r"^error: unknown pruning method 'magic'; choose one of .*structured.*$"),
    (("--method", "nm", "--nm", "4:4"), r"^error: N:M sparsity needs 1 <= N < M, got 4:4; for example --nm 2:4$"),
    (("--method", "nm", "--nm", "3:2"), r"^error: N:M sparsity needs 1 <= N < M, got 3:2.*$"),
    (("--method", "nm", "--nm", "two:four"), r"^error: --nm takes N:M, for example 2:4; got 'two:four'$"),
    (("--sparsity", "0.98"), r"^error: --sparsity 0.98 would remove every one of the 256 neurons of "
                             r"encoder.0.ffn.linear1 rounded to multiples of 8; choose a lower --sparsity or "
                             r"--round-to$"),
    (("--round-to", "0"), r"^error: --round-to must be at least 1, got 0$"),
    (("--steps", "2", "--method", "unstructured"), r"^error: --steps applies to structured pruning; .*$"),
    (("--method", "unstructured", "--gradual"), r"^error: --gradual ramps the sparsity over fine-tuning: .*$"),
    (("--ranking", "sideways"), r"^error: --ranking must be uniform or global, got 'sideways'$"),
    (("--dims", "heads,depth"), r"^error: --dims takes a comma-separated subset of heads,ffn,width; .*$"),
    (("--width-sparsity", "0.25"), r"^error: --width-sparsity needs width among --dims, .*$"),
    (("--dims", "width", "--width-sparsity", "0.95"), r"^error: width sparsity 0.95 would remove all 64 .*$"),
    (("--method", "study", "--dims", "width"), r"^error: --dims and --width-sparsity apply to --method structured"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(cli, shared_data, trained, tmp_path, args, message):
    out = tmp_path / "pruned"
    result = cli("prune", str(trained["transformer"]), *args, "--out", str(out))
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert re.match(message, lines[0]), lines[0]
    assert not out.exists()


def test_dlinear_width_is_refused_with_the_reason(cli, shared_data, trained, tmp_path):
    result = cli("prune", str(trained["dlinear"]), "--dims", "ffn,width", "--out", str(tmp_path / "pruned"))
    assert result.code == 2
    assert result.err.strip() == ("error: dlinear has no model width d_model to prune (it maps each series along "
                                  "time with linear layers); drop width from --dims")
    assert not (tmp_path / "pruned").exists()


def test_an_already_pruned_checkpoint_is_refused(cli, shared_data, trained, tmp_path):
    first = tmp_path / "once"
    assert cli("prune", str(trained["dlinear"]), "--out", str(first)).code == 0
    result = cli("prune", str(first / "model.pt"), "--out", str(tmp_path / "twice"))
    assert result.code == 2
    assert result.err.strip() == (f"error: {first / 'model.pt'} is already pruned (structured); prune the dense "
                                  "checkpoint that `tsprune-edge train` wrote")
    assert not (tmp_path / "twice").exists()


def test_prune_for_a_board_rounds_widths_to_its_profile_unless_round_to_says_otherwise(cli, shared_data, trained,
                                                                                        tmp_path):
    """rpi4's profile says 4: at sparsity 0.45 the FFNs keep 256 - 115 = 141 neurons, 140 for the board (not a
    multiple of 8), 136 with --round-to 8 or with neither option."""
    runs = {"board": ("--device", "rpi4"), "option": ("--device", "rpi4", "--round-to", "8"), "default": ()}
    recorded = {}
    for name, args in runs.items():
        result = cli("prune", str(trained["transformer"]), "--sparsity", "0.45", *args, "--out", str(tmp_path / name))
        assert result.code == 0, result.err
        report = json.loads((tmp_path / name / "pruning.json").read_text())
        recorded[name] = (set(report["achieved"]["ffn_widths"].values()), report["round_to"])
        assert load_checkpoint(tmp_path / name / "model.pt").pruning["round_to"] == report["round_to"]
    assert recorded == {"board": ({140}, {"round_to": 4, "source": "profile rpi4"}),
                        "option": ({136}, {"round_to": 8, "source": "option"}),
                        "default": ({136}, {"round_to": 8, "source": "default"})}


def test_an_unknown_device_is_one_line_before_any_work(cli, shared_data, trained, tmp_path, monkeypatch):
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    out = tmp_path / "pruned"
    result = cli("prune", str(trained["transformer"]), "--device", "toaster", "--out", str(out))
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert result.err.startswith("error: unknown device 'toaster'; choose one of rpi4, jetson-nano, desktop")
    assert not out.exists()


def test_fine_tuned_pruning_is_compared_with_dense_fine_tuned_the_same(cli, shared_data, trained, tmp_path):
    """The dense reference gets the pruned model's fine-tuning (epochs, lr, seed): in memory from `prune`, or once
    from `finetune_dense` for several variants, with the same result; a reference fine-tuned otherwise is refused."""
    from tsprune_edge.errors import UserError
    from tsprune_edge.prune.stage import PruneRequest, finetune_dense, prune_to_dir

    out = tmp_path / "pruned"
    result = cli("prune", str(trained["dlinear"]), "--method", "unstructured", "--finetune-epochs", "1",
                 "--out", str(out))
    assert result.code == 0, result.err
    report = json.loads((out / "pruning.json").read_text())
    budget = report["training_budget"]
    assert budget["dense"] == budget["pruned"] == {"epochs": 1, "finetune_epochs": 1, "finetune_lr": 0.005,
                                                   "text": "1 epoch + 1 fine-tune epoch"}
    assert budget["comparison"] == "dense and pruned: 1 epoch + 1 fine-tune epoch each"
    assert "(dense and pruned: 1 epoch + 1 fine-tune epoch each)" in result.out
    test = report["test"]
    assert test["dense"]["mse"] != test["source"]["mse"]  # dense was trained one more epoch
    assert report["round_to"] is None  # a mask method: no widths to round

    request = PruneRequest(method="unstructured", sparsity=0.5, finetune_epochs=1)
    reference = finetune_dense(trained["dlinear"], request, tmp_path / "dense-finetuned")
    assert reference["training_budget"] == budget["dense"]
    assert reference["test"]["mse"] == pytest.approx(test["dense"]["mse"], rel=1e-6)
    with_reference = prune_to_dir(trained["dlinear"], request, tmp_path / "with-reference",
                                  reference=tmp_path / "dense-finetuned" / "model.pt")
    assert with_reference["test"]["dense"]["mse"] == pytest.approx(test["dense"]["mse"], rel=1e-6)
    assert with_reference["test"]["finetuned"]["mse"] == pytest.approx(test["finetuned"]["mse"], rel=1e-6)
    with pytest.raises(UserError, match="is not .* fine-tuned as this pruning fine-tunes"):
        prune_to_dir(trained["dlinear"], dataclasses.replace(request, finetune_epochs=2), tmp_path / "refused",
                     reference=tmp_path / "dense-finetuned" / "model.pt")
    assert not (tmp_path / "refused").exists()
