"""`bench --control`: the A/A control, a byte-different copy of dense measured beside it by the real agent and
judged against it like a variant; the answer warns, and report.json says, when it is not EQUIVALENT."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.refusals import assert_one_line_error
from tsprune_edge.cli import main
from tsprune_edge.devices import runs
from tsprune_edge.devices.agent import verify_bundle
from tsprune_edge.export.control import NOTE, ONNX_KEY, TFLITE_TRAILER, make_control
from tsprune_edge.report.control import FIX
from tsprune_edge.report.stats import EQUIVALENT, REAL_SPEEDUP, label
from tsprune_edge.variants import CONTROL, DENSE

ROUNDS = ("--rounds", "3", "--max-rounds", "3", "--min-time", "0.1", "--min-iters", "20")


def _outputs(path: Path, samples: dict) -> np.ndarray:
    """The artifact's forecasts for the bundle's sample windows, one call per window, in the real runtime."""
    history, calendar = samples["history"], samples["calendar"]
    if path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        return np.stack([session.run(None, dict(zip(names, (history[i:i + 1], calendar[i:i + 1]), strict=True)))[0]
                         for i in range(len(history))])
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner()
    names = interpreter.get_signature_list()["serving_default"]["inputs"]
    return np.stack([next(iter(runner(**dict(zip(names, (history[i:i + 1], calendar[i:i + 1]), strict=True)))
                               .values())) for i in range(len(history))])


def test_the_control_copy_differs_in_bytes_and_computes_the_same(tmp_path, bundles):
    target = tmp_path / CONTROL
    manifest = make_control(bundles / DENSE, target)
    dense = json.loads((bundles / DENSE / "manifest.json").read_text())
    assert manifest["control"] == {"of": DENSE, "note": NOTE}
    assert json.loads((target / "manifest.json").read_text()) == manifest
    assert not list(tmp_path.glob(".*partial"))  # the scratch folder became the copy
    samples = dict(np.load(bundles / DENSE / "samples.npz"))
    for fmt in ("onnx", "tflite"):
        mine, theirs = manifest["artifacts"][fmt], dense["artifacts"][fmt]
        data = (target / mine["file"]).read_bytes()
        assert mine["sha256"] == hashlib.sha256(data).hexdigest() != theirs["sha256"]
        assert mine["bytes"] == len(data) > theirs["bytes"]
        assert np.array_equal(_outputs(target / mine["file"], samples), _outputs(bundles / DENSE / theirs["file"],
                                                                                 samples))  # bit for bit
        assert {k: v for k, v in mine.items() if k not in ("sha256", "bytes", "zstd_bytes")} == \
            {k: v for k, v in theirs.items() if k not in ("sha256", "bytes", "zstd_bytes")}
    assert (target / "model.tflite").read_bytes() == (bundles / DENSE / "model.tflite").read_bytes() + TFLITE_TRAILER
    props = {p.key: p.value for p in onnx.load(str(target / "model.onnx")).metadata_props}
    assert props[ONNX_KEY] == NOTE
    dense_graph = onnx.load(str(bundles / DENSE / "model.onnx")).graph
    assert onnx.load(str(target / "model.onnx")).graph == dense_graph
    assert verify_bundle(str(target))["ok"]  # the agent's own check on the board passes: every sha256 matches


@pytest.fixture(scope="module")
def control_run(tmp_path_factory, bundles):
    """A real desktop bench with --control of dense and unstructured-0.5 (ONNX Runtime, 3 rounds)."""
    root = tmp_path_factory.mktemp("control")
    for name in (DENSE, "unstructured-0.5"):
        shutil.copytree(bundles / name, root / "artifacts" / name)
    try:  # the real CLI, as a user runs it
        main(["bench", "--device", "desktop", "--artifacts", str(root / "artifacts"), "--results",
              str(root / "results"), "--runtime", "onnxruntime", "--control", *ROUNDS])
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
    (run,) = (root / "results").iterdir()
    return run


def test_a_desktop_bench_with_control_measures_and_reports_it(cli, tmp_path, control_run, bundles):
    """What a sound bench guarantees of an A/A pair, whatever the machine's load: the board ran a byte-different
    copy that computes dense's forecasts bit for bit (the same error on every sample window), and the control is
    judged exactly as a variant: its speedup is the geometric mean of its paired round ratios, its label the one its
    interval gets. Its label is not asserted: a 95% interval of two equal models misses 1 in one run of twenty by
    design, so any one label can come of a sound run (test_a_run_whose_control_is_not_equivalent_is_flagged pins
    what the report does with each)."""
    summary = json.loads((control_run / "bench.json").read_text())
    assert [i["id"] for i in summary["items"]] == ["dense__onnx__t1", "unstructured-0.5__onnx__t1",
                                                   "control__onnx__t1"]
    assert all(i["rounds"] == 3 and i["correct"] for i in summary["items"])
    assert summary["bundles"][CONTROL]["method"] == CONTROL and summary["bundles"][DENSE]["method"] == DENSE
    assert (control_run / CONTROL / "manifest.json").is_file()  # the copy the board measured stays with the run
    out = tmp_path / "report"
    result = cli("report", str(control_run), "--out", str(out))
    assert result.code == 0, result.err
    report = json.loads((out / "report.json").read_text())
    (row,) = [r for r in report["rows"] if r["variant"] == CONTROL]
    assert row["paired_rounds"] == 3 and row["method"] == CONTROL
    assert row["speedup_low"] < row["speedup"] < row["speedup_high"]
    assert row["verdict"] == label(row["speedup_low"], row["speedup_high"], row["min_effect"])
    medians = {item: {key: runs.read_round(path)["latency"]["p50"] for key, path in runs.round_paths(control_run, item)}
               for item in ("dense__onnx__t1", "control__onnx__t1")}
    by_round = {item: [np.exp(np.mean(np.log([v for (r, _), v in found.items() if r == n]))) for n in (1, 2, 3)]
                for item, found in medians.items()}
    ratios = np.array(by_round["dense__onnx__t1"]) / np.array(by_round["control__onnx__t1"])
    assert row["speedup"] == pytest.approx(float(np.exp(np.mean(np.log(ratios)))), rel=1e-9)
    first = {item: runs.read_first_round(control_run, item)["correctness"] for item in medians}
    assert first["control__onnx__t1"]["per_window"] == first["dense__onnx__t1"]["per_window"]  # bit for bit
    measured = json.loads((control_run / CONTROL / "manifest.json").read_text())["artifacts"]["onnx"]["sha256"]
    assert measured != json.loads((bundles / DENSE / "manifest.json").read_text())["artifacts"]["onnx"]["sha256"]
    assert row["predicted_speedup"] == 1.0 and row["mse_change"] == 0.0  # the same model, the same forecasts
    trusted = row["verdict"] == EQUIVALENT
    warning = (f"warning: onnx ({row['runtime']}), 1 thread: control copy of dense judged {row['verdict']}: the "
               f"run's comparisons are not trustworthy; {FIX}")
    assert report["control"] == {"measured": True, "trustworthy": trusted,
                                 "verdicts": [{"run": control_run.name, "format": "onnx", "runtime": row["runtime"],
                                               "threads": 1, "verdict": row["verdict"]}],
                                 "warnings": [] if trusted else [warning]}
    lines = result.out.splitlines()
    assert not any(line.startswith(f"{CONTROL},") for line in lines)  # never offered as a variant to deploy
    assert lines[0 if trusted else 1].startswith("unstructured-0.5, onnx (onnxruntime ")
    assert trusted or lines[0] == warning
    assert f"| {CONTROL} | onnx" in (out / "report.md").read_text()


def _set_control(run: Path, factors: dict[int, float]) -> None:
    """The control's every measurement: dense's latencies of the same round and pass, times the round's factor."""
    dense = dict(runs.round_paths(run, "dense__onnx__t1"))
    for key, path in runs.round_paths(run, "control__onnx__t1"):
        result, reference = json.loads(path.read_text()), json.loads(dense[key].read_text())
        result["latency"] = {k: v * factors[key[0]] if isinstance(v, float) and k != "throughput_per_s" else v
                             for k, v in reference["latency"].items()}
        path.write_text(json.dumps(result))


def test_a_run_whose_control_is_not_equivalent_is_flagged(cli, tmp_path, control_run):
    run = tmp_path / control_run.name
    shutil.copytree(control_run, run)
    _set_control(run, {1: 0.80, 2: 0.81, 3: 0.79})  # the copy 25% faster than itself: a broken run
    out = tmp_path / "report"
    result = cli("report", str(run), "--out", str(out))
    assert result.code == 0, result.err
    report = json.loads((out / "report.json").read_text())
    (row,) = [r for r in report["rows"] if r["variant"] == CONTROL]
    assert row["verdict"] == REAL_SPEEDUP
    warning = (f"warning: onnx ({row['runtime']}), 1 thread: control copy of dense judged REAL SPEEDUP: the run's "
               "comparisons are not trustworthy; rerun the bench with the board otherwise idle (close other programs "
               "and benches; add --cooldown or more --rounds)")
    assert result.out.splitlines()[0] == warning
    assert report["control"]["trustworthy"] is False and report["control"]["warnings"] == [warning]
    assert f"- {warning}" in (out / "report.md").read_text()
    _set_control(run, {1: 1.0, 2: 1.001, 3: 0.999})  # the same run with the copy as fast as dense: trusted
    again = cli("report", str(run), "--out", str(tmp_path / "again"))
    assert again.code == 0, again.err
    report = json.loads((tmp_path / "again" / "report.json").read_text())
    assert report["control"]["trustworthy"] is True and report["control"]["warnings"] == []
    assert "control copy of dense" not in again.out


def test_control_refuses_what_it_cannot_copy(cli, tmp_path, bundles):
    results = tmp_path / "results"
    lone = tmp_path / "lone"
    shutil.copytree(bundles / "unstructured-0.5", lone / "unstructured-0.5")
    line = assert_one_line_error(cli("bench", "--artifacts", str(lone), "--results", str(results), "--control"),
                                 "--control copies the dense bundle, and there is none among unstructured-0.5")
    assert line.endswith("or drop --control")
    taken = tmp_path / "taken"
    for name in (DENSE, CONTROL):
        shutil.copytree(bundles / DENSE, taken / name)
    assert_one_line_error(cli("bench", "--artifacts", str(taken), "--results", str(results), "--control"),
                          f"--control adds a bundle named {CONTROL}, and {taken / CONTROL} already has that name")
    broken = tmp_path / "broken"
    shutil.copytree(bundles / DENSE, broken / DENSE)
    damaged = b"\x0a\xff not a protobuf"  # recorded as it is: past the checksum guard, refused by the copy
    (broken / DENSE / "model.onnx").write_bytes(damaged)
    manifest = json.loads((broken / DENSE / "manifest.json").read_text())
    manifest["artifacts"]["onnx"]["sha256"] = hashlib.sha256(damaged).hexdigest()
    (broken / DENSE / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(cli("bench", "--artifacts", str(broken), "--results", str(results), "--control",
                              "--runtime", "onnxruntime"), f"{broken / DENSE / 'model.onnx'} is not an ONNX model")
    assert not results.exists() or not list(results.iterdir())  # nothing half-written: no run folder is left
