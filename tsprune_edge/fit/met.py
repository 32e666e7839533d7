"""When a fit's target is met, judged so that it still holds when the user measures again. Torch-free.

Two kinds of target. `--budget-ms B` is absolute: a run meets it when the candidate's median is within B and the
upper end of its 95% interval at most 3% over. `--speedup S` is a speedup: every candidate's run measures dense
beside it, and the run meets S when the paired same-run speedup (dense / candidate) is at least S and the lower end
of its interval at least S / 1.03 (the same rule, read as a ratio); dense's cached p50 / S only aims the search.

One run is not the last word: runs of the same models scatter by more than one run's interval. The headroom is that
scatter, measured on the board (the table's rounds, `run_scatter`), times HEADROOM_Z. A candidate whose first run
lands within the headroom of the target on either side (met narrowly, or missed narrowly) is benched again in an
independent run, and judged on both runs pooled (the geometric mean of their medians and of their interval ends):
a narrow pass is confirmed or withdrawn, a narrow miss rescued or confirmed, each on twice the evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tsprune_edge.report.pareto import meets_speedup, share_text, within_budget

__all__ = ["Goal", "headroom", "margin", "needs_second_look", "run_fields", "share_text"]

# 1.645 x sqrt(2): a one-sided 95% bound on one run's result against another run's, each scattered by `scatter`
HEADROOM_Z = 2.33
MIN_SCATTER = 0.01  # a table of few rounds can agree by chance; no board is steadier than 1% run to run
MAX_MARGIN = 0.5  # the search never aims below half the target, however noisy the board or the predictor
RUN_FIELDS = ("run", "p50_ms", "p50_low_ms", "p50_high_ms", "speedup", "speedup_low", "speedup_high", "dense_p50_ms")


@dataclass(frozen=True)
class Goal:
    """The user's target: an absolute budget in ms, or a speedup against dense in the same run."""

    budget_ms: float | None = None
    speedup: float | None = None

    @property
    def kind(self) -> str:
        return "speedup" if self.speedup is not None else "budget"

    def budget_of(self, dense_ms: float) -> float:
        """The latency the target means when dense measures `dense_ms` (the search's aim; for --speedup it moves
        with dense from run to run)."""
        return self.budget_ms if self.budget_ms is not None else dense_ms / self.speedup

    def used(self, runs: list[dict]) -> float:
        """The share of the target used, pooled over the runs: p50 / budget, or S / same-run speedup."""
        if self.speedup is not None:
            return self.speedup / _pooled(runs, "speedup")
        return _pooled(runs, "p50_ms") / self.budget_ms

    def met(self, runs: list[dict]) -> bool:
        """The met rule on the runs pooled: centre within the target, the interval's far end at most 3% beyond."""
        if self.speedup is not None:
            return meets_speedup(_pooled(runs, "speedup"), _pooled(runs, "speedup_low"), self.speedup)
        return within_budget(_pooled(runs, "p50_ms"), _pooled(runs, "p50_high_ms"), self.budget_ms)

    def judged(self, runs: list[dict]) -> dict:
        """What fit.json keeps of a candidate's runs pooled: the verdict, the share used, the achieved speedup."""
        return {"runs": len(runs), "met": self.met(runs), "used": self.used(runs),
                **{key: _pooled(runs, key) for key in ("p50_ms", "p50_low_ms", "p50_high_ms", "speedup",
                                                         "speedup_low", "speedup_high")}}

    def record(self) -> dict:
        return {"kind": self.kind, "budget_ms": self.budget_ms, "speedup": self.speedup}


def needs_second_look(goal: Goal, first: dict, headroom: float) -> bool:
    """Whether one run leaves the verdict within the run-to-run scatter: met or missed by less than the headroom."""
    return abs(goal.used([first]) - 1) < headroom


def headroom(scatter: float) -> float:
    """How far from the target one run must land for a second run to agree with it 95% of the time."""
    return HEADROOM_Z * max(scatter, MIN_SCATTER)


def margin(scatter: float, predictor_error: float | None) -> float:
    """How far under the target the search aims: the headroom, plus the predictor's error on whole models it was
    not fitted on (it errs both ways, and a candidate predicted at the aim may measure that much slower)."""
    return min(MAX_MARGIN, headroom(scatter) + (predictor_error or 0.0))


def run_fields(row: dict, dense: dict, run: str) -> dict:
    """One run of a candidate as fit.json keeps it."""
    values = {**{k: row[k] for k in RUN_FIELDS if k in row}, "run": run, "dense_p50_ms": dense["p50_ms"]}
    return {k: values.get(k) for k in RUN_FIELDS}


def _pooled(runs: list[dict], key: str) -> float:
    values = [run[key] for run in runs]
    if any(v is None or not v > 0 for v in values):
        return math.nan
    return math.exp(sum(math.log(v) for v in values) / len(values))
