"""`tsprune-edge export` as a user meets it: the default job from nothing, and one-line refusals of bad input."""

from __future__ import annotations

import json

import pytest

from tests.refusals import assert_one_line_error


def test_default_export_from_nothing(cli, tmp_path):
    """The acceptance command (one training epoch instead of three): dense and structured bundles, both formats,
    every runtime within 1e-4 of torch."""
    out, runs = tmp_path / "export", tmp_path / "runs"
    result = cli("export", "--sparsity", "0.5", "--epochs", "1", "--out", str(out), "--runs", str(runs))
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == ["dense", "percall", "structured-0.5"]
    for variant in ("dense", "structured-0.5"):
        manifest = json.loads((out / variant / "manifest.json").read_text())
        assert set(manifest["artifacts"]) == {"onnx", "tflite"}
        for artifact in manifest["artifacts"].values():
            assert (out / variant / artifact["file"]).is_file()
            assert artifact["validation"] and all(v["max_abs_error"] <= 1e-4 for v in artifact["validation"])
        assert variant in result.out
    pruned = json.loads((out / "structured-0.5" / "manifest.json").read_text())
    assert pruned["pruning"]["finetune"]["epochs"] == 1
    assert f"{pruned['model']['macs']:,}" in result.out
    assert (runs / "dense" / "model.pt").is_file() and (runs / "structured-0.5" / "model.pt").is_file()
    # fair accuracy: the exported dense is dense fine-tuned as the pruned model was, and the table says so
    dense = json.loads((out / "dense" / "manifest.json").read_text())
    assert dense["model"]["checkpoint"] == str(runs / "dense-finetuned" / "model.pt")
    assert dense["training"] == pruned["training"] == {"epochs": 1, "finetune_epochs": 1, "finetune_lr": 1e-4,
                                                       "text": "1 epoch + 1 fine-tune epoch"}
    assert pruned["pruning"]["training_budget"]["comparison"] == "dense and pruned: 1 epoch + 1 fine-tune epoch each"
    assert "dense and pruned: 1 epoch + 1 fine-tune epoch each" in result.out
    assert f"{pruned['pruning']['test']['dense']['mse']:.4f}" in result.out
    assert pruned["pruning"]["round_to"] == {"round_to": 8, "source": "default"}


@pytest.fixture(scope="module")
def dlinear_checkpoint(tmp_path_factory):
    from tsprune_edge.workflow import train_to_dir

    out = tmp_path_factory.mktemp("dlinear")
    train_to_dir(model="dlinear", data="synthetic", pred_len=96, preset="small", epochs=1, out=out)
    return out / "model.pt"


@pytest.mark.parametrize("args, fragments", [
    (["--format", "onnx,coreml"], ["unknown format coreml", "onnx, tflite"]),
    (["--method", "structured,magic"], ["unknown pruning method 'magic'"]),
    (["--sparsity", "1.5"], ["--sparsity must be in [0, 1)"]),
    (["--quantize", "int4"], ["unknown quantization 'int4'", "int8"]),
    (["--device", "toaster"], ["unknown device 'toaster'", "rpi4"]),
])
def test_bad_options_are_refused_before_any_work(cli, tmp_path, monkeypatch, args, fragments):
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    out, runs = tmp_path / "export", tmp_path / "runs"
    result = cli("export", *args, "--out", str(out), "--runs", str(runs))
    assert_one_line_error(result, *fragments)
    assert not out.exists() and not runs.exists()


def test_unwritable_output_is_refused(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    result = cli("export", "--out", str(blocker / "export"), "--runs", str(tmp_path / "runs"))
    assert_one_line_error(result, "cannot write to", "choose another --out")
    assert not (tmp_path / "runs").exists()


def test_checkpoint_of_the_wrong_model_is_refused(cli, tmp_path, dlinear_checkpoint):
    out = tmp_path / "export"
    result = cli("export", "--checkpoint", str(dlinear_checkpoint), "--model", "transformer", "--out", str(out),
                 "--runs", str(tmp_path / "runs"))
    assert_one_line_error(result, "holds a dlinear model, not transformer")
    assert not out.exists()


def test_pruned_checkpoint_is_refused_with_its_source(cli, tmp_path, dlinear_checkpoint):
    from tsprune_edge.prune.stage import PruneRequest, prune_to_dir

    prune_to_dir(dlinear_checkpoint, PruneRequest(method="unstructured", sparsity=0.5), tmp_path / "pruned")
    out = tmp_path / "export"
    result = cli("export", "--checkpoint", str(tmp_path / "pruned" / "model.pt"), "--out", str(out),
                 "--runs", str(tmp_path / "runs"))
    assert_one_line_error(result, "is already pruned (unstructured)", str(dlinear_checkpoint))
    assert not out.exists()


def test_export_from_a_checkpoint_onnx_only(cli, tmp_path, dlinear_checkpoint):
    out = tmp_path / "export"
    result = cli("export", "--checkpoint", str(dlinear_checkpoint), "--method", "unstructured", "--format", "onnx",
                 "--finetune-epochs", "0", "--out", str(out), "--runs", str(tmp_path / "runs"))
    assert result.code == 0, result.err
    for variant in ("dense", "unstructured-0.5"):
        manifest = json.loads((out / variant / "manifest.json").read_text())
        assert list(manifest["artifacts"]) == ["onnx"] and not (out / variant / "model.tflite").exists()
        assert manifest["model"]["name"] == "dlinear"


def test_export_for_a_board_from_a_checkpoint_fine_tunes_a_copy_of_dense(cli, tmp_path, dlinear_checkpoint):
    """--device rpi4 prunes to its round_to 4 (96 lags less 52 leave 44, 40 at the default 8), the manifest says
    so, and the user's checkpoint is untouched: its fine-tuned copy is the exported dense reference."""
    from tsprune_edge.data.fetch import sha256_of

    before = sha256_of(dlinear_checkpoint)
    out, runs = tmp_path / "export", tmp_path / "runs"
    result = cli("export", "--checkpoint", str(dlinear_checkpoint), "--device", "rpi4", "--sparsity", "0.55",
                 "--format", "onnx", "--out", str(out), "--runs", str(runs))
    assert result.code == 0, result.err
    pruned = json.loads((out / "structured-0.55" / "manifest.json").read_text())
    assert pruned["pruning"]["round_to"] == {"round_to": 4, "source": "profile rpi4"}
    assert pruned["pruning"]["achieved"]["input_lags"] == {"seasonal_linear": 44, "trend_linear": 44}
    dense = json.loads((out / "dense" / "manifest.json").read_text())
    assert sha256_of(dlinear_checkpoint) == before
    assert dense["model"]["checkpoint"] == str(runs / "dense-finetuned" / "model.pt")
    assert dense["training"] == pruned["training"] and dense["training"]["finetune_epochs"] == 1
    assert pruned["pruning"]["source_checkpoint"] == str(dlinear_checkpoint)


def test_a_checkpoint_where_export_writes_is_refused(cli, tmp_path, dlinear_checkpoint):
    inside = tmp_path / "runs" / "dense-finetuned" / "model.pt"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(dlinear_checkpoint.read_bytes())
    result = cli("export", "--checkpoint", str(inside), "--out", str(tmp_path / "export"),
                 "--runs", str(tmp_path / "runs"))
    assert_one_line_error(result, f"--checkpoint {inside} lies in", "choose another --runs")
    assert inside.read_bytes() == dlinear_checkpoint.read_bytes() and not (tmp_path / "export").exists()
