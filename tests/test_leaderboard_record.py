"""benchmarks/leaderboard_record.py: the leaderboard's record survives a new machine. It keeps exactly the
checkpoints later cells need, puts them back, and carries a section whose records were lost instead of dropping it."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
record = importlib.import_module("leaderboard_record")  # benchmarks/leaderboard_record.py

PRUNED = ("structured-0.5", "fit-speedup2")


def ok(checkpoint: str, **extra) -> dict:
    return {"status": "ok", "checkpoint": checkpoint, **extra}


def test_a_cell_name_reads_back_into_its_parts():
    assert record.parse_cell(record.cell_id("dense", "ETTh2", "patchtst", 96, 2022)) == (
        "dense", "ETTh2", "patchtst", 96, 2022)
    assert record.parse_cell(record.cell_id("export-fit-speedup2", "ETTm1", "dlinear", 720)) == (
        "export-fit-speedup2", "ETTm1", "dlinear", 720, None)


def test_needed_checkpoints_are_unsettled_dense_models_and_exported_seeds():
    cid = record.cell_id
    cells = {
        # seed 2021: both pruned cells settled (one refused): its dense model is no longer needed
        cid("dense", "ETTh2", "dlinear", 96, 2021): ok("d21.pt"),
        cid("structured-0.5", "ETTh2", "dlinear", 96, 2021): ok("s21.pt", seed=2021),
        cid("fit-speedup2", "ETTh2", "dlinear", 96, 2021): {"status": "n/a", "reason": "below the smallest"},
        # seed 2022: fit not done yet, structured failed (tried again): dense is needed
        cid("dense", "ETTh2", "dlinear", 96, 2022): ok("d22.pt"),
        cid("structured-0.5", "ETTh2", "dlinear", 96, 2022): {"status": "failed", "error": "x"},
        # the exported structured bundle came from seed 2021, the dense one from seed 2022
        cid("export-structured-0.5", "ETTh2", "dlinear", 96): {"status": "ok", "seed": 2021},
        cid("export-dense", "ETTh2", "dlinear", 96): {"status": "ok", "seed": 2022},
        # a refused dense model needs nothing
        cid("dense", "ETTh2", "crossformer", 96, 2021): {"status": "n/a", "reason": "too few rows"},
    }
    assert record.needed_checkpoints(cells, PRUNED) == {"s21.pt", "d22.pt"}


def test_keep_copies_what_is_needed_drops_the_rest_and_restore_puts_it_back(tmp_path):
    work, rec = tmp_path / "work", tmp_path / "record"
    for name, content in {"models/a/dense/model.pt": b"dense", "models/a/fit/round-2/model.pt": b"fit",
                          "models/b/dense/model.pt": b"old"}.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(content)
    needed = {"models/a/dense/model.pt", "models/a/fit/round-2/model.pt", "models/b/dense/model.pt"}
    assert record.keep(work, rec, needed) == []
    assert (rec / "checkpoints/models/a/fit/round-2/model.pt").read_bytes() == b"fit"

    # model b is settled now and a's dense model was trained again: b leaves the record, a's copy is replaced
    (work / "models/a/dense/model.pt").write_bytes(b"retrained")
    missing = record.keep(work, rec, {"models/a/dense/model.pt", "models/a/fit/round-2/model.pt", "models/c.pt"})
    assert missing == ["models/c.pt"]
    assert (rec / "checkpoints/models/a/dense/model.pt").read_bytes() == b"retrained"
    assert not (rec / "checkpoints/models/b").exists()
    assert not list(rec.rglob("*.partial"))

    fresh = tmp_path / "new-machine"
    assert record.restore(fresh, rec) == 2
    assert (fresh / "models/a/fit/round-2/model.pt").read_bytes() == b"fit"
    assert record.restore(fresh, rec) == 0  # what is there is left alone


def test_checkpoints_are_recorded_relative_to_the_work_folder(tmp_path):
    work = tmp_path / "runs" / "leaderboard"
    stored = record.stored_path(work, work / "models" / "x" / "model.pt")
    assert stored == "models/x/model.pt"
    assert record.checkpoint_of(tmp_path / "elsewhere", {"checkpoint": stored}) == tmp_path / "elsewhere" / stored
    assert record.checkpoint_of(work, {"checkpoint": "/old/abs/model.pt"}) == Path("/old/abs/model.pt")


def test_a_superseded_cell_is_set_aside_and_no_longer_read_as_done(tmp_path):
    (tmp_path / "dense--x.json").write_text(json.dumps({"status": "ok"}))
    moved = record.supersede(tmp_path, "dense--x")
    assert moved.name.startswith("dense--x.") and moved.name.endswith(".superseded.json")
    assert json.loads(moved.read_text()) == {"status": "ok"}
    assert not (tmp_path / "dense--x.json").exists()


def section(dataset: str, settled: int, rows: list, **extra) -> dict:
    return {"dataset": dataset, "lookback": 96, "rows": rows, "progress": {"settled": settled}, **extra}


PREVIOUS = {"date": "2026-12-07 14:57 UTC", "commit": "00e23c6", "cell_commits": ["f675f4d"],
            "machine": {"cpu": "AMD EPYC"},
            "sections": [section("ETTh1", 90, [{"model": "fits"}]), section("ETTh2", 13, [{"model": "autoformer"}]),
                         section("ETTm1", 0, [])]}


def test_a_section_with_no_record_here_is_carried_with_where_it_came_from():
    now = [section("ETTh1", 0, []), section("ETTh2", 1, [{"model": "autoformer", "new": True}]),
           section("ETTm1", 0, [])]
    out = record.carried_sections(now, PREVIOUS)
    assert out[0]["rows"] == [{"model": "fits"}]
    assert out[0]["carried"] == {"date": "2026-12-07 14:57 UTC", "commit": "00e23c6", "cell_commits": ["f675f4d"],
                                 "machine": {"cpu": "AMD EPYC"}}
    assert out[1] == now[1]  # a section with a record of its own is computed from it, never mixed
    assert out[2] == now[2] and "carried" not in out[2]
    # carried again later: it keeps where it first came from
    again = record.carried_sections([section("ETTh1", 0, [])], {**PREVIOUS, "commit": "later", "sections": out})
    assert again[0]["carried"]["commit"] == "00e23c6"
    assert record.carried_sections(now, None) == now
