"""benchmarks/leaderboard.py's pure parts: the Pareto front, the aggregation over seeds, the generated sentence and
resumability (a finished cell is never computed again, a failed one is). No training, no bench."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
leaderboard = importlib.import_module("leaderboard")  # benchmarks/leaderboard.py


def trained(model: str, seed: int, mse: float, mae: float, variant: str = "dense") -> tuple[str, dict]:
    name = leaderboard.cell_id(variant, "ETTh1", model, 96, seed)
    record = {"status": "ok", "seed": seed, "parameters": 100, "test": {"mse": mse, "mae": mae, "windows": 9}}
    return name, record | ({"preset": "small"} if variant == "dense" else {})


def refused(model: str, seed: int, variant: str, reason: str) -> tuple[str, dict]:
    return leaderboard.cell_id(variant, "ETTh1", model, 96, seed), {"status": "n/a", "seed": seed, "reason": reason}


def table() -> dict[str, dict]:
    """Two seeds: a tiny model (refused by structured pruning), a Transformer dense and pruned."""
    cells = dict([trained("sparsetsf", 1, 0.40, 0.41), trained("sparsetsf", 2, 0.42, 0.43),
                  refused("sparsetsf", 1, leaderboard.STRUCTURED, "sparsetsf has no heads or ffn"),
                  refused("sparsetsf", 2, leaderboard.STRUCTURED, "sparsetsf has no heads or ffn"),
                  trained("transformer", 1, 0.36, 0.40), trained("transformer", 2, 0.38, 0.42),
                  trained("transformer", 1, 0.45, 0.47, leaderboard.STRUCTURED),
                  trained("transformer", 2, 0.47, 0.49, leaderboard.STRUCTURED)])
    cells[leaderboard.cell_id(f"export-{leaderboard.STRUCTURED}", "ETTh1", "transformer", 96)] = {
        "status": "ok", "seed": 2, "parameters": 50, "macs": 1000, "bytes": {"onnx": 2048, "tflite": 1024}}
    return cells


LATENCY = {"sparsetsf-L96-dense": {"onnx": 0.01, "tflite": 0.02},
           "transformer-L96-dense": {"onnx": 1.0, "tflite": 2.0},
           "transformer-L96-structured-0.5": {"onnx": 0.5, "tflite": 1.0}}


def test_pareto_front_keeps_the_undominated_points_fastest_first():
    points = [{"name": "a", "p50_ms": 1.0, "mse": 0.5}, {"name": "b", "p50_ms": 2.0, "mse": 0.4},
              {"name": "c", "p50_ms": 2.0, "mse": 0.6}, {"name": "d", "p50_ms": 0.5, "mse": 0.9},
              {"name": "e", "p50_ms": 1.0, "mse": 0.5}]
    rows = [{"bundle": p["name"], "status": "ok", "p50_ms": {"onnx": p["p50_ms"]}, "mse": {"mean": p["mse"]}}
            for p in points]
    # c is dominated by a and b; a and e tie (neither is better in one), so both stay
    assert leaderboard.fronts(rows) == {"onnx": ["d", "a", "e", "b"], "tflite": []}


def test_aggregate_is_the_mean_and_min_max_over_seeds():
    assert leaderboard.aggregate([0.25, 0.5, 0.75]) == {"mean": 0.5, "min": 0.25, "max": 0.75, "n": 3}
    assert leaderboard.aggregate([]) is None


def test_summary_rows_aggregate_seeds_and_keep_refusals():
    rows = leaderboard.summary_rows(table(), "ETTh1", 96, ["sparsetsf", "transformer"], [1, 2], LATENCY)
    assert [(r["model"], r["variant"], r["status"]) for r in rows] == [
        ("sparsetsf", "dense", "ok"), ("sparsetsf", "structured-0.5", "n/a"), ("transformer", "dense", "ok"),
        ("transformer", "structured-0.5", "ok")]
    tiny, refusal, dense, pruned = rows
    assert tiny["seeds"] == [1, 2]
    assert tiny["mse"] == {"mean": pytest.approx(0.41), "min": 0.40, "max": 0.42, "n": 2}
    assert tiny["mae"]["mean"] == pytest.approx(0.42)
    assert refusal["reason"] == "sparsetsf has no heads or ffn"
    assert pruned["parameters"] == 50 and pruned["macs"] == 1000 and pruned["bytes"] == {"onnx": 2048,
                                                                                         "tflite": 1024}
    assert dense["parameters"] == 100  # no export cell yet: the trained model's count
    assert pruned["p50_ms"] == {"onnx": 0.5, "tflite": 1.0}
    assert (pruned["benched_seed"], pruned["preset"], dense["benched_seed"]) == (2, "small", None)


def test_a_seed_not_done_is_left_out_of_the_mean():
    rows = leaderboard.summary_rows(table(), "ETTh1", 96, ["transformer"], [1, 2, 3], LATENCY)
    assert rows[0]["seeds"] == [1, 2] and rows[0]["mse"]["n"] == 2


def test_fronts_and_the_sentence_come_from_the_table():
    rows = leaderboard.summary_rows(table(), "ETTh1", 96, ["sparsetsf", "transformer"], [1, 2], LATENCY)
    front = leaderboard.fronts(rows)
    # structured (0.46 at 0.5 ms) is slower and worse than sparsetsf (0.41 at 0.01 ms); dense is the most accurate
    assert front == {"onnx": ["sparsetsf-L96-dense", "transformer-L96-dense"],
                     "tflite": ["sparsetsf-L96-dense", "transformer-L96-dense"]}
    found = leaderboard.findings(rows, front, ["sparsetsf"])
    assert found["onnx"] == {"pruned": 1, "pruned_on_front": [], "dominated_by_tiny": ["transformer structured-0.5"],
                             "best_mse": pytest.approx(0.37),
                             "fastest_near_best": {"model": "transformer", "p50_ms": 1.0, "mse": pytest.approx(0.37)}}
    sentence = leaderboard.verdict_sentence("ETTh1", found)
    assert sentence == (
        "ETTh1: in ONNX Runtime no pruned variant is on the front, a tiny model dominates 1 of 1 pruned variants "
        "(transformer structured-0.5), and the fastest model within 5% of the best test MSE (0.3700) is "
        "transformer (1 ms, MSE 0.3700); in LiteRT no pruned variant is on the front, a tiny model dominates 1 "
        "of 1 pruned variants (transformer structured-0.5), and the fastest model within 5% of the best test MSE "
        "(0.3700) is transformer (2 ms, MSE 0.3700).")


def test_a_pruned_variant_on_the_front_is_named_as_a_win():
    cells = table()
    cells.update(dict([trained("transformer", 1, 0.38, 0.40, leaderboard.STRUCTURED),
                       trained("transformer", 2, 0.38, 0.40, leaderboard.STRUCTURED)]))
    rows = leaderboard.summary_rows(cells, "ETTh1", 96, ["sparsetsf", "transformer"], [1, 2], LATENCY)
    front = leaderboard.fronts(rows)
    assert front["onnx"] == ["sparsetsf-L96-dense", "transformer-L96-structured-0.5", "transformer-L96-dense"]
    sentence = leaderboard.verdict_sentence("ETTh1", leaderboard.findings(rows, front, ["sparsetsf"]))
    assert sentence.startswith("ETTh1: in ONNX Runtime pruning wins on the front with transformer structured-0.5, "
                               "no tiny model dominates any of the 1 pruned variants, and the fastest model within "
                               "5% of the best test MSE (0.3700) is transformer structured-0.5 (0.5 ms, MSE 0.3800)")


def test_a_finished_cell_is_read_not_computed(tmp_path):
    (tmp_path / "train--ETTh1--x--L96.json").write_text(json.dumps({"status": "ok", "seconds": 3.0}))

    def never() -> dict:
        raise AssertionError("a finished cell was computed again")

    assert leaderboard.run_cell(tmp_path, "train--ETTh1--x--L96", never) == {"status": "ok", "seconds": 3.0}


def test_a_failed_cell_is_kept_and_tried_again(tmp_path):
    def broken() -> dict:
        raise ValueError("disk on fire\nsecond line")

    name, lines = "train--ETTh1--y--L96--s1", []
    failed = leaderboard.run_cell(tmp_path, name, broken, lines.append)
    assert failed["status"] == "failed" and failed["error"] == "ValueError: disk on fire"
    assert json.loads((tmp_path / f"{name}.error.json").read_text())["error"] == "ValueError: disk on fire"
    assert lines == [f"cell {name} failed: ValueError: disk on fire"]
    assert leaderboard.read_cells(tmp_path)[name]["status"] == "failed"
    done = leaderboard.run_cell(tmp_path, name, lambda: {"status": "ok"})
    assert done["status"] == "ok" and done["cell"] == name
    assert not (tmp_path / f"{name}.error.json").exists()
    assert json.loads((tmp_path / f"{name}.json").read_text())["status"] == "ok"


@pytest.mark.parametrize("stray, text, problem", [
    ("notes.json", "{}", "is not a cell record (names are kind--dataset--model--L<lookback>[--s<seed>]); move it out"),
    ("dense--ETTh1--dlinear--L96--s2021.json", "<<<<<<< HEAD", "is not valid JSON"),
])
def test_a_stray_or_broken_file_in_the_record_stops_the_run_in_one_line(tmp_path, stray, text, problem):
    record, results = tmp_path / "record", tmp_path / "results"
    record.mkdir()
    (record / stray).write_text(text)
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "leaderboard.py"), "--record", str(record),
                          "--results", str(results), "--work", str(tmp_path / "work"), "--summarize", "--nice", "0"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.startswith(f"error: {record / stray} {problem}") and run.stderr.count("\n") == 1
    assert not results.exists() and sorted(p.name for p in record.iterdir()) == [stray]


def test_deadline_is_its_next_occurrence_past_midnight():
    """Started at 23:30 with --deadline 01:30 the run goes on (tomorrow's 01:30); a deadline an hour after a start
    two days ago has passed; none never passes."""
    now = dt.datetime.now(dt.UTC)
    assert leaderboard.deadline_check((now - dt.timedelta(minutes=90)).strftime("%H:%M"), now=now)() is False
    two_days_ago = now - dt.timedelta(days=2)
    assert leaderboard.deadline_check((two_days_ago + dt.timedelta(hours=1)).strftime("%H:%M"), now=two_days_ago)()
    assert leaderboard.deadline_check(None)() is False


@pytest.mark.parametrize("text", ["7pm", "24:00", "23:60"])
def test_bad_deadline_is_one_line_and_exit_2(capsys, text):
    with pytest.raises(SystemExit) as stopped:
        leaderboard.parse(["--deadline", text])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (f"error: --deadline takes HH:MM in UTC, got '{text}'; for example "
                                       "--deadline 23:30\n")


def test_every_dataset_at_lookback_96_comes_before_the_lookback_720_phase():
    assert leaderboard.phases(["ETTh1", "ETTh2", "ETTm1", "weather"], True) == [
        ("ETTh1", 96), ("ETTh2", 96), ("ETTm1", 96), ("weather", 96), ("ETTh1", 720)]
    assert leaderboard.phases(["ETTh1", "ETTh2"], False) == [("ETTh1", 96), ("ETTh2", 96)]
    assert leaderboard.phases(["weather"], True) == [("weather", 96)]  # 720 is run on ETTh1 only


def test_seeds_take_a_count_or_a_list():
    assert leaderboard.parse(["--seeds", "1"]).seeds == [2021]
    assert leaderboard.parse(["--seeds", "3"]).seeds == [2021, 2022, 2023]
    assert leaderboard.parse(["--seeds", "7,8"]).seeds == [7, 8]


def test_markdown_gives_refusals_their_reason_and_marks_the_front():
    rows = leaderboard.summary_rows(table(), "ETTh1", 96, ["sparsetsf", "transformer"], [1, 2], LATENCY)
    front = leaderboard.fronts(rows)
    for row in rows:
        row["on_front"] = [fmt for fmt in leaderboard.RUNTIMES if row["bundle"] in front[fmt]]
    result = {"machine": {"cpu": "test cpu", "cores": 2}, "date": "d", "commit": "c", "cell_commits": ["c"],
              "evaluation": leaderboard.EVALUATION, "cell_minutes": {},
              "settings": {"seeds": [1, 2], "pred_len": 96, "max_epochs_cap": [], "finetune_epochs": [1],
                           "fit": "--speedup 2", "bench": {"rounds": 5, "min_time_s": 1.0, "min_iters": 100},
                           "tiny_models": ["sparsetsf"]},
              "sections": [{"dataset": "ETTh1", "lookback": 96, "rows": rows, "front": front, "sentence": "S.",
                            "progress": leaderboard.section_progress(table(), "ETTh1", 96,
                                                                     ["sparsetsf", "transformer"], [1, 2], LATENCY)}]}
    text = leaderboard.markdown(result)
    assert "| sparsetsf | structured-0.5 | n/a | | | | | | | |" in text
    assert "- sparsetsf structured-0.5: sparsetsf has no heads or ffn" in text
    assert ("| transformer | dense | 100 | - | - / - | 0.3700 [0.3600, 0.3800] | 0.4100 [0.4000, 0.4200] | 1 | 2 "
            "| O, L |") in text
    assert "| transformer | structured-0.5 | 50 | 1,000 | 2.0 / 1.0 | 0.4600 [0.4500, 0.4700]" in text
    assert "one process at a time, with no other heavy process beside it." in text
    beside = leaderboard.markdown({**result, "train_ahead": ["ETTh1 transformer s1", "ETTh1 transformer s2"]})
    assert ("2 dense cells (listed in the JSON) were trained by a second process beside the main one "
            "(`--train-ahead`, 1 torch thread; meanwhile the main run trained with 1 thread too") in beside
    assert "one process at a time" not in beside


def test_progress_counts_settled_cells_and_unbenched_bundles():
    models, seeds = ["sparsetsf", "transformer"], [1, 2]
    progress = leaderboard.section_progress(table(), "ETTh1", 96, models, seeds, LATENCY)
    # 2 models x 2 seeds x 3 variants; the fit cells are not done: 8 settled (the refusals count)
    assert progress == {"cells": 12, "settled": 8, "unbenched": [], "complete": False}
    cells = table() | dict(refused(m, seed, leaderboard.FIT, "below the smallest") for m in models for seed in seeds)
    cells[leaderboard.cell_id("export-dense", "ETTh1", "informer", 96)] = {"status": "ok", "seed": 1}
    cells |= dict([refused("informer", 1, "dense", "too few rows"), trained("informer", 2, 0.5, 0.5)])
    progress = leaderboard.section_progress(cells, "ETTh1", 96, models + ["informer"], seeds, LATENCY)
    # informer seed 1's dense refusal settles its pruned cells too; seed 2 has only its dense cell
    assert progress == {"cells": 18, "settled": 16, "unbenched": ["informer-L96-dense"], "complete": False}
    cells.pop(leaderboard.cell_id("export-dense", "ETTh1", "informer", 96))
    assert leaderboard.section_progress(cells, "ETTh1", 96, models, seeds, LATENCY)["complete"] is True
    cells[leaderboard.cell_id(leaderboard.FIT, "ETTh1", "transformer", 96, 1)] = {"status": "failed", "error": "x"}
    assert leaderboard.section_progress(cells, "ETTh1", 96, models, seeds, LATENCY)["settled"] == 11


def test_a_table_committed_mid_run_says_what_is_not_done():
    cells = table()
    cells.pop(leaderboard.cell_id(leaderboard.STRUCTURED, "ETTh1", "transformer", 96, 2))
    models, seeds = ["sparsetsf", "transformer"], [1, 2]
    latency = {name: p50 for name, p50 in LATENCY.items() if "structured" not in name}  # its bench not run yet
    latency["transformer-L96-dense"] = {"onnx": 1.0, "onnx_interval": [0.9, 1.15], "tflite": 2.0}
    rows = leaderboard.summary_rows(cells, "ETTh1", 96, models, seeds, latency)
    for row in rows:
        row["on_front"] = []
    done = {"dataset": "ETTh1", "lookback": 96, "rows": rows, "front": {}, "sentence": "S.",
            "progress": leaderboard.section_progress(cells, "ETTh1", 96, models, seeds, latency)}
    empty = {"dataset": "ETTh2", "lookback": 96, "rows": [], "front": {}, "sentence": "S.",
             "progress": leaderboard.section_progress({}, "ETTh2", 96, models, seeds, {})}
    result = {"machine": {}, "date": "d", "commit": "c", "cell_commits": [], "evaluation": "e", "cell_minutes": {},
              "settings": {"seeds": seeds, "pred_len": 96, "max_epochs_cap": [], "finetune_epochs": [1],
                           "fit": "f", "bench": {"rounds": 5, "min_time_s": 1.0, "min_iters": 100},
                           "tiny_models": ["sparsetsf"]},
              "sections": [done, empty]}
    text = leaderboard.markdown(result)
    assert ("Status: in progress: ETTh1 L96 (7 of 12 cells, 1 bundle not benched yet); no cell done yet: ETTh2 L96."
            in text)
    assert "**In progress**: 7 of 12 cells (model x seed x variant) settled; 1 exported bundle not benched" in text
    assert "| transformer | structured-0.5 | 50 | 1,000 | 2.0 / 1.0 | 0.4500 (1 of 2 seeds) | 0.4700 (1 of 2 seeds) " \
           "| - | - |" in text
    assert ("| transformer | dense | 100 | - | - / - | 0.3700 [0.3600, 0.3800] | 0.4100 [0.4000, 0.4200] "
            "| 1 [0.9, 1.15] | 2 |") in text


def test_the_bench_waits_for_every_exported_bundle_and_is_not_redone_on_a_new_machine(tmp_path):
    cells = table()
    cells[leaderboard.cell_id("export-dense", "ETTh1", "sparsetsf", 96)] = {"status": "ok", "seed": 1}
    cells[leaderboard.cell_id("export-dense", "ETTh2", "sparsetsf", 96)] = {"status": "ok", "seed": 1}
    cells[leaderboard.cell_id("export-fit-speedup2", "ETTh1", "transformer", 96)] = {"status": "failed"}
    assert leaderboard.exported(cells, "ETTh1") == {
        "sparsetsf-L96-dense": "export-dense--ETTh1--sparsetsf--L96",
        "transformer-L96-structured-0.5": "export-structured-0.5--ETTh1--transformer--L96"}
    for name, found in cells.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(found))
    bench = {"status": "ok", "bundles": ["sparsetsf-L96-dense", "transformer-L96-structured-0.5"], "latency": {}}
    (tmp_path / "bench--ETTh1--all--L96.json").write_text(json.dumps(bench))
    args = leaderboard.parse(["--record", str(tmp_path)])
    # the work folder is empty (a fresh machine): the bench done with every exported bundle is kept as it is
    assert leaderboard.bench_dataset(tmp_path / "work", "ETTh1", args, lambda: True) is True
    assert json.loads((tmp_path / "bench--ETTh1--all--L96.json").read_text()) == bench
    assert not list(tmp_path.glob("*.superseded.json"))
    # a bundle exported since: the bench is due, and past the deadline nothing starts
    (tmp_path / "export-dense--ETTh1--transformer--L96.json").write_text(json.dumps({"status": "ok", "seed": 1}))
    assert leaderboard.bench_dataset(tmp_path / "work", "ETTh1", args, lambda: True) is False
    assert json.loads((tmp_path / "bench--ETTh1--all--L96.json").read_text()) == bench


def test_a_carried_section_says_where_it_came_from():
    rows = leaderboard.summary_rows(table(), "ETTh1", 96, ["sparsetsf", "transformer"], [1, 2], LATENCY)
    for row in rows:
        row["on_front"] = []
    carried = {"date": "2026-12-07 14:57 UTC", "commit": "00e23c6", "cell_commits": ["cabaa91", "f675f4d"],
               "machine": {}}
    result = {"machine": {}, "date": "d", "commit": "c", "cell_commits": [], "evaluation": "e", "cell_minutes": {},
              "settings": {"seeds": [1, 2], "pred_len": 96, "max_epochs_cap": [], "finetune_epochs": [1],
                           "fit": "f", "bench": {"rounds": 5, "min_time_s": 1.0, "min_iters": 100},
                           "tiny_models": ["sparsetsf"]},
              "sections": [{"dataset": "ETTh1", "lookback": 96, "rows": rows, "front": {}, "sentence": "S.",
                            "carried": carried, "bench_run": "runs/leaderboard/bench/ETTh1/desktop-20261207-134230",
                            "progress": {"cells": 12, "settled": 12, "unbenched": [], "complete": True}}]}
    assert ("Carried over unchanged from the results of 2026-12-07 14:57 UTC (commit 00e23c6; cells computed at "
            "cabaa91, f675f4d): this section's cell records were kept only on that session's machine and were "
            "lost with it, so it is repeated as it was, not recomputed.") in leaderboard.markdown(result)
    # its bench ran on the machine it was carried from
    carried["machine"] = {"cpu": "AMD EPYC", "cores": 2}
    assert ("Latency: one interleaved bench, run desktop-20261207-134230, on AMD EPYC (2 cores)."
            in leaderboard.markdown(result))


def test_a_complete_section_whose_records_were_lost_is_not_computed_again():
    previous = {"sections": [
        {"dataset": "ETTh1", "lookback": 96, "progress": {"complete": True}},
        {"dataset": "ETTh2", "lookback": 96, "progress": {"complete": False}},
        {"dataset": "ETTm1", "lookback": 96, "progress": {"complete": True}}]}
    cells = {leaderboard.cell_id("dense", "ETTm1", "dlinear", 96, 2021): {"status": "ok"},
             leaderboard.cell_id("dense", "ETTh1", "dlinear", 720, 2021): {"status": "ok"}}
    # ETTm1 has records of its own: it goes on from them; ETTh2 was not complete: it is computed
    assert leaderboard.complete_elsewhere(cells, previous) == {("ETTh1", 96)}
    assert leaderboard.complete_elsewhere(cells, None) == set()


def test_the_code_version_is_head_and_says_when_code_outside_the_results_had_changed(tmp_path):
    def git(*argv: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *argv], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout.strip()

    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "cell.json").write_text("{}")
    (tmp_path / "model.py").write_text("a = 1\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "first")
    head = git("rev-parse", "--short", "HEAD")
    assert leaderboard.code_version(tmp_path, results) == head
    (results / "cell.json").write_text('{"status": "ok"}')  # the run's own record: not a change of code
    assert leaderboard.code_version(tmp_path, results) == head
    (tmp_path / "model.py").write_text("a = 2\n")
    assert leaderboard.code_version(tmp_path, results) == f"{head}+changes"
