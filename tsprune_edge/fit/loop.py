"""`fit`: the per-layer widths with the least predicted loss of accuracy whose latency, measured on the board,
meets a budget.

Table (measured once per board and model, cached) -> predictor -> sensitivity (validation loss per layer choice,
cached per checkpoint) -> knapsack search for the target -> prune to the chosen widths, fine-tune (dense fine-tuned
the same, the fair reference) -> export beside dense -> bench on the board. When a candidate meets the target
(an absolute budget, or a same-run speedup against dense) is fit/met.py's rule, with a second, independent run for
a first run within the board's scatter of the target. The search aims under the target by a margin: the headroom
(the scatter) plus the predictor's error on the models already built. Over the target, or met with less than 85% of
it used, the aim is scaled by the measured share; at most `max_rounds` rounds. The chosen model is the met candidate
using the most of the target; if none met it, fit.json
says "unreachable" and keeps the fastest measured candidate. fit.json (fit/state.py) is the first file written
into OUT and is rewritten as each round starts and ends (status "running"), so the same command, rerun after an
interruption at any moment, continues: finished rounds are kept, an interrupted one is taken up where it stopped
(fit/resume.py), and the table, the sensitivity and the dense reference come from the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from torch import nn

from tsprune_edge.atomic import write_atomic
from tsprune_edge.baselines import DEFAULT_CACHE as BASELINE_CACHE
from tsprune_edge.baselines import Baseline, RunWindows, check_baselines
from tsprune_edge.checkpoint import Checkpoint, load_checkpoint
from tsprune_edge.data.fetch import sha256_of
from tsprune_edge.data.forecast import ForecastData
from tsprune_edge.errors import UserError
from tsprune_edge.export.bundle import DENSE
from tsprune_edge.fit import DEFAULT_FIT_ROUNDS
from tsprune_edge.fit.cache_files import set_aside
from tsprune_edge.fit.choice import pruner_fields
from tsprune_edge.fit.compare import compare_uniform
from tsprune_edge.fit.measure import Target, latency_rows
from tsprune_edge.fit.met import RUN_FIELDS, Goal, headroom, margin, needs_second_look, run_fields, share_text
from tsprune_edge.fit.predictor import error_summary, fit_predictor, leave_one_out
from tsprune_edge.fit.resume import exported, measured, pruned, run_names
from tsprune_edge.fit.search import search
from tsprune_edge.fit.sensitivity import Sensitivity, cached_sensitivity
from tsprune_edge.fit.space import FEATURES, Space, Widths, pruning_space
from tsprune_edge.fit.state import RUNNING, check_out, write_state
from tsprune_edge.fit.table import DEFAULT_CACHE, SMALLEST, latency_table
from tsprune_edge.prune.stage import PruneRequest, finetune_dense
from tsprune_edge.workflow import checkpoint_data

USE_AT_LEAST = 0.85  # a met candidate using less of the budget than this is retried wider while rounds remain


@dataclass(frozen=True)
class FitRequest:
    checkpoint: Path
    target: Target
    out: Path
    budget_ms: float | None = None
    speedup: float | None = None
    finetune_epochs: int = 1
    max_rounds: int = DEFAULT_FIT_ROUNDS
    cache: Path = DEFAULT_CACHE
    seed: int = 2021
    uniform: tuple[float, ...] = ()  # uniform structured ratios measured beside the fitted model (compare.py)
    baselines: tuple[Baseline, ...] = ()  # tiny forecasters trained (or reused) and measured in that same run
    baseline_cache: Path = BASELINE_CACHE

    def validate(self) -> None:
        if (self.budget_ms is None) == (self.speedup is None):
            raise UserError("give exactly one of --budget-ms (for example 0.5) and --speedup (for example 2)")
        if self.budget_ms is not None and not self.budget_ms > 0:
            raise UserError(f"--budget-ms must be above 0, got {self.budget_ms:g}")
        if self.speedup is not None and not self.speedup > 1:
            raise UserError(f"--speedup {self.speedup:g} asks for nothing faster than dense; pass a value above 1, "
                            "for example 2")
        if self.finetune_epochs < 0:
            raise UserError(f"--finetune-epochs must be 0 or more, got {self.finetune_epochs}")
        if any(not 0 < r < 1 for r in self.uniform):
            raise UserError(f"--uniform takes ratios in (0, 1), for example 0.25,0.5,0.75; got {self.uniform}")
        if self.max_rounds < 1:
            raise UserError(f"--max-rounds must be at least 1, got {self.max_rounds}")
        self.target.validate()

    def goal(self) -> Goal:
        return Goal(budget_ms=self.budget_ms, speedup=self.speedup)

    def record(self) -> dict:
        return {"checkpoint": str(self.checkpoint), "target": self.target.record(), "budget_ms": self.budget_ms,
                "speedup": self.speedup, "finetune_epochs": self.finetune_epochs, "max_rounds": self.max_rounds,
                "seed": self.seed, "uniform": list(self.uniform),
                **({"baselines": [b.text for b in self.baselines]} if self.baselines else {})}


def prepare(request: FitRequest) -> tuple[Space, Checkpoint, nn.Module, ForecastData]:
    """Checks that need the model and its data, before anything is measured: a dense checkpoint with something to
    prune, its dataset unchanged and long enough for its windows (seq_len + pred_len)."""
    request.validate()
    checkpoint = load_checkpoint(request.checkpoint)
    if checkpoint.pruning is not None:
        raise UserError(f"{request.checkpoint} is already pruned ({checkpoint.pruning['method']}); fit the dense "
                        "checkpoint that `tsprune-edge train` wrote")
    if request.baselines:  # before anything is measured
        check_baselines(request.baselines, RunWindows.of_checkpoint(checkpoint))
    model = checkpoint.build_model()
    space = pruning_space(model, request.target.profile.round_to)
    if not space.layers and space.d_model is None:
        raise UserError(f"{checkpoint.model_name} has no heads, neurons, lags or width to prune; nothing to fit")
    return space, checkpoint, model, checkpoint_data(checkpoint)


def run_fit(request: FitRequest, console: Console | None = None, force: bool = False) -> dict:
    console = console or Console(stderr=True)
    out = Path(request.out)
    previous = check_out(out, request.record(), force)  # an unfinished fit of this request: continued
    space, checkpoint, model, data = prepare(request)
    table = latency_table(request.checkpoint, request.target, space, request.cache, console)
    points = {p["name"]: p for p in table["probes"]}
    features = [p["features"] for p in table["probes"]]
    latencies = [p["p50_ms"] for p in table["probes"]]
    predictor = fit_predictor(features, latencies)
    held_out = leave_one_out(features, latencies)
    goal = request.goal()
    dense_ms, fastest_ms = points[DENSE]["p50_ms"], points.get(SMALLEST, points[DENSE])["p50_ms"]
    budget = goal.budget_of(dense_ms)  # for --speedup, where the search aims: each run judges the speedup itself
    if budget >= dense_ms:
        raise UserError(f"nothing to do: dense already measures {dense_ms:.4g} ms on {request.target.device}, "
                        f"within the budget of {budget:.4g} ms; pass a lower --budget-ms")
    if budget < fastest_ms:
        raise UserError(f"the budget {budget:.4g} ms is below the smallest prunable model's {fastest_ms:.4g} ms "
                        f"measured on {request.target.device} (dense {dense_ms:.4g} ms); pass a budget of at least "
                        f"{fastest_ms:.4g} ms (the table is cached: nothing is measured again)")
    if table["reused"]:
        console.print(f"latency table: {table['path']} (cached, {len(features)} points; nothing measured)")
    scatter = table["scatter"]["speedup" if goal.kind == "speedup" else "latency"]
    band = headroom(scatter or 0.0)
    console.print(f"predictor on {len(features)} points: leave-one-out median error "
                  f"{error_summary(held_out)['median_abs']:.1%}; {_target_text(goal, budget, dense_ms)}; run-to-run "
                  f"scatter on this board {scatter or 0.0:.1%}, so a run within {band:.1%} of the target is benched "
                  "again")

    state = {"candidates": previous["candidates"], "current": previous.get("current")} if previous else \
        {"candidates": [], "current": None}
    if previous and state["candidates"]:
        console.print(f"continuing the fit in {out}: {len(state['candidates'])} rounds finished")
    predict = lambda widths: predictor.predict(space.features(widths))  # noqa: E731
    sensitivity = cached_sensitivity(request.checkpoint, model, space, data, request.cache, console)
    state["headroom"] = {"scatter": scatter, "band": band}
    write = lambda status: _write(out, request, state, status, budget, table, predictor, held_out,  # noqa: E731
                                  space, sensitivity)
    write(RUNNING)  # OUT says what it is before anything else goes in
    base = PruneRequest(method="structured", sparsity=0.0, finetune_epochs=request.finetune_epochs,
                        round_to=space.round_to, round_to_source=f"profile {request.target.profile.name}",
                        seed=request.seed)
    reference = _dense_reference(request, base, console)
    state["reference"] = str(reference) if reference else None
    candidates = state["candidates"]
    aim = candidates[-1]["next_target_ms"] if candidates else \
        budget * (1 - margin(scatter or 0.0, _predictor_error(candidates, held_out)))
    while len(candidates) < request.max_rounds and not any(_settled(c) for c in candidates):
        number = len(candidates) + 1
        widths = search(space, sensitivity, predictor.predict, aim)
        if any(c["widths"] == widths.record() for c in candidates):
            console.print(f"round {number}: the search for {aim:.4g} ms chose widths already measured; stopping")
            break
        console.print(f"round {number}: target {aim:.4g} ms, predicted {predict(widths):.4g} ms for "
                      f"width {widths.width}, units {widths.units}")
        _step(state, f"fit-{number}", widths.record(), out, write)
        candidate = _round(request, goal, space, widths, base, reference, number, out, state, write, band, console)
        candidate.update(target_ms=aim, predicted_ms=predict(widths),
                         predicted_val_mse_rise=sensitivity.total(widths),
                         predictor_error=predict(widths) / _on_table_scale(candidate, dense_ms) - 1)
        used = candidate["budget_used"]
        if not _settled(candidate):  # over: aim lower by the overshoot; met with room to spare: aim wider
            aim = aim * (1 - margin(scatter or 0.0, _predictor_error([*candidates, candidate], held_out))) / used
        candidate["next_target_ms"] = aim
        candidates.append(candidate)
        state["current"] = None
        looks = f" (pooled over {len(candidate['runs'])} runs)" if len(candidate["runs"]) > 1 else ""
        console.print(f"round {number}: measured {_achieved_text(goal, candidate['judged'])}{looks}: "
                      f"{'met' if candidate['met'] else 'over'}, {share_text(used)} of the target used")
        write(RUNNING)
    met = [c for c in candidates if c["met"]]
    chosen = max(met, key=lambda c: c["budget_used"]) if met else min(candidates, key=lambda c: c["budget_used"])
    chosen_bytes = Path(chosen["checkpoint"]).read_bytes()
    write_atomic(out / "model.pt", lambda handle: handle.write(chosen_bytes))  # never half a model.pt
    state["chosen"] = chosen["round"]
    status = ("met" if chosen["budget_used"] >= USE_AT_LEAST else "met, underused") if met else "unreachable"
    if request.uniform or request.baselines:
        beside = []
        if request.uniform:
            beside.append(f"uniform pruning at {', '.join(f'{r:g}' for r in request.uniform)} (pruned and "
                          "fine-tuned the same)")
        if request.baselines:
            beside.append(f"the baselines {', '.join(b.text for b in request.baselines)} (their published "
                          "schedules)")
        console.print(f"against {' and '.join(beside)}: measured in one run with the fitted model and dense")
        before = _step(state, "compare", chosen["widths"], out, write)
        state["comparison"] = compare_uniform(request.checkpoint, request.target, base, reference, chosen,
                                              request.uniform, goal, out, before, console,
                                              baselines=request.baselines, baseline_cache=request.baseline_cache)
        state["current"] = None
    if not met:
        console.print(f"the target was not met in {len(candidates)} rounds; the fastest measured point is round "
                      f"{chosen['round']} at {share_text(chosen['budget_used'])} of the target (kept as model.pt)")
    elif status != "met":
        console.print(f"the target was met but only {share_text(chosen['budget_used'])} of it used after "
                      f"{len(candidates)} rounds (the aim is {USE_AT_LEAST:.0%})")
    return write(status)


def final_line(record: dict) -> str:
    """The fit's outcome in one line: which kind of target, what the chosen model achieved against it (pooled over
    its runs, with its interval), the share used to one decimal, the accuracy, and the predictor's error on the
    models the fit built (held out) beside its leave-one-out error on the probes."""
    chosen = next(c for c in record["candidates"] if c["round"] == record["chosen"])
    judged, target = chosen["judged"], record["target"]
    runs = f", {judged['runs']} runs pooled" if judged["runs"] > 1 else ""
    speedup = (f"{judged['speedup']:.4g}x dense in the same run [{judged['speedup_low']:.4g}, "
               f"{judged['speedup_high']:.4g}]")
    latency = (f"{judged['p50_ms']:.4g} ms [{judged['p50_low_ms']:.4g}, {judged['p50_high_ms']:.4g}] (dense "
               f"{chosen['dense_p50_ms']:.4g} ms in the same run)")
    if target["kind"] == "speedup":
        achieved = f"speedup target {target['speedup']:g}x: fitted model {speedup}, {latency}"
    else:
        achieved = f"budget {target['budget_ms']:.4g} ms: fitted model {latency}, {speedup}"
    mse = chosen["mse"]["finetuned"] or chosen["mse"]["pruned"]
    built, loo = record["predictor"]["held_out_whole_models"], record["predictor"]["leave_one_out"]
    return (f"{record['status']}: {achieved}{runs}; {share_text(chosen['budget_used'])} of the target used; test "
            f"MSE {mse:.4f} vs dense {chosen['mse']['dense']:.4f}; predictor error on the {built['points']} models "
            f"built: median {built['median_abs']:.1%}, worst {built['worst_abs']:.1%} (leave-one-out on the probes "
            f"{loo['median_abs']:.1%})")


def _target_text(goal: Goal, budget: float, dense_ms: float) -> str:
    if goal.kind == "speedup":
        return (f"target {goal.speedup:g}x dense's speed in the same run (the search aims under {budget:.4g} ms, "
                f"dense {dense_ms:.4g} ms in the table)")
    return f"budget {budget:.4g} ms (dense {dense_ms:.4g} ms)"


def _achieved_text(goal: Goal, judged: dict) -> str:
    if goal.kind == "speedup":
        return (f"{judged['speedup']:.4g}x dense in the same run [{judged['speedup_low']:.4g}, "
                f"{judged['speedup_high']:.4g}] against the target {goal.speedup:g}x")
    return (f"{judged['p50_ms']:.4g} ms [{judged['p50_low_ms']:.4g}, {judged['p50_high_ms']:.4g}] against the "
            f"budget {goal.budget_ms:.4g} ms")


def _on_table_scale(candidate: dict, dense_ms: float) -> float:
    """The candidate's measured p50 relative to dense in its own run, in the table's milliseconds: what the
    predictor (fitted on the table's run) predicts, without the drift between runs (the scatter's part)."""
    first = candidate["runs"][0]
    return first["p50_ms"] / first["dense_p50_ms"] * dense_ms


def _predictor_error(candidates: list[dict], leave_one_out_errors: list[float]) -> float:
    """The predictor's error to plan with: the median absolute error on the whole models this fit built and
    measured (held out: each was predicted before it was measured); before any, the worst leave-one-out error on
    the probes (their median flatters a predictor fitted on uniform models)."""
    built = [abs(c["predictor_error"]) for c in candidates if c.get("predictor_error") is not None]
    if built:
        return statistics.median(built)
    return error_summary(leave_one_out_errors)["worst_abs"] or 0.0


def _settled(candidate: dict) -> bool:
    """Within the budget and using enough of it: nothing left to try."""
    return candidate["met"] and candidate["budget_used"] >= USE_AT_LEAST


def _step(state: dict, step: str, widths: dict, out: Path, write) -> list[str]:
    """Record in fit.json that `step` starts, with the bench runs OUT holds before it (its own runs are the others),
    unless an interrupted run had started this very step: then its record stands. Returns those runs."""
    current = state.get("current")
    if not (current and current["step"] == step and current.get("widths") == widths):
        state["current"] = {"step": step, "widths": widths, "runs_before": run_names(out / "results")}
        write(RUNNING)
    return state["current"]["runs_before"]


def _dense_reference(request: FitRequest, base: PruneRequest, console: Console) -> Path | None:
    """Dense fine-tuned as the fitted model is, the fair reference; None without fine-tuning. Cached beside the
    latency tables per checkpoint (sha256) and fine-tuning request, so a fit with another budget reuses it."""
    if not request.finetune_epochs:
        return None
    key = json.dumps({"checkpoint": sha256_of(request.checkpoint), "finetune": dataclasses.asdict(base)},
                     sort_keys=True, default=str)
    model = load_checkpoint(request.checkpoint).model_name
    path = Path(request.cache) / f"dense-finetuned-{model}-{hashlib.sha256(key.encode()).hexdigest()[:12]}" / "model.pt"
    if path.is_file():
        try:
            load_checkpoint(path)
            console.print(f"dense reference: {path} (cached, fine-tuned as the fitted model is)")
            return path
        except UserError:
            set_aside(path.parent, f"dense reference {path} is damaged", console, "fine-tuning it again")
    finetune_dense(request.checkpoint, base, path.parent, console=console)
    return path


def _round(request: FitRequest, goal: Goal, space: Space, widths: Widths, base: PruneRequest,
           reference: Path | None, number: int, out: Path, state: dict, write, band: float,
           console: Console) -> dict:
    """Prune to `widths`, fine-tune, export beside dense and bench: one candidate, measured, and benched again in
    an independent run when the first lands within the board's scatter of the target (what an interrupted run of
    this round finished is reused: its pruned model, bundles and bench runs, recorded in fit.json's `current`)."""
    name = f"fit-{number}"
    folder = out / "candidates" / name
    prune_request = dataclasses.replace(base, **pruner_fields(space, widths))
    summary, reused = pruned(request.checkpoint, prune_request, folder, reference, console)
    export = out / "export" / name
    exported(export, {DENSE: reference or request.checkpoint, name: folder / "model.pt"},
             request.target.export_request(), console, reuse=reused)
    results, current = out / "results", state["current"]

    def fields(run_dir: Path, rows: dict) -> dict:
        return run_fields(rows[name], rows[DENSE], str(run_dir))

    def bench() -> dict:
        run_dir, rows = measured(request.target, export, results, current["runs_before"], console)
        current["runs"] = [*current.get("runs", []), run_dir.name]
        current["runs_before"] = run_names(results)  # the next bench of this round is a fresh run
        write(RUNNING)
        return fields(run_dir, rows)

    runs = [fields(results / run, latency_rows(request.target, results / run)) for run in current.get("runs", [])]
    if not runs:
        runs.append(bench())
    if len(runs) == 1 and needs_second_look(goal, runs[0], band):
        console.print(f"{name}: {share_text(goal.used(runs))} of the target in one run, within the board's "
                      f"run-to-run scatter of it ({band:.1%}): benching it again in an independent run")
        runs.append(bench())
    judged = goal.judged(runs)
    first, test = runs[0], summary["test"]
    return {"round": number, "name": name, "widths": widths.record(), "checkpoint": str(folder / "model.pt"),
            "bundle": str(export / name), **{k: first[k] for k in RUN_FIELDS}, "runs": runs, "judged": judged,
            "met": judged["met"], "budget_used": judged["used"], "macs": summary["after"]["macs"],
            "mse": {"dense": test["dense"]["mse"], "pruned": test["pruned"]["mse"],
                    "finetuned": (test["finetuned"] or {}).get("mse")}}


def _write(out: Path, request: FitRequest, state: dict, status: str, budget: float, table: dict, predictor,
           held_out: list[float], space: Space, sensitivity: Sensitivity) -> dict:
    candidates = state["candidates"]
    whole = [c["predictor_error"] for c in candidates if "predictor_error" in c]
    record = {
        "status": status, "request": request.record(), "target": request.goal().record(), "budget_ms": budget,
        "headroom": state.get("headroom"),
        "dense_p50_ms": next(p["p50_ms"] for p in table["probes"] if p["name"] == DENSE),
        "table": {k: table[k] for k in ("path", "reused", "run", "bench", "identity", "scatter", "percall_ms",
                                        "probes")},
        "predictor": {"features": list(FEATURES), "coefficients_ms": predictor.record(),
                      "leave_one_out": {**error_summary(held_out), "errors": held_out},
                      "held_out_whole_models": {**error_summary(whole), "errors": whole}},
        "layers": [dataclasses.asdict(layer) for layer in space.layers], "d_model": space.d_model,
        "round_to": space.round_to, "dense_reference": state.get("reference"), "candidates": candidates,
        "chosen": state.get("chosen"), "current": state.get("current"),
        "comparison": state.get("comparison"),
        "sensitivity": sensitivity.record(),
    }
    return write_state(out, record)
