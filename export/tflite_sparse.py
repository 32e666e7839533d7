"""Sparse storage of pruned weights in a .tflite file, with what the runtime really does with each one.

Every zero-rich constant float32 weight is stored CSR along its last dimension behind a DENSIFY op (XNNPACK
unpacks it when the delegate is built; the builtin kernel densifies it at the first invoke): the bytes shrink,
the speed stays that of dense.

With `sparse_kernels=True`, a weight that a FULLY_CONNECTED op reads as its filter is instead stored in a format
TFLite's builtin sparse kernels execute. `fully_connected.cc` accepts exactly two: random sparse (dim 0 DENSE,
dim 1 SPARSE_CSR) and 1x4 blocks (the same plus a DENSE block dimension of 4). Those ops get a FULLY_CONNECTED
op code of version 8 ("sparse weight"), which the XNNPACK delegate refuses, so they run on the builtin kernel;
dense FULLY_CONNECTED ops keep their own op code and stay delegated. Without the new version XNNPACK takes the
op and reads the sparse values as a dense matrix (NaN outputs in ai-edge-litert 2.3.0). The builtin sparse
kernels were slower than XNNPACK's dense ones on x86 (90% zeros: 1.35 vs 0.79 ms), hence opt-in: it is how a
bench asks whether they pay on a board.

A tensor is stored sparse only where that is smaller. The artifact is validated before it replaces `dst`;
tensors that break it are kept dense with a note. What happens at run time is read back from the interpreter's
op list after delegation, never assumed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from tsprune_edge.atomic import replace_finished, scratch_beside
from tsprune_edge.errors import UserError
from tsprune_edge.export.encodings import DENSE, DENSIFIED, SPARSE, TensorEncoding, Validator
from tsprune_edge.export.runtimes import tflite_interpreter

try:  # the TFLite schema ships with ai-edge-litert (which brings flatbuffers)
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
except ImportError:
    raise UserError("TFLite sparse storage needs ai-edge-litert: pip install 'tsprune-edge[tflite]'") from None

FULLY_CONNECTED = schema.BuiltinOperator.FULLY_CONNECTED
DENSIFY = schema.BuiltinOperator.DENSIFY
# Ops that multiply by a constant operand: only their weights are stored sparse. Other constants (position
# tables, the decoder's zero padding) are not pruned, so a model without pruning comes back unchanged.
WEIGHT_OPS = {FULLY_CONNECTED, schema.BuiltinOperator.BATCH_MATMUL, schema.BuiltinOperator.CONV_2D,
              schema.BuiltinOperator.DEPTHWISE_CONV_2D, schema.BuiltinOperator.CONV_3D,
              schema.BuiltinOperator.TRANSPOSE_CONV}
SPARSE_FC_VERSION = 8  # TFLite's op_version.cc: FULLY_CONNECTED with a sparse weight is version 8
BLOCK = 4  # the 1x4 block kernel of FULLY_CONNECTED
ALIGN = 16  # the schema's `force_align: 16` on Buffer.data, which the generated Python Pack() ignores
FILE_IDENTIFIER = b"TFL3"


@dataclass
class _Weight:
    """A constant float32 tensor of the main subgraph with ndim >= 2, and who reads it."""

    index: int
    name: str
    values: np.ndarray
    encodable: bool  # read only by WEIGHT_OPS
    kernel: bool  # every reader is a float FULLY_CONNECTED taking it as filter: the sparse kernels can run it


@dataclass
class _Plan:
    """A sparse form of one weight: values in traversal order and the sparsity parameters that index them."""

    encoding: str
    values: np.ndarray
    sparsity: schema.SparsityParametersT
    bytes_stored: int
    densify: bool


def compress_tflite(src: Path, dst: Path, validate: Validator, tolerance: float,
                    sparse_kernels: bool = False) -> list[TensorEncoding]:
    """Write `dst`: `src` with every zero-rich weight stored sparse where smaller and correct in the runtime.

    One record per weight (constant float32, ndim >= 2), dense ones included. Raises UserError when no
    artifact within `tolerance` can be made.
    """
    src, dst = Path(src), Path(dst)
    data = src.read_bytes()
    model = _load(data, src)
    weights = _weights(model)
    plans = {w.index: plan for w in weights if (plan := _plan(w, sparse_kernels)) is not None}
    notes: dict[int, str] = {}
    dst.parent.mkdir(parents=True, exist_ok=True)
    with scratch_beside(dst) as tmp:
        problem, seen = _check(data, plans, weights, tmp, validate, tolerance)
        if problem and plans:
            notes = _culprits(data, plans, weights, dst, validate, tolerance)
            plans = {i: plan for i, plan in plans.items() if i not in notes}
            problem, seen = _check(data, plans, weights, tmp, validate, tolerance)
        if problem:
            kept = f" (with {len(notes)} tensors kept dense)" if notes else ""
            raise UserError(f"{src.name}: the sparse TFLite artifact fails validation{kept}: {problem}")
        replace_finished(tmp, dst)
    return [_record(w, plans.get(w.index), seen[w.index], notes.get(w.index)) for w in weights]


def _load(data: bytes, src: Path) -> schema.ModelT:
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    ops = [op for graph in model.subgraphs for op in graph.operators]
    if any(b.offset > 1 for b in model.buffers) or any(op.largeCustomOptionsOffset > 1 for op in ops):
        # Data past the flatbuffer (files over 2 GB) would not survive repacking.
        raise UserError(f"{src.name}: data stored outside the flatbuffer (files over 2 GB) is not supported")
    if any(tensor.sparsity is not None for graph in model.subgraphs for tensor in graph.tensors):
        raise UserError(f"{src.name} already stores sparse tensors: pass the dense file that export_tflite wrote")
    return model


def _builtin(model: schema.ModelT, operator: schema.OperatorT) -> int:
    """The builtin operator an op runs (codes past 127 live in `builtinCode` only)."""
    code = model.operatorCodes[operator.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _weights(model: schema.ModelT) -> list[_Weight]:
    graph = model.subgraphs[0]
    boundary = {int(t) for t in (*graph.inputs, *graph.outputs)}
    readers: dict[int, list[tuple[int, int]]] = {}
    for op_index, op in enumerate(graph.operators):
        for position, tensor in enumerate(op.inputs):
            readers.setdefault(int(tensor), []).append((op_index, position))
    weights = []
    for index, tensor in enumerate(graph.tensors):
        data = model.buffers[tensor.buffer].data
        if (tensor.type != schema.TensorType.FLOAT32 or len(tensor.shape) < 2 or data is None or not len(data)
                or index in boundary):
            continue
        values = np.frombuffer(np.asarray(data, np.uint8).tobytes(), "<f4").reshape(tensor.shape)
        uses = readers.get(index, [])
        encodable = bool(uses) and all(_builtin(model, graph.operators[op]) in WEIGHT_OPS for op, _ in uses)
        kernel = encodable and all(_fc_filter(model, graph, op, position, values) for op, position in uses)
        weights.append(_Weight(index, tensor.name.decode(errors="replace"), values, encodable, kernel))
    return weights


def _fc_filter(model: schema.ModelT, graph: schema.SubGraphT, op_index: int, position: int,
               values: np.ndarray) -> bool:
    """Whether the builtin FULLY_CONNECTED sparse kernels can read this input: a 2-D float filter of a float op
    in the default weights format."""
    op = graph.operators[op_index]
    options = op.builtinOptions
    return (_builtin(model, op) == FULLY_CONNECTED and position == 1 and values.ndim == 2
            and graph.tensors[op.inputs[0]].type == schema.TensorType.FLOAT32
            and (options is None or options.weightsFormat == schema.FullyConnectedOptionsWeightsFormat.DEFAULT))


def _plan(weight: _Weight, sparse_kernels: bool) -> _Plan | None:
    """The smallest sparse form the readers can take, if it is smaller than dense."""
    if not weight.encodable:
        return None
    if weight.kernel and sparse_kernels:
        candidates = [_encode(weight.values, 1, "csr", densify=False)]
        if weight.values.shape[1] % BLOCK == 0:  # never 1x4 blocks across a width that is not a multiple of 4
            candidates.append(_encode(weight.values, BLOCK, "block-1x4", densify=False))
    else:
        candidates = [_encode(weight.values, 1, "csr+densify", densify=True)]
    best = min(candidates, key=lambda plan: plan.bytes_stored)
    return best if best.bytes_stored < weight.values.nbytes else None


def _encode(values: np.ndarray, block: int, encoding: str, densify: bool) -> _Plan:
    """CSR over the last dimension (in 1 x `block` blocks), every leading dimension DENSE."""
    *leading, width = values.shape
    blocks = values.reshape(-1, width // block, block)
    keep = (blocks != 0).any(axis=-1)
    if not keep.any():
        keep[0, 0] = True  # one explicit zero: an empty buffer would make the tensor non-constant
    segments = _index_vector(np.concatenate([[0], np.cumsum(keep.sum(axis=1))]))
    indices = _index_vector(np.nonzero(keep)[1])
    stored = np.ascontiguousarray(blocks[keep].reshape(-1), "<f4")
    dims = [_dense_dim(size) for size in leading] + [_csr_dim(segments, indices)]
    sparsity = schema.SparsityParametersT()
    sparsity.traversalOrder = list(range(len(leading) + 1))
    if block > 1:
        dims.append(_dense_dim(block))
        sparsity.traversalOrder.append(len(leading) + 1)
        sparsity.blockMap = [len(leading)]
    sparsity.dimMetadata = dims
    size = stored.nbytes + segments[1].values.nbytes + indices[1].values.nbytes
    return _Plan(encoding, stored, sparsity, size, densify)


def _index_vector(values: np.ndarray) -> tuple[int, object]:
    """The narrowest index type the schema offers for these values (the interpreter widens them at load)."""
    top = int(values.max(initial=0))
    for kind, vector, dtype in ((schema.SparseIndexVector.Uint8Vector, schema.Uint8VectorT, np.uint8),
                                (schema.SparseIndexVector.Uint16Vector, schema.Uint16VectorT, np.uint16)):
        if top <= np.iinfo(dtype).max:
            return kind, vector(values=np.asarray(values, dtype))
    return schema.SparseIndexVector.Int32Vector, schema.Int32VectorT(values=np.asarray(values, np.int32))


def _dense_dim(size: int) -> schema.DimensionMetadataT:
    return schema.DimensionMetadataT(format=schema.DimensionType.DENSE, denseSize=int(size))


def _csr_dim(segments: tuple[int, object], indices: tuple[int, object]) -> schema.DimensionMetadataT:
    return schema.DimensionMetadataT(format=schema.DimensionType.SPARSE_CSR, arraySegmentsType=segments[0],
                                     arraySegments=segments[1], arrayIndicesType=indices[0], arrayIndices=indices[1])


class _AlignedBuffer(schema.BufferT):
    """A buffer whose data starts on a 16-byte boundary of the file."""

    def Pack(self, builder: flatbuffers.Builder) -> int:
        if self.data is None:
            return super().Pack(builder)
        data = np.asarray(self.data, np.uint8)
        builder.Prep(ALIGN, data.size)  # pad so that the vector about to be written starts aligned
        vector = builder.CreateNumpyVector(data)
        schema.BufferStart(builder)
        schema.BufferAddData(builder, vector)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)


def _rewrite(data: bytes, plans: dict[int, _Plan]) -> bytes:
    """`data` with the planned tensors stored sparse; the unchanged bytes when there is nothing to store."""
    if not plans:
        return data
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    graph = model.subgraphs[0]
    shared = Counter(tensor.buffer for subgraph in model.subgraphs for tensor in subgraph.tensors)
    densify_ops = []
    for index, plan in plans.items():
        tensor = graph.tensors[index]
        if shared[tensor.buffer] > 1:  # deduplicated constant: the other tensors keep the dense buffer
            shared[tensor.buffer] -= 1
            tensor.buffer = _new_buffer(model)
        model.buffers[tensor.buffer].data = plan.values.view(np.uint8)
        tensor.sparsity = plan.sparsity
        if plan.densify:
            densify_ops.append(_densify(model, graph, index))
        else:
            _use_sparse_kernel(model, graph, index)
    graph.operators = densify_ops + list(graph.operators)
    for buffer in model.buffers:
        buffer.__class__ = _AlignedBuffer
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def _new_buffer(model: schema.ModelT) -> int:
    model.buffers.append(schema.BufferT())
    return len(model.buffers) - 1


def _operator_code(model: schema.ModelT, builtin: int, version: int) -> int:
    """The index of the op code (builtin, version), added if the model has none."""
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and code.version == version:
            return index
    model.operatorCodes.append(schema.OperatorCodeT(deprecatedBuiltinCode=min(builtin, 127), builtinCode=builtin,
                                                    version=version))
    return len(model.operatorCodes) - 1


def _use_sparse_kernel(model: schema.ModelT, graph: schema.SubGraphT, index: int) -> None:
    """Give the FULLY_CONNECTED ops reading `index` the sparse-weight op code version."""
    for op in graph.operators:
        if _builtin(model, op) == FULLY_CONNECTED and op.inputs[1] == index:
            version = max(model.operatorCodes[op.opcodeIndex].version, SPARSE_FC_VERSION)
            op.opcodeIndex = _operator_code(model, FULLY_CONNECTED, version)


def _densify(model: schema.ModelT, graph: schema.SubGraphT, index: int) -> schema.OperatorT:
    """A DENSIFY op from the sparse tensor to a new dense tensor, which every reader then takes instead."""
    sparse = graph.tensors[index]
    dense = schema.TensorT(shape=np.array(sparse.shape, np.int32), type=sparse.type, buffer=_new_buffer(model),
                           name=sparse.name + b"/densified", shapeSignature=sparse.shapeSignature,
                           hasRank=sparse.hasRank)
    graph.tensors.append(dense)
    dense_index = len(graph.tensors) - 1
    for op in graph.operators:
        op.inputs = np.array([dense_index if tensor == index else tensor for tensor in op.inputs], np.int32)
    return schema.OperatorT(opcodeIndex=_operator_code(model, DENSIFY, 1), inputs=np.array([index], np.int32),
                            outputs=np.array([dense_index], np.int32))


def _check(data: bytes, plans: dict[int, _Plan], weights: list[_Weight], path: Path, validate: Validator,
           tolerance: float) -> tuple[str | None, dict[int, tuple[str | None, str]]]:
    """Write the plans to `path` and run it: why it is wrong (None if right), and what the runtime does with
    each weight."""
    path.write_bytes(_rewrite(data, plans))
    try:
        error = validate(path)
        seen = _observe(path, [w.index for w in weights])
    except Exception as exc:  # the interpreter refusing the file (e.g. at allocate_tensors) surfaces as any error
        return f"the runtime refused it: {_first_line(exc)}", {}
    if not error <= tolerance:  # NaN fails too
        return f"max abs error {error:.3g} > tolerance {tolerance:g}", seen
    misread = [seen[i][1] for i, plan in plans.items() if seen[i][0] != (DENSIFIED if plan.densify else SPARSE)]
    return (f"not read as stored: {misread[0]}" if misread else None), seen


def _culprits(data: bytes, plans: dict[int, _Plan], weights: list[_Weight], dst: Path, validate: Validator,
              tolerance: float) -> dict[int, str]:
    """The planned tensors that break the artifact on their own, each with why."""
    notes = {}
    with scratch_beside(dst) as tmp:
        for index, plan in plans.items():
            problem, _ = _check(data, {index: plan}, weights, tmp, validate, tolerance)
            if problem:
                notes[index] = f"kept dense: stored {plan.encoding} alone, {problem}"
    return notes


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


def _observe(path: Path, indices: list[int]) -> dict[int, tuple[str | None, str]]:
    """Per tensor, (at_run_time, evidence) from the interpreter's op list after delegation; at_run_time is
    None where a sparse tensor reaches an op that cannot read it."""
    interpreter = tflite_interpreter(path)
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    owner = _delegated(ops)
    sparsity = {d["index"]: d.get("sparsity_parameters") or {} for d in interpreter.get_tensor_details()}
    runtime = _runtime_name(interpreter)
    return {index: _seen(index, sparsity.get(index, {}), ops, owner, runtime) for index in indices}


def _delegated(ops: list[dict]) -> dict[int, int]:
    """Which op each delegated op went into. The Python API lists the original ops plus one DELEGATE op per
    partition with only its boundary tensors: a partition is what lies between its outputs and its inputs."""
    producer = {int(t): op["index"] for op in ops if op["op_name"] != "DELEGATE" for t in op["outputs"]}
    owner: dict[int, int] = {}
    for delegate in ops:
        if delegate["op_name"] != "DELEGATE":
            continue
        boundary = set(delegate["inputs"].tolist())
        stack = [int(t) for t in delegate["outputs"]]
        while stack:
            tensor = stack.pop()
            if tensor in boundary or tensor not in producer or producer[tensor] in owner:
                continue
            owner[producer[tensor]] = delegate["index"]
            stack.extend(int(t) for t in ops[producer[tensor]]["inputs"])
    return owner


def _runtime_name(interpreter: object) -> str:
    distribution = type(interpreter).__module__.split(".")[0].replace("_", "-")
    try:
        return f"{distribution} {metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return distribution


def _where(op: dict, owner: dict[int, int]) -> str:
    placement = (f"delegated to XNNPACK as DELEGATE op {owner[op['index']]}" if op["index"] in owner
                 else "builtin kernel, not delegated")
    return f"{op['op_name']} op {op['index']} ({placement})"


def _readers(index: int, ops: list[dict]) -> list[dict]:
    return [op for op in ops if op["op_name"] != "DELEGATE" and index in op["inputs"]]


def _seen(index: int, sparsity: dict, ops: list[dict], owner: dict[int, int],
          runtime: str) -> tuple[str | None, str]:
    readers = _readers(index, ops)
    if not readers:
        return DENSE, f"{runtime}: no op reads it"
    if not sparsity:
        return DENSE, f"{runtime}: " + "; ".join(f"{_where(op, owner)} reads it dense" for op in readers)
    form = "1x4 blocks" if len(sparsity.get("block_map", [])) else "CSR"
    if all(op["op_name"] == "DENSIFY" for op in readers):
        how = "; ".join(
            f"{_where(op, owner)} expands it to dense for "
            + ", ".join(_where(user, owner) for user in _readers(int(op["outputs"][0]), ops)) for op in readers)
        return DENSIFIED, f"{runtime}: {how}"
    if all(op["op_name"] == "FULLY_CONNECTED" and op["index"] not in owner for op in readers):
        return SPARSE, f"{runtime}: " + "; ".join(f"{_where(op, owner)} reads it as {form}" for op in readers)
    return None, f"{runtime}: " + "; ".join(f"{_where(op, owner)} reads the {form} tensor directly" for op in readers)


def _record(weight: _Weight, plan: _Plan | None, seen: tuple[str | None, str], note: str | None) -> TensorEncoding:
    at_run_time, evidence = seen
    return TensorEncoding(name=weight.name, shape=list(weight.values.shape), dtype="float32",
                          zeros=round(float((weight.values == 0).mean()), 6),
                          encoding=plan.encoding if plan else "dense", bytes_dense=weight.values.nbytes,
                          bytes_stored=plan.bytes_stored if plan else weight.values.nbytes,
                          at_run_time=at_run_time, evidence=evidence, note=note)
