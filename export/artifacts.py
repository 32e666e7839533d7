"""Writing a model in the deployment signature to ONNX and TFLite files, atomically.

Inputs are named `history` and `calendar`, the output `forecast` (ONNX); litert-torch names them `args_0`,
`args_1` and `output_0` in the same order. Shapes are those of the sample (static).
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import onnx
import torch
from torch import nn

from tsprune_edge.atomic import replace_finished, scratch_beside
from tsprune_edge.errors import UserError
from tsprune_edge.export.onnx_level import read_level
from tsprune_edge.models.deployment import deployment_form

INPUT_NAMES = ("history", "calendar")
OUTPUT_NAMES = ("forecast",)
DEFAULT_OPSET = 20  # torch's dynamo exporter's own level (IR 10); rpi4 and desktop read it
# Opsets the exporters write: TorchScript's (dynamo=False) 13-17 directly, LayerNorm and GELU decomposed and
# reductions with axes as attributes; the dynamo exporter's 18 and up. Below 13 nothing of ours is tested.
MIN_OPSET, MAX_TORCHSCRIPT_OPSET, MAX_OPSET = 13, 17, 21


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ATEN_OP = re.compile(r"aten(?:\.|::)(\w+)")


def _explain(exc: BaseException) -> str:
    """The operator that failed to convert, where the exporter's error chain names one, else its first line."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(_ANSI.sub("", str(exc)))
        exc = exc.__cause__ or exc.__context__
    for text in chain:
        match = _ATEN_OP.search(text)
        if match:
            return f"operator aten.{match.group(1)} does not convert"
    first = chain[0].strip().splitlines()
    return (first[0] if first else "unknown error")[:200]


def _write_artifact(model: nn.Module, path: Path, what: str, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp)` with the model in its deployment form, then rename tmp to `path`; on failure nothing is
    left behind and the error names the model and the first line of the cause."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with scratch_beside(path) as tmp:
        try:
            with deployment_form(model.eval()), torch.no_grad():
                write(tmp)
            replace_finished(tmp, path)
        except Exception as exc:
            name = getattr(model, "name", type(model).__name__)
            raise UserError(f"{name} cannot be {what}: {_explain(exc)}") from None
    return path


def check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UserError(f"ONNX opset {opset} cannot be written; --onnx-opset takes {MIN_OPSET} to {MAX_OPSET} "
                        f"(13 for Jetson Nano's ONNX Runtime 1.10 and TensorRT 8, {DEFAULT_OPSET} by default)")


def export_onnx(model: nn.Module, sample: tuple[torch.Tensor, torch.Tensor], path: Path,
                opset: int = DEFAULT_OPSET, ir_version: int | None = None) -> Path:
    """One self-contained .onnx file (no external data) of `model` in its deployment form, at `opset` and (when
    given) `ir_version`; the written graph is read back and refused unless no node is newer than `opset`."""
    check_opset(opset)

    def write(tmp: Path) -> None:
        proto = _trace_to_onnx(model, sample, opset)
        _restore_unused_inputs(proto, sample)
        if ir_version is not None:
            proto.ir_version = ir_version
        level = read_level(proto)  # raises ValueError on a node newer than the declared opset
        if level.opset != opset:
            raise ValueError(f"the exporter wrote opset {level.opset}, not the {opset} asked for")
        onnx.save(proto, str(tmp))

    return _write_artifact(model, path, "exported to ONNX", write)


def _trace_to_onnx(model: nn.Module, sample: tuple[torch.Tensor, torch.Tensor], opset: int) -> onnx.ModelProto:
    """The TorchScript exporter up to opset 17 (the dynamo one emits LayerNormalization-17 and Gelu-20, and onnx's
    version converter cannot take them down), the dynamo exporter above."""
    names = {"input_names": list(INPUT_NAMES), "output_names": list(OUTPUT_NAMES)}
    with contextlib.redirect_stdout(io.StringIO()):
        if opset > MAX_TORCHSCRIPT_OPSET:
            program = torch.onnx.export(model, sample, **names, opset_version=opset, dynamo=True, verbose=False)
            proto = program.model_proto
            _drop_debug_metadata(proto.graph)
            return proto
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its DeprecationWarning and tracer warnings about Python scalars
            torch.onnx.export(model, sample, buffer, **names, opset_version=opset, dynamo=False)
        return onnx.load_from_string(buffer.getvalue())


def _restore_unused_inputs(proto: onnx.ModelProto, sample: tuple[torch.Tensor, torch.Tensor]) -> None:
    """The TorchScript exporter drops an input the model ignores (crossformer, patchtst and dlinear ignore the
    calendar); every artifact keeps the deployment signature's two inputs, in order."""
    present = {i.name: i for i in proto.graph.input}
    if all(name in present for name in INPUT_NAMES):
        return
    inputs = [present.get(name) or onnx.helper.make_tensor_value_info(
        name, onnx.helper.np_dtype_to_tensor_dtype(tensor.numpy().dtype), list(tensor.shape))
        for name, tensor in zip(INPUT_NAMES, sample, strict=True)]
    others = [i for i in proto.graph.input if i.name not in INPUT_NAMES]
    del proto.graph.input[:]
    proto.graph.input.extend(inputs + others)


def _drop_debug_metadata(graph: onnx.GraphProto) -> None:
    """The dynamo exporter stores each node's Python stack trace (absolute source paths of the machine that
    exported it, about a sixth of a small model's bytes); a deployed artifact needs neither."""
    for node in graph.node:
        del node.metadata_props[:]
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                _drop_debug_metadata(attribute.g)
            for subgraph in attribute.graphs:
                _drop_debug_metadata(subgraph)


def export_tflite(model: nn.Module, sample: tuple[torch.Tensor, torch.Tensor], path: Path) -> Path:
    """A .tflite file of `model` in its deployment form, converted by litert-torch on this (x86_64) host."""
    try:
        import litert_torch
    except ImportError:
        raise UserError("TFLite export needs litert-torch: pip install 'tsprune-edge[tflite]'") from None
    def write(tmp: Path) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # litert-torch prints its progress to stdout
            litert_torch.convert(model, sample).export(str(tmp))

    return _write_artifact(model, path, "converted to TFLite", write)
