"""Export bundles end to end on the built-in dataset: trained, pruned, exported, validated, compressed, described."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import zstandard

from tsprune_edge.errors import UserError
from tsprune_edge.export.bundle import FP32_TOLERANCE, INT8_TOLERANCE, ExportRequest, write_bundles
from tsprune_edge.export.encodings import DENSE, DENSIFIED, SPARSE
from tsprune_edge.export.manifest import load_manifest
from tsprune_edge.export.runtimes import run_onnx, run_tflite
from tsprune_edge.export_job import ExportJob, run_export_job
from tsprune_edge.prune.stage import PruneRequest, prune_to_dir

VARIANTS = ("dense", "structured-0.5", "unstructured-0.5")
UMASK = os.umask(0o022)
os.umask(UMASK)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The default job's flow with two methods and int8 bundles: one epoch of training, one of fine-tuning."""
    root = tmp_path_factory.mktemp("export")
    job = ExportJob(methods=("structured", "unstructured"), sparsity=0.5, finetune_epochs=1, epochs=1)
    manifests = run_export_job(job, ExportRequest(quantize="int8"), root / "export", root / "runs")
    return root, manifests


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_variant_has_a_validated_bundle(exported):
    root, manifests = exported
    assert list(manifests) == ["dense", "dense-int8", "structured-0.5", "structured-0.5-int8", "unstructured-0.5",
                               "unstructured-0.5-int8", "percall"]  # the per-call probe: tests/test_bench.py
    assert sorted(p.name for p in (root / "export").iterdir()) == sorted(manifests)  # no staging folder left
    for name, manifest in manifests.items():
        if name == "percall":
            continue
        bundle = root / "export" / name
        assert sorted(p.name for p in bundle.iterdir()) == ["manifest.json", "model.onnx", "model.tflite",
                                                            "samples.npz", "test.npz"] + (
            [] if name.endswith("int8") else ["torch_test_errors.npy"])  # torch cannot score an int8 artifact
        assert {p.name: p.stat().st_mode & 0o777 for p in bundle.iterdir()} == dict.fromkeys(
            (p.name for p in bundle.iterdir()), 0o666 & ~UMASK)  # readable like any file, not mkstemp's 0600
        assert load_manifest(bundle) == json.loads(json.dumps(manifest))
        tolerance = INT8_TOLERANCE if name.endswith("int8") else FP32_TOLERANCE
        for fmt, artifact in manifest["artifacts"].items():
            path = bundle / artifact["file"]
            assert artifact["sha256"] == _sha256(path) and artifact["bytes"] == path.stat().st_size
            compressed = zstandard.ZstdCompressor().compress(path.read_bytes())
            assert abs(artifact["zstd_bytes"] - len(compressed)) < 0.2 * len(compressed)
            assert [v["runtime"].split()[0] for v in artifact["validation"]] == (
                ["onnxruntime"] if fmt == "onnx" else ["ai-edge-litert"])
            for validation in artifact["validation"]:
                assert validation["tolerance"] == tolerance and 0 <= validation["max_abs_error"] <= tolerance
                assert validation["windows"] == 8
        assert manifest["samples"]["sha256"] == _sha256(bundle / "samples.npz")
        test_split = manifest["test_split"]
        assert test_split["sha256"] == _sha256(bundle / "test.npz")
        assert test_split["bytes"] == (bundle / "test.npz").stat().st_size


def test_the_test_split_is_the_series_not_the_windows(exported):
    """The scaled test series of the input columns and its calendar: every window of it, at a fraction of the
    windows' bytes (synthetic: 1848 rows give 1657 windows of 96 + 96 steps)."""
    root, manifests = exported
    record = manifests["dense"]["test_split"]
    assert {k: record[k] for k in ("file", "split", "rows", "windows", "seq_len", "pred_len", "target_positions")} == {
        "file": "test.npz", "split": "test", "rows": 1848, "windows": 1848 - 96 - 96 + 1, "seq_len": 96,
        "pred_len": 96, "target_positions": list(range(7))}
    with np.load(root / "export" / "dense" / "test.npz", allow_pickle=False) as split:
        assert sorted(split.files) == ["calendar", "values"]
        assert split["values"].shape == (1848, 7) and split["calendar"].shape == (1848, 4)
        assert split["values"].dtype == split["calendar"].dtype == np.float32
    assert record["bytes"] < 60_000  # the windows themselves would take 1657 x (96 x 7 x 2 + 192 x 4) x 4 = 14 MB


def test_samples_let_a_board_check_the_artifacts(exported):
    """The bundle alone (samples + artifacts) reproduces the recorded error: what the board agent will do."""
    root, manifests = exported
    bundle = root / "export" / "structured-0.5"
    with np.load(bundle / "samples.npz") as samples:
        history, calendar, expected = samples["history"], samples["calendar"], samples["expected"]
    manifest = manifests["structured-0.5"]
    assert history.shape == (8, 96, 7) and calendar.shape == (8, 192, 4) and expected.shape == (8, 96, 7)
    for fmt, run in (("onnx", run_onnx), ("tflite", run_tflite)):
        artifact = manifest["artifacts"][fmt]
        assert [i["shape"] for i in artifact["inputs"]] == [[1, 96, 7], [1, 192, 4]]
        assert artifact["outputs"][0]["shape"] == [1, 96, 7] and artifact["outputs"][0]["dtype"] == "float32"
        errors = [np.abs(run(bundle / artifact["file"], history[i:i + 1], calendar[i:i + 1]) - expected[i:i + 1]).max()
                  for i in range(8)]
        assert max(errors) == pytest.approx(artifact["validation"][0]["max_abs_error"], abs=1e-7)
    assert [i["name"] for i in manifest["artifacts"]["onnx"]["inputs"]] == ["history", "calendar"]


def test_manifest_describes_model_data_and_pruning(exported):
    root, manifests = exported
    dense, pruned = manifests["dense"], manifests["structured-0.5"]
    assert dense["pruning"] is None and pruned["pruning"]["method"] == "structured"
    assert pruned["model"]["macs"] < 0.6 * dense["model"]["macs"]
    assert pruned["model"]["macs"] == pruned["pruning"]["after"]["macs"]
    assert pruned["model"]["checkpoint_sha256"] == _sha256(Path(pruned["model"]["checkpoint"]))
    assert dense["scaler"]["columns"] == dense["data"]["columns"] and len(dense["scaler"]["mean"]) == 7
    assert dense["calendar"]["features"] == ["month", "day", "weekday", "hour"]
    assert "Monday 0" in dense["calendar"]["definitions"]["weekday"]
    assert manifests["dense-int8"]["quantization"]["tolerance"] == INT8_TOLERANCE
    unstructured = manifests["unstructured-0.5"]
    assert 0.45 < 1 - unstructured["model"]["density"] < 0.5  # output layers and embeddings stay dense


def test_onnx_metadata_carries_what_the_file_needs(exported):
    root, manifests = exported
    proto = onnx.load(str(root / "export" / "structured-0.5" / "model.onnx"))
    props = {p.key: p.value for p in proto.metadata_props}
    manifest = manifests["structured-0.5"]
    assert props["tsprune_edge.model"] == "transformer" and props["tsprune_edge.dataset"] == "synthetic"
    assert props["tsprune_edge.pred_len"] == "96" and props["tsprune_edge.pruning_method"] == "structured"
    assert props["tsprune_edge.sparsity"] == "0.5" and int(props["tsprune_edge.macs"]) == manifest["model"]["macs"]
    assert float(props["tsprune_edge.density"]) == manifest["model"]["density"]
    assert json.loads(props["tsprune_edge.scaler"]) == manifest["scaler"]
    assert proto.opset_import[0].version == manifest["artifacts"]["onnx"]["opset"]


def test_unstructured_weights_are_stored_sparse_where_smaller(exported):
    root, manifests = exported
    for fmt in ("onnx", "tflite"):
        dense_tensors = manifests["dense"]["artifacts"][fmt]["tensors"]
        assert dense_tensors and all(t["encoding"] == "dense" and t["at_run_time"] == DENSE for t in dense_tensors)
        artifact = manifests["unstructured-0.5"]["artifacts"][fmt]
        sparse = [t for t in artifact["tensors"] if t["encoding"] != "dense"]
        assert sparse, fmt
        for tensor in sparse:
            assert tensor["bytes_stored"] < tensor["bytes_dense"] and tensor["zeros"] > 0.3
            assert tensor["at_run_time"] in (SPARSE, DENSIFIED) and tensor["evidence"]
        assert artifact["bytes"] < artifact["fp32_dense"]["bytes"]


def test_ninety_percent_unstructured_is_a_fraction_of_the_dense_bytes(exported, tmp_path):
    root, manifests = exported
    dense = root / "runs" / "dense" / "model.pt"
    prune_to_dir(dense, PruneRequest(method="unstructured", sparsity=0.9), tmp_path / "u90")
    manifest = write_bundles(tmp_path / "export", {"u90": tmp_path / "u90" / "model.pt"}, ExportRequest())["u90"]
    # Measured 0.29x (ONNX) and 0.34x (TFLite): positional tables, biases and names stay dense by design.
    for fmt, limit in (("onnx", 0.35), ("tflite", 0.4)):
        artifact = manifest["artifacts"][fmt]
        assert artifact["bytes"] < limit * manifests["dense"]["artifacts"][fmt]["bytes"], fmt
        assert artifact["validation"][0]["max_abs_error"] <= FP32_TOLERANCE


def test_a_failed_export_leaves_nothing_behind(exported, tmp_path):
    root, _ = exported
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    out = tmp_path / "export"
    with pytest.raises(UserError, match="broken.pt is not a tsprune-edge checkpoint"):
        write_bundles(out, {"dense": root / "runs" / "dense" / "model.pt", "broken": broken},
                      ExportRequest(formats=("onnx",)))
    assert list(out.iterdir()) == []


def test_a_new_export_replaces_the_old_bundle_whole(exported, tmp_path):
    root, _ = exported
    out = tmp_path / "export"
    (out / "dense").mkdir(parents=True)
    (out / "dense" / "stale.txt").write_text("from an earlier export")
    write_bundles(out, {"dense": root / "runs" / "dense" / "model.pt"}, ExportRequest(formats=("onnx",)))
    assert sorted(p.name for p in (out / "dense").iterdir()) == ["manifest.json", "model.onnx", "samples.npz",
                                                                 "test.npz", "torch_test_errors.npy"]
    assert sorted(p.name for p in out.iterdir()) == ["dense"]


@pytest.fixture(scope="module")
def dlinear_checkpoint(tmp_path_factory) -> Path:
    """An untrained DLinear on the built-in data: exports in seconds, and export parity does not need training."""
    from tsprune_edge.checkpoint import make_checkpoint, save_checkpoint
    from tsprune_edge.data import WindowSpec, load_forecast_data
    from tsprune_edge.models import create_model

    data = load_forecast_data("synthetic", WindowSpec(96, 48, 24))
    model = create_model("dlinear", "small", pred_len=24, enc_in=len(data.input_columns),
                         c_out=len(data.target_columns), calendar_features=data.calendar_names)
    path = tmp_path_factory.mktemp("dlinear") / "model.pt"
    save_checkpoint(make_checkpoint(model, data.describe(), data.scaling(), {"epochs": 0}), path)
    return path


@pytest.mark.parametrize("perturb, problem", [
    (lambda expected: expected + 1, "differs from torch by 1 (tolerance 0.0001)"),
    (lambda expected: expected[:, :, :1], "has shape [1, 24, 7], torch's is [1, 24, 1]"),
    (lambda expected: expected * np.nan, "differs from torch by nan (tolerance 0.0001)"),
], ids=["values", "shape", "nan"])
def test_every_runtime_that_disagrees_with_torch_is_listed_in_one_error(dlinear_checkpoint, tmp_path, monkeypatch,
                                                                        perturb, problem):
    """The torch reference made wrong on purpose (values off by 1, one target instead of seven, NaN): every
    runtime of both formats is run, and one error lists each of them before anything is written. A shape mismatch
    once escaped as a bare ValueError, and a NaN difference passed as 0 (Python's max drops it)."""
    from tsprune_edge.export import bundle
    from tsprune_edge.export.reference import Samples, make_samples
    from tsprune_edge.export.runtimes import installed_tflite_runtimes, runtime_version
    from tsprune_edge.export.validation import ExportValidationError

    def wrong_reference(*args, **kwargs) -> Samples:
        samples = make_samples(*args, **kwargs)
        return Samples(samples.split, samples.starts, samples.history, samples.calendar, perturb(samples.expected))

    monkeypatch.setattr(bundle, "make_samples", wrong_reference)
    out = tmp_path / "export"
    with pytest.raises(ExportValidationError) as raised:
        write_bundles(out, {"dense": dlinear_checkpoint}, ExportRequest())
    error = raised.value
    runtimes = [runtime_version("onnxruntime")] + [runtime_version(r) for r in installed_tflite_runtimes()]
    assert [(c.artifact, c.runtime, c.passed) for c in error.mismatches] == [
        ("model.onnx as exported", runtimes[0], False),
        *[("model.tflite as exported", r, False) for r in runtimes[1:]]]
    assert len(runtimes) >= 2 and error.exit_code == 2
    assert str(error).startswith(f"dense: {len(runtimes)} runtime check(s) failed on 8 sample windows: ")
    for mismatch in error.mismatches:
        assert f"{mismatch.artifact} in {mismatch.runtime}: output {mismatch.output} {problem}" in str(error)
    assert [c.output for c in error.mismatches][0] == "forecast"
    assert list(out.iterdir()) == []
