"""Export bundles: per checkpoint, validated ONNX and TFLite artifacts, reference windows, the test split and a
manifest.

`write_bundles` builds every bundle of a job in a hidden staging folder beside the output and moves them into
place only when all of them validated, so a failed export leaves nothing behind and never a half bundle.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import torch
import zstandard
from rich.console import Console
from torch import nn

from tsprune_edge import __version__
from tsprune_edge.atomic import replace_finished, scratch_beside, write_atomic, write_json_atomic
from tsprune_edge.checkpoint import Checkpoint, load_checkpoint
from tsprune_edge.data.calendar import DEFINITIONS
from tsprune_edge.data.fetch import sha256_of
from tsprune_edge.data.forecast import ForecastData
from tsprune_edge.errors import UserError
from tsprune_edge.export.artifacts import DEFAULT_OPSET, check_opset, export_onnx, export_tflite
from tsprune_edge.export.encodings import Validator
from tsprune_edge.export.manifest import BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST, ZSTD_LEVEL
from tsprune_edge.export.onnx_level import read_level, readers_record
from tsprune_edge.export.onnx_sparse import compress_onnx
from tsprune_edge.export.probe import (
    PROBE_METHOD,
    PROBE_MODEL,
    PROBE_MODEL_FACTS,
    PROBE_RECORD,
    PerCallProbe,
)
from tsprune_edge.export.reference import (
    SAMPLE_FILE,
    TEST_FILE,
    OpenArtifact,
    Samples,
    make_samples,
    max_abs_error,
    save_samples,
    save_test_split,
)
from tsprune_edge.export.runtimes import (
    installed_tflite_runtimes,
    onnx_runner,
    onnx_signature,
    runtime_version,
    tflite_runner,
    tflite_signature,
)
from tsprune_edge.export.validation import Check, check, raise_on_mismatch
from tsprune_edge.prune.analysis import summarize
from tsprune_edge.variants import DENSE, PROBE_VARIANT
from tsprune_edge.workflow import checkpoint_data, training_budget

FORMATS = ("onnx", "tflite")
QUANTIZATIONS = ("int8",)
FP32_TOLERANCE = 1e-4
# Forecasts are in scaled units (z-scores). int8 weights (and ORT's int8 activations) moved the small Transformer's
# forecasts by up to 0.08 here; a broken int8 artifact is off by about 1 or more (FIELD-NOTES: 1.59).
INT8_TOLERANCE = 0.25
TORCH_ERRORS_FILE = "torch_test_errors.npy"


@dataclass(frozen=True)
class ExportRequest:
    formats: tuple[str, ...] = FORMATS
    quantize: str | None = None  # "int8" adds an int8 bundle beside each fp32 one
    sparse_kernels: bool = False  # TFLite: FULLY_CONNECTED reads pruned filters sparse instead of densifying them
    onnx_opset: int = DEFAULT_OPSET  # the newest opset the board's ONNX runtimes read (a device profile's onnx_opset)
    onnx_ir: int | None = None  # the IR version to write (a profile's onnx_ir); None: as the exporter writes it
    onnx_sparse: bool = True  # store pruned ONNX weights as sparse initializers (where the board's runtimes read them)

    def validate(self) -> None:
        check_opset(self.onnx_opset)
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise UserError(f"unknown format {','.join(unknown) or '(none)'}; --format takes a comma-separated "
                            f"list of {', '.join(FORMATS)}")
        if self.quantize is not None and self.quantize not in QUANTIZATIONS:
            raise UserError(f"unknown quantization {self.quantize!r}; --quantize takes {', '.join(QUANTIZATIONS)}")


def write_bundles(out: Path, checkpoints: dict[str, Path], request: ExportRequest,
                  console: Console | None = None, probe: bool = False) -> dict[str, dict]:
    """One bundle per variant (and an int8 one beside each when asked) under `out`; returns the manifests. With
    `probe`, also the per-call probe (`PROBE_VARIANT`) in the signature of the `dense` checkpoint."""
    console = console or Console(stderr=True)
    request.validate()
    if probe and (DENSE not in checkpoints or PROBE_VARIANT in checkpoints):
        raise UserError(f"the {PROBE_VARIANT} probe goes beside a variant named {DENSE}, and no variant may be "
                        f"named {PROBE_VARIANT}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        manifests = {}
        for variant, checkpoint in checkpoints.items():
            for int8 in (False, True) if request.quantize else (False,):
                name = f"{variant}-int8" if int8 else variant
                console.print(f"exporting {name} ({', '.join(request.formats)})")
                manifests[name] = build_bundle(checkpoint, staging / name, name, request, int8)
        if probe:
            console.print(f"exporting {PROBE_VARIANT} (the per-call cost probe, {', '.join(request.formats)})")
            manifests[PROBE_VARIANT] = build_probe_bundle(checkpoints[DENSE], staging / PROBE_VARIANT, request)
        for name in manifests:
            _replace_dir(staging / name, out / name, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifests


def _replace_dir(new: Path, target: Path, trash: Path) -> None:
    if target.exists():
        os.replace(target, trash / f".old-{target.name}")
    os.replace(new, target)


def build_bundle(checkpoint_path: Path, directory: Path, variant: str, request: ExportRequest, int8: bool) -> dict:
    """Export, compress or quantize, validate against torch, and write the manifest into `directory`."""
    checkpoint = load_checkpoint(checkpoint_path)
    model = checkpoint.build_model()
    data = checkpoint_data(checkpoint)
    summary = summarize(model)
    bundle = _Bundle(model, checkpoint, make_samples(model, data), directory, request, int8,
                     _onnx_metadata(summary, checkpoint))
    artifacts = bundle.export()
    test_split = save_test_split(data, directory / TEST_FILE)
    return bundle.write_manifest(variant, _model_record(summary, checkpoint, checkpoint_path), artifacts, {
        "pruning": checkpoint.pruning,
        "training": training_budget(checkpoint.training),
        "quantization": _QUANTIZATION if int8 else None,
        "test_split": {"file": TEST_FILE, **_file_facts(directory / TEST_FILE, zstd=False), **test_split},
        # torch runs the float model, not an int8 artifact: only the board's outputs can score that one
        "torch_test_errors": None if int8 else _torch_test_errors(model, data, directory / TORCH_ERRORS_FILE),
    })


@torch.no_grad()
def _torch_test_errors(model: nn.Module, data: ForecastData, path: Path) -> dict:
    """Each test window's MSE in torch, batched as train.evaluate scores the split (their mean is its test MSE):
    the report's source for the accuracy interval when the board's outputs were not scored (bench --accuracy)."""
    model.eval()
    errors = [((model(history, calendar) - target).double() ** 2).mean(dim=(1, 2))
              for history, calendar, target in data.batches("test", 256)]
    buffer = io.BytesIO()
    np.save(buffer, torch.cat(errors).numpy(), allow_pickle=False)
    write_atomic(path, lambda handle: handle.write(buffer.getvalue()))
    w = data.windows
    return {"file": path.name, **_file_facts(path, zstd=False), "windows": data.n_windows("test"),
            "window_span": w.seq_len + w.pred_len, "dtype": "float64",
            "metric": "MSE of each test window over its horizon and target columns, in scaled units"}


def build_probe_bundle(dense_path: Path, directory: Path, request: ExportRequest) -> dict:
    """The per-call probe in the dense model's signature, through the same exporters and validation (fp32 only,
    no test split: it claims no accuracy)."""
    checkpoint = load_checkpoint(dense_path)
    data = checkpoint_data(checkpoint)
    model = PerCallProbe(checkpoint.data["pred_len"], len(data.target_columns))
    metadata = {"tsprune_edge.model": PROBE_MODEL, "tsprune_edge.pruning_method": PROBE_METHOD,
                "tsprune_edge.probe": PROBE_RECORD["measures"]}
    bundle = _Bundle(model, checkpoint, make_samples(model, data), directory, request, False, metadata)
    artifacts = bundle.export()
    record = {"name": PROBE_MODEL, "config": model.config(), "checkpoint": str(dense_path),
              "checkpoint_sha256": sha256_of(dense_path), **PROBE_MODEL_FACTS}
    return bundle.write_manifest(PROBE_VARIANT, record, artifacts, {
        "pruning": None, "quantization": None, "test_split": None, "probe": PROBE_RECORD})


@dataclass
class _Bundle:
    """One bundle folder being written: the model's artifacts, its reference windows and its manifest."""

    model: nn.Module
    checkpoint: Checkpoint  # the signature, data, scaler and calendar come from it
    samples: Samples
    directory: Path
    request: ExportRequest
    int8: bool
    onnx_metadata: dict[str, str]

    def export(self) -> dict:
        """Every format exported and checked in every runtime before any is encoded, then encoded and checked
        again; each stage raises one error listing all its mismatches."""
        self.directory.mkdir(parents=True)
        variant = self.directory.name
        with tempfile.TemporaryDirectory() as work:
            jobs = {fmt: _Job(self.model, self.onnx_metadata, self.samples, Path(work), self.directory, self.int8,
                              self.request) for fmt in self.request.formats}
            raw = {fmt: _EXPORTERS[fmt](job) for fmt, job in jobs.items()}
            raise_on_mismatch(variant, [c for fmt, path in raw.items() for c in _checks(
                fmt, path, self.samples, FP32_TOLERANCE, f"model.{fmt} as exported")])
            written = {fmt: _WRITERS[fmt](job, raw[fmt]) for fmt, job in jobs.items()}
            raise_on_mismatch(variant, [c for _, checks in written.values() for c in checks])
        save_samples(self.samples, self.directory / SAMPLE_FILE)
        return {fmt: artifact for fmt, (artifact, _) in written.items()}

    def write_manifest(self, variant: str, model_record: dict, artifacts: dict, fields: dict) -> dict:
        samples = self.samples
        manifest = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "variant": variant,
            "created_with": _versions(self.request.formats),
            "model": model_record,
            "data": self.checkpoint.data,
            "scaler": self.checkpoint.scaling,
            "calendar": _calendar_record(self.checkpoint),
            "pruning": fields.pop("pruning"),
            "quantization": fields.pop("quantization"),
            "artifacts": artifacts,
            "samples": {"file": SAMPLE_FILE, **_file_facts(self.directory / SAMPLE_FILE, zstd=False),
                        "split": samples.split, "windows": len(samples), "starts": samples.starts.tolist()},
            **fields,
        }
        write_json_atomic(self.directory / MANIFEST, manifest)
        return manifest


_QUANTIZATION = {
    "scheme": "int8 weights, float activations",
    "onnx": "ONNX Runtime dynamic quantization (quantize_dynamic, QInt8 weights)",
    "tflite": "ai-edge-quantizer weight-only int8 (weights stored int8, dequantized to float)",
    "tolerance": INT8_TOLERANCE,
}


@dataclass
class _Job:
    """One checkpoint's export into one bundle folder."""

    model: nn.Module
    onnx_metadata: dict[str, str]  # what the bare .onnx file says about itself
    samples: Samples
    work: Path  # scratch folder for the uncompressed fp32 files
    directory: Path  # the bundle being written
    int8: bool
    request: ExportRequest


def _export_onnx(job: _Job) -> Path:
    raw = export_onnx(job.model, _first_window(job.samples), job.work / "fp32.onnx", job.request.onnx_opset,
                      job.request.onnx_ir)
    _set_onnx_metadata(raw, job.onnx_metadata)
    return raw


def _onnx_artifact(job: _Job, raw: Path) -> tuple[dict, list[Check]]:
    samples = job.samples
    request = job.request
    target = job.directory / "model.onnx"
    if job.int8:
        _quantize_onnx(raw, target)
        tensors = []
    elif request.onnx_sparse:
        tensors = [t.to_dict() for t in compress_onnx(raw, target, _validator(onnx_runner, samples), FP32_TOLERANCE)]
    else:
        shutil.copyfile(raw, target)
        tensors = []
    level = _onnx_level(target, request)
    checks = _checks("onnx", target, samples, INT8_TOLERANCE if job.int8 else FP32_TOLERANCE)
    return {"file": target.name, **_file_facts(target), "fp32_dense": _file_facts(raw), "opset": level.opset,
            "ir_version": level.ir_version, "readers": readers_record(level), **onnx_signature(target),
            "validation": [c.record() for c in checks], "tensors": tensors}, checks


def _onnx_level(path: Path, request: ExportRequest):
    """The written file's level, read from its graph; refused if quantization or encoding raised it."""
    try:
        level = read_level(onnx.load(str(path)))
    except ValueError as exc:
        raise UserError(f"{path.name} is not a valid opset-{request.onnx_opset} file ({exc}); it is not "
                        "exported") from None
    if level.opset > request.onnx_opset or (request.onnx_ir is not None and level.ir_version > request.onnx_ir):
        raise UserError(f"{path.name} came out at opset {level.opset} / IR {level.ir_version}, newer than the "
                        f"opset {request.onnx_opset} asked for; export without --quantize for this board")
    return level


def _export_tflite(job: _Job) -> Path:
    return export_tflite(job.model, _first_window(job.samples), job.work / "fp32.tflite")


def _tflite_artifact(job: _Job, raw: Path) -> tuple[dict, list[Check]]:
    """The TFLite artifact. Its rewriter is imported here: it needs the optional TFLite extra, which an ONNX
    export does without."""
    from tsprune_edge.export.tflite_sparse import compress_tflite

    samples = job.samples
    target = job.directory / "model.tflite"
    if job.int8:
        _quantize_tflite(raw, target)
        tensors = []
    else:
        tensors = [t.to_dict() for t in compress_tflite(raw, target, _validator(tflite_runner, samples), FP32_TOLERANCE,
                                                        job.request.sparse_kernels)]
    checks = _checks("tflite", target, samples, INT8_TOLERANCE if job.int8 else FP32_TOLERANCE)
    return {"file": target.name, **_file_facts(target), "fp32_dense": _file_facts(raw), **tflite_signature(target),
            "validation": [c.record() for c in checks], "tensors": tensors}, checks


_EXPORTERS: dict[str, Callable[[_Job], Path]] = {"onnx": _export_onnx, "tflite": _export_tflite}
_WRITERS: dict[str, Callable[[_Job, Path], tuple[dict, list[Check]]]] = {"onnx": _onnx_artifact,
                                                                         "tflite": _tflite_artifact}


def _first_window(samples: Samples) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(samples.history[:1]), torch.from_numpy(samples.calendar[:1])


def _validator(open_artifact: OpenArtifact, samples: Samples) -> Validator:
    return lambda path: max_abs_error(open_artifact, path, samples)


def _runtimes(fmt: str) -> dict[str, OpenArtifact]:
    """Every runtime here that runs `fmt`, by distribution and version: ONNX Runtime, each TFLite interpreter."""
    if fmt == "onnx":
        return {runtime_version("onnxruntime"): onnx_runner}
    return {runtime_version(r): (lambda p, r=r: tflite_runner(p, runtime=r)) for r in installed_tflite_runtimes()}


def _checks(fmt: str, path: Path, samples: Samples, tolerance: float, artifact: str | None = None) -> list[Check]:
    """`path` against torch in every runtime of its format (nothing raised: the caller collects)."""
    signature = onnx_signature(path) if fmt == "onnx" else tflite_signature(path)
    output = signature["outputs"][0]["name"]
    return [check(open_artifact, path, samples, runtime, output, tolerance, artifact)
            for runtime, open_artifact in _runtimes(fmt).items()]


def _quantize_onnx(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with contextlib.redirect_stdout(io.StringIO()), scratch_beside(target) as tmp:
        quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8)
        replace_finished(tmp, target)


def _quantize_tflite(source: Path, target: Path) -> None:
    from ai_edge_quantizer import quantizer, recipe

    with contextlib.redirect_stdout(io.StringIO()), scratch_beside(target) as tmp:
        engine = quantizer.Quantizer(str(source))
        engine.load_quantization_recipe(recipe.weight_only_wi8_afp32())
        engine.quantize().export_model(str(tmp), overwrite=True)
        replace_finished(tmp, target)


def _set_onnx_metadata(path: Path, properties: dict[str, str]) -> None:
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, properties)
    onnx.save(proto, str(path))


def _onnx_metadata(summary: dict, checkpoint: Checkpoint) -> dict[str, str]:
    """What a user of the bare .onnx file needs: what it forecasts, how it was pruned, how to scale its inputs."""
    pruning = checkpoint.pruning or {}
    return {
        "tsprune_edge.model": checkpoint.model_name,
        "tsprune_edge.dataset": checkpoint.data["name"],
        "tsprune_edge.seq_len": str(checkpoint.data["seq_len"]),
        "tsprune_edge.pred_len": str(checkpoint.data["pred_len"]),
        "tsprune_edge.pruning_method": pruning.get("method", "none"),
        "tsprune_edge.sparsity": str(pruning.get("requested_sparsity", 0.0)),
        "tsprune_edge.density": str(summary["density"]),
        "tsprune_edge.macs": str(summary["macs"]),
        "tsprune_edge.scaler": json.dumps(checkpoint.scaling),
        "tsprune_edge.calendar_features": ",".join(checkpoint.data["calendar_features"]),
    }


def _model_record(summary: dict, checkpoint: Checkpoint, path: Path) -> dict:
    return {"name": checkpoint.model_name, "config": checkpoint.config, "checkpoint": str(path),
            "checkpoint_sha256": sha256_of(path),
            **{k: summary[k] for k in ("parameters", "nonzero_parameters", "density", "macs", "macs_if_sparse")}}


def _calendar_record(checkpoint: Checkpoint) -> dict:
    names = checkpoint.data["calendar_features"]
    return {
        "features": names,
        "definitions": {n: DEFINITIONS[n] for n in names},
        "rows": "seq_len + pred_len: the timestamps of the history, then those of the horizon",
        "dtype": "float32",
        "step_seconds": checkpoint.data["step_seconds"],
    }


def _versions(formats: tuple[str, ...]) -> dict[str, str]:
    distributions = ["torch", "onnx", "onnxruntime"] + (["litert-torch"] if "tflite" in formats else [])
    return {"tsprune-edge": __version__, **{d: metadata.version(d) for d in distributions}}


def _file_facts(path: Path, zstd: bool = True) -> dict:
    data = path.read_bytes()
    facts = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    if zstd:
        facts["zstd_bytes"] = len(zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data))
    return facts
