"""The edge-forecaster leaderboard (issue 26): every registered model, dense and pruned, on four datasets, with test
accuracy over 3 seeds and latency in ONNX Runtime and LiteRT on this machine, and the (latency, MSE) Pareto front.

Per dataset (ETTh1, ETTh2, ETTm1, weather; pred_len 96, features M) and seed (2021, 2022, 2023):
1. train: every registered model at lookback 96 (its small preset) with its own registry schedule (lr, batch,
   max epochs, patience, decay: `model_entry(name).schedule`, the one source train_baselines.py also trains with),
   early stopping on validation MSE, the weights of the best epoch; same split and scaling for all models;
2. structured: `prune` structured (heads and FFN neurons, or input lags) at 0.5, fine-tuned `--finetune-epochs`;
3. fit: `fit --speedup 2` against dense in ONNX Runtime on this machine (1 thread), fine-tuned the same;
   structured and fit refuse a model with nothing they can prune: the project's own one-line refusal is kept and
   the row says "n/a" with it;
4. test MSE and MAE of every checkpoint by the project's evaluation (`workflow.evaluate_checkpoint`, train.evaluate:
   every test window, stride 1, no `drop_last`, on scaled values);
5. export (ONNX and TFLite) of one seed's checkpoint per model and variant (the first seed whose variant is done),
   and ONE interleaved bench per dataset of all of that dataset's bundles (`devices.bench`, desktop profile, local
   transport, batch 1, 1 thread); p50 read from the report's own verdict rows. Latency is a property of the
   architecture: only one seed is benched (dense and structured have the same widths in every seed; a fit may
   choose other widths per seed: its row's p50, parameters, MACs and size are the exported seed's model).
ETTh1 also at lookback 720, its own section: the tiny forecasters at their paper preset (seq_len 720), every other
model at its small preset with seq_len 720 where its training fits `--max-train-minutes` (estimated from timed
steps before training; a model that does not fit is "n/a" with the estimate).

Order: every dataset at lookback 96, each followed by its bench, then ETTh1 at lookback 720 and ETTh1's bench
again (with every ETTh1 bundle, in one interleaved run; the earlier bench is kept as superseded), so the
3-seed, 4-dataset table is done before the long lookback-720 training starts.

Resumable, across sessions and machines: each finished cell is kept as RECORD/<cell>.json and a re-run skips it;
a cell that was interrupted (no cell file) is redone from scratch; a cell that failed is kept as <cell>.error.json
and tried again on the next run. RECORD (benchmarks/results/leaderboard-cells) is tracked, and also keeps the
checkpoints later cells need (leaderboard_record.py): commit it after each piece of the run, since runs/ is not kept
when a session gets a new machine. On a new machine the kept checkpoints are put back; a dense model whose checkpoint
was kept nowhere is trained again (its record set aside) before its pruned cells; the bundles are exported again
from the kept checkpoints before the dataset's bench, which runs on one machine in one session. A section with no
record at all (ETTh1 at lookback 96: its records were lost before they were tracked) is carried from the previous
results as it was, says so, and is not computed again (`complete_elsewhere`). `--summarize` only rewrites the
results from the cells done. `--deadline HH:MM` (UTC, its next occurrence): no new cell starts after it. Runs
under nice 15 unless `--nice 0`.

Measured: ETTh1 at lookback 96, 3 seeds, took 4.4 h alone on the machine (dense training 114 min for 30 cells,
fit 114 min, structured 22 min, export 5 min, the bench of 24 bundles 11 min); ETTh2 should take about as long, ETTm1
and weather about 4x the training. The estimate the run was planned with, from the smoke run (SparseTSF and DLinear on
ETTh1, 1 seed, 2 epochs, lookback 96 and 720, machine shared and niced: a cell's fixed cost ~0.7 min (data, test
evaluation), structured 1.0 min, fit up to its refusal 1.7 min (latency table), export 0.3-0.5 min per bundle, bench
1.2 min for 3 bundles at 3 rounds x 0.2 s; SparseTSF at 720 2.2 min per epoch) and train_baselines.md's quiet
seconds per epoch and epochs run (ETTh1, small preset):
- per seed on ETTh1 or ETTh2: training ~55 min (Crossformer 17, FEDformer 10, Transformer 8, Autoformer 6, Informer
  5, PatchTST 5, the rest under 3), structured ~15 min (2 fine-tune epochs: pruned and its dense reference), fit
  ~50 min (~7 per Transformer: a fresh latency table per seed and 2-4 fine-tune epochs), 26 cells' fixed cost
  ~20 min: ~2.3 h a seed, ~7 h with 3 seeds, plus export (~30 bundles, ~20 min) and the bench (~60 items x 5 rounds
  x 2 passes x ~1.2 s, ~15 min): ~7.5 h each;
- ETTm1 (4x the training windows) ~26 h; weather (4.3x the windows, 21 variables) ~30 h;
- ETTh1 at lookback 720: the tiny models ~1 h for 3 seeds; each Transformer is capped by --max-train-minutes
  (90) per seed: up to ~31 h more, less where early stopping ends sooner or the estimate refuses it.
In all ~70 h on a quiet machine without the Transformers at 720 and up to ~100 h with them; far more while the
machine is shared (the smoke's iTransformer dense cell, 1 epoch, took 6.3 min at load average 14, against 4 s per
epoch quiet). Run it in pieces with --deadline (every cell is kept), one main process at a time: a bench beside another
process's training would measure that load (the benches themselves wait for each other on the board's lock).

Two processes (leaderboard_sharing.py): one training process gains little from the second core (2 torch threads
train Transformer and Autoformer on ETTm1 only 1.2-1.3x faster than 1), so a second process started with `--train-
ahead` trains the lookback-96 dense cells the main run has not reached (1 torch thread, nice 19, each dataset from
its last model while the main run goes from the first); while one is registered the main run trains with 1 torch
thread too (one core each: `share_cores`), and with all of them again when it is alone. Each process claims a cell
before computing it, and the main run waits for a dense cell the other holds rather than train it twice. Whenever
the main run measures latency (a fit cell, a bench, the lookback-720 estimate) it stops every registered train-ahead
process (SIGSTOP) and lets it go on after; such records say how many it stopped (`train_ahead_stopped`), a dense
record trained ahead says so (`process`), and every dense record has its `torch_threads`.

Usage: python benchmarks/leaderboard.py [--datasets ETTh1,ETTh2,ETTm1,weather] [--models a,b] [--seeds 2021,...]
       [--work runs/leaderboard] [--record benchmarks/results/leaderboard-cells] [--results benchmarks/results]
       [--max-epochs N] [--finetune-epochs 1] [--rounds 5] [--min-time 1.0] [--no-lookback720]
       [--deadline HH:MM] [--summarize] [--nice 15] [--train-ahead]
Writes RESULTS/leaderboard.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import cache, partial
from pathlib import Path

from leaderboard_record import (
    carried_sections,
    cell_id,
    checkpoint_of,
    is_cell_name,
    keep,
    needed_checkpoints,
    parse_cell,
    read_previous,
    restore,
    stored_path,
    supersede,
)
from leaderboard_sharing import claim, helpers, holder, quiet, registered, release, state_lock

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RECORD = RESULTS / "leaderboard-cells"  # tracked: the cell records and the checkpoints later cells need
DATASETS = ("ETTh1", "ETTh2", "ETTm1", "weather")
SEEDS = (2021, 2022, 2023)
PRED_LEN = 96
LOOKBACK = 96
PAPER_LOOKBACK = 720  # the FITS and SparseTSF papers' lookback, run on ETTh1 only
PAPER_LOOKBACK_DATA = "ETTh1"
STRUCTURED = "structured-0.5"
FIT = "fit-speedup2"
VARIANTS = ("dense", STRUCTURED, FIT)
FIT_SPEEDUP = 2.0
FIT_RUNTIME = "onnxruntime"
RUNTIMES = {"onnx": "ONNX Runtime", "tflite": "LiteRT"}
SPREAD = "min-max over seeds"
EVALUATION = ("test MSE and MAE on scaled values over every test window (stride 1, no drop_last), by the "
              "project's evaluation (train.evaluate through workflow.evaluate_checkpoint)")


# ---- pure parts: cells, aggregation, Pareto front, the sentence (no torch) ----

def run_cell(cells: Path, name: str, work: Callable[[], dict], log: Callable[[str], None] = print) -> dict:
    """The cell's record: read from cells/<name>.json when done, else computed by `work` and kept there. A
    failure (an exception other than a refusal, which `work` records itself) is kept as <name>.error.json and
    re-raised nowhere: the next run tries the cell again."""
    from tsprune_edge.atomic import write_json_atomic

    done = cells / f"{name}.json"
    if done.is_file():
        return json.loads(done.read_text())
    started = time.monotonic()
    try:
        record = work()
    except Exception as exc:  # noqa: BLE001 - one failed cell must not lose the others
        error = {"cell": name, "status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                 "seconds": round(time.monotonic() - started, 1)}
        write_json_atomic(cells / f"{name}.error.json", error)
        log(f"cell {name} failed: {error['error']}")
        return error
    record = {**record, "cell": name, "seconds": round(time.monotonic() - started, 1)}
    write_json_atomic(done, record)
    (cells / f"{name}.error.json").unlink(missing_ok=True)
    return record


def run_claimed(work: Path, cells: Path, name: str, compute: Callable[[], dict], poll_s: float = 20.0) -> dict:
    """`run_cell` for a cell the other process (main or train-ahead) may be computing: its result is waited for and
    read, never computed twice."""
    waiting = False
    while not (cells / f"{name}.json").is_file() and not claim(work, name):
        if not waiting:
            print(f"waiting for {name}: process {holder(work, name)} is computing it", file=sys.stderr)
            waiting = True
        time.sleep(poll_s)
    try:
        return run_cell(cells, name, compute)
    finally:
        release(work, name)


def measured(work: Path, compute: Callable[[], dict]) -> dict:
    """A cell that measures latency, computed with every train-ahead process stopped (and this process's torch
    threads all back, for its fine-tuning); the record says how many were stopped."""
    with quiet(work) as stopped:
        set_torch_threads(full_threads())
        record = compute()
    return {**record, "train_ahead_stopped": len(stopped)}


@cache
def full_threads() -> int:
    """torch's own thread count for this machine, read before this process changes it."""
    import torch

    return torch.get_num_threads()


def set_torch_threads(count: int) -> int:
    import torch

    torch.set_num_threads(count)
    return count


def share_cores(work: Path) -> int:
    """The torch threads for a training cell of the main run: 1 while a train-ahead process is registered (one core
    each: on ETTm1 2 threads train only 1.2-1.3x faster than 1; two 1-thread processes did ~1.3x the work of one,
    while 2 threads beside the helper slowed the main run 1.4x for no gain), else all of them."""
    return set_torch_threads(1 if helpers(work) else full_threads())


def aggregate(values: list[float]) -> dict | None:
    """Mean and the min-max spread over seeds."""
    if not values:
        return None
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "n": len(values)}


def summary_rows(cells: dict[str, dict], dataset: str, lookback: int, models: list[str], seeds: list[int],
                 latency: dict[str, dict]) -> list[dict]:
    """One row per (model, variant): accuracy over the seeds whose cell is done, facts and p50 of the benched
    (first-seed) bundle; a variant refused everywhere is one n/a row with the refusal."""
    rows = []
    for model in models:
        for variant in VARIANTS:
            found = [cells.get(cell_id(variant, dataset, model, lookback, seed)) for seed in seeds]
            done = [c for c in found if c and c.get("status") == "ok"]
            refused = next((c for c in found if c and c.get("status") == "n/a"), None)
            failed = next((c for c in found if c and c.get("status") == "failed"), None)
            if not done and not refused and not failed:
                continue
            bundle = bundle_name(model, lookback, variant)
            export = cells.get(cell_id(f"export-{variant}", dataset, model, lookback)) or {}
            trained = next((c for seed in seeds if (c := cells.get(cell_id("dense", dataset, model, lookback, seed)))
                            and c.get("preset")), {})
            row = {"dataset": dataset, "lookback": lookback, "model": model, "variant": variant,
                   "preset": trained.get("preset"), "benched_seed": export.get("seed"),
                   "seeds": [c["seed"] for c in done], "mse": aggregate([c["test"]["mse"] for c in done]),
                   "mae": aggregate([c["test"]["mae"] for c in done]), "bundle": bundle,
                   "parameters": export.get("parameters") or (done[0].get("parameters") if done else None),
                   "macs": export.get("macs"), "bytes": export.get("bytes") or {},
                   "p50_ms": {fmt: (latency.get(bundle) or {}).get(fmt) for fmt in RUNTIMES},
                   "p50_interval_ms": {fmt: (latency.get(bundle) or {}).get(f"{fmt}_interval") for fmt in RUNTIMES}}
            if not done:
                row["status"] = "n/a" if refused else "failed"
                row["reason"] = (refused or failed).get("reason") or (refused or failed).get("error")
            else:
                row["status"] = "ok"
                if variant == FIT:
                    row["fit_status"] = sorted({c.get("fit_status") for c in done})
            rows.append(row)
    return rows


def section_progress(cells: dict[str, dict], dataset: str, lookback: int, models: list[str], seeds: list[int],
                     latency: dict[str, dict]) -> dict:
    """How far a section is, so a table committed mid-run says so: its (model, seed, variant) cells settled (done,
    refused, or skipped because the dense model was refused; a failed cell is not: it is tried again) and its
    exported bundles not yet benched. Complete only when every cell is settled and every bundle benched."""
    def status(kind: str, model: str, seed: int | None = None) -> str | None:
        return (cells.get(cell_id(kind, dataset, model, lookback, seed)) or {}).get("status")

    expected = settled = 0
    for model in models:
        for seed in seeds:
            dense_refused = status("dense", model, seed) == "n/a"
            for variant in VARIANTS:
                expected += 1
                settled += status(variant, model, seed) in ("ok", "n/a") or (variant != "dense" and dense_refused)
    exported = sorted(bundle_name(model, lookback, variant) for model in models for variant in VARIANTS
                      if status(f"export-{variant}", model) == "ok")
    unbenched = [name for name in exported if name not in latency]
    return {"cells": expected, "settled": settled, "unbenched": unbenched,
            "complete": settled == expected and not unbenched}


def fronts(rows: list[dict]) -> dict[str, list[str]]:
    """Per runtime: the rows (by bundle) on the (p50, mean test MSE) front of this table."""
    from tsprune_edge.report.pareto import front

    found = {}
    for fmt in RUNTIMES:
        points = [{"name": r["bundle"], "p50_ms": r["p50_ms"][fmt], "mse": r["mse"]["mean"]} for r in rows
                  if r["status"] == "ok" and r["p50_ms"].get(fmt) is not None]
        found[fmt] = front(points)  # the report's own rule, fastest first
    return found


def findings(rows: list[dict], front: dict[str, list[str]], tiny: list[str]) -> dict[str, dict]:
    """Per runtime, from the table alone: the pruned variants on the front, those a tiny model (one of `tiny`, the
    registry's) dominates (at most as slow and as wrong), and the fastest model within 5% of the best mean MSE."""
    from tsprune_edge.report.pareto import dominated_by

    found = {}
    for fmt in RUNTIMES:
        measured = [r for r in rows if r["status"] == "ok" and r["p50_ms"].get(fmt) is not None]
        if not measured:
            continue
        points = [{"name": r["bundle"], "p50_ms": r["p50_ms"][fmt], "mse": r["mse"]["mean"]} for r in measured]
        by_name = {r["bundle"]: r for r in measured}
        pruned = [r for r in measured if r["variant"] != "dense"]
        best = min(r["mse"]["mean"] for r in measured)
        near = min((r for r in measured if r["mse"]["mean"] <= best * 1.05), key=lambda r: r["p50_ms"][fmt])
        found[fmt] = {"pruned": len(pruned),
                      "pruned_on_front": [label(r) for r in pruned if r["bundle"] in front[fmt]],
                      "dominated_by_tiny": [label(r) for r in pruned if any(
                          by_name[n]["model"] in tiny for n in dominated_by(points, r["bundle"]))],
                      "best_mse": best,
                      "fastest_near_best": {"model": label(near), "p50_ms": near["p50_ms"][fmt],
                                            "mse": near["mse"]["mean"]}}
    return found


def verdict_sentence(dataset: str, found: dict[str, dict]) -> str:
    """Where pruning wins and where a tiny model wins, in one sentence from `findings`."""
    parts = []
    for fmt, f in found.items():
        near, beaten = f["fastest_near_best"], f["dominated_by_tiny"]
        text = (f"in {RUNTIMES[fmt]} pruning wins on the front with {', '.join(f['pruned_on_front'])}"
                if f["pruned_on_front"] else f"in {RUNTIMES[fmt]} no pruned variant is on the front")
        text += (f", a tiny model dominates {len(beaten)} of {f['pruned']} pruned variants ({', '.join(beaten)})"
                 if beaten else f", no tiny model dominates any of the {f['pruned']} pruned variants"
                 if f["pruned"] else "")
        text += (f", and the fastest model within 5% of the best test MSE ({f['best_mse']:.4f}) is {near['model']} "
                 f"({near['p50_ms']:.4g} ms, MSE {near['mse']:.4f})")
        parts.append(text)
    return f"{dataset}: " + "; ".join(parts) + "." if parts else f"{dataset}: nothing measured yet."


def label(row: dict) -> str:
    return row["model"] if row["variant"] == "dense" else f"{row['model']} {row['variant']}"


def bundle_name(model: str, lookback: int, variant: str) -> str:
    return f"{model}-L{lookback}-{variant}"


# ---- the cells that compute (torch) ----

def machine() -> dict:
    from train_baselines import machine as record

    return record()


def code_version(root: Path, results: Path) -> str:
    """HEAD of the repository whose top folder is `root`, with "+changes" where its tracked files outside `results`
    differ from HEAD (the run's own records change the results folder all the time; that is not a change of code)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root)
    if head.returncode or not head.stdout.strip():
        return "unknown"
    kept_out = f":(exclude){results.resolve().relative_to(root.resolve())}"
    changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", ".", kept_out], cwd=root).returncode
    return head.stdout.strip() + ("+changes" if changed else "")


@cache
def commit() -> str:
    """The code this process runs: its version when main started (main asks first), not HEAD when a cell ends, since
    a commit made while the run goes on changes no loaded code."""
    return code_version(HERE.parent, RESULTS)


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def preset_for(model: str, lookback: int) -> tuple[str, int | None]:
    """The preset and seq_len override: lookback 96 is every model's small preset; at 720 a model whose paper preset
    is at 720 (the tiny forecasters' authors' settings) takes it, every other its small preset at seq_len 720."""
    from tsprune_edge.models import model_entry

    if lookback == LOOKBACK:
        return "small", None
    paper = model_entry(model).presets.get("paper", {})
    return ("paper", None) if paper.get("seq_len") == lookback else ("small", lookback)


def epochs_for(model: str, cap: int | None) -> int | None:
    """The registry schedule's max epochs, at most `cap` (a cheap smoke run); None: the schedule as it is."""
    from tsprune_edge.models import model_entry

    return None if cap is None else min(cap, model_entry(model).schedule.max_epochs)


def test_metrics(checkpoint: Path) -> dict:
    from tsprune_edge.workflow import evaluate_checkpoint

    found = evaluate_checkpoint(checkpoint, "test", checkpoint.parent / "test.json")
    return {"mse": found["mse"], "mae": found["mae"], "windows": found["windows"]}


def estimated_minutes(model: str, dataset: str, lookback: int, cap: int | None) -> float:
    """Training minutes at worst (max epochs of the schedule), from the median of 3 timed steps after 1 warm-up."""
    import numpy as np
    import torch

    from tsprune_edge.data import WindowSpec, load_forecast_data
    from tsprune_edge.models import create_model, model_entry, resolve_config

    preset, seq_len = preset_for(model, lookback)
    cfg = resolve_config(model, preset, seq_len=seq_len, pred_len=PRED_LEN)
    data = load_forecast_data(dataset, WindowSpec(cfg.seq_len, cfg.label_len, PRED_LEN))
    net = create_model(model, preset, seq_len=cfg.seq_len, pred_len=PRED_LEN, enc_in=len(data.input_columns),
                       c_out=len(data.target_columns), calendar_features=data.calendar_names).train()
    schedule = model_entry(model).schedule
    optimiser = torch.optim.Adam(net.parameters(), lr=schedule.lr)
    batches = data.batches("train", schedule.batch_size, shuffle=True, rng=np.random.default_rng(0))
    durations = []
    for step in range(4):
        history, calendar, target = next(batches)
        started = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(net(history, calendar), target).backward()
        optimiser.step()
        if step:
            durations.append(time.perf_counter() - started)
    steps = -(-data.n_windows("train") // schedule.batch_size)
    return statistics.median(durations) * steps * (epochs_for(model, cap) or schedule.max_epochs) / 60


def train_cell(work: Path, dataset: str, model: str, lookback: int, seed: int, args: argparse.Namespace) -> dict:
    from tsprune_edge.errors import UserError
    from tsprune_edge.workflow import train_to_dir

    out = work / "models" / dataset / f"{model}-L{lookback}" / f"s{seed}" / "dense"
    shutil.rmtree(out, ignore_errors=True)  # an interrupted cell is redone from scratch
    preset, seq_len = preset_for(model, lookback)
    base = {"dataset": dataset, "model": model, "lookback": lookback, "seed": seed, "preset": preset,
            "max_epochs_cap": args.max_epochs, "commit": commit(), "machine": machine(),
            "torch_threads": torch_threads() if args.train_ahead else share_cores(work)} | (
                {"process": "train-ahead"} if args.train_ahead else {})
    if lookback != LOOKBACK:
        try:
            with quiet(work):  # timed steps: nothing else may run
                minutes = estimated_minutes(model, dataset, lookback, args.max_epochs)
        except (RuntimeError, MemoryError) as exc:  # out of memory at seq_len 720
            return {**base, "status": "n/a", "reason": f"does not fit at seq_len {lookback}: {exc}".splitlines()[0]}
        if minutes > args.max_train_minutes:
            return {**base, "status": "n/a", "reason": f"training estimated at {minutes:.0f} min, above the "
                    f"{args.max_train_minutes:g} min allowed (--max-train-minutes)"}
    try:
        metrics = train_to_dir(model=model, data=dataset, pred_len=PRED_LEN, preset=preset, seq_len=seq_len,
                               out=out, epochs=epochs_for(model, args.max_epochs), seed=seed)
    except UserError as exc:  # the project's refusal: e.g. too few rows for the windows
        return {**base, "status": "n/a", "reason": str(exc)}
    t = metrics["training"]
    return {**base, "status": "ok", "checkpoint": stored_path(work, out / "model.pt"),
            "parameters": metrics["parameters"],
            "schedule": t["schedule"], "epochs_run": t["epochs_run"], "best_epoch": t["best_epoch"],
            "test": test_metrics(out / "model.pt")}


def structured_cell(work: Path, dense: dict, args: argparse.Namespace) -> dict:
    from tsprune_edge.errors import UserError
    from tsprune_edge.prune.stage import PruneRequest, prune_to_dir

    out = checkpoint_of(work, dense).parent.parent / STRUCTURED
    shutil.rmtree(out, ignore_errors=True)
    base = {k: dense[k] for k in ("dataset", "model", "lookback", "seed")} | {
        "commit": commit(), "finetune_epochs": args.finetune_epochs, "torch_threads": share_cores(work)}
    request = PruneRequest(method="structured", sparsity=0.5, finetune_epochs=args.finetune_epochs,
                           seed=dense["seed"])
    try:
        summary = prune_to_dir(checkpoint_of(work, dense), request, out)
    except UserError as exc:
        return {**base, "status": "n/a", "reason": str(exc)}
    return {**base, "status": "ok", "checkpoint": stored_path(work, out / "model.pt"),
            "parameters": summary["after"]["parameters"],
            "mac_reduction": summary["mac_reduction"], "test": test_metrics(out / "model.pt")}


def fit_cell(work: Path, dense: dict, args: argparse.Namespace) -> dict:
    from rich.console import Console

    from tsprune_edge.errors import UserError
    from tsprune_edge.fit.loop import FitRequest, run_fit
    from tsprune_edge.fit.measure import Target

    out = checkpoint_of(work, dense).parent.parent / FIT
    shutil.rmtree(out, ignore_errors=True)
    base = {k: dense[k] for k in ("dataset", "model", "lookback", "seed")} | {
        "commit": commit(), "finetune_epochs": args.finetune_epochs}
    target = Target(device="desktop", runtime=FIT_RUNTIME, threads=1, rounds=args.rounds, min_time=args.min_time,
                    min_iters=args.min_iters)
    request = FitRequest(checkpoint=checkpoint_of(work, dense), target=target, out=out, speedup=FIT_SPEEDUP,
                         finetune_epochs=args.finetune_epochs, cache=work / "fit-cache", seed=dense["seed"])
    try:
        record = run_fit(request, console=Console(stderr=True))
    except UserError as exc:
        return {**base, "status": "n/a", "reason": str(exc)}
    chosen = next((c for c in record["candidates"] if c["round"] == record.get("chosen")), None)
    if chosen is None:
        return {**base, "status": "n/a", "reason": f"fit ended {record['status']} with no candidate"}
    checkpoint = Path(chosen["checkpoint"])
    return {**base, "status": "ok", "fit_status": record["status"], "checkpoint": stored_path(work, checkpoint),
            "fit_speedup": chosen.get("speedup"), "test": test_metrics(checkpoint)}


def export_cell(work: Path, cell: dict, variant: str) -> dict:
    """One seed's checkpoint of a variant as an ONNX and a TFLite bundle in the dataset's bench folder."""
    from tsprune_edge.export.bundle import ExportRequest, write_bundles

    name = bundle_name(cell["model"], cell["lookback"], variant)
    manifest = write_bundles(work / "bundles" / cell["dataset"], {name: checkpoint_of(work, cell)},
                             ExportRequest(formats=tuple(RUNTIMES)))[name]
    return {"status": "ok", "bundle": name, "seed": cell["seed"], "parameters": manifest["model"]["parameters"],
            "macs": manifest["model"]["macs"],
            "bytes": {fmt: a["bytes"] for fmt, a in manifest["artifacts"].items() if fmt in RUNTIMES}}


def bench_cell(work: Path, dataset: str, args: argparse.Namespace) -> dict:
    """One interleaved bench of every bundle of the dataset; p50 per bundle and format from the verdict rows."""
    from tsprune_edge.devices.bench import BenchRequest, bench
    from tsprune_edge.devices.runs import unfinished_run
    from tsprune_edge.report.verdict import verdict_rows

    artifacts, results = work / "bundles" / dataset, work / "bench" / dataset
    bundles = sorted(p.parent.name for p in artifacts.glob("*/manifest.json"))
    resume = unfinished_run(results, "desktop") is not None
    summary = bench(BenchRequest(device="desktop", artifacts=artifacts, results=results, threads=(1,),
                                 rounds=args.rounds, min_time=args.min_time, min_iters=args.min_iters,
                                 resume=resume))
    rows = verdict_rows(results / summary["run_id"])
    latency: dict[str, dict] = {}
    for row in rows:
        latency.setdefault(row["variant"], {})[row["format"]] = row["p50_ms"]
        latency[row["variant"]][f"{row['format']}_interval"] = [row["p50_low_ms"], row["p50_high_ms"]]
        latency[row["variant"]][f"{row['format']}_runtime"] = row["runtime"]
    return {"status": "ok", "dataset": dataset, "run": str(results / summary["run_id"]), "bundles": bundles,
            "latency": latency, "machine": machine(), "commit": commit(),
            "settings": {"device": "desktop", "threads": 1, "batch": 1, "rounds": args.rounds,
                         "min_time_s": args.min_time, "min_iters": args.min_iters}}


# ---- the run and the results ----

def lookbacks(dataset: str, lookback720: bool) -> list[int]:
    """The dataset's lookbacks, from the run's own order (one rule for which dataset takes 720)."""
    return [lookback for _, lookback in phases([dataset], lookback720)]


def phases(datasets: list[str], lookback720: bool) -> list[tuple[str, int]]:
    """The run's order: every dataset at lookback 96 (each with its bench), then ETTh1 at 720 (its bench again, with
    every ETTh1 bundle), so the 3-seed, 4-dataset table is complete before the long lookback-720 training starts."""
    order = [(dataset, LOOKBACK) for dataset in datasets]
    return order + [(PAPER_LOOKBACK_DATA, PAPER_LOOKBACK)] if lookback720 and PAPER_LOOKBACK_DATA in datasets \
        else order


def run_dataset(work: Path, dataset: str, lookback: int, models: list[str], seeds: list[int],
                args: argparse.Namespace, past_deadline: Callable[[], bool]) -> bool:
    """Every cell of one dataset at one lookback, then the dataset's bench; False when the deadline stopped it.
    After each cell the checkpoints later cells need are copied into the record (`keep_checkpoints`)."""
    cells = args.record
    for model in models:
        for seed in seeds:
            for variant in VARIANTS:
                name = cell_id(variant, dataset, model, lookback, seed)
                computed = not (cells / f"{name}.json").is_file()  # the record is brought up to date only then
                if computed and past_deadline():
                    return False
                train = partial(train_cell, work, dataset, model, lookback, seed, args)
                if variant == "dense":
                    dense = run_claimed(work, cells, name, train)
                    due = [cell_id(later, dataset, model, lookback, seed) for later in VARIANTS[1:]]
                    due.append(cell_id("export-dense", dataset, model, lookback))
                    if (dense.get("status") == "ok" and not checkpoint_of(work, dense).is_file()
                            and not all((cells / f"{later}.json").is_file() for later in due)):
                        if past_deadline():
                            return False
                        supersede(cells, name)  # its checkpoint was kept nowhere (lost with a machine): trained again
                        dense, computed = run_claimed(work, cells, name, train), True
                    record = dense
                elif dense.get("status") != "ok":
                    break
                else:
                    make = partial(structured_cell if variant == STRUCTURED else fit_cell, work, dense, args)
                    record = run_cell(cells, name, make if variant == STRUCTURED else partial(measured, work, make))
                export = cell_id(f"export-{variant}", dataset, model, lookback)
                if record.get("status") == "ok" and not (cells / f"{export}.json").is_file():
                    if past_deadline():  # the first seed done is exported: latency is the architecture's
                        return False
                    run_cell(cells, export, partial(export_cell, work, record, variant))
                    computed = True
                if computed:
                    keep_checkpoints(work, cells)
    return bench_dataset(work, dataset, args, past_deadline)


def ahead_order(datasets: list[str], models: list[str], seeds: list[int], skip: set[tuple[str, int]]) -> list[str]:
    """The dense cells a train-ahead process takes: lookback 96 only (lookback 720 first times training steps, which
    must run alone), each dataset in the run's order, its models from the last, so the main run (from the first)
    meets it once per dataset; a section carried from earlier results (`skip`) is not trained."""
    return [cell_id("dense", dataset, model, LOOKBACK, seed) for dataset in datasets if (dataset, LOOKBACK) not in skip
            for model in reversed(models) for seed in seeds]


def train_ahead(args: argparse.Namespace, models: list[str], skip: set[tuple[str, int]],
                past_deadline: Callable[[], bool]) -> int:
    """Train the dense cells the main run has not reached, one torch thread, registered so that the main run stops
    this process while it measures; returns how many cells it computed."""
    computed = 0
    with registered(args.work):
        for name in ahead_order(args.datasets, models, args.seeds, skip):
            if (args.record / f"{name}.json").is_file():
                continue
            if past_deadline():
                break
            if not claim(args.work, name):  # the main run is on it
                continue
            try:
                _, dataset, model, lookback, seed = parse_cell(name)
                run_cell(args.record, name, partial(train_cell, args.work, dataset, model, lookback, seed, args))
            finally:
                release(args.work, name)
            computed += 1
            keep_checkpoints(args.work, args.record)
    return computed


def exported(cells: dict[str, dict], dataset: str) -> dict[str, str]:
    """The dataset's exported bundles (every lookback): bundle name -> its export cell."""
    found = {}
    for name, record in cells.items():
        kind, at, model, lookback, _ = parse_cell(name)
        if kind.startswith("export-") and at == dataset and record.get("status") == "ok":
            found[bundle_name(model, lookback, kind.removeprefix("export-"))] = name
    return dict(sorted(found.items()))


def bench_dataset(work: Path, dataset: str, args: argparse.Namespace, past_deadline: Callable[[], bool]) -> bool:
    """The dataset's one interleaved bench, once every exported bundle is in it. On a machine that did not export
    them (a later session's), the bundles are first exported again from the kept checkpoints; a bench done with
    fewer bundles is set aside (kept) and measured again with all of them."""
    cells = args.record
    name, found = cell_id("bench", dataset, "all", LOOKBACK), read_cells(args.record)
    bundles = exported(found, dataset)
    if not bundles or (found.get(name) or {}).get("bundles") == list(bundles):
        return True
    if past_deadline():
        return False
    for bundle, export in bundles.items():
        if not (work / "bundles" / dataset / bundle / "manifest.json").is_file():
            kind, _, model, lookback, _ = parse_cell(export)
            variant = kind.removeprefix("export-")
            source = found[cell_id(variant, dataset, model, lookback, found[export]["seed"])]
            supersede(cells, export)  # made again from the same checkpoint; the old record is kept
            if run_cell(cells, export, partial(export_cell, work, source, variant)).get("status") != "ok":
                print(f"the {dataset} bench waits: {bundle} could not be exported again", file=sys.stderr)
                return True
    if (cells / f"{name}.json").is_file():
        supersede(cells, name)
    run_cell(cells, name, partial(measured, work, partial(bench_cell, work, dataset, args)))
    return True


def complete_elsewhere(cells: dict[str, dict], previous: dict | None) -> set[tuple[str, int]]:
    """The sections complete in the previous results none of whose cells is in the record (lost with a machine):
    the run carries them instead of spending their hours again."""
    return {(s["dataset"], s["lookback"]) for s in (previous or {}).get("sections", [])
            if s["progress"]["complete"] and not any(
                parse_cell(name)[1:4:2] == (s["dataset"], s["lookback"]) for name in cells)}


def keep_checkpoints(work: Path, cells: Path) -> None:
    """The record keeps exactly the checkpoints later cells need; one needed and found nowhere is said. Under the
    state lock: a train-ahead process updates the same folder."""
    with state_lock(work):
        missing = keep(work, cells, needed_checkpoints(read_cells(cells), (STRUCTURED, FIT)))
    if missing:
        print(f"checkpoints needed but kept nowhere (their cells will be computed again): {', '.join(missing)}",
              file=sys.stderr)


def read_cells(cells: Path) -> dict[str, dict]:
    """Every finished cell, and failed ones (their name without .error). A file that is not a cell record (a stray
    name, or not JSON) is a ValueError naming it: the run must not guess what it holds."""
    found = {}
    for path in sorted(cells.glob("*.json")):
        if path.name.endswith(".superseded.json"):
            continue
        name = path.name.removesuffix(".json").removesuffix(".error")
        if not is_cell_name(name):
            raise ValueError(f"{path} is not a cell record (names are kind--dataset--model--L<lookback>[--s<seed>]); "
                             f"move it out of {cells}")
        try:
            found[name] = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); restore it with git checkout or move it out of "
                             f"{cells} to compute that cell again") from None
    return found


def summarize(cells: dict[str, dict], datasets: list[str], models: list[str], seeds: list[int],
              args: argparse.Namespace, tiny: list[str], previous: dict | None = None) -> dict:
    """The results from the cell records; a section none of whose records is here is carried from `previous`."""
    sections = []
    for dataset in datasets:
        bench = cells.get(cell_id("bench", dataset, "all", LOOKBACK)) or {}
        latency = bench.get("latency") or {}
        for lookback in lookbacks(dataset, args.lookback720):
            rows = summary_rows(cells, dataset, lookback, models, seeds, latency)
            front = fronts(rows)
            for row in rows:
                row["on_front"] = [fmt for fmt in RUNTIMES if row["bundle"] in front[fmt]]
            sections.append({"dataset": dataset, "lookback": lookback, "rows": rows, "front": front,
                             "progress": section_progress(cells, dataset, lookback, models, seeds, latency),
                             "bench_run": bench.get("run"), "bench_settings": bench.get("settings"),
                             "bench_machine": bench.get("machine"),
                             "findings": (found := findings(rows, front, tiny)),
                             "sentence": verdict_sentence(f"{dataset}, lookback {lookback}", found)})
    sections = carried_sections(sections, previous)
    carried = sorted({c for s in sections if s.get("carried") for c in s["carried"]["cell_commits"]})
    minutes = {}
    for name, record in cells.items():
        if "seconds" in record:
            kind = name.split("--")[0]
            minutes.setdefault(kind, []).append(record["seconds"] / 60)
    any_cell = next((c for c in cells.values() if c.get("machine")), {})

    def recorded(key: str) -> list:
        """The values of a setting the cells were computed with (a summary may run with other flags)."""
        return sorted({c[key] for c in cells.values() if c.get(key) is not None})

    return {"benchmark": "leaderboard", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit(),
            "cell_commits": sorted({c["commit"] for c in cells.values() if c.get("commit")} | set(carried)),
            "machine": any_cell.get("machine") or next((s["carried"]["machine"] for s in sections
                                                         if s.get("carried")), None),
            "evaluation": EVALUATION, "spread": SPREAD,
            "settings": {"datasets": datasets, "models": models, "seeds": seeds, "pred_len": PRED_LEN,
                         "lookback": LOOKBACK, "paper_lookback": {PAPER_LOOKBACK_DATA: PAPER_LOOKBACK}
                         if args.lookback720 else None, "max_epochs_cap": recorded("max_epochs_cap"),
                         "max_train_minutes_720": args.max_train_minutes,
                         "finetune_epochs": recorded("finetune_epochs"),
                         "fit": f"--speedup {FIT_SPEEDUP:g} in {RUNTIMES['onnx']}, 1 thread",
                         "bench": {"rounds": args.rounds, "min_time_s": args.min_time, "min_iters": args.min_iters,
                                   "threads": 1, "batch": 1}, "tiny_models": tiny},
            "cell_minutes": {kind: {"cells": len(v), "median": statistics.median(v), "total": sum(v)}
                             for kind, v in sorted(minutes.items())},
            "cells_done": sum("seconds" in c for c in cells.values()),
            "train_ahead": sorted(f"{c['dataset']} {c['model']} s{c['seed']}" for c in cells.values()
                                  if c.get("process") == "train-ahead"),
            "sections": sections}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _p50(row: dict, fmt: str) -> str:
    """The p50 with its interval over the bench's rounds, as the verdict report gives it."""
    interval = row.get("p50_interval_ms", {}).get(fmt)
    return _num(row["p50_ms"][fmt], ".4g") + (f" [{interval[0]:.4g}, {interval[1]:.4g}]" if interval else "")


def _metric(found: dict | None, seeds: int) -> str:
    """Mean [min, max] over the seeds done; a row short of its seeds says how many it has."""
    if not found:
        return "-"
    text = f"{found['mean']:.4f} [{found['min']:.4f}, {found['max']:.4f}]" if found["n"] > 1 else f"{found['mean']:.4f}"
    return text if found["n"] >= seeds else f"{text} ({found['n']} of {seeds} seeds)"


def status_line(sections: list[dict]) -> str:
    """Which sections are complete, which in progress (cells settled, bundles not benched) and which have no cell."""
    parts = {"complete": [], "in progress": [], "no cell done yet": []}
    for section in sections:
        title, p = f"{section['dataset']} L{section['lookback']}", section["progress"]
        if p["complete"]:
            parts["complete"].append(title)
        elif p["settled"] or section["rows"]:
            unbenched = f", {_count(len(p['unbenched']), 'bundle')} not benched yet" if p["unbenched"] else ""
            parts["in progress"].append(f"{title} ({p['settled']} of {p['cells']} cells{unbenched})")
        else:
            parts["no cell done yet"].append(title)
    return "Status: " + "; ".join(f"{kind}: {', '.join(titles)}" for kind, titles in parts.items() if titles) + "."


def markdown(result: dict) -> str:
    m, s = result["machine"] or {}, result["settings"]
    seeds = len(s["seeds"])
    lines = ["# Edge-forecaster leaderboard: dense, pruned and tiny models on this machine", "",
             f"Generated by `benchmarks/leaderboard.py` {result['date']}, commit {result['commit']} (cells computed "
             f"at {', '.join(result['cell_commits']) or '-'}). Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} "
             f"cores, Python {m.get('python', '?')}, torch {m.get('torch', '?')}; run under nice, in "
             + (f"pieces; {_count(len(result['train_ahead']), 'dense cell')} (listed in the JSON) were trained by a "
                "second process beside the main one (`--train-ahead`, 1 torch thread; meanwhile the main run trained "
                "with 1 thread too, each record says its `torch_threads`), which was stopped (SIGSTOP) whenever "
                "latency was measured (fit tables and verification, benches): latency was measured with no other "
                "heavy process running." if result.get("train_ahead") else
                "pieces, one process at a time, with no other heavy process beside it."), "",
             f"Evaluation: {result['evaluation']}. MSE and MAE: the mean over seeds "
             f"{', '.join(map(str, s['seeds']))}, the [{SPREAD}] in brackets where more than one is done. "
             f"Horizon {s['pred_len']}, features M; each dataset's standard split and scaling fitted "
             "on its training part. Training: each model's registry schedule (lr, batch, max epochs, patience, "
             "decay), early stopping on validation MSE, best epoch kept"
             + (f", max epochs capped at {', '.join(map(str, s['max_epochs_cap']))} (a smoke run: NOT the "
                "published schedules)" if s["max_epochs_cap"] else "")
             + f". Variants: dense; {STRUCTURED} (structured pruning of heads and FFN neurons or input lags at 0.5) "
             f"and {FIT} (`fit {s['fit']}`), both fine-tuned "
             f"{', '.join(map(str, s['finetune_epochs'])) or '-'} more epoch(s) after pruning, so they had "
             "that much more training than dense; \"n/a\" where the project refuses the method for the "
             "model (its reason is listed). Latency: one interleaved bench per dataset of one seed's bundles "
             f"(desktop profile, local transport, batch 1, 1 thread, {s['bench']['rounds']} rounds, min "
             f"{s['bench']['min_time_s']:g} s and {s['bench']['min_iters']} iterations per measurement); p50 in ms "
             "is the geometric mean of the round medians as the verdict report computes it, with its 95% interval "
             "over the rounds in brackets. Front: on the (p50, mean test MSE) Pareto front of the table's runtime "
             "(O ONNX Runtime, L LiteRT), drawn from the point values: where two rows' intervals overlap, their "
             "order is within the noise of this bench. Tiny models: "
             f"{', '.join(s['tiny_models'])}.", "", status_line(result["sections"]), ""]
    if result["cell_minutes"]:
        lines += ["Minutes per cell on this machine: " + ", ".join(
            f"{kind} median {v['median']:.1f} ({_count(v['cells'], 'cell')}, {v['total']:.1f} in all)"
            for kind, v in result["cell_minutes"].items()) + ".", ""]
    for section in result["sections"]:
        title = f"{section['dataset']}, lookback {section['lookback']}"
        lines += [f"## {title}" + (" (the papers' lookback)" if section["lookback"] != LOOKBACK else ""), ""]
        if not section["rows"]:
            lines += ["Nothing done yet.", ""]
            continue
        if section["lookback"] != LOOKBACK:
            presets = dict.fromkeys(f"{r['model']} {r['preset']}" for r in section["rows"] if r["preset"])
            lines += [f"Presets at seq_len {section['lookback']}: {', '.join(presets)} (small: the small preset's "
                      "widths with this lookback; paper: the authors' settings).", ""]
        if section.get("carried"):
            c = section["carried"]
            lines += [f"Carried over unchanged from the results of {c['date']} (commit {c['commit']}; cells "
                      f"computed at {', '.join(c['cell_commits'])}): this section's cell records were kept only on "
                      "that session's machine and were lost with it, so it is repeated as it was, not recomputed.",
                      ""]
        p = section["progress"]
        if not p["complete"]:
            unbenched = (f"; {_count(len(p['unbenched']), 'exported bundle')} not benched yet (p50 \"-\"; the "
                         "bench runs once the section's cells are done)" if p["unbenched"] else "")
            lines += [f"**In progress**: {p['settled']} of {p['cells']} cells (model x seed x variant) settled"
                      f"{unbenched}. The sentence, the front and the means cover only what is done.", ""]
        if section.get("bench_run"):
            where = section.get("bench_machine") or (section.get("carried") or {}).get("machine") or {}
            lines += [f"Latency: one interleaved bench, run {Path(section['bench_run']).name}, on "
                      f"{where.get('cpu', '?')} ({where.get('cores', '?')} cores).", ""]
        lines += [section["sentence"], "",
                  "| model | variant | params | MACs | file KB (ONNX / TFLite) | test MSE | test MAE | p50 ms ORT "
                  "| p50 ms LiteRT | front |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        notes = []
        for r in section["rows"]:
            if r["status"] != "ok":
                lines.append(f"| {r['model']} | {r['variant']} | n/a | | | | | | | |" if r["status"] == "n/a"
                             else f"| {r['model']} | {r['variant']} | failed | | | | | | | |")
                notes.append(f"- {r['model']} {r['variant']}: {r['reason']}")
                continue
            if r["variant"] == FIT and r["fit_status"] != ["met"]:
                notes.append(f"- {r['model']} {r['variant']}: the fits ended {', '.join(r['fit_status'])} (the "
                             "row is each seed's chosen model)")
            size = " / ".join(_num(r["bytes"].get(fmt) and r["bytes"][fmt] / 1024, ".1f") for fmt in RUNTIMES)
            front = ", ".join({"onnx": "O", "tflite": "L"}[fmt] for fmt in r["on_front"]) or "-"
            lines.append(f"| {r['model']} | {r['variant']} | {_num(r['parameters'], ',')} | {_num(r['macs'], ',')} "
                         f"| {size} | {_metric(r['mse'], seeds)} | {_metric(r['mae'], seeds)} "
                         f"| {_p50(r, 'onnx')} | {_p50(r, 'tflite')} | {front} |")
        if notes:
            lines += ["", "Notes (not applicable, failed, fits short of the target):", "", *notes]
        lines.append("")
    return "\n".join(lines)


def deadline_check(text: str | None, now: dt.datetime | None = None) -> Callable[[], bool]:
    """Whether the deadline HH:MM UTC has passed: its next occurrence from `now`, so a run started at 23:30 with
    --deadline 01:30 goes on past midnight (it was taken as today's 01:30, already past, and started nothing)."""
    if not text:
        return lambda: False
    hour, minute = map(int, text.split(":"))
    start = now or dt.datetime.now(dt.UTC)
    at = start.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at <= start:
        at += dt.timedelta(days=1)
    return lambda: dt.datetime.now(dt.UTC) >= at


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--models", default=None, help="comma-separated (default: every registered model)")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)),
                        help="comma-separated seeds, or a count: 1 takes the first default seed")
    parser.add_argument("--work", type=Path, default=HERE.parent / "runs" / "leaderboard",
                        help="checkpoints, bundles, bench runs (not kept: remade from the record)")
    parser.add_argument("--record", type=Path, default=RECORD,
                        help="the cell records and the checkpoints later cells need (tracked: commit it)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="cap every schedule's max epochs (a cheap smoke run; the results say so)")
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--max-train-minutes", type=float, default=90.0,
                        help="lookback 720: a model whose training is estimated longer is n/a")
    parser.add_argument("--no-lookback720", dest="lookback720", action="store_false")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--min-iters", type=int, default=100)
    parser.add_argument("--deadline", default=None, help="HH:MM UTC: start no new cell after it")
    parser.add_argument("--summarize", action="store_true", help="only rewrite the results from the cells done")
    parser.add_argument("--nice", type=int, default=15)
    parser.add_argument("--train-ahead", action="store_true",
                        help="a second process beside the main run: trains only dense cells at lookback 96, 1 torch "
                             "thread, nice 19; the main run stops it while it measures")
    args = parser.parse_args(argv)
    if args.train_ahead and args.summarize:
        fail("--train-ahead trains cells and --summarize only rewrites the results; give one of them")
    if args.deadline and not (len(args.deadline.split(":")) == 2 and all(
            p.isdigit() for p in args.deadline.split(":")) and int(args.deadline.split(":")[0]) < 24
            and int(args.deadline.split(":")[1]) < 60):
        fail(f"--deadline takes HH:MM in UTC, got {args.deadline!r}; for example --deadline 23:30")
    if args.max_epochs is not None and args.max_epochs < 1:
        fail(f"--max-epochs must be at least 1, got {args.max_epochs}")
    seeds = args.seeds.split(",")
    if not all(s.isdigit() for s in seeds):
        fail(f"--seeds takes comma-separated integers or a count, got {args.seeds!r}")
    args.seeds = (list(SEEDS[:int(seeds[0])]) if len(seeds) == 1 and int(seeds[0]) <= len(SEEDS)
                  else [int(s) for s in seeds])
    args.datasets = args.datasets.split(",")
    return args


def main() -> None:
    # `kill` (SIGTERM) unwinds like an exception, so a stopped train-ahead process is let go on (SIGCONT) and this
    # process's claims and registration are removed, as at a normal end
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    args = parse()
    commit()  # the code as it is now, before any later commit
    os.environ["TSPRUNE_EDGE_DATA_DIR"] = args.data_dir
    if args.nice:
        os.nice(args.nice)
    from tsprune_edge.atomic import write_atomic, write_json_atomic
    from tsprune_edge.data.registry import DATASETS as KNOWN
    from tsprune_edge.models import available_models, tiny_models

    models = args.models.split(",") if args.models else available_models()
    unknown = [m for m in models if m not in available_models()]
    if unknown:  # before anything is trained or written
        fail(f"unknown model {unknown[0]!r}; available: {', '.join(available_models())}")
    unknown = [d for d in args.datasets if d not in KNOWN]
    if unknown:
        fail(f"unknown dataset {unknown[0]!r}; for example {', '.join(DATASETS)}")
    args.record.mkdir(parents=True, exist_ok=True)
    try:
        found = read_cells(args.record)  # a stray or broken file stops the run here, in one line, before any write
    except ValueError as error:
        fail(str(error))
    if args.train_ahead:
        import torch

        torch.set_num_threads(1)  # the other core's spare share; the main run keeps its threads
        os.nice(max(0, 19 - os.nice(0)))
        skip = complete_elsewhere(found, read_previous(args.results / "leaderboard.json"))
        done = train_ahead(args, models, skip, deadline_check(args.deadline))
        print(f"train-ahead: {_count(done, 'dense cell')} computed; nothing left to train ahead or the deadline "
              "passed", file=sys.stderr)
        return
    if not args.summarize:
        restored = restore(args.work, args.record)
        if restored:
            print(f"{restored} kept checkpoint(s) put back into {args.work}", file=sys.stderr)
        past = deadline_check(args.deadline)
        done_before = complete_elsewhere(found, read_previous(args.results / "leaderboard.json"))
        for dataset, lookback in phases(args.datasets, args.lookback720):
            if (dataset, lookback) in done_before:
                print(f"{dataset} L{lookback}: complete in the previous results, its records lost: carried, not "
                      "computed again", file=sys.stderr)
                continue
            if not run_dataset(args.work, dataset, lookback, models, args.seeds, args, past):
                print(f"deadline {args.deadline} UTC reached: no new cell started", file=sys.stderr)
                break
    result = summarize(read_cells(args.record), args.datasets, models, args.seeds, args, tiny_models(),
                       read_previous(args.results / "leaderboard.json"))
    args.results.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.results / "leaderboard.json", result)
    text = markdown(result)
    write_atomic(args.results / "leaderboard.md", lambda handle: handle.write(text.encode()))
    print(text)


if __name__ == "__main__":
    main()
