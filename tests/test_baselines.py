"""`--baselines`: tiny forecasters trained beside a run, benched with its variants and put with every model on the
(latency, test MSE) Pareto front. The plane's functions are checked on hand-made rows with exact values; the
pipeline end to end with the settings test_cli.py's main-job test uses."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tsprune_edge.baselines import Baseline, parse_baselines
from tsprune_edge.errors import UserError
from tsprune_edge.report.cells import answer_lines
from tsprune_edge.report.pareto import attach_dominated, front, most_accurate_within, pareto_notes, planes
from tsprune_edge.report.plots import pareto_figure
from tsprune_edge.variants import baseline_variant, is_baseline


def _point(name: str, p50: float, mse: float) -> dict:
    return {"name": name, "p50_ms": p50, "mse": mse}


def _row(variant: str, p50: float, mse: float, **fields) -> dict:
    row = {"run": "desktop-1", "device": "desktop", "machine": "x86_64", "emulated": False, "variant": variant,
           "model": "transformer", "method": "structured", "sparsity": 0.5, "format": "onnx",
           "runtime": "onnxruntime 1.20.1", "threads": 1, "rounds": 5, "flags": [], "p50_ms": p50,
           "torch_mse": mse, "board_mse": None, "max_abs_error": 1e-6, "macs": 100}
    return {**row, **fields}


def test_the_front_keeps_undominated_points_fastest_first():
    points = [_point("dense", 4.0, 0.30), _point("structured-0.5", 2.0, 0.45), _point("baseline-fits", 0.1, 0.40),
              _point("baseline-sparsetsf", 0.05, 0.50), _point("unstructured-0.5", 4.5, 0.31)]
    # structured-0.5 is slower and worse than baseline-fits; unstructured-0.5 slower and worse than dense
    assert front(points) == ["baseline-sparsetsf", "baseline-fits", "dense"]
    assert front([]) == [] and front([_point("a", 1.0, 1.0)]) == ["a"]


def test_ties_dominate_nothing_and_one_better_coordinate_dominates():
    assert front([_point("a", 1.0, 0.5), _point("b", 1.0, 0.5)]) == ["a", "b"]  # equal in both: both stay
    assert front([_point("a", 1.0, 0.5), _point("b", 1.0, 0.4)]) == ["b"]  # as fast, more accurate
    assert front([_point("a", 1.0, 0.5), _point("b", 0.9, 0.5)]) == ["b"]  # as accurate, faster


def test_most_accurate_within_a_latency_counts_the_limit_itself_and_breaks_ties_by_speed():
    points = [_point("dense", 4.0, 0.30), _point("structured-0.5", 2.0, 0.45), _point("baseline-fits", 2.0, 0.40),
              _point("baseline-dlinear", 1.0, 0.40)]
    assert most_accurate_within(points, 2.0)["name"] == "baseline-dlinear"  # 0.40 twice: the faster one
    assert most_accurate_within(points, 4.0)["name"] == "dense"
    assert most_accurate_within(points, 0.5) is None


def _run_rows() -> list[dict]:
    return [_row("dense", 4.0, 0.30, method="dense", sparsity=0.0), _row("structured-0.5", 2.0, 0.45),
            _row("baseline-fits", 0.1, 0.40, model="fits", method="baseline", sparsity=None),
            _row("baseline-sparsetsf", 0.05, 0.50, model="sparsetsf", method="baseline", sparsity=None),
            _row("percall", 0.01, None, method="probe", sparsity=None),
            _row("dense", 3.0, 0.30, method="dense", sparsity=0.0, format="tflite", runtime="ai_edge_litert 2.3.0"),
            _row("structured-0.5", 1.5, 0.45, format="tflite", runtime="ai_edge_litert 2.3.0"),
            _row("baseline-fits", 1.6, 0.40, model="fits", method="baseline", sparsity=None, format="tflite",
                 runtime="ai_edge_litert 2.3.0")]


def test_planes_and_dominated_by_per_setting():
    rows = _run_rows()
    onnx, tflite = planes(rows)
    assert onnx["front"] == ["baseline-sparsetsf", "baseline-fits", "dense"] and onnx["mse"] == "torch_mse"
    assert [p["name"] for p in onnx["points"]] == ["dense", "structured-0.5", "baseline-fits", "baseline-sparsetsf"]
    assert tflite["front"] == ["structured-0.5", "baseline-fits", "dense"]  # the board decides: fits is slower here
    attach_dominated(rows)
    assert [r["dominated_by"] for r in rows] == [[], ["baseline-fits"], [], [], None, [], [], []]
    # the board's MSE where every model of the setting has one
    board = [{**r, "board_mse": r["torch_mse"] + 0.01} for r in rows[:4]]
    assert planes(board)[0]["mse"] == "board_mse" and planes(board)[0]["points"][0]["mse"] == pytest.approx(0.31)


def test_notes_name_the_front_the_dominated_variants_and_the_most_accurate_within_each_latency():
    notes = pareto_notes(_run_rows())
    estimates = "point estimates: p50 and test MSE, their intervals not used"
    assert notes == [
        f"Pareto front (p50 latency, torch test MSE; {estimates}), onnx (onnxruntime 1.20.1), 1 thread: "
        "baseline-sparsetsf, baseline-fits, dense.",
        "structured-0.5 (onnx (onnxruntime 1.20.1), 1 thread): dominated by baseline-fits.",
        "most accurate model within structured-0.5's measured latency (2 ms, onnx (onnxruntime 1.20.1), 1 thread): "
        "baseline-fits (test MSE 0.4)",
        f"Pareto front (p50 latency, torch test MSE; {estimates}), tflite (ai_edge_litert 2.3.0), 1 thread: "
        "structured-0.5, baseline-fits, dense.",
        "most accurate model within structured-0.5's measured latency (1.5 ms, tflite (ai_edge_litert 2.3.0), 1 "
        "thread): structured-0.5 (test MSE 0.45)"]
    assert pareto_notes([r for r in _run_rows() if not is_baseline(r["variant"])]) == []  # no baseline: no notes


def test_baselines_stay_out_of_the_pruning_answer():
    rows = [{**r, "headline": f"{r['variant']} headline"} for r in _run_rows()[1:4]]  # rows judged against dense
    assert answer_lines(rows) == ["structured-0.5, onnx (onnxruntime 1.20.1), 1 thread: structured-0.5 headline"]


def test_the_pareto_plot_marks_each_baseline_and_draws_the_front():
    figure = pareto_figure([r for r in _run_rows() if r["format"] == "onnx" and r["variant"] != "percall"])
    (ax,) = [a for a in figure.axes if a.get_visible()]
    scatters = {c.get_label(): c.get_offsets().tolist() for c in ax.collections}
    assert scatters == {"measured": [[4.0, 0.30], [2.0, 0.45]], "baseline-fits": [[0.1, 0.40]],
                        "baseline-sparsetsf": [[0.05, 0.50]]}
    markers = {c.get_label(): c.get_paths()[0].vertices.round(3).tolist() for c in ax.collections}
    assert markers["baseline-fits"] != markers["baseline-sparsetsf"] != markers["measured"]
    (line,) = [line for line in ax.get_lines() if line.get_label() == "Pareto front"]
    assert np.asarray(line.get_xydata()).tolist() == [[0.05, 0.50], [0.1, 0.40], [4.0, 0.30]]


def test_baseline_names_are_checked_against_the_registry():
    assert parse_baselines(("sparsetsf", "fits:paper", "sparsetsf")) == (Baseline("sparsetsf"),
                                                                        Baseline("fits", "paper"))
    assert Baseline("fits", "paper").variant == "baseline-fits-paper" == baseline_variant("fits", "paper")
    assert Baseline("dlinear").variant == "baseline-dlinear"
    with pytest.raises(UserError, match=r"unknown baseline 'gpt9' in --baselines; registered models: autoformer, "
                                        r"crossformer, dlinear, fedformer, fits, informer"):
        parse_baselines(("gpt9",))
    with pytest.raises(UserError, match="baseline fits has no preset 'huge'; write fits"):
        parse_baselines(("fits:huge",))


def _hourly_csv(path, rows: int) -> None:
    """Daily and weekly cycles with noise, 3 variables: a CSV short enough that each baseline's full published
    schedule trains in seconds."""
    rng = np.random.default_rng(0)
    hours = np.arange(rows)
    daily, weekly = np.sin(2 * np.pi * hours / 24), np.sin(2 * np.pi * hours / 168)
    values = np.stack([daily + 0.1 * rng.standard_normal(rows), weekly + 0.1 * rng.standard_normal(rows),
                       0.6 * np.roll(daily, 3) + 0.4 * weekly + 0.1 * rng.standard_normal(rows)], axis=1)
    stamps = np.datetime64("2020-01-01T00:00") + hours * np.timedelta64(1, "h")
    path.write_text("date,a,b,OT\n" + "".join(f"{str(t).replace('T', ' ')}:00,{v[0]:.4f},{v[1]:.4f},{v[2]:.4f}\n"
                                               for t, v in zip(stamps, values, strict=True)))


def test_pipeline_with_baselines_tables_plots_and_caches_them(cli, tmp_path):
    """The acceptance command at small settings (the hostile workspace's DLinear for the main model, one epoch,
    two bench rounds: a speedup needs two) on a CSV of 2,500 hourly rows, where the baselines train their full
    published schedules; then an export from the same dense checkpoint reuses the trained baseline from the cache."""
    out, cache, csv = tmp_path / "pipeline", tmp_path / "cache", tmp_path / "hourly.csv"
    _hourly_csv(csv, 2500)
    result = cli("pipeline", "--data", str(csv), "--model", "dlinear", "--method", "unstructured", "--epochs", "1",
                 "--finetune-epochs", "0", "--rounds", "2", "--baselines", "sparsetsf,dlinear", "--baseline-cache",
                 str(cache), "--out", str(out))
    assert result.code == 0, result.err
    said = " ".join(result.err.split())  # the console wraps its lines
    assert "baseline sparsetsf: training at seq_len 96, pred_len 96 with its published schedule (lr 0.02, batch " \
           "256, at most 30 epochs, patience 5)" in said
    report = json.loads((out / "report" / "report.json").read_text())
    rows = {(r["variant"], r["format"]): r for r in report["rows"]}
    for name in ("baseline-sparsetsf", "baseline-dlinear"):
        metrics = json.loads(next(cache.glob(f"{name}-small-*/metrics.json")).read_text())
        assert metrics["training"]["schedule"]["max_epochs"] == (30 if name.endswith("sparsetsf") else 10)
        assert metrics["data"]["sha256"] == json.loads((out / "dense" / "metrics.json").read_text())["data"]["sha256"]
        for fmt in ("onnx", "tflite"):
            row = rows[name, fmt]
            assert row["method"] == "baseline" and row["sparsity"] is None and "speedup" in row
            assert row["torch_mse"] == pytest.approx(metrics["test"]["mse"], rel=1e-5)
            assert row["mse_change"] is not None and row["verdict"] in result.out  # a verdict-table row
    lines = result.out.splitlines()  # the answer lines come first and answer the pruning question only
    assert lines[0].startswith("unstructured-0.5, onnx (") and lines[1].startswith("unstructured-0.5, tflite (")
    assert not [line for line in lines if line.startswith(("baseline-sparsetsf, ", "baseline-dlinear, "))]
    for plane in report["pareto"]:
        assert {p["name"] for p in plane["points"]} == {"dense", "unstructured-0.5", "baseline-sparsetsf",
                                                        "baseline-dlinear"}
        assert plane["mse"] == "board_mse"  # pipeline scores the board's own outputs
        assert f"1 thread: {', '.join(plane['front'])}." in " ".join(result.out.split())
        for point in plane["points"]:
            row = rows[point["name"], plane["format"]]
            assert (point["name"] in plane["front"]) == (row["dominated_by"] == [])
    figure = pareto_figure([r for r in report["rows"] if r["variant"] not in ("percall",)])
    for ax in (a for a in figure.axes if a.get_visible()):
        labels = {c.get_label(): c.get_offsets().tolist() for c in ax.collections}
        fmt = "onnx" if "onnx" in ax.get_title() else "tflite"
        assert labels["baseline-dlinear"] == [[rows["baseline-dlinear", fmt]["p50_ms"],
                                               rows["baseline-dlinear", fmt]["board_mse"]]]
        assert "baseline-sparsetsf" in labels
    again = cli("export", "--checkpoint", str(out / "dense" / "model.pt"), "--method", "unstructured",
                "--finetune-epochs", "0", "--format", "onnx", "--baselines", "sparsetsf", "--baseline-cache",
                str(cache), "--out", str(tmp_path / "b"), "--runs", str(tmp_path / "r"))
    assert again.code == 0, again.err
    assert "baseline sparsetsf: reused" in again.err and "training at" not in " ".join(again.err.split())
    manifest = json.loads((tmp_path / "b" / "baseline-sparsetsf" / "manifest.json").read_text())
    assert manifest["model"]["name"] == "sparsetsf" and manifest["pruning"] is None


def test_a_sweep_spec_adds_one_cell_per_baseline_for_each_model(tmp_path):
    from tsprune_edge.sweep.spec import SweepSpec, expand

    spec = SweepSpec(models=("dlinear", "transformer"), methods=("unstructured",), sparsities=(0.5,),
                     data="synthetic", baselines=("sparsetsf", "fits:paper"))
    spec.validate()
    cells = {c.id: c for c in expand(spec)}
    for model in ("dlinear", "transformer"):
        assert cells[f"variant--{model}--baseline-sparsetsf"].method == "baseline"
        assert cells[f"variant--{model}--baseline-fits-paper"].method == "baseline"
    assert SweepSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    with pytest.raises(UserError, match="unknown baseline 'gpt9' in --baselines"):
        SweepSpec(models=("dlinear",), methods=("unstructured",), baselines=("gpt9",)).validate()
    short = tmp_path / "hourly.csv"
    _hourly_csv(short, 1000)
    with pytest.raises(UserError, match="baseline fits:paper cannot take hourly.csv: hourly.csv has too few rows "
                                        "for seq_len 720 [+] pred_len 96"):
        SweepSpec(models=("dlinear",), methods=("unstructured",), data=str(short),
                  baselines=("fits:paper",)).validate()
