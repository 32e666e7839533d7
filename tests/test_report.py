"""The verdict: bootstrap intervals that behave, verdicts that follow them, and `tsprune-edge report` on a real
bench run of this machine."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.test_bad_input import assert_one_line_error
from tests.test_bench import FAST, bundles  # noqa: F401 (fixture)
from tsprune_edge.report.stats import NO_CHANGE, REAL_SPEEDUP, SLOWDOWN, median_ratio, verdict


def _rounds(median: float, spread: float, seed: int, rounds: int = 3, n: int = 400) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [median * (1 + rng.normal(0, 0.01)) * rng.lognormal(0, spread, n) for _ in range(rounds)]


def test_a_halved_latency_is_a_real_speedup_near_two():
    ratio = median_ratio(_rounds(0.5, 0.05, 1), _rounds(1.0, 0.05, 2))
    assert ratio.low <= ratio.ratio <= ratio.high
    assert 1.9 < ratio.speedup < 2.1 and ratio.high < 0.55
    assert verdict(ratio, 0.05) == REAL_SPEEDUP


def test_the_same_distribution_is_no_significant_change():
    ratio = median_ratio(_rounds(1.0, 0.05, 3), _rounds(1.0, 0.05, 4))
    assert abs(ratio.ratio - 1) < 0.03 and ratio.low < 1.05 and ratio.high > 1 / 1.05
    assert verdict(ratio, 0.05) == NO_CHANGE


def test_slower_is_a_slowdown_and_a_small_effect_is_not_enough():
    assert verdict(median_ratio(_rounds(1.3, 0.05, 5), _rounds(1.0, 0.05, 6)), 0.05) == SLOWDOWN
    small = median_ratio(_rounds(0.97, 0.02, 7), _rounds(1.0, 0.02, 8))
    assert small.high < 1.0 and verdict(small, 0.05) == NO_CHANGE  # faster, but by less than the 5% asked for


def test_rounds_that_disagree_widen_the_interval():
    """Round-to-round drift is the noise that matters; resampling rounds must show it."""
    steady = median_ratio(_rounds(0.8, 0.02, 9), _rounds(1.0, 0.02, 10))
    rng = np.random.default_rng(11)
    drifting = [r * f for r, f in zip(_rounds(0.8, 0.02, 9), (0.85, 1.0, 1.15), strict=True)]
    wide = median_ratio(drifting, [r * rng.uniform(0.98, 1.02) for r in _rounds(1.0, 0.02, 10)])
    assert wide.high - wide.low > 3 * (steady.high - steady.low)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, bundles):  # noqa: F811
    from tsprune_edge.devices.bench import BenchRequest, bench

    results = tmp_path_factory.mktemp("results")
    summary = bench(BenchRequest(device="desktop", artifacts=bundles, results=results, rounds=2, min_time=0.2,
                                 min_iters=20))
    return results / summary["run_id"]


def test_report_on_a_real_run(cli, tmp_path, bench_run):
    out = tmp_path / "report"
    result = cli("report", str(bench_run), "--out", str(out))
    assert result.code == 0, result.err
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert [(r["variant"], r["format"]) for r in rows] == [
        ("dense", "onnx"), ("unstructured-0.5", "onnx"), ("dense", "tflite"), ("unstructured-0.5", "tflite")]
    for row in rows:
        assert row["rounds"] == 2 and row["flags"] == [] and row["torch_mse"] > 0
        if row["variant"] == "dense":
            assert "ratio" not in row
            continue
        assert row["ratio_low"] <= row["ratio"] <= row["ratio_high"]
        assert row["verdict"] in (REAL_SPEEDUP, NO_CHANGE, SLOWDOWN) and row["verdict"] in result.out
        assert row["predicted_speedup"] == pytest.approx(1.0)  # unstructured zeros do not cut dense MACs
        assert row["efficiency"] is None and 0 < row["file_ratio"] < 1 and row["memory_ratio"] > 0
    with open(out / "report.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 4 and table[1]["verdict"] == rows[1]["verdict"]
    assert "| unstructured-0.5 |" in (out / "report.md").read_text()


def test_report_refuses_what_is_not_a_run(cli, tmp_path):
    assert_one_line_error(cli("report", str(tmp_path), "--out", str(tmp_path / "r")), "no finished bench run")
    assert_one_line_error(cli("report", str(tmp_path), "--min-effect", "1.5"), "--min-effect must be in [0, 1)")
