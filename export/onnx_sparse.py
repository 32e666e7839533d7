"""Smaller ONNX files from pruned weights: float weights with zeros stored as `graph.sparse_initializer`.

Facts measured with onnx 1.23.2 and ONNX Runtime 1.31.1 (the probe re-measures the index types per process):
- ORT loads flat (1-D) indices of int8, int16, int32 and int64; unsigned index types fail to load.
- The ONNX standard allows int64 indices only: `onnx.checker` rejects any other type, so a file with narrower
  indices runs in ORT but is not strictly conformant. `int64_indices=True` writes conformant files (larger).
- ORT converts sparse initializers to dense tensors when it builds the graph, so sparse storage buys file size
  only; `observe_weights` shows this per tensor from ORT's own profile rather than assuming it.
"""

from __future__ import annotations

import functools
import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tsprune_edge.atomic import replace_finished
from tsprune_edge.errors import UserError
from tsprune_edge.export.encodings import DENSE, DENSIFIED, SPARSE, TensorEncoding, Validator

CANDIDATE_INDEX_DTYPES = tuple(np.dtype(t) for t in ("int8", "uint8", "int16", "uint16", "int32", "int64"))
_PROBE_IR_VERSION = 10  # what torch's dynamo exporter writes; onnx's default (14) is newer than ORT 1.31 reads
_ORT_ERROR = re.compile(r"\[ONNXRuntimeError\] : \d+ : \w+ : ")


@functools.cache
def accepted_index_dtypes() -> tuple[np.dtype, ...]:
    """The flat index types the installed ORT loads and decodes correctly, narrowest first (probed once)."""
    return tuple(dtype for dtype in CANDIDATE_INDEX_DTYPES if _probe(dtype))


def _probe(dtype: np.dtype) -> bool:
    """Whether a tiny model whose one weight is sparse with `dtype` indices loads and returns that weight."""
    import onnxruntime as ort

    dense = np.arange(32, dtype=np.float32).reshape(4, 8)
    dense[:, ::3] = 0  # zeros first and in every row; the last flat index (31) holds a value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "probe",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4, 8])],
        sparse_initializer=[_sparse_tensor("w", dense, dtype)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=_PROBE_IR_VERSION)
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"x": np.zeros_like(dense)})
    except Exception:  # ORT raises its own exception types (Fail, InvalidGraph, ...) for an index type it refuses
        return False
    return bool(np.array_equal(got, dense))


def narrowest_index_dtype(numel: int, accepted: tuple[np.dtype, ...]) -> np.dtype | None:
    """The narrowest accepted type that can hold every flat index of a tensor of `numel` elements, if any."""
    fitting = [d for d in accepted if np.iinfo(d).max >= numel - 1]
    return min(fitting, key=lambda d: d.itemsize, default=None)


def _sparse_tensor(name: str, dense: np.ndarray, index_dtype: np.dtype) -> onnx.SparseTensorProto:
    flat = np.flatnonzero(dense)
    values = numpy_helper.from_array(dense.reshape(-1)[flat], name)
    indices = numpy_helper.from_array(flat.astype(index_dtype), f"{name}.indices")
    return helper.make_sparse_tensor(values, indices, list(dense.shape))


def sparsify(model: onnx.ModelProto, index_dtypes: Mapping[str, np.dtype]) -> onnx.ModelProto:
    """A copy of `model` whose initializers named in `index_dtypes` are stored sparse with those index types;
    everything else (metadata, opsets, inputs, outputs, node order) is untouched."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    kept, sparse = [], []
    for tensor in result.graph.initializer:
        if tensor.name in index_dtypes:
            sparse.append(_sparse_tensor(tensor.name, numpy_helper.to_array(tensor), index_dtypes[tensor.name]))
        else:
            kept.append(tensor)
    del result.graph.initializer[:]
    result.graph.initializer.extend(kept)
    result.graph.sparse_initializer.extend(sparse)
    return result


def _check(model: onnx.ModelProto) -> None:
    """onnx.checker on `model` with every index tensor widened to int64: the checker refuses narrower index types
    outright, which would hide everything else it checks (values, index range and order, the graph)."""
    widened = onnx.ModelProto()
    widened.CopyFrom(model)
    for sparse in widened.graph.sparse_initializer:
        indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
        sparse.indices.CopyFrom(numpy_helper.from_array(indices, sparse.indices.name))
    onnx.checker.check_model(widened)


def _encoding_name(index_dtype: np.dtype | None) -> str:
    return "dense" if index_dtype is None else f"coo-{np.dtype(index_dtype).name}"


def _measure(validate: Validator, path: Path) -> tuple[float, str]:
    """The validator's error and how to say it ("is 0.3 off torch"); a model it cannot run is infinitely off."""
    try:
        error = validate(path)
    except Exception as exc:  # ORT's load and run errors share no base class but Exception
        detail = _ORT_ERROR.split(str(exc).strip())[-1].splitlines()[0][:200]
        return float("inf"), f"does not run in ONNX Runtime ({detail})"
    return error, f"is {error:.3g} off torch"


def find_faults(model: onnx.ModelProto, index_dtypes: Mapping[str, np.dtype], validate: Validator,
                tolerance: float, folder: Path) -> dict[str, str]:
    """The sparse tensors that break the model on their own, each with a note saying why it is kept dense.
    Each tensor is tried alone (all others dense) in a scratch file under `folder`."""
    faults = {}
    for name, dtype in index_dtypes.items():
        path = Path(folder) / "alone.onnx"
        onnx.save(sparsify(model, {name: dtype}), str(path))
        error, effect = _measure(validate, path)
        if not error <= tolerance:  # also catches NaN
            faults[name] = f"with {_encoding_name(dtype)} (the rest dense) the model {effect}; kept dense"
    return faults


@dataclass
class Observation:
    """What ORT's profile showed about one weight: whether a kernel received it as a dense tensor, and how."""

    read_dense: bool
    evidence: str


def observe_weights(path: Path, names: list[str], folder: Path) -> dict[str, Observation]:
    """Run the model once in ORT with profiling, weight prepacking off (prepacked weights vanish from the
    profile) and the optimised graph saved, then read which kernel consumed each named weight and in what form.
    ORT's profile lists only the inputs that reached a kernel as dense tensors (a sparse one would be missing)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3  # ORT warns that the saved optimised graph is hardware-specific
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(folder) / "profile")
    options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
    options.add_session_config_entry("session.disable_prepacking", "1")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, _zero_inputs(onnx.load(str(path), load_external_data=False)))
    events = json.loads(Path(session.end_profiling()).read_text())
    kernels = {e["name"].removesuffix("_kernel_time"): e["args"] for e in events
               if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")}
    graph = onnx.load(options.optimized_model_filepath).graph
    label = f"ORT {ort.__version__}"
    return {name: _observe(name, graph, kernels, label) for name in names}


def _zero_inputs(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Zeros for every graph input (static shapes from the export; a symbolic dimension becomes 1)."""
    feeds = {}
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        shape = [d.dim_value or 1 for d in tensor_type.shape.dim]
        feeds[value.name] = np.zeros(shape, helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    return feeds


def _observe(name: str, graph: onnx.GraphProto, kernels: dict[str, dict], label: str) -> Observation:
    consumers = [node for node in graph.node if name in node.input]
    if not consumers:
        return Observation(True, f"{label}: no node of its optimised graph reads it (folded into another constant "
                                 "at load, and folded constants are dense tensors)")
    reads = [read for node in consumers if (read := _dense_read(node, name, kernels)) is not None]
    if reads:
        more = f" (and {len(reads) - 1} more)" if len(reads) > 1 else ""
        return Observation(True, f"{label} profile (prepacking off): {reads[0]}{more}")
    listed = ", ".join(f"{node.op_type} node '{node.name}'" for node in consumers)
    return Observation(False, f"{label} profile (prepacking off): {listed} did not list it among its dense inputs")


def _dense_read(node: onnx.NodeProto, name: str, kernels: dict[str, dict]) -> str | None:
    """'Gemm node 'n' read it as dense float[64,64]' when the node's profile entry shows the input dense."""
    args = kernels.get(node.name)
    present = [i for i in node.input if i]
    if args is None or len(args.get("input_type_shape", [])) != len(present):
        return None
    ((dtype, shape),) = args["input_type_shape"][present.index(name)].items()
    return f"{node.op_type} node '{node.name}' read it as dense {dtype}[{','.join(map(str, shape))}]"


@dataclass
class _Weight:
    name: str
    array: np.ndarray
    index_dtype: np.dtype | None  # the planned sparse index type; None: stored dense
    note: str | None = None

    def bytes_stored(self) -> int:
        if self.index_dtype is None:
            return self.array.nbytes
        return int(np.count_nonzero(self.array)) * (self.array.itemsize + self.index_dtype.itemsize)


def _plan(model: onnx.ModelProto, accepted: tuple[np.dtype, ...]) -> list[_Weight]:
    """Every float weight (ndim >= 2) in graph order, planned sparse exactly where that is smaller than dense."""
    weights = []
    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.ndim < 2 or not np.issubdtype(array.dtype, np.floating):
            continue
        weight = _Weight(tensor.name, array, narrowest_index_dtype(array.size, accepted))
        if weight.index_dtype is not None and not weight.bytes_stored() < array.nbytes:
            weight.index_dtype = None
        weights.append(weight)
    return weights


def _write(model: onnx.ModelProto, weights: list[_Weight], path: Path) -> None:
    result = sparsify(model, {w.name: w.index_dtype for w in weights if w.index_dtype is not None})
    _check(result)
    onnx.save(result, str(path))


def compress_onnx(src: Path, dst: Path, validate: Validator, tolerance: float,
                  int64_indices: bool = False) -> list[TensorEncoding]:
    """Write `dst`: `src` with each float weight that has zeros stored sparse where that is smaller, with the
    narrowest flat index type ORT accepts (int64 only, the ONNX standard's type, with `int64_indices`).

    The result must match torch within `tolerance` (`validate`); sparse tensors that break it are kept dense with
    a note, and a model that still fails raises UserError. Written atomically: nothing is left on failure.
    Returns one record per float weight (ndim >= 2), in graph order, with what ORT was seen to do with it."""
    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src))
    weights = _plan(model, (np.dtype(np.int64),) if int64_indices else accepted_index_dtypes())
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dst.name}.", dir=dst.parent) as folder:
        tmp = Path(folder) / dst.name
        _write(model, weights, tmp)
        error, _ = _measure(validate, tmp)
        if not error <= tolerance:  # also catches NaN
            _fall_back(model, weights, validate, tolerance, tmp)
        observed = observe_weights(tmp, [w.name for w in weights], Path(folder))
        replace_finished(tmp, dst)
    return [_record(w, observed[w.name]) for w in weights]


def _fall_back(model: onnx.ModelProto, weights: list[_Weight], validate: Validator, tolerance: float,
               tmp: Path) -> None:
    """Keep the faulty sparse tensors dense, rewrite `tmp` and validate again; raise if it still fails."""
    planned = {w.name: w.index_dtype for w in weights if w.index_dtype is not None}
    faults = find_faults(model, planned, validate, tolerance, tmp.parent)
    for weight in weights:
        if weight.name in faults:
            weight.index_dtype, weight.note = None, faults[weight.name]
    _write(model, weights, tmp)
    error, effect = _measure(validate, tmp)
    if not error <= tolerance:
        raise UserError(f"{tmp.name} {effect} (tolerance {tolerance:g}) even with {len(faults)} of {len(planned)} "
                        "sparse tensors kept dense; it is not written")


def _record(weight: _Weight, observation: Observation) -> TensorEncoding:
    if weight.index_dtype is None:
        at_run_time = DENSE
    else:
        at_run_time = DENSIFIED if observation.read_dense else SPARSE
    array = weight.array
    return TensorEncoding(name=weight.name, shape=list(array.shape), dtype=str(array.dtype),
                          zeros=float(np.count_nonzero(array == 0) / array.size),
                          encoding=_encoding_name(weight.index_dtype), bytes_dense=array.nbytes,
                          bytes_stored=weight.bytes_stored(), at_run_time=at_run_time,
                          evidence=observation.evidence, note=weight.note)
