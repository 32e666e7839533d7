"""The command line as a user meets it, and the README's main job."""

from __future__ import annotations

import json

import pytest


def test_help_lists_the_commands(cli):
    result = cli("--help")
    assert result.code == 0
    for command in ("data", "train", "evaluate", "models", "prune", "export", "pipeline"):
        assert command in result.out


def test_models_lists_the_registry(cli):
    result = cli("models")
    assert result.code == 0
    assert "transformer" in result.out and "patchtst" in result.out


def test_pipeline_runs_on_the_builtin_default(cli, tmp_path):
    """The README's main-job command, one training and one fine-tuning epoch instead of its default three and two
    (fine-tuning still distils from dense, as by default)."""
    out = tmp_path / "pipeline"
    result = cli("pipeline", "--epochs", "1", "--finetune-epochs", "1", "--rounds", "1", "--out", str(out))
    assert result.code == 0, result.err
    metrics = json.loads((out / "dense" / "metrics.json").read_text())
    assert metrics["data"]["name"] == "synthetic" and metrics["model"] == "transformer"
    assert metrics["test"]["mse"] < metrics["naive_test"]["mse"]
    pruning = json.loads((out / "structured-0.5" / "pruning.json").read_text())
    assert pruning["method"] == "structured" and pruning["mac_reduction"] >= 0.4
    assert pruning["request"]["distill"] == 0.5  # the main job's fine-tuning distils from dense by default
    # dense is tabled after the same training as pruned: the fine-tuned copy, and the table says so
    assert pruning["test"]["source"]["mse"] == metrics["test"]["mse"] != pruning["test"]["dense"]["mse"]
    assert "repeat last value" in result.out and f"{pruning['test']['dense']['mse']:.4f}" in result.out
    assert "dense and pruned: 1 epoch + 1 fine-tune epoch each" in result.out
    assert pruning["round_to"] == {"round_to": 8, "source": "profile desktop"}
    assert f"{pruning['after']['macs']:,}" in result.out and f"{pruning['test']['finetuned']['mse']:.4f}" in result.out
    for variant in ("dense", "structured-0.5"):
        manifest = json.loads((out / "export" / variant / "manifest.json").read_text())
        errors = [v["max_abs_error"] for a in manifest["artifacts"].values() for v in a["validation"]]
        assert len(errors) == 2 and max(errors) <= 1e-4
        assert f"{manifest['artifacts']['onnx']['bytes'] / 1000:.0f}" in result.out
    (run,) = (out / "results").iterdir()
    measured = json.loads((run / "bench.json").read_text())
    assert {(i["bundle"], i["format"]) for i in measured["items"]} == {
        (v, f) for v in ("dense", "percall", "structured-0.5") for f in ("onnx", "tflite")}
    for item in measured["items"]:
        assert item["correct"] and (item["probe"] or f"{item['p50_s'] * 1e3:.3f}" in result.out)
    report = json.loads((out / "report" / "report.json").read_text())["rows"]
    pruned = [row for row in report if row["variant"] == "structured-0.5"]
    assert len(pruned) == 2 and all(row["verdict"] in result.out for row in pruned)
    assert "verdict on desktop" in result.out and (out / "report" / "report.md").is_file()
    # the last line names the page a user opens, not whichever file the report wrote last (a plot)
    assert result.out.rstrip().splitlines()[-1].endswith(f"; report: {out / 'report' / 'report.html'}")
    assert "<html" in (out / "report" / "report.html").read_text()


def test_commands_that_prune_take_the_same_pruning_options(cli):
    """prune, export and pipeline declare --method, --sparsity, --dims, --width-sparsity and --round-to once
    (cli/pruning_options.py): the same defaults and help on each."""
    import inspect

    from tsprune_edge.cli import export_cmd, pipeline_cmd, prune_cmd

    shared = ("method", "sparsity", "dims", "width_sparsity", "round_to")
    commands = {"prune": prune_cmd.prune_command, "export": export_cmd.export_command,
                "pipeline": pipeline_cmd.pipeline_command}
    options = {name: {p: inspect.signature(f).parameters[p].default for p in shared} for name, f in commands.items()}
    for name, declared in options.items():
        assert {p: o.default for p, o in declared.items()} == {
            "method": "structured", "sparsity": 0.5, "dims": "heads,ffn", "width_sparsity": None, "round_to": None}
        assert declared["dims"].help == options["prune"]["dims"].help, name
        assert declared["width_sparsity"].help == options["prune"]["width_sparsity"].help, name
        assert declared["sparsity"].help == options["prune"]["sparsity"].help, name
        result = cli(name, "--help")
        assert result.code == 0 and all(f"--{p.replace('_', '-')}" in result.out for p in shared), name
    assert inspect.signature(export_cmd.export_command).parameters["device"].default.help.startswith(
        inspect.signature(prune_cmd.prune_command).parameters["device"].default.help)


@pytest.mark.parametrize("weight", ["1", "-0.1", "nan"])
def test_pipeline_refuses_a_distillation_weight_outside_0_1(cli, tmp_path, weight):
    result = cli("pipeline", "--distill", weight, "--out", str(tmp_path / "pipeline"))
    assert result.code == 2 and not (tmp_path / "pipeline").exists()
    assert result.err.strip().splitlines()[-1].startswith("error: --distill must be ")
