"""The study's narrow-twin judgement is two-sided, and the committed study is judged by it."""

from __future__ import annotations

import importlib
import json
import sys

import pytest

from tests.paths import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
study = importlib.import_module("study")  # benchmarks/study.py


@pytest.mark.parametrize("low, high, expected", [
    (0.97, 1.03, "yes"),  # the whole interval within +-5%
    (0.934, 1.003, "unresolved"),  # upper end within, lower end beyond: the one-sided check called this "yes"
    (0.994, 1.055, "unresolved"),
    (1.06, 1.10, "NO"),  # wholly slower than the twin
    (0.80, 0.94, "NO"),  # wholly faster: not the same model either
    (0.95, 1.05, "yes"),
])
def test_twin_judgement_is_two_sided(low, high, expected):
    assert study.twin_judgement(low, high) == expected


def test_the_committed_study_is_judged_two_sided():
    committed = json.loads((REPO / "benchmarks" / "results" / "study.json").read_text())
    rows = [row for rows in committed["twins"].values() for row in rows]
    assert len(rows) == 16
    assert all(row["within"] == study.twin_judgement(row["low"], row["high"]) for row in rows)
    targets = [t["twin"] for t in committed["targets"] if t.get("twin")]
    assert all(t["within"] == study.twin_judgement(t["low"], t["high"]) for t in targets)
    # the 2026-12-07 run (a noisy machine): 7 wholly within +-5%, 9 unresolved, none wholly outside
    assert [sum(row["within"] == label for row in rows) for label in ("yes", "unresolved", "NO")] == [7, 9, 0]
