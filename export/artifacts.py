"""Writing a model in the deployment signature to ONNX and TFLite files, atomically.

Inputs are named `history` and `calendar`, the output `forecast` (ONNX); litert-torch names them `args_0`,
`args_1` and `output_0` in the same order. Shapes are those of the sample (static).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from tsprune_edge.errors import UserError
from tsprune_edge.models.deployment import deployment_form

INPUT_NAMES = ("history", "calendar")
OUTPUT_NAMES = ("forecast",)
DEFAULT_OPSET = 20


def _temporary_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def export_onnx(model: nn.Module, sample: tuple[torch.Tensor, torch.Tensor], path: Path,
                opset: int = DEFAULT_OPSET) -> Path:
    """One self-contained .onnx file (no external data) of `model` in its deployment form."""
    path = Path(path)
    tmp = _temporary_beside(path)
    try:
        with deployment_form(model.eval()), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            torch.onnx.export(model, sample, str(tmp), input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                              opset_version=opset, dynamo=True, external_data=False, verbose=False)
        os.replace(tmp, path)
    except Exception as exc:
        raise UserError(f"{getattr(model, 'name', type(model).__name__)} cannot be exported to ONNX: "
                        f"{_first_line(exc)}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_tflite(model: nn.Module, sample: tuple[torch.Tensor, torch.Tensor], path: Path) -> Path:
    """A .tflite file of `model` in its deployment form, converted by litert-torch on this (x86_64) host."""
    try:
        import litert_torch
    except ImportError:
        raise UserError("TFLite export needs litert-torch: pip install 'tsprune-edge[tflite]'") from None
    path = Path(path)
    tmp = _temporary_beside(path)
    try:
        with deployment_form(model.eval()), torch.no_grad():
            converted = litert_torch.convert(model, sample)
        converted.export(str(tmp))
        os.replace(tmp, path)
    except Exception as exc:
        raise UserError(f"{getattr(model, 'name', type(model).__name__)} cannot be converted to TFLite: "
                        f"{_first_line(exc)}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path
