"""What the manifest says about each weight tensor of an artifact: how it is stored and what the runtime does
with it, so a user can tell whether sparsity buys speed or only bytes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Runs an artifact on the sample windows and returns its max abs error against torch.
Validator = Callable[[Path], float]

# at_run_time values
DENSE = "dense"  # stored dense, executed dense
SPARSE = "sparse at run time"  # a kernel reads the sparse form directly (the only case where sparsity can buy speed)
DENSIFIED = "densified at load"  # stored sparse (smaller file), expanded to dense before or at the first run


@dataclass
class TensorEncoding:
    name: str
    shape: list[int]
    dtype: str
    zeros: float  # fraction of elements that are exactly zero
    encoding: str  # "dense", "coo-int16" (ONNX flat indices of that type), "csr", "block-1x4", "csr+densify", ...
    bytes_dense: int  # bytes of the values stored dense
    bytes_stored: int  # bytes as stored (values + indices + segment arrays)
    at_run_time: str  # DENSE, SPARSE or DENSIFIED, as observed in the runtime (see `evidence`)
    evidence: str  # what the runtime showed, e.g. "ORT profile: node MatMul_12 read it as dense float[64,256]"
    note: str | None = None  # why a sparse encoding was not kept (fallback), if one was tried

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
