"""Reference windows: real test inputs with the torch model's outputs, so every runtime (here and on the board)
can be checked against the source model; and the whole test split, so a board can score an artifact's accuracy."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tsprune_edge.atomic import write_atomic
from tsprune_edge.data.forecast import ForecastData
from tsprune_edge.models.deployment import deployment_form

SAMPLE_WINDOWS = 8
SAMPLE_FILE = "samples.npz"
TEST_FILE = "test.npz"

# Loads an artifact once and returns its call: (history [1, ...], calendar [1, ...]) -> forecast [1, ...]
OpenArtifact = Callable[[Path], Callable[[np.ndarray, np.ndarray], np.ndarray]]


@dataclass
class Samples:
    split: str
    starts: np.ndarray  # window start rows within the split
    history: np.ndarray  # [N, seq_len, n_inputs] float32, scaled
    calendar: np.ndarray  # [N, seq_len + pred_len, n_cal] float32
    expected: np.ndarray  # [N, pred_len, n_targets] float32: the torch model's forecast (deployment form)

    def __len__(self) -> int:
        return len(self.starts)


def make_samples(model: nn.Module, data: ForecastData, windows: int = SAMPLE_WINDOWS, split: str = "test") -> Samples:
    """`windows` test windows spread evenly over the split, with the model's own forecasts."""
    starts = np.unique(np.linspace(0, data.n_windows(split) - 1, windows).round().astype(np.int64))
    history, calendar, _ = data.window_arrays(split, starts)
    with deployment_form(model.eval()), torch.no_grad():
        expected = model(torch.from_numpy(history), torch.from_numpy(calendar)).numpy()
    return Samples(split, starts, history, calendar, expected.astype(np.float32))


def save_samples(samples: Samples, path: Path) -> None:
    """An .npz the board agent reads with numpy alone: history, calendar, expected, starts."""
    buffer = io.BytesIO()
    np.savez(buffer, history=samples.history, calendar=samples.calendar, expected=samples.expected,
             starts=samples.starts)
    write_atomic(path, lambda handle: handle.write(buffer.getvalue()))


@dataclass(frozen=True)
class Comparison:
    """An artifact's forecasts against torch's over every sample window."""

    max_abs_error: float  # the largest |runtime - torch|; inf when the shapes differ, NaN when the runtime gave NaN
    shape: list[int]  # what the runtime returned for one window
    expected_shape: list[int]  # what torch returned for one window

    @property
    def same_shape(self) -> bool:
        return self.shape == self.expected_shape


def compare(open_artifact: OpenArtifact, path: Path, samples: Samples) -> Comparison:
    """Shapes first, then values, one window per call (artifacts have batch 1). A shape that differs is a result,
    not an exception, so validation can list it beside the other runtimes' results."""
    run = open_artifact(path)
    errors = []
    for i in range(len(samples)):
        got = np.asarray(run(samples.history[i:i + 1], samples.calendar[i:i + 1]))
        expected = samples.expected[i:i + 1]
        if got.shape != expected.shape:
            return Comparison(float("inf"), list(got.shape), list(expected.shape))
        errors.append(np.abs(got - expected).max())
    shape = list(samples.expected[:1].shape)
    return Comparison(float(np.max(errors)), shape, shape)  # np.max keeps a NaN, as Python's max would not


def max_abs_error(open_artifact: OpenArtifact, path: Path, samples: Samples) -> float:
    """Largest |runtime - torch| over every sample window; an artifact of the wrong shape is infinitely off."""
    return compare(open_artifact, path, samples).max_abs_error


def save_test_split(data: ForecastData, path: Path) -> dict:
    """The scaled test series (input columns) and its calendar, not the windows: the windows overlap, so the series
    is about seq_len + pred_len times smaller, and the agent cuts from it exactly the windows `train.evaluate`
    scores. Returns what the manifest records for the agent to cut them and pick the target columns."""
    w = data.windows
    values, calendar = data.split_arrays("test")
    values = values[:, data.input_columns]
    buffer = io.BytesIO()
    # column by column (Fortran order) compresses a fifth smaller than row by row; np.load restores either
    np.savez_compressed(buffer, values=np.asfortranarray(values, dtype=np.float32),
                        calendar=np.asfortranarray(calendar, dtype=np.float32))
    write_atomic(path, lambda handle: handle.write(buffer.getvalue()))
    return {"split": "test", "rows": len(values), "windows": data.n_windows("test"), "seq_len": w.seq_len,
            "pred_len": w.pred_len,
            "target_positions": [data.input_columns.index(c) for c in data.target_columns],
            "metrics": "MSE and MAE over every forecast value of every window, in scaled units, as torch's evaluate"}
