"""Sparse TFLite storage of pruned weights on the real small Transformer: converted by litert-torch, run in
ai-edge-litert (default XNNPACK delegate) on real ETTh1 windows and compared with torch. What the records say
the runtime does is checked against the interpreter's own op list."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from ai_edge_litert.interpreter import Interpreter

from tsprune_edge.errors import UserError
from tsprune_edge.export.artifacts import export_tflite
from tsprune_edge.export.encodings import DENSE, DENSIFIED, SPARSE, TensorEncoding
from tsprune_edge.export.runtimes import run_tflite
from tsprune_edge.export.tflite_sparse import compress_tflite
from tsprune_edge.models import create_model
from tsprune_edge.models.deployment import deployment_form
from tsprune_edge.prune.masks import Masks

TOLERANCE = 1e-4
CASES = {"dense": (None, 0.0), "unstructured-50": ("unstructured", 0.5), "unstructured-90": ("unstructured", 0.9),
         "block-50": ("block", 0.5)}
OP = re.compile(r"(\w+) op (\d+) \((builtin kernel, not delegated|delegated to XNNPACK as DELEGATE op (\d+))\)")


@dataclass
class Case:
    src: Path
    history: np.ndarray
    calendar: np.ndarray
    expected: list[np.ndarray]  # torch forecasts, one per window

    def error(self, path: Path, expected: list[np.ndarray] | None = None) -> float:
        """Max abs error of the artifact over the three windows (against torch unless told otherwise)."""
        expected = self.expected if expected is None else expected
        return max(float(np.abs(self.run(path, i) - expected[i]).max()) for i in range(len(self.history)))

    def run(self, path: Path, index: int) -> np.ndarray:
        return run_tflite(path, self.history[index:index + 1], self.calendar[index:index + 1])


@pytest.fixture(scope="module")
def cases(etth1_windows, tmp_path_factory) -> dict[str, Case]:
    """The small Transformer (seed 0), pruned as each case says, exported to a dense .tflite."""
    history, calendar = etth1_windows(96, 48)
    folder = tmp_path_factory.mktemp("dense-tflite")
    result = {}
    for name, (method, sparsity) in CASES.items():
        torch.manual_seed(0)
        model = create_model("transformer", "small", pred_len=96).eval()
        if method:
            masks = Masks(model, method)
            masks.compute(sparsity)
            masks.apply()
        with torch.no_grad(), deployment_form(model):
            expected = [model(torch.from_numpy(history[i:i + 1]), torch.from_numpy(calendar[i:i + 1])).numpy()
                        for i in range(len(history))]
        sample = (torch.from_numpy(history[:1]), torch.from_numpy(calendar[:1]))
        result[name] = Case(export_tflite(model, sample, folder / f"{name}.tflite"), history, calendar, expected)
    return result


def _compress(case: Case, folder: Path, sparse_kernels: bool = False) -> tuple[Path, list[TensorEncoding]]:
    dst = folder / "sparse.tflite"
    return dst, compress_tflite(case.src, dst, case.error, TOLERANCE, sparse_kernels)


def _csr_bytes(record: TensorEncoding, nonzeros: int) -> int:
    """Size of CSR over the last dimension with the narrowest index types: the smallest form offered."""
    def width(top: int) -> int:
        return 1 if top < 2**8 else 2 if top < 2**16 else 4

    rows = int(np.prod(record.shape[:-1]))
    return 4 * nonzeros + nonzeros * width(record.shape[-1] - 1) + (rows + 1) * width(nonzeros)


@pytest.mark.parametrize("sparse_kernels, encoding, at_run_time",
                         [(False, "csr+densify", DENSIFIED), (True, "csr", SPARSE)])
def test_unstructured_90_is_much_smaller_and_matches_torch(cases, tmp_path, sparse_kernels, encoding, at_run_time):
    """By default every sparse weight is densified at load (XNNPACK keeps the ops); with sparse kernels the
    FULLY_CONNECTED filters are read sparse by the builtin kernel. Same bytes either way."""
    case = cases["unstructured-90"]
    dst, records = _compress(case, tmp_path, sparse_kernels)
    assert case.error(dst) <= TOLERANCE
    ratio = dst.stat().st_size / case.src.stat().st_size
    print(f"90% unstructured: {case.src.stat().st_size} -> {dst.stat().st_size} bytes ({ratio:.2f})")
    assert ratio < 0.45, ratio
    filters = [r for r in records if len(r.shape) == 2 and r.zeros > 0.5]
    assert filters and all(r.encoding == encoding and r.at_run_time == at_run_time for r in filters)
    assert all(r.bytes_stored < r.bytes_dense for r in records if r.encoding != "dense")
    assert all(r.note is None for r in records)


def test_width_7_input_projection_is_never_block_sparse(cases, tmp_path):
    """The Transformer's input projection is a kernel-3 Conv1d over 7 variables: a CONV_2D filter [64, 1, 3, 7].
    It cannot take 1x4 blocks (7 is not a multiple of 4; TF's converter got this wrong): it is stored CSR behind a
    DENSIFY op and the artifact still matches torch."""
    found = {}
    for name in ("unstructured-90", "block-50"):
        case = cases[name]
        dst, found[name] = _compress(case, tmp_path, sparse_kernels=True)
        assert case.error(dst) <= TOLERANCE
        assert all(r.encoding != "block-1x4" for r in found[name] if r.shape[-1] % 4)
    projections = [r for r in found["unstructured-90"] if r.shape == [64, 1, 3, 7]]
    assert len(projections) == 2 and all(r.zeros > 0.2 for r in projections)
    assert all(r.encoding == "csr+densify" and r.at_run_time == DENSIFIED for r in projections)


def test_unstructured_50_keeps_dense_what_sparse_would_not_shrink(cases, tmp_path):
    case = cases["unstructured-50"]
    dst, records = _compress(case, tmp_path)
    assert case.error(dst) <= TOLERANCE
    print(f"50% unstructured: {case.src.stat().st_size} -> {dst.stat().st_size} bytes")
    assert dst.stat().st_size < case.src.stat().st_size
    assert all(r.bytes_stored < r.bytes_dense for r in records if r.encoding != "dense")
    assert all(r.bytes_stored == r.bytes_dense and r.at_run_time == DENSE for r in records if r.encoding == "dense")
    projections = [r for r in records if r.shape == [64, 1, 3, 7]]
    assert projections and all(r.zeros > 0 for r in projections)  # some zeros, too few to pay for the indices
    for record in projections:
        nonzeros = round((1 - record.zeros) * np.prod(record.shape))
        assert record.encoding == "dense" and _csr_bytes(record, nonzeros) >= record.bytes_dense


def test_block_masks_give_block_sparse_filters(cases, tmp_path):
    case = cases["block-50"]
    dst, records = _compress(case, tmp_path, sparse_kernels=True)
    assert case.error(dst) <= TOLERANCE
    print(f"1x4 blocks at 50%: {case.src.stat().st_size} -> {dst.stat().st_size} bytes")
    blocks = [r for r in records if r.encoding == "block-1x4"]
    assert blocks and all(len(r.shape) == 2 and r.shape[1] % 4 == 0 for r in blocks)
    assert all(r.at_run_time == SPARSE and "reads it as 1x4 blocks" in r.evidence for r in blocks)
    assert [r for r in records if r.encoding != "dense"] == blocks  # 1x4 zeros: blocks always beat CSR


def test_a_dense_model_comes_back_unchanged(cases, tmp_path):
    case = cases["dense"]
    dst, records = _compress(case, tmp_path)
    assert dst.read_bytes() == case.src.read_bytes()
    assert records and all(r.encoding == "dense" and r.at_run_time == DENSE and r.note is None for r in records)


def test_records_match_the_interpreter_op_list(cases, tmp_path):
    """Every op a record cites reads that tensor (or, after a DENSIFY, its dense copy) in the form the record
    says. An op called builtin produces its output itself and hands it to a delegate partition; an op called
    delegated is inside the DELEGATE op named."""
    dst, records = _compress(cases["unstructured-90"], tmp_path, sparse_kernels=True)
    interpreter = Interpreter(model_path=str(dst))
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    delegate_inputs = {int(t) for op in delegates for t in op["inputs"]}
    delegate_outputs = {int(t) for op in delegates for t in op["outputs"]}
    assert {r.at_run_time for r in records} == {SPARSE, DENSIFIED, DENSE}
    for record in records:
        cited = [(name, ops[int(i)], where, delegate) for name, i, where, delegate in OP.findall(record.evidence)]
        assert record.evidence.startswith("ai-edge-litert ") and cited, record.evidence
        for name, op, placement, delegate in cited:
            outputs = {int(t) for t in op["outputs"]}
            assert op["op_name"] == name
            if placement == "builtin kernel, not delegated":
                assert not outputs & delegate_outputs and outputs & delegate_inputs
            else:
                assert ops[int(delegate)]["op_name"] == "DELEGATE" and not outputs & set(ops[int(delegate)]["inputs"])
        readers = cited[:1] if record.at_run_time == DENSIFIED else cited
        for _, op, placement, _ in readers:
            read = [tensors[t] for t in map(int, op["inputs"]) if t in tensors and tensors[t]["name"] == record.name]
            assert len(read) == 1 and bool(read[0]["sparsity_parameters"]) == (record.at_run_time != DENSE)
            if record.at_run_time == SPARSE:
                assert op["op_name"] == "FULLY_CONNECTED" and placement == "builtin kernel, not delegated"
        if record.at_run_time == DENSIFIED:
            densify = cited[0][1]
            assert densify["op_name"] == "DENSIFY"
            assert all(densify["outputs"][0] in op["inputs"] for _, op, _, _ in cited[1:]) and len(cited) > 1


def test_tensors_that_break_bit_exactness_fall_back_to_dense(cases, tmp_path):
    """A real failure: asked to reproduce the dense artifact bit for bit, the FULLY_CONNECTED filters that the
    builtin sparse kernel sums in another order than XNNPACK fail on their own and are kept dense with a note;
    DENSIFY-ed weights (unpacked to the same dense values by XNNPACK) stay sparse."""
    case = cases["unstructured-90"]
    dense_outputs = [case.run(case.src, i) for i in range(len(case.history))]
    dst = tmp_path / "exact.tflite"
    records = compress_tflite(case.src, dst, lambda path: case.error(path, dense_outputs), 0.0, sparse_kernels=True)
    assert case.error(dst, dense_outputs) == 0.0
    fallen = [r for r in records if r.note]
    assert fallen and all(r.encoding == "dense" and r.at_run_time == DENSE for r in fallen)
    assert all(re.fullmatch(r"kept dense: stored csr alone, max abs error \S+ > tolerance 0", r.note) for r in fallen)
    assert all(r.at_run_time == DENSIFIED for r in records if r.shape == [64, 1, 3, 7])
    assert dst.stat().st_size < case.src.stat().st_size


def test_an_unreachable_tolerance_raises_and_leaves_nothing(cases, tmp_path):
    """Even the dense artifact differs from torch by ~6e-7, so nothing passes a tolerance of 0."""
    case = cases["unstructured-90"]
    with pytest.raises(UserError, match=r"^unstructured-90\.tflite: the sparse TFLite artifact fails validation "
                                        r"\(with \d+ tensors kept dense\): max abs error \S+ > tolerance 0$"):
        compress_tflite(case.src, tmp_path / "sparse.tflite", case.error, 0.0)
    assert list(tmp_path.iterdir()) == []
