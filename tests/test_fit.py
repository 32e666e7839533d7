"""`tsprune-edge fit` on a real small Transformer (illness, one epoch): the predictor, the search, pruning to chosen
per-layer widths, the whole loop measured on this machine, the cached table reused by a second fit, and refusals
that need the table (budgets out of reach) as one line with nothing written."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from rich.console import Console

from tests.bench_args import QUICK_FIT as QUICK
from tests.paths import SHARED_DATA
from tsprune_edge.checkpoint import load_checkpoint
from tsprune_edge.fit.choice import pruned_copy
from tsprune_edge.fit.met import Goal, headroom, needs_second_look, share_text
from tsprune_edge.fit.predictor import fit_predictor, leave_one_out
from tsprune_edge.fit.search import search
from tsprune_edge.fit.sensitivity import Sensitivity, measure_sensitivity, validation_mse, validation_subset
from tsprune_edge.fit.space import Widths, pruning_space
from tsprune_edge.prune.analysis import count_macs
from tsprune_edge.prune.stage import structured_achieved
from tsprune_edge.report.pareto import fit_notes
from tsprune_edge.report.verdict import verdict_rows
from tsprune_edge.workflow import checkpoint_data


@pytest.fixture(scope="module")
def model_and_space(dense):
    model = load_checkpoint(dense).build_model()
    return model, pruning_space(model, 8)


def test_the_space_names_every_layer_and_its_features_follow_the_macs(model_and_space):
    model, space = model_and_space
    assert [(layer.path, layer.kind, layer.units) for layer in space.layers] == [
        ("encoder.0.attention", "heads", 4), ("encoder.1.attention", "heads", 4),
        ("decoder.0.self_attention", "heads", 4), ("decoder.0.cross_attention", "heads", 4),
        ("encoder.0.ffn", "neurons", 256), ("encoder.1.ffn", "neurons", 256), ("decoder.0.ffn", "neurons", 256)]
    assert space.d_model == 64
    chosen = Widths({**space.dense().units, "encoder.0.attention": 1, "decoder.0.cross_attention": 3,
                     "encoder.1.ffn": 96, "decoder.0.ffn": 8}, 40)
    pruned = pruned_copy(model, space, chosen)
    achieved = structured_achieved(pruned)
    assert achieved["heads"] == {"encoder.0.attention": 1, "encoder.1.attention": 4, "decoder.0.self_attention": 4,
                                 "decoder.0.cross_attention": 3}
    assert achieved["ffn_widths"] == {"encoder.0.ffn.linear1": 256, "encoder.1.ffn.linear1": 96,
                                      "decoder.0.ffn.linear1": 8}
    assert set(achieved["widths"].values()) == {40}
    # the MACs the features account for are the pruned model's, less what neither units nor width touch
    dense_macs, pruned_macs = count_macs(model)[0], count_macs(pruned)[0]
    features = space.features(chosen)
    accounted = sum(features[1:4]) * 1e6
    assert accounted < pruned_macs < accounted + (dense_macs - sum(space.features(space.dense())[1:4]) * 1e6)
    with pytest.raises(ValueError, match="not a choice"):
        space.check(Widths({**space.dense().units, "encoder.0.ffn": 100}, 64))


def test_the_predictor_recovers_a_linear_cost_and_never_a_negative_one(model_and_space):
    _, space = model_and_space
    points = [space.uniform(h, f, w) for h, f, w in
              ((0, 0, 0), (0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5), (0.5, 0.5, 0.5), (0.75, 0.25, 0.25), (0.25, 0.75, 0))]
    features = [space.features(w) for w in points]
    truth = (0.05, 0.01, 0.02, 0.03, 0.04)
    latencies = [sum(c * x for c, x in zip(truth, row, strict=True)) for row in features]
    predictor = fit_predictor(features, latencies)
    assert predictor.coefficients == pytest.approx(truth, rel=1e-6)
    assert max(abs(e) for e in leave_one_out(features, latencies)) < 1e-9
    # a feature that seems to make the model faster is dropped, not given a negative cost
    falling = [t - 0.06 * row[4] for t, row in zip(latencies, features, strict=True)]
    assert fit_predictor(features, falling).coefficients[4] == 0.0


@pytest.fixture(scope="module")
def sensitivity(dense, model_and_space):
    model, space = model_and_space
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TSPRUNE_EDGE_DATA_DIR", str(SHARED_DATA))
        return measure_sensitivity(model, space, checkpoint_data(load_checkpoint(dense)), Console(quiet=True))


def test_sensitivity_measures_every_level_the_search_may_choose(sensitivity, model_and_space, dense, shared_data):
    model, space = model_and_space
    assert {path: sorted(levels) for path, levels in sensitivity.layers.items()} == {
        **{path: [1, 2, 3] for path in ("encoder.0.attention", "encoder.1.attention", "decoder.0.self_attention",
                                        "decoder.0.cross_attention")},
        **{path: [32, 64, 96, 128, 160, 192, 224] for path in ("encoder.0.ffn", "encoder.1.ffn", "decoder.0.ffn")}}
    assert sorted(sensitivity.width) == [8, 16, 24, 32, 40, 48, 56]
    subset = validation_subset(checkpoint_data(load_checkpoint(dense)))
    # one level re-measured by hand: the model pruned at that layer alone, its validation MSE on the same windows
    by_hand = validation_mse(pruned_copy(model, space, Widths({**space.dense().units, "decoder.0.ffn": 64}, 64)),
                             subset)
    assert sensitivity.layers["decoder.0.ffn"][64] == pytest.approx(by_hand, rel=1e-9)
    assert sensitivity.dense_mse == pytest.approx(validation_mse(model, subset), rel=1e-9)
    assert sensitivity.cost("decoder.0.ffn", 256) == 0.0
    assert sensitivity.cost("decoder.0.ffn", 64) == max(0.0, by_hand - sensitivity.dense_mse)
    assert Sensitivity.from_record(json.loads(json.dumps(sensitivity.record()))) == sensitivity


def test_the_knapsack_finds_the_least_validation_loss_within_the_target(sensitivity, model_and_space):
    model, space = model_and_space
    predictor = fit_predictor([space.features(space.uniform(h, f, w)) for h, f, w in
                               ((0, 0, 0), (0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5), (0.5, 0.5, 0.5), (0.75, 0.25, 0))],
                              [0.25, 0.21, 0.22, 0.18, 0.13, 0.17])
    dense_ms, costs = predictor.predict(space.features(space.dense())), []
    for share in (0.9, 0.7, 0.5):
        widths = search(space, sensitivity, predictor.predict, dense_ms * share)
        space.check(widths)
        predicted = predictor.predict(space.features(widths))
        assert dense_ms * share * 0.97 <= predicted <= dense_ms * share  # the budget is spent, never exceeded
        costs.append(sensitivity.total(widths))
    assert costs[0] <= costs[1] <= costs[2] and costs[2] > 0
    assert search(space, sensitivity, predictor.predict, 0.0) == space.smallest()  # out of reach: the smallest model

    # exhaustive check at the dense width (width made too costly to choose): no combination of levels that fits
    # the target, less the knapsack's rounding of 1/2000 per layer, costs less than the knapsack's choice
    frozen = Sensitivity(sensitivity.dense_mse, sensitivity.layers, {k: sensitivity.dense_mse + 9 for k in
                                                                     sensitivity.width})
    target = dense_ms * 0.7
    chosen = search(space, frozen, predictor.predict, target)
    assert chosen.width == 64
    options = [[layer.units, *sorted(sensitivity.layers[layer.path])] for layer in space.layers]
    combos = np.array(list(itertools.product(*options)))
    zero = predictor.predict([0.0] * 5)
    ms = predictor.predict(space.fixed_features(64)) + sum(
        np.array([predictor.predict(space.layer_features(layer, int(k), 1.0)) - zero for k in combos[:, i]])
        for i, layer in enumerate(space.layers))
    cost = sum(np.array([frozen.cost(layer.path, int(k)) for k in combos[:, i]])
               for i, layer in enumerate(space.layers))
    best = cost[ms <= target * (1 - len(space.layers) / 2000)].min()
    assert frozen.total(chosen) <= best + 1e-6
    assert predictor.predict(space.features(chosen)) <= target


def test_fit_meets_a_budget_and_a_second_fit_measures_nothing_new(cli, shared_data, dense, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "fit"
    result = cli("fit", str(dense), "--speedup", "1.25", "--device", "desktop", "--max-rounds", "2", *QUICK,
                 "--cache", str(cache), "--out", str(out))
    assert result.code == 0, result.err[-3000:]
    record = json.loads((out / "fit.json").read_text())
    assert (record["format"], record["version"], record["current"]) == ("tsprune-edge/fit", 1, None)
    assert record["table"]["reused"] is False
    probes = {p["name"]: p for p in record["table"]["probes"]}
    assert len(probes) == 10 and probes["dense"]["p50_ms"] > probes["probe-smallest"]["p50_ms"] > 0
    assert record["budget_ms"] == pytest.approx(probes["dense"]["p50_ms"] / 1.25)  # where the search aims
    assert record["target"] == {"kind": "speedup", "budget_ms": None, "speedup": 1.25}
    assert record["predictor"]["leave_one_out"]["points"] == 10
    identity = record["table"]["identity"]
    assert (identity["runtime"], identity["runtime_version"]) == ("onnxruntime", onnxruntime.__version__)
    assert identity["cpu"] and Path(record["table"]["path"]).name.startswith("desktop-onnxruntime-t1-transformer-")
    scatter = record["table"]["scatter"]
    assert scatter["rounds"] == 2 and scatter["latency"] > 0 and scatter["speedup"] > 0
    band = record["headroom"]["band"]
    assert band == pytest.approx(headroom(scatter["speedup"])) and band >= 0.0233
    for candidate in record["candidates"]:
        first, *again = candidate["runs"]
        assert candidate["p50_ms"] == first["p50_ms"] and candidate["run"] == first["run"]
        assert candidate["p50_low_ms"] <= candidate["p50_ms"] <= candidate["p50_high_ms"]
        smallest = candidate["widths"] == {"units": {layer["path"]: 8 if layer["kind"] == "neurons" else 1
                                                     for layer in record["layers"]}, "width": 8}
        assert candidate["predicted_ms"] <= candidate["target_ms"] or smallest  # the search's one way past its target
        # judged as a speedup against dense in the same run, a second run where the first was within the scatter
        assert len(again) == (1 if abs(1.25 / first["speedup"] - 1) < band else 0)
        speedup = _geomean(r["speedup"] for r in candidate["runs"])
        low = _geomean(r["speedup_low"] for r in candidate["runs"])
        assert candidate["met"] == (speedup >= 1.25 and low >= 1.25 / 1.03)
        assert candidate["budget_used"] == pytest.approx(1.25 / speedup)
        assert candidate["judged"]["speedup"] == pytest.approx(speedup)
        assert candidate["predictor_error"] == pytest.approx(
            candidate["predicted_ms"] / (first["p50_ms"] / first["dense_p50_ms"] * probes["dense"]["p50_ms"]) - 1)
        assert candidate["mse"]["pruned"] > 0 and candidate["mse"]["finetuned"] is None  # --finetune-epochs 0
    assert record["predictor"]["held_out_whole_models"]["errors"] == [c["predictor_error"]
                                                                      for c in record["candidates"]]
    chosen = next(c for c in record["candidates"] if c["round"] == record["chosen"])
    met = [c for c in record["candidates"] if c["met"]]
    assert record["status"] == ("unreachable" if not met else "met" if chosen["budget_used"] >= 0.85
                                else "met, underused")
    assert chosen == (max(met, key=lambda c: c["budget_used"]) if met else min(record["candidates"],
                                                                             key=lambda c: c["budget_used"]))
    judged = chosen["judged"]
    assert result.out.startswith(f"{record['status']}: speedup target 1.25x: fitted model {judged['speedup']:.4g}x "
                                 f"dense in the same run [{judged['speedup_low']:.4g}, {judged['speedup_high']:.4g}]")
    assert f"; {share_text(chosen['budget_used'])} of the target used;" in result.out
    assert record["sensitivity"]["layers"]["decoder.0.ffn"].keys() == {"32", "64", "96", "128", "160", "192", "224"}
    achieved = structured_achieved(load_checkpoint(out / "model.pt").build_model())
    assert {k.removesuffix(".linear1"): v for k, v in achieved["ffn_widths"].items()} == {
        k: v for k, v in chosen["widths"]["units"].items() if k.endswith("ffn")}
    bundles = Path(chosen["bundle"]).parent
    assert sorted(p.name for p in bundles.iterdir()) == ["dense", chosen["name"], "percall"]
    assert f"-> {out / 'fit.json'}" in result.out
    # the report judges the run by the speedup target, not by the table's budget that only aimed the search
    assert {(row["budget_ms"], row["target_speedup"]) for row in verdict_rows(Path(chosen["run"]))} == {(None, 1.25)}

    before = _tree(cache)
    again = cli("fit", str(dense), "--budget-ms", f"{record['budget_ms'] * 1.1:.6f}", "--device", "desktop",
                "--max-rounds", "1", "--uniform", "0.5", "--baselines", "dlinear", *QUICK, "--cache", str(cache),
                "--baseline-cache", str(tmp_path / "baselines"), "--out", str(tmp_path / "again"))
    assert again.code == 0, again.err[-3000:]
    second = json.loads((tmp_path / "again" / "fit.json").read_text())
    assert second["target"] == {"kind": "budget", "budget_ms": float(f"{record['budget_ms'] * 1.1:.6f}"),
                                "speedup": None}
    (only,) = second["candidates"]
    assert only["met"] == (_geomean(r["p50_ms"] for r in only["runs"]) <= second["budget_ms"]
                           and _geomean(r["p50_high_ms"] for r in only["runs"]) <= 1.03 * second["budget_ms"])
    assert again.out.startswith(f"{second['status']}: budget {second['budget_ms']:.4g} ms: fitted model ")
    assert second["table"]["reused"] is True and second["table"]["probes"] == record["table"]["probes"]
    assert "nothing measured" in again.err
    # against uniform pruning: measured in one run with the fitted model and dense, placed on the plane
    comparison = second["comparison"]
    points = {p["name"]: p for p in comparison["points"]}
    assert set(points) == {"dense", "fit-1", "uniform-0.5", "uniform-width-0.5", "baseline-dlinear"}
    assert all(p["p50_ms"] > 0 and p["mse"] > 0 for p in points.values())
    # the baseline: trained on the dense model's data and windows with its own schedule, its test MSE as trained
    (entry,) = (tmp_path / "baselines").glob("baseline-dlinear-*")
    assert points["baseline-dlinear"]["mse"] == json.loads((entry / "metrics.json").read_text())["test"]["mse"]
    assert second["request"]["baselines"] == ["dlinear"]
    assert comparison["on_pareto_front"] == (not comparison["dominated_by"])
    beaten = f" (dominated by {', '.join(comparison['dominated_by'])})" if comparison["dominated_by"] else ""
    assert f"the (latency, MSE) Pareto front{beaten}; nearest uniform within budget" in again.out
    assert "Pareto front" in again.out
    # the report says the same of the comparison run, from the rows alone
    report = cli("report", comparison["run"], "--out", str(tmp_path / "report"))
    assert report.code == 0, report.err
    text = (tmp_path / "report" / "report.md").read_text()
    assert ("on the (latency, MSE) Pareto front of this run" if comparison["on_pareto_front"]
            else "NOT on the Pareto front of this run") in text
    if comparison["nearest_uniform"]:
        assert f"nearest uniform model within the budget: {comparison['nearest_uniform']}" in text
    assert _tree(cache) == before  # no probe measured, exported or written again

    for budget, fragment in ((probes["probe-smallest"]["p50_ms"] * 0.5, "below the smallest prunable model"),
                             (probes["dense"]["p50_ms"] * 1.5, "nothing to do")):
        refused = cli("fit", str(dense), "--budget-ms", f"{budget:.6f}", *QUICK, "--cache", str(cache),
                      "--out", str(tmp_path / "refused"))
        assert refused.code == 2 and fragment in refused.err
        assert len(refused.err.splitlines()) == 1 and refused.err.startswith("error: ")
        assert not (tmp_path / "refused").exists() and _tree(cache) == before


def _geomean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")} | {"_": len(os.listdir(root))}


def _fit_row(variant, p50, mse, high=None, budget_ms=1.0, target_speedup=None, speedup=None):
    return {"run": "desktop-20260101-000000", "device": "desktop", "model": "transformer", "variant": variant,
            "format": "onnx", "runtime": "onnxruntime", "threads": 1, "p50_ms": p50, "p50_low_ms": p50 * 0.99,
            "p50_high_ms": high or p50 * 1.01, "torch_mse": mse, "method": None if variant == "dense" else
            "structured", "sparsity": 0.0 if variant == "dense" else 0.5, "budget_ms": budget_ms,
            "target_speedup": target_speedup, "predicted_speedup": None if speedup is None else 2.2,
            "speedup": speedup, "speedup_low": speedup and speedup * 0.99, "speedup_high": speedup and speedup * 1.02}


def test_the_fit_notes_place_the_fitted_model_on_the_plane():
    rows = [_fit_row("dense", 2.0, 0.40), _fit_row("fit-1", 0.95, 0.42), _fit_row("uniform-0.5", 0.90, 0.45),
            _fit_row("uniform-0.25", 1.20, 0.41), _fit_row("uniform-width-0.5", 0.60, 0.43)]
    (note,) = fit_notes(rows)
    assert note == ("Fit fit-1 (onnxruntime, t1): p50 0.95 ms [0.9405, 0.9595] against the budget 1 ms: within "
                    "(95.0% of it), test MSE 0.42; on the (latency, MSE) Pareto front of this run; nearest uniform "
                    "model within the budget: uniform-0.5, MSE 0.45 (not worse).")
    rows[1] = _fit_row("fit-1", 0.98, 0.46, high=1.04)  # its interval reaches 4% over; two uniform models beat it
    (note,) = fit_notes(rows)
    assert "against the budget 1 ms: OVER (98.0% of it)" in note
    assert "NOT on the Pareto front of this run (dominated by uniform-0.5, uniform-width-0.5)" in note
    assert "(the fit is worse)" in note
    assert fit_notes([{**r, "budget_ms": None} for r in rows]) == []  # not a fit's run: nothing said
    # a --speedup 2 fit: judged by its speedup in this run; the uniform models within dense's p50 here / 2 = 1.0 ms
    rows = [_fit_row("dense", 2.0, 0.40), _fit_row("fit-1", 0.97, 0.42, speedup=2.04),
            _fit_row("uniform-0.5", 0.99, 0.45, speedup=2.01), _fit_row("uniform-0.25", 1.20, 0.41, speedup=1.66)]
    rows = [{**r, "budget_ms": None, "target_speedup": 2.0} for r in rows]
    (note,) = fit_notes(rows)
    assert note == ("Fit fit-1 (onnxruntime, t1): 2.04x dense in this run [2.02, 2.081] against the speedup target "
                    "2x: met (98.0% of it), test MSE 0.42; on the (latency, MSE) Pareto front of this run; nearest "
                    "uniform model within the target: uniform-0.5, MSE 0.45 (not worse).")
    rows[1] = {**rows[1], "speedup": 1.98, "speedup_low": 1.9, "speedup_high": 2.02}
    assert "1.98x dense in this run [1.9, 2.02] against the speedup target 2x: NOT met (101.1% of it)" \
        in fit_notes(rows)[0]


def test_the_plots_draw_a_speedup_target_as_a_speedup_and_a_budget_in_ms():
    """--speedup 2: the latency and Pareto plots' line is dense's p50 in the run / 2, labelled as the speedup target,
    and the speedup plot has y = 2 beside the fitted model's speedup and its interval; --budget-ms keeps its ms line."""
    from tsprune_edge.report.plots import latency_figure, pareto_figure, speedup_figure

    def lines(figure, label_start):
        return [(line.get_label(), list(line.get_xdata()), list(line.get_ydata())) for ax in figure.axes
                for line in ax.get_lines() if line.get_label().startswith(label_start)]

    rows = [{**r, "budget_ms": None, "target_speedup": 2.0} for r in
            (_fit_row("dense", 1.6, 0.40), _fit_row("fit-1", 0.78, 0.42, speedup=2.05))]
    label = "speedup target 2x: dense in this run / 2"
    assert lines(latency_figure(rows), "speedup target") == [(label, [0, 1], [0.8, 0.8])]
    assert lines(pareto_figure(rows), "speedup target") == [(label, [0.8, 0.8], [0, 1])]
    assert lines(speedup_figure(rows), "speedup target") == [("speedup target 2x", [0, 1], [2.0, 2.0])]
    assert not lines(latency_figure(rows), "budget") and not lines(pareto_figure(rows), "budget")
    (fitted,) = [c for ax in speedup_figure(rows).axes for c in ax.containers]  # the achieved speedup, its interval
    segment = fitted.lines[2][0].get_segments()[0]
    assert (fitted.lines[0].get_ydata()[0], segment[0][1], segment[1][1]) == pytest.approx((2.05, 2.0295, 2.091))
    budget = [{**r, "budget_ms": 0.9, "target_speedup": None} for r in rows]
    assert lines(latency_figure(budget), "budget") == [("budget 0.9 ms", [0, 1], [0.9, 0.9])]
    assert lines(pareto_figure(budget), "budget") == [("budget 0.9 ms", [0.9, 0.9], [0, 1])]
    assert not lines(speedup_figure(budget), "speedup target")


def test_the_met_rule_reads_a_speedup_as_a_speedup_and_pools_a_second_look():
    def run(p50, speedup, spread=0.01):
        return {"p50_ms": p50, "p50_low_ms": p50 * (1 - spread), "p50_high_ms": p50 * (1 + spread),
                "speedup": speedup, "speedup_low": speedup * (1 - spread), "speedup_high": speedup * (1 + spread)}

    two = Goal(speedup=2.0)
    # the case: 2.001x in its own run is met, whatever the cached dense says the budget is in ms
    assert two.met([run(0.507, 2.001)]) and two.used([run(0.507, 2.001)]) == pytest.approx(2 / 2.001)
    assert not two.met([run(0.49, 1.98)])  # faster in ms than dense's cached p50 / 2, yet 1.98x in its own run
    assert not two.met([run(0.5, 2.01, spread=0.04)])  # the interval's low end 3.5% under 2x
    # within the headroom either side: a second look; the pooled runs decide
    assert needs_second_look(two, run(0.5, 1.99), 0.0233) and needs_second_look(two, run(0.5, 2.04), 0.0233)
    assert not needs_second_look(two, run(0.5, 2.1), 0.0233)
    assert two.met([run(0.5, 1.99), run(0.5, 2.03)])  # a narrow miss rescued by a second run
    assert not two.met([run(0.5, 2.01), run(0.5, 1.97)])  # a narrow pass withdrawn
    budget = Goal(budget_ms=1.0)
    assert budget.met([run(0.99, 1.0, spread=0.03)]) and not budget.met([run(0.99, 1.0, spread=0.05)])
    assert budget.used([run(0.98, 1.0), run(1.02, 1.0)]) == pytest.approx(math.sqrt(0.98 * 1.02))
    unpaired = {**run(0.5, 1.0), "speedup": None, "speedup_low": None, "speedup_high": None}
    assert budget.met([{**unpaired, "p50_ms": 0.98}]) and not two.met([unpaired])  # no speedup: not a met speedup
    assert headroom(0.0) == pytest.approx(0.0233) and headroom(0.03) == pytest.approx(0.0699)
    # exact shares: never 100% for a model that used 99.97%, nor for one 0.02% over
    assert [share_text(x) for x in (0.9997, 1.0, 1.0002, 0.85, 0.7)] == ["99.9%", "100.0%", "100.1%", "85.0%",
                                                                        "70.0%"]


def test_the_table_is_the_boards_own_by_its_ssh_host_key(shared_data, tmp_path, monkeypatch):
    """Over a real loopback sshd, reached with --port and --identity as a user passes them: the same host key
    reuses the table, measuring nothing; a board with another host key behind the same name (a reinstalled one)
    is measured again, one line naming the fingerprints, and its table kept beside the first. A DLinear (seconds to
    train, five probes) keeps the two measured tables cheap."""
    from tests.sshd import running_sshd
    from tsprune_edge.fit.measure import Target
    from tsprune_edge.fit.table import latency_table
    from tsprune_edge.workflow import train_to_dir

    train_to_dir(model="dlinear", data="illness", pred_len=24, seq_len=36, label_len=18, preset="small", epochs=1,
                 out=tmp_path / "dlinear", console=Console(quiet=True))
    dense = tmp_path / "dlinear" / "model.pt"

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "loopback.toml").write_text(
        f'description = "this machine behind a loopback sshd"\narch = "x86_64"\ncores = 2\nmemory_mb = 0\n'
        f'python = "{sys.executable}"\nworkdir = "{tmp_path / "board"}"\nruntimes = ["onnxruntime"]\n')
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(profiles))
    known_hosts, config, cache = tmp_path / "known_hosts", tmp_path / "ssh_config", tmp_path / "cache"
    config.write_text(f"Host *\n    UserKnownHostsFile {known_hosts}\n    GlobalKnownHostsFile /dev/null\n")
    space = pruning_space(load_checkpoint(dense).build_model(), 8)

    def table(server, console):
        known_hosts.write_text(server.known_hosts.read_text())  # the key the user accepted for this board
        target = Target(device="loopback", host=server.destination, port=server.port, identity=server.identity,
                        ssh_config=config, threads=1, rounds=2, min_time=0.02, min_iters=5)
        return latency_table(dense, target, space, cache, console)

    def fingerprint(server) -> str:
        listed = subprocess.run(["ssh-keygen", "-l", "-f", str(server.root / "host_ed25519.pub")], check=True,
                                capture_output=True, text=True).stdout
        return listed.split()[1]

    with running_sshd(tmp_path / "sshd-1") as first:
        measured = table(first, Console(quiet=True))
        said = Console(record=True, width=400)
        again = table(first, said)
    assert measured["reused"] is False and again["reused"] is True and again["probes"] == measured["probes"]
    assert said.export_text() == ""  # nothing measured, nothing said
    identity = measured["identity"]
    assert identity["host_key"] == fingerprint(first) and len(identity["machine_id"]) == 16
    assert identity["cpu"] and identity["runtime_version"] == onnxruntime.__version__

    with running_sshd(tmp_path / "sshd-2") as second:  # a new host key (and port) behind the same user@host
        said = Console(record=True, width=400)
        remeasured = table(second, said)
    assert remeasured["reused"] is False and remeasured["path"] != measured["path"]
    assert {k: v for k, v in remeasured["identity"].items() if identity[k] != v} == {"host_key": fingerprint(second)}
    assert said.export_text().splitlines()[0] == (
        f"latency table: {Path(measured['path']).name} was measured elsewhere (host_key {fingerprint(first)}, now "
        f"{fingerprint(second)}): not this board's timings, measuring them again")
    assert Path(measured["path"]).is_file()  # kept: going back to the first board reuses it
