"""Every registered model, dense and pruned by every method that applies to it (structured pruning refuses
the tiny forecasters, which have no heads, neurons or lags), exports at opset 13 / IR 7 (what Jetson Nano's ONNX
Runtime 1.10 and TensorRT 8 read) and matches torch within 1e-4 in ONNX Runtime on real ETTh1 windows; no node of
any file is newer than opset 13, checked by reading each graph against onnx.defs. Random weights, small preset:
the export and the runtime are under test, not the forecasts."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from rich.console import Console

from tsprune_edge.errors import UserError
from tsprune_edge.export.artifacts import export_onnx
from tsprune_edge.export.onnx_level import read_level
from tsprune_edge.export.runtimes import onnx_runner
from tsprune_edge.models import available_models, create_model, resolve_config
from tsprune_edge.prune.stage import PruneRequest, apply_pruning

TOLERANCE = 1e-4
WINDOWS = 3
# structured keeps the graph's op types but narrows it; the mask methods zero weights in the dense graph
METHODS = {"dense": None, "structured": PruneRequest("structured", 0.5, round_to=4),
           "unstructured": PruneRequest("unstructured", 0.5), "nm": PruneRequest("nm", 0.5),
           "block": PruneRequest("block", 0.5)}
NOTHING_STRUCTURED = ("fits", "sparsetsf")  # no heads, neurons or lags: structured pruning refuses them


@pytest.fixture(scope="module")
def dense_models():
    """One randomly initialised small-preset model per registered name, shared by the methods."""
    models = {}
    for name in available_models():
        torch.manual_seed(0)
        models[name] = create_model(name, "small", pred_len=96).eval()
    return models


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", available_models())
def test_opset13_export_matches_torch(name, method, dense_models, etth1_windows, tmp_path):
    model = copy.deepcopy(dense_models[name])
    if method == "structured" and name in NOTHING_STRUCTURED:
        with pytest.raises(UserError, match=f"^{name} has no heads or ffn that structured pruning can remove$"):
            apply_pruning(model, METHODS[method], data=None, epochs=0, console=Console(quiet=True))
        return
    if METHODS[method] is not None:
        apply_pruning(model, METHODS[method], data=None, epochs=0, console=Console(quiet=True))
    cfg = resolve_config(name, "small")
    history, calendar = etth1_windows(cfg.seq_len, cfg.label_len)
    history, calendar = history[:WINDOWS], calendar[:WINDOWS]
    path = export_onnx(model, (torch.from_numpy(history[:1]), torch.from_numpy(calendar[:1])),
                       tmp_path / "model.onnx", opset=13, ir_version=7)

    proto = onnx.load(str(path))
    level = read_level(proto)
    assert (proto.ir_version, level.opset, level.custom_domains) == (7, 13, ())
    assert not {"LayerNormalization", "Gelu"} & level.op_types
    assert [i.name for i in proto.graph.input] == ["history", "calendar"]
    for node in proto.graph.node:  # reductions carry axes as attributes (TensorRT 8 ignores an axes input)
        if node.op_type.startswith("Reduce") and node.op_type != "ReduceSum":
            assert len([i for i in node.input if i]) == 1, node
    if method in ("unstructured", "nm", "block"):
        zeros = sum(int((numpy_weight == 0).sum()) for numpy_weight in
                    (onnx.numpy_helper.to_array(t) for t in proto.graph.initializer))
        assert zeros > 0  # the pruned weights reached the file

    run = onnx_runner(path)
    with torch.no_grad():
        for index in range(WINDOWS):
            expected = model(torch.from_numpy(history[index:index + 1]),
                             torch.from_numpy(calendar[index:index + 1])).numpy()
            got = run(history[index:index + 1], calendar[index:index + 1])
            assert got.shape == expected.shape
            assert float(np.max(np.abs(got - expected))) <= TOLERANCE
