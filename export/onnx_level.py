"""Which ONNX runtimes read a file: its IR version, its opset and every node checked against the opset's schemas.

A board's runtime refuses a file that is too new for it (ONNX Runtime 1.10: "Unsupported model IR version: 10,
max supported IR version: 8"), and TensorRT 8's parser imports nothing newer than opset 13. So the level of an
artifact is read from the graph itself, never assumed from what the exporter was asked for.

Reader limits (FIELD-NOTES, "Jetson Nano: what its runtimes read"): each ONNX Runtime release's compatibility
table; TensorRT 8.0/8.2's ONNX parser (onnx-tensorrt 8.x) imports opset <= 13 of the default domain only, has no
importer for the integer ops of dynamic quantization, and is not known to read `graph.sparse_initializer`, so a
file with one counts as unreadable for it (not verified on hardware).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import defs

DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Reader:
    """One runtime family and the newest file it reads."""

    name: str
    max_opset: int
    max_ir: int
    custom_domains: bool = True  # reads ops outside the default domain (com.microsoft, ...)
    sparse_initializers: bool = True
    unsupported_ops: frozenset[str] = frozenset()


READERS = (
    Reader("onnxruntime 1.10", 15, 8),  # the newest for Python 3.6: Jetson Nano (JetPack 4)
    Reader("onnxruntime 1.14", 18, 8),
    Reader("onnxruntime 1.17", 20, 9),
    Reader("onnxruntime 1.18+", 21, 10),
    Reader("tensorrt 8.0/8.2", 13, 7, custom_domains=False, sparse_initializers=False,
           unsupported_ops=frozenset({"MatMulInteger", "DynamicQuantizeLinear", "ConvInteger"})),
)


@dataclass(frozen=True)
class Level:
    """What a file declares and holds."""

    ir_version: int
    opset: int  # of the default domain
    custom_domains: tuple[str, ...]  # other domains its nodes use
    op_types: frozenset[str]
    sparse_initializers: int


def default_opset(model: onnx.ModelProto) -> int:
    versions = [o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS]
    if not versions:
        raise ValueError("the file imports no default-domain opset")
    return max(versions)


def _nodes(graph: onnx.GraphProto):
    """Every node, subgraphs (If, Loop, Scan bodies) included."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _nodes(subgraph)


def read_level(model: onnx.ModelProto) -> Level:
    """The file's level, after checking that each default-domain node exists at the file's opset in onnx.defs
    (so no LayerNormalization in an opset-13 file) and that onnx.checker accepts the graph at that opset (so a
    ReduceMean with opset 18's axes input fails in an opset-13 file). Raises ValueError naming the first fault."""
    opset = default_opset(model)
    domains, op_types = set(), set()
    for node in _nodes(model.graph):
        if node.domain not in DEFAULT_DOMAINS:
            domains.add(node.domain)
            continue
        op_types.add(node.op_type)
        try:
            schema = defs.get_schema(node.op_type, max_inclusive_version=opset, domain="")
        except defs.SchemaError:
            raise ValueError(f"node {node.name or node.op_type} is {node.op_type}, which opset {opset} does not "
                             "have") from None
        if schema.deprecated:
            raise ValueError(f"node {node.name or node.op_type}: {node.op_type} is deprecated at opset {opset}")
    required_ir = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    if model.ir_version < required_ir:
        raise ValueError(f"IR version {model.ir_version} is older than opset {opset} needs (IR {required_ir})")
    if not model.graph.sparse_initializer:  # the checker cannot see sparse initializers in shape inference
        onnx.checker.check_model(model)
    return Level(ir_version=model.ir_version, opset=opset, custom_domains=tuple(sorted(domains)),
                 op_types=frozenset(op_types), sparse_initializers=len(model.graph.sparse_initializer))


def why_not_read(level: Level, reader: Reader) -> str | None:
    """Why `reader` cannot load a file of this level, or None when it can."""
    if level.ir_version > reader.max_ir:
        return f"IR {level.ir_version} > {reader.max_ir}"
    if level.opset > reader.max_opset:
        return f"opset {level.opset} > {reader.max_opset}"
    if level.custom_domains and not reader.custom_domains:
        return f"ops of domain {level.custom_domains[0]}"
    if level.sparse_initializers and not reader.sparse_initializers:
        return "sparse initializers"
    unsupported = sorted(level.op_types & reader.unsupported_ops)
    if unsupported:
        return f"no importer for {unsupported[0]}"
    return None


def readers_record(level: Level) -> dict[str, dict]:
    """For the manifest: per runtime family, whether it reads the file and, if not, why."""
    record = {}
    for reader in READERS:
        reason = why_not_read(level, reader)
        record[reader.name] = {"reads": reason is None, **({"why_not": reason} if reason else {})}
    return record
