"""`tsprune-edge bench` on this machine (the desktop profile): the bundles of an export, measured in interleaved
rounds by the real agent, with percentiles, memory and correctness brought back as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench_args import FAST
from tests.refusals import assert_one_line_error


def test_desktop_bench_measures_every_variant(cli, tmp_path, bundles, monkeypatch):
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    results = tmp_path / "results"
    result = cli("bench", "--device", "desktop", "--artifacts", str(bundles), "--results", str(results), *FAST)
    assert result.code == 0, result.err
    (run,) = results.iterdir()
    summary = json.loads((run / "bench.json").read_text())
    assert summary["machine"] == "x86_64" and summary["emulated"] is False
    assert summary["timing_label"] == "measured on the board"
    ids = [item["id"] for item in summary["items"]]
    assert ids == ["dense__onnx__t1", "percall__onnx__t1", "unstructured-0.5__onnx__t1", "dense__tflite__t1",
                   "percall__tflite__t1", "unstructured-0.5__tflite__t1"]
    items = {item["id"]: item for item in summary["items"]}
    for item in summary["items"]:
        assert item["rounds"] == 2 and not item["errors"], item
        assert item["correct"] and item["max_abs_error"] <= 1e-4
        assert 0 < item["p50_s"] <= item["p90_s"] <= item["p99_s"] and item["peak_rss_kib"] > 0
        assert item["runtime"] == ("onnxruntime" if item["format"] == "onnx" else "ai_edge_litert")
        assert f"{item['p50_s'] * 1e3:.3f}" in result.out
        assert item["probe"] == (item["bundle"] == "percall")
        # what the agent knows reaches bench.json: what ran the model, its warnings, how warm-up ended
        rounds = [json.loads((run / "raw" / f"{item['id']}__{name}.json").read_text())
                  for name in ("r1", "r1b", "r2", "r2b")]  # each round: a forward pass, then the mirrored one
        if item["format"] == "onnx":
            assert item["providers_used"] == ["CPUExecutionProvider"] and item["delegate"] is None
        else:
            assert item["providers_used"] is None and item["delegate"].startswith("XNNPACK (default delegate): ")
        assert item["warmup_stopped"] == [r["warmup"]["stopped"] for r in rounds]
        assert item["warmup_converged"] == all(r["warmup"]["stopped"] == "stable" for r in rounds)
        kinds = {w.split(":")[0] for r in rounds for w in r["warnings"]}
        assert {w.split(":")[0] for w in item["warnings"]} == kinds and len(item["warnings"]) == len(kinds)
        assert any(w.startswith("median under 1 ms") and w.endswith("(r1, r1b, r2, r2b)") for w in item["warnings"])
    # the per-call probe: the same binding doing next to nothing is faster than the model it stands beside
    for fmt in ("onnx", "tflite"):
        assert items[f"percall__{fmt}__t1"]["p50_s"] < items[f"dense__{fmt}__t1"]["p50_s"]
    assert summary["bundles"]["percall"]["probe"] and summary["bundles"]["percall"]["method"] == "probe"
    assert not summary["bundles"]["dense"]["probe"]
    raw = sorted(p.name for p in (run / "raw").glob("*__r*.json"))
    assert len(raw) == 24  # 6 items x 2 rounds x 2 passes
    # Interleaved: round 1 of every item starts before round 2 of any; round 2 starts one item further on, and
    # each round runs its items forward, then mirrored (every variant once before and once after its dense).
    starts = {p.name: json.loads(p.read_text())["started_at"] for p in (run / "raw").glob("*__r*.json")}
    assert max(t for n, t in starts.items() if n.endswith(("__r1.json", "__r1b.json"))) < min(
        t for n, t in starts.items() if n.endswith(("__r2.json", "__r2b.json")))
    for number, order in enumerate(summary["order"]["rounds"], 1):
        forward = ids[number - 1:] + ids[:number - 1]
        assert order == forward + forward[::-1]
        files = [f"{i}__r{number}.json" for i in forward] + [f"{i}__r{number}b.json" for i in forward[::-1]]
        assert sorted(files, key=starts.__getitem__) == files
    assert [item["positions"] for item in summary["items"]] == [[[1, 12], [6, 7]], [[2, 11], [1, 12]],
                                                                 [[3, 10], [2, 11]], [[4, 9], [3, 10]],
                                                                 [[5, 8], [4, 9]], [[6, 7], [5, 8]]]
    # a live line per measurement, as the agent finished it, in the order it ran
    progress = [line for line in result.err.splitlines() if line.startswith("  [")]
    expected = [(r, i) for r, order in enumerate(summary["order"]["rounds"], 1) for i in order]
    assert len(progress) == len(expected) == 24
    for k, (line, (number, item_id)) in enumerate(zip(progress, expected, strict=True), 1):
        item = items[item_id]
        assert line.startswith(f"  [{k}/24] round {number}/2 {item['bundle']} {item['format']} ({item['runtime']}, "
                               "1 thread): p50 "), line
    assert json.loads((run / "state.json").read_text())["status"] == "done"
    assert not (Path("/tmp/tsprune-edge") / run.name).exists()  # the board's run folder is removed


def test_the_percall_probe_has_the_deployment_signature_and_reads_both_inputs(bundles):
    """The probe beside dense: the same inputs and output (names, shapes, dtypes) in both formats, no accuracy
    claimed, samples that are its own output; and its output moves with either input, so no runtime can have
    folded it to a constant."""
    import numpy as np

    from tsprune_edge.export.manifest import load_manifest
    from tsprune_edge.export.runtimes import run_onnx, run_tflite

    dense, probe = load_manifest(bundles / "dense"), load_manifest(bundles / "percall")
    assert probe["variant"] == "percall" and probe["probe"]["kind"] == "per-call cost"
    assert probe["pruning"] is None and probe["test_split"] is None and probe["quantization"] is None
    assert probe["model"]["macs"] == 0 and probe["model"]["parameters"] == 0 and probe["data"] == dense["data"]
    for fmt in ("onnx", "tflite"):
        signature = {key: probe["artifacts"][fmt][key] for key in ("inputs", "outputs")}
        assert signature == {key: dense["artifacts"][fmt][key] for key in ("inputs", "outputs")}
        assert probe["artifacts"][fmt]["validation"][0]["max_abs_error"] == 0.0
    with np.load(bundles / "percall" / "samples.npz") as samples:
        history, calendar, expected = samples["history"], samples["calendar"], samples["expected"]
    n_targets = expected.shape[2]
    assert np.array_equal(expected, history[:, -1:, :n_targets] + calendar[:, -expected.shape[1]:, :1])
    for run, fmt in ((run_onnx, "onnx"), (run_tflite, "tflite")):
        path = bundles / "percall" / probe["artifacts"][fmt]["file"]
        base = run(path, history[:1], calendar[:1])
        assert np.array_equal(base, expected[:1])
        assert not np.array_equal(run(path, history[:1] + 1, calendar[:1]), base)
        assert not np.array_equal(run(path, history[:1], calendar[:1] + 1), base)


@pytest.mark.parametrize("args, fragments", [
    (["--device", "rpi5"], ["unknown device 'rpi5'"]),
    (["--device", "desktop", "--host", "pi@example"], ["measured on this machine; drop --host"]),
    (["--device", "rpi4"], ["is a remote board: pass --host"]),
    (["--runtime", "tensorrt"], ["unknown runtime tensorrt"]),
    (["--threads", "one"], ["--threads takes comma-separated integers"]),
])
def test_bad_bench_options(cli, tmp_path, bundles, args, fragments, monkeypatch):
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    result = cli("bench", *args, "--artifacts", str(bundles), "--results", str(tmp_path / "results"))
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_no_bundles_is_refused(cli, tmp_path):
    result = cli("bench", "--artifacts", str(tmp_path / "empty"), "--results", str(tmp_path / "results"))
    assert_one_line_error(result, "no export bundles under", "tsprune-edge export")


def test_devices_list_show_and_check_on_this_machine(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    listed = cli("devices", "list")
    assert listed.code == 0 and all(name in listed.out for name in ("rpi4", "jetson-nano", "desktop"))
    shown = cli("devices", "show", "jetson-nano")
    assert shown.code == 0 and json.loads(shown.out)["onnx_providers"][0] == "TensorrtExecutionProvider"
    checked = cli("devices", "check", "--device", "desktop")
    assert checked.code == 0, checked.err
    assert "onnx: onnxruntime" in checked.out and "tflite: ai_edge_litert" in checked.out
    assert "x86_64" in checked.out


def test_two_runs_of_one_second_from_two_results_folders_get_two_board_folders(tmp_path):
    """The board folder is removed when a run ends: two fits (or users) benching on one board in the same second
    must not share it (a desktop bench once lost its folder to another that finished first)."""
    from tsprune_edge.devices.bench import remote_folder
    from tsprune_edge.devices.profiles import load_profile

    profile = load_profile("desktop")
    first, second = tmp_path / "a" / "desktop-20261201-070000", tmp_path / "b" / "desktop-20261201-070000"
    assert remote_folder(profile, first) != remote_folder(profile, second)
    assert remote_folder(profile, first) == remote_folder(profile, first)  # the same run resumed: the same folder
    assert remote_folder(profile, first).startswith("/tmp/tsprune-edge/desktop-20261201-070000-")
