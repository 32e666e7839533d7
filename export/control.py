"""The A/A control of `bench --control`: a copy of the dense bundle whose artifact bytes differ (so nothing can
share a cache, a page or a file between the two) but whose model is the same. Measured beside dense like any
variant, it must come out EQUIVALENT; when it does not, the run cannot tell a model from itself and its other
verdicts are not to be trusted.

How each format differs while the runtime loads the same model:
- ONNX: one more `metadata_props` entry naming the copy a control; the graph and its weights are untouched.
- TFLite: a note appended after the flatbuffer; the runtime reads the model through offsets from the file's root
  table, which never reach past the flatbuffer, and the TFLite file carries no length or checksum of itself.

Torch-free: the bench makes the copy in its run folder just before it copies the bundles to the board.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from pathlib import Path

import zstandard

from tsprune_edge.errors import UserError
from tsprune_edge.export.manifest import MANIFEST, ZSTD_LEVEL, load_bench_manifest
from tsprune_edge.variants import CONTROL, DENSE

NOTE = "A/A control: a byte-different copy of the dense bundle, the same model"
ONNX_KEY = "tsprune_edge.control"
TFLITE_TRAILER = f"\ntsprune-edge {NOTE}\n".encode()


def refuse_control(bundles: dict[str, dict]) -> None:
    """Before connecting: a control needs a dense bundle to copy, and its name free."""
    if DENSE not in bundles:
        raise UserError(f"--control copies the {DENSE} bundle, and there is none among {', '.join(bundles)}; "
                        f"pass the --artifacts folder of an export (it writes {DENSE}) or drop --control")
    if CONTROL in bundles:
        raise UserError(f"--control adds a bundle named {CONTROL}, and {bundles[CONTROL]['path']} already has that "
                        "name; rename or move that bundle, or drop --control")


def with_control(bundles: dict[str, dict], run_dir: Path) -> dict[str, dict]:
    """`bundles` and the control, made in the run folder (kept there: a resumed run measures the same copy)."""
    target = Path(run_dir) / CONTROL
    if not (target / MANIFEST).is_file():
        make_control(bundles[DENSE]["path"], target)
    return {**bundles, CONTROL: {"path": target, "manifest": load_bench_manifest(target)}}


def make_control(dense: Path, target: Path) -> dict:
    """Write the control copy of the bundle `dense` to `target` (a new folder, made whole or not at all); returns
    its manifest: dense's, with each artifact's sha256, bytes and zstd_bytes of the new file, and `control`."""
    dense, target = Path(dense), Path(target)
    manifest = load_bench_manifest(dense)
    if manifest.get("probe") or manifest.get("pruning") is not None:
        raise UserError(f"{dense} is not a dense bundle (its manifest records pruning or a probe); pass the "
                        f"--artifacts folder of an export, whose {DENSE} bundle --control copies")
    scratch = target.with_name(f".{target.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(dense, scratch)
    try:
        record = copy.deepcopy(manifest)
        for fmt, artifact in record["artifacts"].items():
            path = scratch / artifact["file"]
            data = _altered(fmt, path.read_bytes(), dense / artifact["file"])
            path.write_bytes(data)
            artifact.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data),
                            zstd_bytes=len(zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)))
        record["control"] = {"of": DENSE, "note": NOTE}
        (scratch / MANIFEST).write_text(json.dumps(record, indent=2) + "\n")
        os.replace(scratch, target)  # a fresh name in the run folder: the whole copy appears at once
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return record


def _altered(fmt: str, data: bytes, source: Path) -> bytes:
    """The artifact's bytes, changed where the runtime does not look."""
    if fmt == "tflite":
        if data[4:8] != b"TFL3":
            raise UserError(f"{source} is not a TFLite flatbuffer (no TFL3 identifier); re-export the bundle")
        return data + TFLITE_TRAILER
    if fmt == "onnx":
        import onnx
        from google.protobuf.message import DecodeError

        try:
            proto = onnx.load_model_from_string(data)
        except (DecodeError, ValueError) as exc:
            raise UserError(f"{source} is not an ONNX model ({type(exc).__name__}); re-export the bundle") from None
        entry = proto.metadata_props.add()
        entry.key, entry.value = ONNX_KEY, NOTE
        return proto.SerializeToString()
    raise UserError(f"--control cannot copy a {fmt} artifact ({source}); bench with --runtime onnxruntime,tflite")
