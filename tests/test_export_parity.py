"""Every registered model, small preset, exports to ONNX and TFLite and matches torch in ONNX Runtime and
ai-edge-litert within 1e-4 on real ETTh1 test windows. A model is tested here the moment it is registered."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsprune_edge.export.artifacts import export_onnx, export_tflite
from tsprune_edge.export.runtimes import run_onnx, run_tflite
from tsprune_edge.models import available_models, create_model, resolve_config

TOLERANCE = 1e-4


def _model(name: str, etth1_windows):
    torch.manual_seed(0)
    cfg = resolve_config(name, "small")
    model = create_model(name, "small", pred_len=96).eval()
    history, calendar = etth1_windows(cfg.seq_len, cfg.label_len)
    return model, history, calendar


def _torch_forecast(model, history, calendar, index):
    with torch.no_grad():
        return model(torch.from_numpy(history[index:index + 1]), torch.from_numpy(calendar[index:index + 1])).numpy()


RUNTIMES = {"onnxruntime": (export_onnx, run_onnx, "model.onnx"), "ai-edge-litert": (export_tflite, run_tflite,
                                                                                  "model.tflite")}


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", available_models())
def test_runtime_matches_torch(name, runtime, etth1_windows, tmp_path):
    export, run, filename = RUNTIMES[runtime]
    model, history, calendar = _model(name, etth1_windows)
    sample = (torch.from_numpy(history[:1]), torch.from_numpy(calendar[:1]))
    path = export(model, sample, tmp_path / filename)
    for index in range(len(history)):
        got = run(path, history[index:index + 1], calendar[index:index + 1])
        expected = _torch_forecast(model, history, calendar, index)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= TOLERANCE, (name, index, np.abs(got - expected).max())


def test_a_failed_export_leaves_nothing_and_names_the_model(tmp_path):
    from tsprune_edge.errors import UserError

    class Unexportable(torch.nn.Module):
        name = "unexportable"

        def forward(self, history, calendar):
            return history + torch.histc(history, bins=4).sum()  # no ONNX conversion for histc

    expected = "^unexportable cannot be exported to ONNX: operator aten.histc does not convert$"
    with pytest.raises(UserError, match=expected):
        export_onnx(Unexportable(), (torch.zeros(1, 8, 2), torch.zeros(1, 10, 4)), tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []
