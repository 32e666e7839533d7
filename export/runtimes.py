"""Running an exported artifact in a real runtime on this host: ONNX Runtime, ai-edge-litert or tflite-runtime."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

from tsprune_edge.errors import UserError

# TFLite interpreters, preferred first: distribution name -> module holding `Interpreter`.
TFLITE_RUNTIMES = {"ai-edge-litert": "ai_edge_litert.interpreter", "tflite-runtime": "tflite_runtime.interpreter"}


def runtime_version(distribution: str) -> str:
    return f"{distribution} {metadata.version(distribution)}"


def onnx_runner(path: Path, threads: int = 1) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """One ONNX Runtime session for `path`, as a function of (history, calendar): load once, call per window."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(history: np.ndarray, calendar: np.ndarray) -> np.ndarray:
        (forecast,) = session.run(None, dict(zip(names, (history, calendar), strict=True)))
        return forecast

    return run


def run_onnx(path: Path, history: np.ndarray, calendar: np.ndarray, threads: int = 1) -> np.ndarray:
    return onnx_runner(path, threads)(history, calendar)


def installed_tflite_runtimes() -> list[str]:
    """The TFLite interpreters this environment can import (tflite-runtime needs numpy < 2: see FIELD-NOTES)."""
    found = []
    for distribution, module in TFLITE_RUNTIMES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        found.append(distribution)
    return found


def tflite_interpreter(path: Path, threads: int = 1, runtime: str | None = None):
    """An interpreter from `runtime`, else from the first installed of ai-edge-litert and tflite-runtime."""
    available = installed_tflite_runtimes()
    if runtime is None and not available:
        raise UserError("running TFLite needs ai-edge-litert or tflite-runtime: pip install 'tsprune-edge[tflite]'")
    runtime = runtime or available[0]
    if runtime not in available:
        raise UserError(f"{runtime} is not installed here; installed TFLite runtimes: {', '.join(available) or 'none'}")
    interpreter_class = importlib.import_module(TFLITE_RUNTIMES[runtime]).Interpreter
    return interpreter_class(model_path=str(path), num_threads=threads)


def tflite_runner(path: Path, threads: int = 1,
                  runtime: str | None = None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """One TFLite interpreter for `path`, as a function of (history, calendar): load once, call per window."""
    interpreter = tflite_interpreter(path, threads, runtime)
    runner = interpreter.get_signature_runner()
    inputs = interpreter.get_signature_list()["serving_default"]["inputs"]

    def run(history: np.ndarray, calendar: np.ndarray) -> np.ndarray:
        (forecast,) = runner(**dict(zip(inputs, (history, calendar), strict=True))).values()
        return forecast

    return run


def run_tflite(path: Path, history: np.ndarray, calendar: np.ndarray, threads: int = 1,
               runtime: str | None = None) -> np.ndarray:
    return tflite_runner(path, threads, runtime)(history, calendar)


_ONNX_DTYPES = {"float": "float32", "double": "float64"}  # ORT's element names that differ from numpy's


def onnx_signature(path: Path) -> dict:
    """Input and output names, shapes and dtypes as ONNX Runtime reports them."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def describe(arg) -> dict:
        element = arg.type.removeprefix("tensor(").removesuffix(")")
        return {"name": arg.name, "shape": list(arg.shape), "dtype": _ONNX_DTYPES.get(element, element)}

    return {"inputs": [describe(a) for a in session.get_inputs()],
            "outputs": [describe(a) for a in session.get_outputs()]}


def tflite_signature(path: Path) -> dict:
    """Signature input and output names (in call order), shapes and dtypes as the TFLite interpreter reports them."""
    interpreter = tflite_interpreter(path)
    signature = interpreter.get_signature_list()["serving_default"]
    runner = interpreter.get_signature_runner()
    inputs, outputs = runner.get_input_details(), runner.get_output_details()

    def describe(name: str, detail: dict) -> dict:
        return {"name": name, "shape": [int(d) for d in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name}

    return {"inputs": [describe(n, inputs[n]) for n in signature["inputs"]],
            "outputs": [describe(n, outputs[n]) for n in signature["outputs"]]}
