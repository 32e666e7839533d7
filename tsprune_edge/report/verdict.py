"""From a bench run's results folder to verdict rows: every variant against the dense reference of the same
format, runtime and thread count, measured in the same interleaved run, paired round by round (stats.py).

Everything the agent recorded about a measurement reaches the row: rounds left out and why, its warnings, the
warm-up outcome, the ONNX Runtime providers and TFLite delegate that ran. A variant that ran on other providers
or another delegate than its dense reference is not judged: the comparison would be of runtimes, not of models.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from tsprune_edge.devices import runs
from tsprune_edge.devices.readings import since_boot, spoil_reason
from tsprune_edge.formats import checked_version
from tsprune_edge.report.accuracy import DEFAULT_MAX_MSE_RISE, accuracy_fields, headline
from tsprune_edge.report.pareto import attach_dominated
from tsprune_edge.report.profile_diff import attach_profile_diffs
from tsprune_edge.report.stats import (
    FIXED,
    MIN_ROUNDS,
    UNRESOLVED,
    Design,
    Interval,
    beyond_call_interval,
    geometric_interval,
    geometric_mean,
    judged_speedup,
    label,
    paired,
    round_values,
    speedup_interval,
)
from tsprune_edge.variants import DENSE, PROBE_VARIANT, is_baseline

DEFAULT_MIN_EFFECT = 0.05
TOO_FEW = f"NOT JUDGED: under {MIN_ROUNDS} paired rounds"  # usable rounds of the variant and of dense together
PROBE_VERDICT = "per-call cost (probe, not judged)"
UNDECIDED = (*UNRESOLVED, TOO_FEW)  # more rounds could still decide these
TAILS = ("p90", "p99")  # tail percentiles of each measurement, judged as the median is: paired per round
SPEED_KEYS = ("speedup", "ratio", "efficiency", "beyond_call_efficiency",
              *(f"{tail}_speedup" for tail in TAILS))  # row fields a NOT JUDGED row drops


@dataclass
class ItemRounds:
    """One item's rounds as the report needs them: the median latency (s) of every round that counts, and what
    the agent said about all of them."""

    medians: dict[int, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    warmup: str | None = None
    providers: str | None = None
    delegate: str | None = None
    ran_on: list[str] = field(default_factory=list)  # ORT: the provider first in line after timing, per measurement
    fallbacks: list[str] = field(default_factory=list)  # ORT moved to other providers at load or inside run()
    since_boot: list[str] = field(default_factory=list)
    design: Design = FIXED  # when bench looked: the intervals this run's rounds allow
    tails: dict[str, dict[int, float]] = field(default_factory=dict)  # "p90", "p99" -> round values, as `medians`


def load_run(run_dir: Path) -> dict:
    """A finished run's bench.json (read through devices.runs, which knows the run folder)."""
    return runs.read_bench(run_dir)


def load_rounds(run_dir: Path, item_id: str) -> ItemRounds:
    """The rounds that count (not failed, correct, not throttled, clocks steady) and why the others were left
    out."""
    found = ItemRounds()
    results = runs.read_rounds(run_dir, item_id)  # in round order
    passes: dict[runs.Measurement, float] = {}
    tail_passes: dict[str, dict[runs.Measurement, float]] = {tail: {} for tail in TAILS}
    for key, result in results.items():
        name = runs.measurement_name(key)
        found.since_boot += [what for what in since_boot(result) if what not in found.since_boot]
        reason = spoil_reason(result)
        if "error" in result:
            found.flags.append(f"{name} failed")
        elif not result["correctness"]["within_tolerance"]:
            found.flags.append(f"{name} incorrect outputs")
        elif reason:
            found.flags.append(f"{name} {reason}")
        else:
            passes[key] = float(result["latency"]["p50"])
            for tail, values in tail_passes.items():
                values[key] = float(result["latency"][tail])
    per_round = runs.passes_per_round(run_dir)
    found.medians = round_values(passes, per_round)
    found.tails = {tail: round_values(values, per_round) for tail, values in tail_passes.items()}
    found.design = Design.of_plan(runs.read_plan(run_dir))
    measured = [(runs.measurement_name(k), r) for k, r in results.items() if "latency" in r]
    found.warnings = _warnings(measured)
    found.warmup = _warmup(measured)
    found.providers = _distinct(",".join(r["runtime"].get("providers_used") or []) for _, r in measured)
    found.delegate = _distinct(r["runtime"].get("delegate") for _, r in measured)
    found.ran_on = list(dict.fromkeys(r["runtime"]["providers_used"][0] for _, r in measured
                                      if r["runtime"].get("providers_used")))
    found.fallbacks = [f"{name} at {f['when']}" for name, r in measured if (f := r["runtime"].get("fallback"))]
    return found


def unexpected_engine(rounds: ItemRounds, expected: list[str] | None, device: str) -> str | None:
    """The NOT JUDGED line for a measurement that ran on other providers than the board's profile expects (a
    CPU-only wheel on a GPU board, a provider that fell back inside run()): what ran and the fix. None when it ran
    where expected, or the profile expects nothing of this runtime."""
    if not expected:
        return None
    other = [p for p in rounds.ran_on if p not in expected]
    if not other and not rounds.fallbacks:
        return None
    ran = " / ".join(rounds.ran_on) or "unknown providers"
    fell = f" after a provider fallback ({', '.join(rounds.fallbacks)})" if rounds.fallbacks else ""
    if "CPUExecutionProvider" in other and "CPUExecutionProvider" not in expected:
        fix = ("install NVIDIA's onnxruntime_gpu wheel in the board's venv (docs/boards.md), or measure the CPU "
               'on purpose: expected_engines = {onnxruntime = ["CPUExecutionProvider"]} in its profile file')
    elif rounds.fallbacks:
        fix = ("the provider failed and ORT retried without it (its message: runtime.fallback in the raw results); "
               f"free GPU memory or re-export with `tsprune-edge export --device {device}`, then bench again")
    else:
        fix = f"set expected_engines in the {device} profile file to the providers you mean to measure"
    return (f"NOT JUDGED: ran on {ran}{fell}; the {device} profile expects {' or '.join(expected)}; fix: {fix}")


def _warnings(measured: list[tuple[str, dict]]) -> list[str]:
    """The agent's warnings, one per kind (the text before its colon), with the measurements that raised it."""
    kinds: dict[str, tuple[str, list[str]]] = {}
    for name, result in measured:
        for text in result.get("warnings", []):
            kind = text.split(":", 1)[0]
            kinds.setdefault(kind, (text, []))[1].append(name)
    every = len(measured)
    return [f"{text} ({'every round' if len(names) == every else ', '.join(names)})"
            for text, names in kinds.values()]


def _warmup(measured: list[tuple[str, dict]]) -> str | None:
    outcomes = [(n, r["warmup"]) for n, r in measured if r.get("warmup")]
    if not outcomes:
        return None
    unstable = [n for n, w in outcomes if w.get("stopped") != "stable"]
    seconds = statistics.median(w.get("seconds", 0.0) for _, w in outcomes)
    if not unstable:
        return f"stable in {len(outcomes)}/{len(outcomes)} measurements (median {seconds:.1f} s)"
    limit = outcomes[0][1].get("max_seconds")
    return f"not stable within {limit:g} s in {', '.join(unstable)}" if limit else f"not stable in {unstable}"


def _distinct(values) -> str | None:
    kept = list(dict.fromkeys(str(v) for v in values if v))
    return " / ".join(kept) if kept else None


def delegate_kind(delegate: str | None) -> str | None:
    """Which delegate ran, without how many ops it took: the agent writes 'XNNPACK (default delegate): 18 of 20
    ops in 2 delegate nodes', and a pruned graph has other op counts under the same delegate."""
    return delegate.split(":", 1)[0] if delegate else delegate


def engine_difference(variant: ItemRounds, reference: ItemRounds) -> tuple[str, str, str] | None:
    """What ran differently for `variant` than for `reference` ("providers" or "delegate", with each side's, "none"
    where absent), or None on the same engine: timings on two engines compare runtimes, not models."""
    for what, mine, theirs in (("providers", variant.providers, reference.providers),
                               ("delegate", delegate_kind(variant.delegate), delegate_kind(reference.delegate))):
        if mine != theirs:
            return what, mine or "none", theirs or "none"
    return None


def judge(variant: ItemRounds, dense: ItemRounds, min_effect: float) -> tuple[str, Interval | None]:
    """The label and the speedup interval (dense / variant) at the variant's own stopping look (its `rounds` the
    paired rounds that count: `stats.judged_speedup`), or why the variant is not judged."""
    difference = engine_difference(variant, dense)
    if difference:
        what, mine, theirs = difference
        return f"NOT JUDGED: {what} differ from dense ({mine} vs {theirs})", None
    speedup = judged_speedup(variant.medians, dense.medians, variant.design, min_effect)
    if speedup is None:
        return TOO_FEW, None
    return label(speedup.low, speedup.high, min_effect), speedup


def same_setting(item: dict, bundle: str) -> str:
    """The id of `bundle` measured in the same setting as `item` (format, runtime, threads, TensorRT precision):
    ids are `<bundle>__<setting>`, e.g. `dense__onnx__t1` or `dense__onnx__trt-fp16`."""
    return bundle + item["id"][len(item["bundle"]):]


def undecided(run_dir: Path, min_effect: float = DEFAULT_MIN_EFFECT) -> list[str]:
    """The ids in a run's plan whose interval is still too wide to decide (or has too few rounds): what another
    round could settle. Reads plan.json and raw/ only, so bench can ask between rounds."""
    plan = runs.read_plan(run_dir)
    ids = {item["id"] for item in plan["items"]}
    open_ids = []
    loaded: dict[str, ItemRounds] = {}  # dense is shared by every variant of its setting: read once

    def rounds_of(item_id: str) -> ItemRounds:
        if item_id not in loaded:
            loaded[item_id] = load_rounds(run_dir, item_id)
        return loaded[item_id]

    for item in plan["items"]:
        dense_id = same_setting(item, DENSE)
        if item["bundle"] in (DENSE, PROBE_VARIANT) or dense_id not in ids:
            continue
        mine, dense = rounds_of(item["id"]), rounds_of(dense_id)
        expected = (plan.get("expected_engines") or {}).get(item["runtime"])
        if any(unexpected_engine(r, expected, "") for r in (mine, dense)):
            continue  # not judged on this engine, however many rounds
        verdict, _ = judge(mine, dense, min_effect)
        if verdict in UNDECIDED:
            open_ids.append(item["id"])
    return open_ids


def verdict_rows(run_dir: Path, min_effect: float = DEFAULT_MIN_EFFECT,
                 max_mse_rise: float = DEFAULT_MAX_MSE_RISE) -> list[dict]:
    """One row per measured item; pruned variants carry the speedup, its interval, the label and the ratios of
    memory and bytes against dense; dense rows are the references, the probe row the per-call cost."""
    run = load_run(run_dir)
    bundles = run["bundles"]
    items = {item["id"]: item for item in run["items"]}
    rounds = {item_id: load_rounds(run_dir, item_id) for item_id in items}
    history = list(dict.fromkeys(name for r in rounds.values() for name in r.since_boot))
    expected = run["device"].get("expected_engines") or {}  # absent in runs benched before profiles declared it
    target = fit_target(run_dir) or {"budget_ms": None, "speedup": None}
    rows = []
    for item in run["items"]:
        facts = bundles.get(item["bundle"], {})
        mine = rounds[item["id"]]
        latency = _latency(mine.medians, mine.design)
        row = {"run": run["run_id"], "device": run["device"]["name"], "machine": run["machine"],
               "emulated": run["emulated"], "variant": item["bundle"], "model": facts.get("model"),
               "method": facts.get("method"), "sparsity": facts.get("sparsity"), "format": item["format"],
               "runtime": " ".join(str(v) for v in (item["runtime"], item.get("runtime_version"),
                                                    item.get("precision")) if v),
               "threads": item["threads"], "rounds": len(mine.medians),
               "flags": mine.flags + [f"not at full power: {w}" for w in item.get("power_warnings", [])], **latency,
               "macs": facts.get("macs"), "max_abs_error": item.get("max_abs_error"),
               "torch_mse": (facts.get("torch_test") or {}).get("mse"),
               "board_mse": (item.get("accuracy") or {}).get("mse"),
               "board_mae": (item.get("accuracy") or {}).get("mae"),
               "warnings": mine.warnings, "warmup": mine.warmup, "providers": mine.providers,
               "delegate": mine.delegate, "board_since_boot": history,
               "budget_ms": target["budget_ms"], "target_speedup": target["speedup"],
               **_tail_latency(mine)}
        dense_id, probe_id = same_setting(item, DENSE), same_setting(item, PROBE_VARIANT)
        if item["bundle"] == PROBE_VARIANT:
            row["verdict"] = PROBE_VERDICT
        elif item["bundle"] != DENSE and dense_id in items:
            row.update(_against_dense(mine, rounds[dense_id], rounds.get(probe_id), facts, bundles.get(DENSE, {}),
                                      item, items[dense_id], min_effect))
            row.update(_accuracy_against_dense(run_dir, item["id"], dense_id, facts, bundles.get(DENSE, {}),
                                               max_mse_rise))
            wrong = (unexpected_engine(mine, expected.get(item["runtime"]), row["device"])
                     or unexpected_engine(rounds[dense_id], expected.get(item["runtime"]), row["device"]))
            if wrong and engine_difference(mine, rounds[dense_id]) is None:  # no speedup between unasked engines
                row = {k: v for k, v in row.items() if not k.startswith(SPEED_KEYS)}
                row["verdict"] = wrong
            row["headline"] = headline(row.get("speedup"), row.get("speedup_low"), row.get("speedup_high"),
                                       row["verdict"], row)
        elif item["bundle"] == DENSE:
            wrong = unexpected_engine(mine, expected.get(item["runtime"]), row["device"])
            if wrong:
                row["verdict"] = wrong
        if is_baseline(item["bundle"]):  # its own model, not a pruned one: no sparsity; torch MSE from its windows
            errors = (facts.get("torch_window_errors") or {}).get("per_window_mse")
            row.update(method="baseline", sparsity=None,
                       torch_mse=statistics.fmean(errors) if errors else row["torch_mse"])
        rows.append(row)
    _fill_dense_accuracy(rows, bundles)
    attach_dominated(rows)  # every model of each setting on the (latency, test MSE) plane
    attach_profile_diffs(run_dir, [r for r in rows if r["variant"] != PROBE_VARIANT])  # where the time goes (--profile)
    return rows


def fit_target(run_dir: Path) -> dict | None:
    """The target of the `tsprune-edge fit` whose run this is (OUT/results/<run> beside OUT/fit.json): a latency
    budget (`budget_ms`) or a speedup against dense in the same run (`speedup`; its budget_ms in fit.json only aims
    the search, so it is no line to judge by); None for a run that is no fit's."""
    path = runs.beside_results(run_dir, "fit.json")
    try:
        record = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    checked_version("fit", record, path)
    target = record.get("target") if isinstance(record.get("target"), dict) else {"kind": "budget"}
    if target.get("kind") == "speedup":
        speedup = target.get("speedup")
        return {"budget_ms": None, "speedup": float(speedup)} if isinstance(speedup, (int, float)) else None
    budget = record.get("budget_ms")
    return {"budget_ms": float(budget), "speedup": None} if isinstance(budget, (int, float)) else None


def _latency(medians: dict[int, float], design: Design) -> dict:
    """p50 in ms: the geometric mean of the round values (the estimator the speedup uses), with its interval."""
    if not medians:
        return {"p50_ms": None, "p50_low_ms": None, "p50_high_ms": None}
    interval = geometric_interval(list(medians.values()), design)
    return {"p50_ms": geometric_mean(list(medians.values())) * 1e3,
            "p50_low_ms": interval.low * 1e3 if interval else None,
            "p50_high_ms": interval.high * 1e3 if interval else None}


def _against_dense(mine: ItemRounds, dense: ItemRounds, probe: ItemRounds | None, facts: dict, dense_facts: dict,
                   item: dict, dense_item: dict, min_effect: float) -> dict:
    verdict, speedup = judge(mine, dense, min_effect)
    both = paired(mine.medians, dense.medians)
    judged_at = both[speedup.rounds - 1] if speedup else None  # the round of its stopping look: later ones do not count
    predicted = dense_facts["macs"] / facts["macs"] if facts.get("macs") and dense_facts.get("macs") else None
    fmt = item["format"]
    row = {"verdict": verdict, "min_effect": min_effect, "predicted_speedup": predicted,
           "paired_rounds": speedup.rounds if speedup else len(both), "judged_at_round": judged_at,
           "memory_ratio": _ratio(item.get("peak_rss_kib"), dense_item.get("peak_rss_kib")),
           "file_ratio": _ratio(facts["artifacts"][fmt]["bytes"], dense_facts["artifacts"][fmt]["bytes"]),
           "zstd_ratio": _ratio(facts["artifacts"][fmt]["zstd_bytes"], dense_facts["artifacts"][fmt]["zstd_bytes"]),
           "dense_flags": dense.flags}
    row.update(_tail_speedups(mine, dense))
    if speedup is None:
        return row
    ratio = speedup.inverse()
    row.update({"ratio": ratio.estimate, "ratio_low": ratio.low, "ratio_high": ratio.high,
                "speedup": speedup.estimate, "speedup_low": speedup.low, "speedup_high": speedup.high})
    if predicted and predicted > 1.0 + 1e-9:
        row.update(_fields("efficiency", speedup.scaled(1 / predicted)))
        if probe is not None and engine_difference(probe, mine) is None:
            beyond = beyond_call_interval(*({r: v for r, v in m.items() if r <= judged_at}
                                            for m in (mine.medians, dense.medians, probe.medians)), mine.design)
            if beyond is not None:
                row.update(_fields("beyond_call_efficiency", beyond.scaled(1 / predicted)))
    return row


def _accuracy_against_dense(run_dir: Path, item_id: str, dense_id: str, facts: dict, dense_facts: dict,
                            max_mse_rise: float) -> dict:
    """The test-MSE change against dense with its interval and accuracy label: from the board's own outputs
    where bench --accuracy scored both on the board, else from torch's at export (the row says which)."""
    board = [(runs.read_first_round(run_dir, i) or {}).get("accuracy") for i in (item_id, dense_id)]
    return accuracy_fields(board[0], board[1], facts.get("torch_window_errors"),
                           dense_facts.get("torch_window_errors"), max_mse_rise)


def _tail_latency(mine: ItemRounds) -> dict:
    """p90_ms and p99_ms with their intervals: the geometric mean of each round's percentile, as p50_ms."""
    fields = {}
    for tail in TAILS:
        latency = _latency(mine.tails.get(tail, {}), mine.design)
        fields.update({f"{tail}{key[3:]}": value for key, value in latency.items()})
    return fields


def _tail_speedups(mine: ItemRounds, dense: ItemRounds) -> dict:
    """p90_speedup and p99_speedup (dense / variant per round, the median's paired estimator) with their intervals;
    None where under MIN_ROUNDS rounds pair."""
    fields = {}
    for tail in TAILS:
        interval = speedup_interval(mine.tails.get(tail, {}), dense.tails.get(tail, {}), mine.design)
        fields.update(_fields(f"{tail}_speedup", interval) if interval else
                      dict.fromkeys((f"{tail}_speedup", f"{tail}_speedup_low", f"{tail}_speedup_high")))
    return fields


def _fields(name: str, interval: Interval) -> dict:
    return {name: interval.estimate, f"{name}_low": interval.low, f"{name}_high": interval.high}


def _fill_dense_accuracy(rows: list[dict], bundles: dict) -> None:
    """The dense bundle records no pruning; its torch test MSE is in every pruned bundle's record."""
    dense_mse = next((b["torch_test_dense"]["mse"] for b in bundles.values() if b.get("torch_test_dense")), None)
    for row in rows:
        if row["variant"] == DENSE:
            row["torch_mse"] = dense_mse


def _ratio(value, reference) -> float | None:
    return value / reference if value and reference else None


def item_ratio(run_dir: Path, item_id: str, reference_id: str) -> Interval | None:
    """item / reference latency, paired by round, with its 95% interval (e.g. a pruned model against its twin)."""
    item = load_rounds(run_dir, item_id)
    speedup = speedup_interval(item.medians, load_rounds(run_dir, reference_id).medians, item.design)
    return speedup.inverse() if speedup else None
