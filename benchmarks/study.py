"""The study: does structured pruning give a real speedup on this desktop CPU, in the runtimes we ship?

1. `tsprune-edge sweep` over every registered model (small preset, ETTh1, pred_len 96): unstructured and structured
   (heads and FFN neurons) pruning at 0.5 and 0.8; structured_width (heads, FFN and the model width d_model) at the
   ratio that removes the MACs the structured variant of the same nominal sparsity removes; and the study's own
   method (`--method study`: global magnitude ranking, width and norms included, 50 steps) at 0.5 and 0.8. Every
   variant and the dense reference are fine-tuned the same 1 epoch, so accuracy compares models with the same
   training. ONNX and TFLite, batch 1, one thread, interleaved rounds (5, more while a verdict is inconclusive)
   with ONNX Runtime's per-op profile: the verdict report (Markdown, HTML, plots, JSON, CSV). Every verdict row
   sets the accuracy verdict beside the speed verdict: the test-MSE change against dense with its 95% interval
   and ACCURACY HELD / LOST / UNRESOLVED at the report's default tolerance, from the sweep's own verdict rows
   (torch's per-window test errors at export, or the board's outputs had the bench run with --accuracy; the
   settings say which).
2. Narrow twins: each model's structured-0.5 checkpoint with every weight re-initialised (the same modules at the
   same widths, never trained or pruned), exported the same way and measured in one interleaved run beside the
   pruned bundle. Pruning must leave no overhead: the pruned model should be within +-5% of its twin. Latency
   only: a twin's weights are random, so its accuracy is not a result.
3. Targets at 0.5: achieved / predicted speedup >= 0.85 in both runtimes (heads+ffn, and heads+ffn+width at the
   same MACs); pruned within 5% of the twin.
4. The Transformer at the paper preset's widths, structured and structured_width at 0.5 against dense: what the
   same pruning achieves where the matrices are large enough to amortise the per-node cost (latency only; trained
   one epoch, not fine-tuned).

Usage: python benchmarks/study.py --work runs/study-v4 [--epochs 3] [--data-dir ../shared/data]
Resumable (re-run the same command). Writes benchmarks/results/study.{md,json} and benchmarks/results/study/.
`--rejudge-twins` only re-applies the twin judgement to the committed study.json and rewrites study.md from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from rich.console import Console
from train_baselines import machine

from tsprune_edge.devices.runs import DEFAULT_ROUNDS
from tsprune_edge.report.accuracy import DEFAULT_MAX_MSE_RISE, accuracy_phrase
from tsprune_edge.report.cells import SOURCE_WORDS, interval_text
from tsprune_edge.report.stats import legend
from tsprune_edge.report.verdict import DEFAULT_MIN_EFFECT

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TARGET_EFFICIENCY = 0.85
TWIN_TOLERANCE = 0.05


def run_study(spec, sweep: Path, console: Console) -> list[dict]:
    from tsprune_edge.report.verdict import verdict_rows
    from tsprune_edge.sweep.executors import LocalExecutor
    from tsprune_edge.sweep.runner import run_sweep

    summary = run_sweep(spec, sweep, lambda: LocalExecutor(os.cpu_count() or 1), console)
    if summary["failed"]:
        console.print(f"failed cells: {summary['failed']}")
    return [row for run in summary["runs"] for row in verdict_rows(run)]


def twin_checkpoint(pruned: Path, target: Path) -> None:
    """The pruned model's modules at the same widths, every learnable weight drawn afresh by its layer's own
    initialiser; fixed tables (positional encodings, DFT bases) kept, as the model code computes them. Parameters
    the initialiser sets to one value (layer norms' ones and zeros) get a little noise, as training would give them:
    the converters fold a multiply by one and an add of zero away, which would hand the twin fewer operators than
    any trained model has (Crossformer's TFLite twin had 56 fewer operators without it, 53 of them ADD and MUL)."""
    import torch

    from tsprune_edge.architecture import architecture_record
    from tsprune_edge.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint

    checkpoint = load_checkpoint(pruned)
    model = checkpoint.build_model()
    torch.manual_seed(7)
    for module in model.modules():
        if hasattr(module, "reset_parameters") and module is not model:
            module.reset_parameters()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.numel() > 1 and bool((parameter == parameter.flatten()[0]).all()):
                parameter.add_(0.02 * torch.randn_like(parameter))
    model.eval()
    fresh = make_checkpoint(model, checkpoint.data, checkpoint.scaling, checkpoint.training)
    save_checkpoint(dataclasses.replace(fresh, architecture=architecture_record(model)), target)


def bench_twin(spec, work: Path, model: str, console: Console) -> Path | None:
    """structured-0.5 and its narrow twin in one interleaved run; returns the run folder."""
    from tsprune_edge.devices.bench import bench
    from tsprune_edge.devices.runs import latest_run, unfinished_run
    from tsprune_edge.export.bundle import ExportRequest, write_bundles
    from tsprune_edge.report.verdict import undecided

    sweep = work / "sweep"
    pruned = sweep / "export" / model / "structured-0.5"
    if not pruned.is_dir():
        return None
    root = work / "twins" / model
    results = root / "results"
    done = latest_run(results) if results.is_dir() else None
    if done:
        return done
    artifacts = root / "export"
    if not (artifacts / "narrow-twin" / "manifest.json").is_file():
        twin_checkpoint(sweep / "models" / model / "structured-0.5" / "model.pt", root / "twin.pt")
        write_bundles(artifacts, {"narrow-twin": root / "twin.pt"}, ExportRequest(formats=spec.formats), console)
    shutil.rmtree(artifacts / "structured-0.5", ignore_errors=True)
    shutil.copytree(pruned, artifacts / "structured-0.5")
    resume = unfinished_run(results, spec.device) is not None
    summary = bench(spec.bench_request(artifacts, results, resume=resume), console=console, more_rounds=undecided)
    return results / summary["run_id"]


def twin_rows(run: Path) -> list[dict]:
    from tsprune_edge.report.verdict import item_ratio, load_run

    rows = []
    items = {item["id"]: item for item in load_run(run)["items"]}
    for fmt in ("onnx", "tflite"):
        pruned_id, twin_id = f"structured-0.5__{fmt}__t1", f"narrow-twin__{fmt}__t1"
        if pruned_id not in items or twin_id not in items:
            continue
        ratio = item_ratio(run, pruned_id, twin_id)  # pruned / twin, paired by round
        if ratio is None:
            continue
        pruned_item, twin_item = items[pruned_id], items[twin_id]
        rows.append({"format": fmt, "runtime": pruned_item["runtime"], "pruned_ms": pruned_item["p50_s"] * 1e3,
                     "twin_ms": twin_item["p50_s"] * 1e3, "ratio": ratio.estimate, "low": ratio.low,
                     "high": ratio.high, "within": twin_judgement(ratio.low, ratio.high), "run": run.name})
    return rows


def twin_judgement(low: float, high: float) -> str:
    """Two-sided: 'yes' (equivalent) when the whole 95% interval of pruned / twin lies within 1 +- the tolerance,
    'NO' when it lies wholly beyond either end (slower, or faster, than the twin by more than the tolerance), and
    'unresolved' when it crosses a line: more rounds would tell."""
    if 1 - TWIN_TOLERANCE <= low and high <= 1 + TWIN_TOLERANCE:
        return "yes"
    if low > 1 + TWIN_TOLERANCE or high < 1 - TWIN_TOLERANCE:
        return "NO"
    return "unresolved"


def rejudge_twins(study: dict) -> dict:
    """The study with every twin row (and each target's copy) judged again from its recorded interval."""
    for row in [row for rows in study["twins"].values() for row in rows] + [t["twin"] for t in study["targets"]
                                                                             if t.get("twin")]:
        row["within"] = twin_judgement(row["low"], row["high"])
    return study


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
    return done.stdout.strip() or "unknown"


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _interval(row: dict, name: str, suffix: str = "") -> str:
    """`name` of a verdict row with its 95% interval, as the report writes it."""
    return interval_text(row.get(name), row.get(f"{name}_low"), row.get(f"{name}_high"), ".2f", suffix)


def accuracy_cells(row: dict) -> tuple[str, str]:
    """(change [95% CI], label) of a verdict row's accuracy against dense, as the report's headline words them
    (report.accuracy.accuracy_phrase, without the source: the settings say it); ("-", "-") where none was
    measured."""
    if row.get("mse_change") is None:
        return "-", "-"
    label = row["accuracy_label"]
    phrase = accuracy_phrase(row).split(" test MSE ", 1)[1]
    return phrase.removesuffix(f" {label}"), label


def _accuracy(row: dict) -> str:
    """The accuracy cells in one: '+0.40% [-0.30%, +0.90%] ACCURACY HELD', or '-'."""
    change, label = accuracy_cells(row)
    return "-" if label == "-" else f"{change} {label}"


def accuracy_settings(rows: list[dict]) -> str:
    """Where the rows' test-MSE changes come from and the tolerance they are judged at: for the settings line."""
    sources = sorted({r["accuracy_source"] for r in rows if r.get("accuracy_source")})
    where = " or ".join(SOURCE_WORDS[s] for s in sources) if sources else "nowhere (no per-window test errors)"
    return (f"accuracy: test-MSE change against dense over the test windows, from {where}, tolerance "
            f"{tolerance(rows)}")


def tolerance(rows: list[dict]) -> str:
    """The tolerated test-MSE rise the rows were judged at ('+1%'), the report's default where none says."""
    rise = next((r["max_mse_rise"] for r in rows if r.get("max_mse_rise") is not None), DEFAULT_MAX_MSE_RISE)
    return f"+{rise * 100:g}%"


def accuracy_legend(rows: list[dict]) -> str:
    """What the accuracy columns mean, beside the speed labels' legend."""
    return (f"Accuracy, beside every speed verdict: test MSE vs dense = the variant's test MSE / dense's - 1 on the "
            "same test windows, with its 95% interval (overlapping batch means over the dependent windows; "
            "coverage checked in [accuracy_interval.md](accuracy_interval.md)); ACCURACY HELD when the whole "
            f"interval is at or below {tolerance(rows)} (`report --max-mse-rise`), ACCURACY LOST when it is wholly "
            "above, UNRESOLVED when it crosses.")


def markdown(study: dict) -> str:
    m = study["machine"]
    lines = [f"# Study: structured vs unstructured pruning on this desktop CPU ({study['date']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}. Commit "
             f"{study['commit']}. Settings: {study['settings']}. Compute cell time (minutes, summed over "
             "workers): "
             + ", ".join(f"{kind} {minutes:g}" for kind, minutes in study["cell_minutes"].items()) + ".", "",
             "Every variant is measured against the dense model of the same model, format and runtime in the same "
             "interleaved run (each round a fresh process per item and measurement: a forward pass, then the "
             "mirrored pass, the start rotated between rounds). Speedup = the geometric mean over rounds of dense / "
             "variant in that round (a round's value: the geometric mean of its two passes' medians), with the "
             "interval of the mean log ratio (95%, t's quantile, or the design's constant where rounds were added; "
             "its coverage is checked by simulation in [coverage.md](coverage.md)); p50 ms is the same estimator "
             "over the round values. Predicted = dense MACs / variant MACs; achieved / predicted carries the "
             f"speedup's interval. Verdicts, with a {DEFAULT_MIN_EFFECT:.0%} smallest effect that counts: "
             f"{legend(DEFAULT_MIN_EFFECT)} {accuracy_legend(study['rows'])} "
             "Full report with plots: [study/report.html](study/report.html) and "
             "[study/report.md](study/report.md).", "",
             "Variants: `structured` prunes attention heads and FFN neurons; `structured_width` also prunes the "
             "model width d_model, at the ratio that removes the MACs `structured` removes at the same nominal "
             "sparsity; `study` is the study's method (global magnitude ranking over every group, width and norms "
             "included, 50 steps).", "",
             "## Verdict, every model and variant (batch 1, one thread)", "",
             "| model | variant | runtime | p50 ms | speedup [95% CI] | verdict | test MSE vs dense [95% CI] | "
             "accuracy | predicted | achieved / predicted [95% CI] | file ratio | torch MSE |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in study["rows"]:
        if r["variant"] in ("dense", "percall"):
            continue
        change, accuracy = accuracy_cells(r)
        lines.append(f"| {r['model']} | {r['variant']} | {r['runtime']} | {_num(r.get('p50_ms'), '.3f')} | "
                     f"{_interval(r, 'speedup', 'x')} | {r.get('verdict', '-')} | {change} | {accuracy} | "
                     f"{_num(r.get('predicted_speedup'), '.2f')} | {_interval(r, 'efficiency')} | "
                     f"{_num(r.get('file_ratio'), '.2f')} | {_num(r.get('torch_mse'), '.4f')} |")
    dense_mse = {r["model"]: r.get("torch_mse") for r in study["rows"] if r["variant"] == "dense"}
    lines += ["", "Dense torch test MSE (fine-tuned the same epoch as every variant): "
              + ", ".join(f"{model} {_num(mse, '.4f')}" for model, mse in sorted(dense_mse.items())) + "."]
    lines += width_rows(study)
    lines += ["", f"## Targets at 0.5: achieved / predicted >= {TARGET_EFFICIENCY}, and within "
              f"+-{TWIN_TOLERANCE:.0%} of the narrow twin", "",
              f"Met: 'yes' when the efficiency's whole 95% interval is at or above {TARGET_EFFICIENCY}, 'NO' when "
              "it is wholly below, 'unresolved' when it crosses. Twin: 'yes' when the whole 95% interval of "
              f"pruned / twin lies within 1 +- {TWIN_TOLERANCE:g}, 'NO' when it lies wholly beyond either end, "
              "'unresolved' when it crosses a line. The twin is timed only: its weights are drawn afresh, never "
              "trained, so its accuracy is not a result (the pruned model's is in the verdict table).", "",
              "| model | variant | runtime | achieved / predicted [95% CI] | met | pruned ms | twin ms | "
              "pruned / twin [95% CI] | met |", "|---|---|---|---|---|---|---|---|---|"]
    for t in study["targets"]:
        twin = t.get("twin") or {}
        lines.append(f"| {t['model']} | {t.get('variant', 'structured-0.5')} | {t['runtime']} | "
                     f"{_interval(t, 'efficiency')} | {t['efficiency_met']} | {_num(twin.get('pruned_ms'), '.3f')} | "
                     f"{_num(twin.get('twin_ms'), '.3f')} | "
                     + (f"{twin['ratio']:.3f} [{twin['low']:.3f}, {twin['high']:.3f}] | "
                        f"{twin['within']} |" if twin else "- | - |"))
    if study.get("left_out"):
        lines += ["", "## Models not in the study", "",
                  "Registered models that structured pruning cannot take: the tiny forecasters, which `--baselines` "
                  "measures dense beside the pruned variants.", "",
                  *[f"- `{model}`: {reason}" for model, reason in study["left_out"].items()]]
    if study.get("refused"):
        lines += ["", "## Cells that refused", "",
                  *[f"- `{cell}`: {reason}" for cell, reason in study["refused"].items()]]
    return "\n".join(lines + paper_widths(study["paper_widths"]) + shortfalls(study["targets"])) + "\n"


def width_rows(study: dict) -> list[str]:
    """heads+ffn against heads+ffn+width at (nearly) the same MACs, per model, runtime and sparsity."""
    by_key = {(r["model"], r["variant"], r["format"]): r for r in study["rows"]}
    matched = study.get("matched", {})
    lines = ["", "## Width: heads+ffn against heads+ffn+width at matched MACs", "",
             "The width variant is pruned at the ratio (all three dimensions alike) whose MACs are closest to the "
             "structured variant's; both fine-tuned the same epoch.", "",
             "| model | sparsity | runtime | MACs removed (heads+ffn / +width) | width ratio | "
             "speedup heads+ffn | speedup +width | achieved / predicted heads+ffn | +width | "
             "test MSE vs dense heads+ffn | +width |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (model, variant, fmt), r in sorted(by_key.items()):
        if "_width-" not in variant:
            continue
        base = by_key.get((model, variant.replace("_width", ""), fmt))
        if base is None:
            continue
        match = matched.get(f"{model}/{variant}", {})
        removed = (f"{match['target_mac_reduction']:.1%} / {match['mac_reduction']:.1%}" if match else "-")
        lines.append(f"| {model} | {variant.rsplit('-', 1)[1]} | {r['runtime']} | {removed} | "
                     f"{_num(match.get('ratio'), 'g')} | {_interval(base, 'speedup', 'x')} | "
                     f"{_interval(r, 'speedup', 'x')} | {_interval(base, 'efficiency')} | "
                     f"{_interval(r, 'efficiency')} | {_accuracy(base)} | {_accuracy(r)} |")
    return lines


def paper_widths(rows: list[dict]) -> list[str]:
    """The same measurement at the paper preset's widths (Transformer, d_model 512, d_ff 2048): how much of the small
    preset's shortfall is per-node cost that larger matrices amortise. Latency only: trained one epoch and pruned
    without fine-tuning, as weights do not change the time."""
    lines = ["", "## The Transformer at the paper's widths (d_model 512, 8 heads, d_ff 2048)", "",
             "Trained one epoch and pruned without fine-tuning (the weights do not change the time, so accuracy here "
             "is not a result: the test-MSE change and accuracy label that study.json's `paper_widths` rows carry "
             "judge an untuned prune, not the method); measured the same way, in its own interleaved run.", "",
             "| variant | runtime | dense ms | p50 ms | speedup [95% CI] | verdict | predicted "
             "| achieved / predicted [95% CI] |",
             "|---|---|---|---|---|---|---|---|"]
    dense = {r["format"]: r["p50_ms"] for r in rows if r["variant"] == "dense"}
    for r in rows:
        if r["variant"] == "dense" or "speedup" not in r:
            continue
        lines.append(f"| {r['variant']} | {r['runtime']} | {dense.get(r['format'], float('nan')):.3f} | "
                     f"{r['p50_ms']:.3f} | {r['speedup']:.2f}x [{r['speedup_low']:.2f}, {r['speedup_high']:.2f}] | "
                     f"{r['verdict']} | {_num(r.get('predicted_speedup'), '.2f')} | {_interval(r, 'efficiency')} |")
    return lines


def shortfalls(targets_: list[dict]) -> list[str]:
    """Why each missed target missed: ONNX Runtime's per-op diff for ONNX rows; TFLite has no per-op profile from
    Python, so its rows point at the same model's ONNX diff (the same graph, pruned the same way)."""
    missed = [t for t in targets_ if t["efficiency_met"] != "yes"]
    if not missed:
        return []
    lines = ["", "## Where a target was missed, and what would close it", "",
             "From ONNX Runtime's per-op profile of round 1 (dense against structured-0.5, same run). The full "
             "per-op tables are in [study/report.md](study/report.md).", ""]
    for t in missed:
        lines.append(f"**{t['model']} {t.get('variant', 'structured-0.5')}, {t['runtime']}**: achieved / predicted "
                     f"{_interval(t, 'efficiency')}.")
        if t.get("profile_diff"):
            lines += [f"- {line}" for line in t["profile_diff"]["explanation"]]
        else:
            lines.append(f"- No per-op profile for {t['format']} (the Python TFLite interpreter has none); the same "
                         "model's ONNX Runtime diff (here, or `profile_diff` in study/report.json) shows its "
                         "graph's operators.")
        lines.append("")
    return lines


def efficiency_met(row: dict) -> str:
    """'yes' when the whole interval of achieved / predicted is at or above the target, 'NO' when wholly below."""
    low, high = row.get("efficiency_low"), row.get("efficiency_high")
    if low is None or high is None:
        return "-"
    return "yes" if low >= TARGET_EFFICIENCY else "NO" if high < TARGET_EFFICIENCY else "unresolved"


def targets(rows: list[dict], twins: dict[str, list[dict]]) -> list[dict]:
    result = []
    for r in rows:
        if r["variant"] not in ("structured-0.5", "structured_width-0.5") or "speedup" not in r:
            continue
        twin = (next((t for t in twins.get(r["model"], []) if t["format"] == r["format"]), None)
                if r["variant"] == "structured-0.5" else None)
        result.append({"model": r["model"], "variant": r["variant"], "format": r["format"], "runtime": r["runtime"],
                       **{k: r.get(k) for k in ("efficiency", "efficiency_low", "efficiency_high")},
                       "efficiency_met": efficiency_met(r), "twin": twin, "profile_diff": r.get("profile_diff")})
    return result


def study_left_out(spec) -> dict[str, str]:
    """The registered models structured pruning cannot take at all (the tiny baselines: no heads, neurons or lags),
    each with the refusal: the study asks what structured pruning gives, so they are named, not swept."""
    return {model: reason for model in spec.models if (reason := spec.structured_refusal(model))}


def refused_cells(sweep: Path) -> dict[str, str]:
    """Variant cells that failed, by id, with their one-line reason (a model whose width cannot be pruned)."""
    return {p.name[:-len(".error.json")]: json.loads(p.read_text())["error"]
            for p in sorted((sweep / "cells").glob("*.error.json"))}


def matched_ratios(sweep: Path) -> dict[str, dict]:
    """Per width variant (`model/variant`), the ratio it was pruned at and the MACs it matched."""
    found = {}
    for path in sorted((sweep / "models").glob("*/*_width-*/pruning.json")):
        record = json.loads(path.read_text())
        found[f"{path.parent.parent.name}/{path.parent.name}"] = {
            **(record["request"].get("matched") or {}), "parameter_reduction": record["parameter_reduction"]}
    return found


def cell_minutes(sweep: Path) -> dict[str, float]:
    """Minutes the finished compute cells took, summed by kind (train, variant), from their markers: the study's
    compute cost whichever invocations and however many workers ran it (two at a time here). Bench markers carry
    no duration; each bench run's own files have its times."""
    totals: dict[str, float] = {}
    for marker in (sweep / "cells").glob("*.json"):
        record = json.loads(marker.read_text())
        if marker.name.endswith(".error.json") or "seconds" not in record:
            continue
        kind = marker.name.split("--")[0]
        totals[kind] = totals.get(kind, 0.0) + record["seconds"] / 60
    return {kind: round(minutes, 1) for kind, minutes in sorted(totals.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE.parent / "runs" / "study")
    parser.add_argument("--models", default="all")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--max-rounds", type=int, default=8)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--rejudge-twins", action="store_true", help="only re-judge the twins of the committed "
                        "study.json and rewrite study.md")
    args = parser.parse_args()
    os.environ["TSPRUNE_EDGE_DATA_DIR"] = args.data_dir

    from tsprune_edge.atomic import write_atomic, write_json_atomic

    if args.rejudge_twins:
        study = rejudge_twins(json.loads((args.results / "study.json").read_text()))
        write_json_atomic(args.results / "study.json", study)
        text = markdown(study)
        write_atomic(args.results / "study.md", lambda handle: handle.write(text.encode()))
        return
    from tsprune_edge.models import available_models
    from tsprune_edge.report.render import write_report
    from tsprune_edge.sweep.spec import SweepSpec

    console = Console(stderr=True, soft_wrap=True)
    spec = SweepSpec(models=tuple(available_models()) if args.models == "all" else tuple(args.models.split(",")),
                     methods=("unstructured", "structured", "study"), sparsities=(0.5, 0.8),
                     data="ETTh1", epochs=args.epochs, finetune_epochs=1, threads=(1,), rounds=args.rounds,
                     max_rounds=args.max_rounds, min_time=args.min_time, min_iters=100, profile=True,
                     width_matched=True)
    left_out = study_left_out(spec) if args.models == "all" else {}
    models = tuple(model for model in spec.models if model not in left_out)
    spec = dataclasses.replace(spec, models=models)
    rows = run_study(spec, args.work / "sweep", console)
    paper_spec = dataclasses.replace(spec, models=("transformer",), methods=("structured",), sparsities=(0.5,),
                                     preset="paper", epochs=1, finetune_epochs=0)
    paper = run_study(paper_spec, args.work / "paper" / "sweep", console)
    write_report(rows, args.results / "study")
    twins = {}
    for model in models:
        run = bench_twin(spec, args.work, model, console)
        if run is not None:
            twins[model] = twin_rows(run)
    study = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "commit": commit(),
             "settings": f"ETTh1, small preset, pred_len 96, dense and pruned: {args.epochs} epochs + 1 fine-tune "
                         f"epoch each, {args.rounds} rounds (up to {args.max_rounds} while a verdict is "
                         f"inconclusive), min-time {args.min_time:g} s, min-iters 100, 1 thread, batch 1, "
                         f"{accuracy_settings(rows)}",
             "cell_minutes": cell_minutes(args.work / "sweep"), "rows": rows,
             "left_out": left_out, "refused": refused_cells(args.work / "sweep"),
             "matched": matched_ratios(args.work / "sweep"),
             "targets": targets(rows, twins), "twins": twins, "paper_widths": paper}
    write_json_atomic(args.results / "study.json", study)
    text = markdown(study)
    write_atomic(args.results / "study.md", lambda handle: handle.write(text.encode()))
    print(text)


if __name__ == "__main__":
    main()
