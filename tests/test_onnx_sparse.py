"""Sparse ONNX storage on a real pruned Transformer, checked in the real ONNX Runtime against torch on real ETTh1
windows: smaller files, the narrowest index type ORT accepts, dense where sparse would not be smaller, and what
ORT does with each sparse weight as its own profile shows it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from tsprune_edge.errors import UserError
from tsprune_edge.export.artifacts import export_onnx
from tsprune_edge.export.encodings import DENSE, DENSIFIED
from tsprune_edge.export.onnx_sparse import (
    CANDIDATE_INDEX_DTYPES,
    accepted_index_dtypes,
    compress_onnx,
    find_faults,
    narrowest_index_dtype,
)
from tsprune_edge.export.runtimes import run_onnx
from tsprune_edge.models import create_model
from tsprune_edge.models.deployment import deployment_form
from tsprune_edge.prune.masks import Masks

TOLERANCE = 1e-4
EVIDENCE = re.compile(r"^ORT [\d.]+ profile \(prepacking off\): (\w+) node '([^']+)' read it as dense "
                      r"float\[([\d,]*)\]")


def _validator(model: torch.nn.Module, history: np.ndarray, calendar: np.ndarray):
    """Max abs error of an ONNX file in ORT against the torch model, over every window (batch 1)."""
    windows = [(history[i:i + 1], calendar[i:i + 1]) for i in range(len(history))]
    with deployment_form(model), torch.no_grad():
        expected = [model(torch.from_numpy(h), torch.from_numpy(c)).numpy() for h, c in windows]

    def validate(path: Path) -> float:
        return max(float(np.abs(run_onnx(path, h, c) - e).max()) for (h, c), e in zip(windows, expected, strict=True))

    return validate


@pytest.fixture(scope="module")
def exported(etth1_windows, tmp_path_factory):
    """sparsity -> (dense ONNX file of the small Transformer pruned to it, its validator); exported once each."""
    history, calendar = etth1_windows(96, 48)
    folder = tmp_path_factory.mktemp("dense")
    cache = {}

    def get(sparsity: float) -> tuple[Path, object]:
        if sparsity not in cache:
            torch.manual_seed(0)
            model = create_model("transformer", "small", pred_len=96).eval()
            if sparsity:
                masks = Masks(model, "unstructured")
                masks.compute(sparsity)
                masks.apply()
            sample = (torch.from_numpy(history[:1]), torch.from_numpy(calendar[:1]))
            path = export_onnx(model, sample, folder / f"pruned-{sparsity}.onnx")
            cache[sparsity] = (path, _validator(model, history, calendar))
        return cache[sparsity]

    return get


def _sparse(records):
    return [r for r in records if r.encoding != "dense"]


def _nonzeros(record) -> int:
    return round(np.prod(record.shape) * (1 - record.zeros))


def test_90_percent_sparse_is_smaller_matches_torch_and_keeps_the_rest(exported, tmp_path):
    dense, validate = exported(0.9)
    src = onnx.load(str(dense))
    helper.set_model_props(src, {"tsprune_edge.model": "transformer"})
    onnx.save(src, str(tmp_path / "src.onnx"))
    records = compress_onnx(tmp_path / "src.onnx", tmp_path / "out" / "model.onnx", validate, TOLERANCE)
    out = tmp_path / "out" / "model.onnx"

    assert validate(out) <= TOLERANCE
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]  # no temporary or profile left
    result = onnx.load(str(out))
    assert {p.key: p.value for p in result.metadata_props} == {"tsprune_edge.model": "transformer"}
    assert result.opset_import == src.opset_import and result.ir_version == src.ir_version
    assert result.graph.input == src.graph.input and result.graph.output == src.graph.output
    assert [t.values.name for t in result.graph.sparse_initializer] == [r.name for r in _sparse(records)]

    weights = [t.name for t in src.graph.initializer if len(t.dims) >= 2 and t.data_type == onnx.TensorProto.FLOAT]
    assert [r.name for r in records] == weights
    assert _sparse(records)
    # The weights shrink to under 0.35x; the file to about 0.41x, because the exporter's per-node debug metadata
    # (~160 KB of this 960 KB file) and the dense position tables stay as they are.
    assert sum(r.bytes_stored for r in records) < 0.35 * sum(r.bytes_dense for r in records)
    assert out.stat().st_size < 0.45 * dense.stat().st_size


def test_each_index_type_is_the_narrowest_that_ort_accepts_and_fits(exported, tmp_path):
    accepted = accepted_index_dtypes()
    assert np.dtype(np.int64) in accepted  # the ONNX standard's index type
    dense, validate = exported(0.9)
    records = compress_onnx(dense, tmp_path / "model.onnx", validate, TOLERANCE)
    stored = {t.values.name: t for t in onnx.load(str(tmp_path / "model.onnx")).graph.sparse_initializer}
    for record in _sparse(records):
        numel = int(np.prod(record.shape))
        fitting = [d for d in accepted if np.iinfo(d).max >= numel - 1]
        expected = min(fitting, key=lambda d: d.itemsize)
        assert record.encoding == f"coo-{expected.name}" == f"coo-{narrowest_index_dtype(numel, accepted).name}"
        indices = numpy_helper.to_array(stored[record.name].indices)
        assert indices.dtype == expected and indices.shape == (_nonzeros(record),)  # flat indices
        assert record.bytes_stored == indices.nbytes + indices.size * 4


def test_a_dense_model_stays_dense(exported, tmp_path):
    dense, validate = exported(0.0)
    records = compress_onnx(dense, tmp_path / "model.onnx", validate, TOLERANCE)
    assert {r.encoding for r in records} == {"dense"} and {r.at_run_time for r in records} == {DENSE}
    assert all(r.bytes_stored == r.bytes_dense and r.note is None for r in records)
    assert len(onnx.load(str(tmp_path / "model.onnx")).graph.sparse_initializer) == 0


def test_at_half_sparsity_tensors_stay_dense_where_sparse_is_not_smaller(exported, tmp_path):
    dense, validate = exported(0.5)
    records = compress_onnx(dense, tmp_path / "model.onnx", validate, TOLERANCE)
    assert validate(tmp_path / "model.onnx") <= TOLERANCE
    accepted = accepted_index_dtypes()
    for record in records:
        index = narrowest_index_dtype(int(np.prod(record.shape)), accepted)
        smaller = _nonzeros(record) * (4 + index.itemsize) < record.bytes_dense
        assert (record.encoding != "dense") == smaller, record
    kept = [r for r in records if r.encoding == "dense" and r.zeros > 0]
    assert kept and _sparse(records)  # both cases occur at 50%
    assert (tmp_path / "model.onnx").stat().st_size < dense.stat().st_size


def test_each_weight_is_described_as_ort_profiled_it(exported, tmp_path):
    dense, validate = exported(0.9)
    records = compress_onnx(dense, tmp_path / "model.onnx", validate, TOLERANCE)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(tmp_path / "model.onnx"), options, providers=["CPUExecutionProvider"])
    nodes = {n.name: n for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
    for record in records:
        assert record.at_run_time == (DENSE if record.encoding == "dense" else DENSIFIED), record
        match = EVIDENCE.match(record.evidence)
        assert match, record.evidence
        op, node, shape = match.groups()
        assert [int(d) for d in shape.split(",")] == record.shape
        assert nodes[node].op_type == op and record.name in nodes[node].input  # the named kernel really reads it


def test_int64_indices_pass_the_onnx_checker_and_narrow_ones_do_not(exported, tmp_path):
    dense, validate = exported(0.9)
    narrow = compress_onnx(dense, tmp_path / "narrow.onnx", validate, TOLERANCE)
    wide = compress_onnx(dense, tmp_path / "wide.onnx", validate, TOLERANCE, int64_indices=True)
    assert {r.encoding for r in _sparse(wide)} == {"coo-int64"}
    assert validate(tmp_path / "wide.onnx") <= TOLERANCE
    onnx.checker.check_model(str(tmp_path / "wide.onnx"))
    if {r.encoding for r in _sparse(narrow)} != {"coo-int64"}:
        with pytest.raises(onnx.checker.ValidationError, match="must have INT64 type"):
            onnx.checker.check_model(str(tmp_path / "narrow.onnx"))
    assert (tmp_path / "narrow.onnx").stat().st_size < (tmp_path / "wide.onnx").stat().st_size


def test_fault_search_blames_only_an_encoding_that_really_breaks_ort(exported, tmp_path):
    """A real failure: an index type the probe rejected (this ORT refuses unsigned indices at load)."""
    dense, validate = exported(0.9)
    model = onnx.load(str(dense))
    weights = [t for t in model.graph.initializer if len(t.dims) >= 2 and t.data_type == onnx.TensorProto.FLOAT]
    rejected = [d for d in CANDIDATE_INDEX_DTYPES if d not in accepted_index_dtypes()]
    assert rejected, "this ORT accepts every candidate index type"
    bad_type = min(rejected, key=lambda d: d.itemsize)
    small = next(t.name for t in weights if np.prod(t.dims) - 1 <= np.iinfo(bad_type).max)  # indices fit bad_type
    big = next(t.name for t in weights if t.name != small and np.prod(t.dims) > 1000)
    faults = find_faults(model, {small: bad_type, big: np.dtype(np.int64)}, validate, TOLERANCE, tmp_path)
    assert list(faults) == [small]
    note = rf"with coo-{bad_type.name} \(the rest dense\) the model does not run in ONNX Runtime \(.+\); kept dense"
    assert re.fullmatch(note, faults[small]), faults[small]


def test_a_tolerance_nothing_meets_raises_and_leaves_nothing(exported, tmp_path):
    """A real failure: ORT's float kernels differ from torch by ~1e-7, so tolerance 0 fails even fully dense."""
    dense, validate = exported(0.9)
    assert validate(dense) > 0
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match=r"^model.onnx is \S+ off torch \(tolerance 0\) even with (\d+) of \1 sparse "
                                        r"tensors kept dense; it is not written$"):
        compress_onnx(dense, tmp_path / "out" / "model.onnx", validate, 0.0)
    assert list((tmp_path / "out").iterdir()) == []
