"""Artifacts checked against torch in every runtime of this host, the way optimum validates an export: each
runtime's output is compared on the sample windows (shape, then values), every mismatch is collected, and only
then one error lists them all, so the user sees at once which runtimes disagree and by how much.

Unlike optimum, a value over its tolerance is an error, not a warning: a runtime that disagrees with torch would
report wrong forecasts on the board."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tsprune_edge.errors import UserError
from tsprune_edge.export.reference import Comparison, OpenArtifact, Samples, compare


@dataclass(frozen=True)
class Check:
    """One artifact run in one runtime on every sample window, against torch's forecasts."""

    artifact: str  # how the message names the file ("model.onnx", "model.tflite as exported")
    runtime: str  # distribution and version, e.g. "onnxruntime 1.20.1"
    output: str  # the artifact's output name
    windows: int
    tolerance: float
    comparison: Comparison

    @property
    def passed(self) -> bool:
        return self.comparison.same_shape and self.comparison.max_abs_error <= self.tolerance  # NaN fails

    def record(self) -> dict:
        """What the manifest keeps for this runtime (a written manifest holds passed checks only)."""
        return {"runtime": self.runtime, "windows": self.windows, "max_abs_error": self.comparison.max_abs_error,
                "tolerance": self.tolerance}

    def describe(self) -> str:
        found = self.comparison
        if not found.same_shape:
            problem = f"has shape {found.shape}, torch's is {found.expected_shape}"
        else:
            problem = f"differs from torch by {found.max_abs_error:.3g} (tolerance {self.tolerance:g})"
        return f"{self.artifact} in {self.runtime}: output {self.output} {problem}"


class ExportValidationError(UserError):
    """Artifacts that disagree with torch in one or more runtimes here; nothing is exported.

    A UserError, so exit 2 like bad input (and as before this error had its own type): it happens on this
    machine before anything is written, and the fix lies in the request (another --onnx-opset, no --quantize, a
    different model) or in a bug report, not in a board (exit 3 is a board or its runtime failing while
    working)."""

    def __init__(self, variant: str, mismatches: list[Check]) -> None:
        self.variant = variant
        self.mismatches = mismatches
        listed = "; ".join(check.describe() for check in mismatches)
        super().__init__(f"{variant}: {len(mismatches)} runtime check(s) failed on {mismatches[0].windows} sample "
                         f"windows: {listed}; nothing is exported (try another --onnx-opset or no --quantize, or "
                         "report it with the model's name)")


def check(open_artifact: OpenArtifact, path: Path, samples: Samples, runtime: str, output: str, tolerance: float,
          artifact: str | None = None) -> Check:
    """Run `path` in one runtime on every sample window and compare with torch."""
    return Check(artifact or path.name, runtime, output, len(samples), tolerance,
                 compare(open_artifact, path, samples))


def raise_on_mismatch(variant: str, checks: list[Check]) -> None:
    """One error listing every check that failed, after all of them ran."""
    failed = [c for c in checks if not c.passed]
    if failed:
        raise ExportValidationError(variant, failed)
