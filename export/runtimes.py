"""Running an exported artifact in a real runtime on this host: ONNX Runtime, ai-edge-litert or tflite-runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tsprune_edge.errors import UserError


def run_onnx(path: Path, history: np.ndarray, calendar: np.ndarray, threads: int = 1) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    (forecast,) = session.run(None, dict(zip(names, (history, calendar), strict=True)))
    return forecast


def tflite_interpreter(path: Path, threads: int = 1):
    """An interpreter from ai-edge-litert, else tflite-runtime: whichever this environment has."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise UserError("running TFLite needs ai-edge-litert or tflite-runtime: "
                            "pip install 'tsprune-edge[tflite]'") from None
    return Interpreter(model_path=str(path), num_threads=threads)


def run_tflite(path: Path, history: np.ndarray, calendar: np.ndarray, threads: int = 1) -> np.ndarray:
    interpreter = tflite_interpreter(path, threads)
    runner = interpreter.get_signature_runner()
    inputs = interpreter.get_signature_list()["serving_default"]["inputs"]
    outputs = runner(**dict(zip(inputs, (history, calendar), strict=True)))
    (forecast,) = outputs.values()
    return forecast
