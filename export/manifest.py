"""A bundle's manifest: its name, format and version, and reading it back. Torch-free, so that the bench, the
report and `export --format onnx` read manifests without loading torch, onnx or a TFLite converter."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from tsprune_edge.errors import UserError

BUNDLE_FORMAT = "tsprune-edge/bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
ZSTD_LEVEL = 19  # artifacts' zstd_bytes: how small each file travels (export and bench --control compress it)

_NUMBER = (int, float)
_FACT = (int, float, type(None))  # model facts a probe does not have (its density) are null
# What the bench reads from a manifest (bench.json's bundle facts and the plan), as (path, allowed types): a
# manifest of the right version but another shape is refused in one line naming the field, not a traceback.
_BENCH_FIELDS = (
    (("model",), dict), (("model", "name"), str), (("model", "parameters"), _FACT),
    (("model", "nonzero_parameters"), _FACT), (("model", "density"), _FACT), (("model", "macs"), _FACT),
    (("data",), dict), (("data", "name"), str),
    (("pruning",), (dict, type(None))), (("quantization",), (dict, type(None))), (("artifacts",), dict),
)
_PRUNING_FIELDS = ((("pruning", "method"), str), (("pruning", "requested_sparsity"), _NUMBER),
                   (("pruning", "test"), dict))
_ARTIFACT_FIELDS = ((("file",), str), (("bytes",), int), (("zstd_bytes",), int))


def load_manifest(directory: Path) -> dict:
    """A bundle's manifest, refused with one line if the folder is not a bundle this version reads."""
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{directory} is not an export bundle ({MANIFEST}: {exc.__class__.__name__}); "
                        "write one with `tsprune-edge export`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT \
            or manifest.get("version") != BUNDLE_VERSION:
        raise UserError(f"{path} is not a version {BUNDLE_VERSION} {BUNDLE_FORMAT} manifest")
    return manifest


def load_bench_manifest(directory: Path) -> dict:
    """`load_manifest`, and every field the bench reads present with its type."""
    manifest = load_manifest(directory)
    path = Path(directory) / MANIFEST
    _require(manifest, _BENCH_FIELDS, path)
    if manifest["pruning"] is not None:
        _require(manifest, _PRUNING_FIELDS, path)
    if manifest["quantization"] is not None:
        _require(manifest, ((("quantization", "scheme"), str),), path)
    for fmt, artifact in manifest["artifacts"].items():
        if not isinstance(artifact, dict):
            raise UserError(f"{path}: artifacts.{fmt} is not an object; re-export the bundle")
        _require(artifact, _ARTIFACT_FIELDS + (((("opset",), int),) if fmt == "onnx" else ()), path,
                 f"artifacts.{fmt}.")
    return manifest


def _require(record: dict, fields: tuple, path: Path, prefix: str = "") -> None:
    for keys, kinds in fields:
        value = record
        for key in keys:
            value = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
        if value is _MISSING or isinstance(value, bool) or not isinstance(value, kinds):
            what = "missing" if value is _MISSING else f"a {type(value).__name__}"
            raise UserError(f"{path}: {prefix}{'.'.join(keys)} is {what}, not what a bundle holds; re-export it "
                            "with `tsprune-edge export`")


_MISSING = object()


def torch_window_errors(bundle: Path, manifest: dict) -> dict | None:
    """Torch's per-window test MSEs the bundle records, to 7 significant digits as the agent reports the board's;
    None for a bundle without them (int8, the probe, or exported before they were recorded)."""
    record = manifest.get("torch_test_errors")
    if not record:
        return None
    path = Path(bundle) / record["file"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path} cannot be read ({exc.strerror}); re-export the bundle") from None
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise UserError(f"{path} differs from the sha256 its manifest records; re-export the bundle")
    values = np.load(io.BytesIO(data), allow_pickle=False)
    return {"per_window_mse": [float(f"{v:.7g}") for v in values], "window_span": record["window_span"]}
