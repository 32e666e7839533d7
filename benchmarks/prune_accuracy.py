"""Test MSE/MAE against sparsity on ETTh1, seq_len 96, pred_len 96, small preset: does pruning keep accuracy?

Each model is trained once (published schedule, early stopping) into `--work`, then pruned from that dense
checkpoint: unstructured global L1 magnitude (the study's method) at the study's density grid 0.8^n, n = 1..9,
without fine-tuning, and with 2 epochs of fine-tuning at part of the grid; structured heads + FFN neurons
(DepGraph) at sparsity 0.25, 0.5 and 0.75 with 2 epochs of fine-tuning. One fine-tuned `prune_to_dir` call also
reports the one-shot (no fine-tuning) test MSE, so structured needs no separate no-fine-tune cells.

Usage: python benchmarks/prune_accuracy.py [--phase run|remeasure|report] [--workers 2] [--work /tmp/prune-bench]
                                           [--optional-minutes 70] [--data-dir /work/shared/data]
Cells run in priority order (transformer and patchtst first, then the other models) by up to `--workers`
processes with one torch thread each; each writes one JSON file into benchmarks/results/prune_accuracy/ as it
finishes, so a rerun skips finished cells. Optional cells are not started after `--optional-minutes`.
`remeasure` recounts parameters and MACs of finished cells from the checkpoints in `--work` with the current
analysis code. The run and report phases render benchmarks/results/prune_accuracy.{json,md}; the hand-written
"Against the study" section of an existing .md is carried over.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from train_baselines import machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "prune_accuracy"
REQUIRED = ("transformer", "patchtst")
OPTIONAL = ("autoformer", "fedformer", "itransformer", "dlinear", "informer", "crossformer")
FT_EPOCHS = 2
STRUCTURED = (0.25, 0.5, 0.75)
STUDY_HEADING = "## Against the study"


@dataclass(frozen=True)
class Cell:
    model: str
    method: str  # "dense" trains the model; otherwise a pruning method
    sparsity: float = 0.0
    finetune_epochs: int = 0
    required: bool = True

    @property
    def name(self) -> str:
        if self.method == "dense":
            return f"{self.model}__dense"
        return f"{self.model}__{self.method}__s{self.sparsity:.4f}__ft{self.finetune_epochs}"


def plan() -> list[Cell]:
    """Every cell, most wanted first: the required models' cells, then the cheap cells of the others, then extras."""
    from tsprune_edge.prune.stage import STUDY_DENSITIES

    grid = [round(1 - d, 6) for d in STUDY_DENSITIES]
    cells = [Cell(m, "dense") for m in REQUIRED]
    for m in REQUIRED:
        cells += [Cell(m, "unstructured", s, FT_EPOCHS) for s in grid[0::2]]
        cells += [Cell(m, "structured", s, FT_EPOCHS) for s in STRUCTURED]
        cells += [Cell(m, "unstructured", s) for s in grid]
    for m in OPTIONAL:
        cells += [Cell(m, "dense", required=False)] + [Cell(m, "unstructured", s, required=False) for s in grid]
        cells.append(Cell(m, "structured", 0.5, FT_EPOCHS, required=False))
    for m in REQUIRED:
        cells += [Cell(m, "unstructured", s, FT_EPOCHS, required=False) for s in grid[1::2]]
    for m in OPTIONAL:
        cells += [Cell(m, "unstructured", grid[i], FT_EPOCHS, required=False) for i in (2, 5)]
        cells += [Cell(m, "structured", s, FT_EPOCHS, required=False) for s in (0.25, 0.75)]
    return cells


def read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def run_cell(cell: Cell, work: Path) -> dict:
    """Train (dense) or prune one cell; the row that goes into its result file."""
    from tsprune_edge.prune.stage import PruneRequest, prune_to_dir
    from tsprune_edge.workflow import train_to_dir

    started = time.perf_counter()
    row: dict = {"model": cell.model, "method": cell.method}
    if cell.method == "dense":
        m = train_to_dir(model=cell.model, data="ETTh1", pred_len=96, preset="small", out=work / cell.model)
        t = m["training"]
        row.update(parameters=m["parameters"], epochs_run=t["epochs_run"], best_epoch=t["best_epoch"],
                   test=m["test"], val=m["val"], naive_test=m["naive_test"])
    else:
        request = PruneRequest(cell.method, cell.sparsity, finetune_epochs=cell.finetune_epochs)
        s = prune_to_dir(work / cell.model / "model.pt", request, work / cell.model / cell.name)
        runs = (s["finetune"] or {}).get("runs", [])
        row.update(sparsity=cell.sparsity, density=round(1 - cell.sparsity, 6), finetune_epochs=cell.finetune_epochs,
                   before=s["before"], after=s["after"], test=s["test"], achieved=s["achieved"],
                   parameter_reduction=s["parameter_reduction"], mac_reduction=s["mac_reduction"],
                   finetune=[{k: r[k] for k in ("epochs_run", "best_epoch", "seconds_per_epoch", "history")}
                             for r in runs])
    row.update(wall_seconds=round(time.perf_counter() - started, 1), torch_threads=torch.get_num_threads(),
               date=time.strftime("%Y-%m-%d %H:%M"))
    return row


def remeasure(work: Path, commit: str) -> None:
    """Recount parameters and MACs of finished cells from their saved checkpoints with the current analysis code
    (before b0a9079 every layer's MACs read as zero, so `macs_if_sparse` equalled `macs`); metrics stay."""
    from tsprune_edge.atomic import write_json_atomic
    from tsprune_edge.checkpoint import load_checkpoint
    from tsprune_edge.prune.analysis import summarize
    from tsprune_edge.prune.masks import prunable_units

    for path in sorted(RESULTS.glob("*.json")):
        row = json.loads(path.read_text())
        saved = work / row["model"] / path.stem / "model.pt"
        if row["method"] == "dense" or "error" in row or row.get("macs_commit") == commit or not saved.is_file():
            continue
        dense = load_checkpoint(work / row["model"] / "model.pt").build_model()
        pruned = load_checkpoint(saved).build_model()
        prunable = {u.name.rsplit(".", 1)[0] for u in prunable_units(dense)}
        before = summarize(dense, prunable)
        after = summarize(pruned, prunable if row["method"] != "structured" else None)
        row["before"], row["after"] = ({k: v for k, v in x.items() if k != "layers"} for x in (before, after))
        row["mac_reduction"] = round(1 - after["macs"] / before["macs"], 6)
        write_json_atomic(path, {**row, "macs_commit": commit})


def claim(work: Path, cell: Cell) -> bool:
    """Atomically take a cell so that two workers never run the same one."""
    path = work / "claims" / cell.name
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False


def worker(work: Path, deadline: float, commit: str) -> None:
    """Run the first unclaimed cell whose dense model is ready, until none is left (or only optional ones remain
    after the deadline)."""
    from tsprune_edge.atomic import write_json_atomic

    while True:
        def dense_state(model: str) -> str:
            row = read(RESULTS / f"{model}__dense.json")
            if row is None or not (work / model / "model.pt").is_file():
                return "pending"
            return "failed" if "error" in row else "ready"

        pending = [c for c in plan() if not (RESULTS / f"{c.name}.json").is_file() or
                   (c.method == "dense" and dense_state(c.model) == "pending")]
        pending = [c for c in pending if not (work / "claims" / c.name).exists()
                   and (c.required or time.time() < deadline)
                   and (c.method == "dense" or dense_state(c.model) != "failed")]
        if not pending:
            return
        ready = [c for c in pending if c.method == "dense" or dense_state(c.model) == "ready"]
        cell = next((c for c in ready if claim(work, c)), None)
        if cell is None:
            time.sleep(10)
            continue
        print(f"== {cell.name}", file=sys.stderr, flush=True)
        try:
            row = run_cell(cell, work)
        except Exception as error:  # recorded, so that one broken cell does not stop the benchmark
            row = {"model": cell.model, "method": cell.method, "sparsity": cell.sparsity,
                   "finetune_epochs": cell.finetune_epochs, "error": f"{type(error).__name__}: {error}",
                   "traceback": traceback.format_exc()}
            print(row["traceback"], file=sys.stderr, flush=True)
        write_json_atomic(RESULTS / f"{cell.name}.json", {**row, "commit": commit, "macs_commit": commit})


def fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def model_rows(cells: list[dict]) -> list[dict]:
    """One row per (method, sparsity): one-shot and fine-tuned metrics side by side."""
    rows: dict[tuple[str, float], dict] = {}
    for c in sorted(cells, key=lambda c: (c["method"] != "unstructured", c["sparsity"], c["finetune_epochs"])):
        row = rows.setdefault((c["method"], c["sparsity"]), {"method": c["method"], "sparsity": c["sparsity"]})
        if "error" in c:
            row["error"] = c["error"]
            continue
        row.update(density=c["density"], after=c["after"], before=c["before"], mac_reduction=c["mac_reduction"])
        row["oneshot"] = c["test"]["pruned"]
        if c["finetune_epochs"]:
            row["finetuned"] = c["test"]["finetuned"]
    return list(rows.values())


def render(result: dict) -> str:
    m = result["machine"]
    lines = [f"# Pruning accuracy: ETTh1, seq_len 96, pred_len 96, small preset ({result['date']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} (1 thread per worker, "
             f"{result['workers']} workers side by side), Python {m['python']}. Commit {result['commit']}. "
             f"Wall time of the last `run` invocation: {result.get('wall_minutes', '?')} min.", "",
             "Each model is trained once with its published schedule and early stopping, then pruned from that "
             "checkpoint. Unstructured: global L1 magnitude over the prunable Linear weights (the study's method) at "
             "the study's densities 0.8^n, n = 1..9; sparsity is of the prunable weights, so total nonzero "
             "parameters fall less. Structured: attention heads and FFN neurons (DLinear: input lags) removed with "
             "DepGraph, a uniform "
             f"ratio per layer, widths rounded to multiples of 8. Fine-tuning: {FT_EPOCHS} epochs at the model's "
             "published lr, masks reapplied after every step, the best validation epoch kept. MSE/MAE on the "
             "scaled test windows. MACs: one window, deployment form, dense arithmetic; `MACs if sparse` also "
             "skips every zero weight of the pruned layers (what a sparse kernel could save at best). "
             "The naive forecast repeats the last observed value.", ""]
    for model in REQUIRED + OPTIONAL:
        dense = next((d for d in result["dense"] if d["model"] == model), None)
        cells = [c for c in result["cells"] if c["model"] == model]
        if dense is None:
            continue
        if "error" in dense:
            lines += [f"## {model}", "", f"Training failed: `{dense['error']}`", ""]
            continue
        rows = model_rows(cells)
        base = next((r["before"] for r in rows if "before" in r), None)
        lines += [f"## {model}", "",
                  f"Dense: test MSE {fmt(dense['test']['mse'])}, MAE {fmt(dense['test']['mae'])} "
                  f"({dense['epochs_run']} epochs, best {dense['best_epoch']}); naive MSE "
                  f"{fmt(dense['naive_test']['mse'])}; {dense['parameters']:,} parameters"
                  + (f", {base['macs']:,} MACs." if base else "."), "",
                  "| method | sparsity | density | params | nonzero params | MACs | MACs if sparse "
                  f"| MSE one-shot | MAE one-shot | MSE FT {FT_EPOCHS} ep | MAE FT {FT_EPOCHS} ep |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            if "after" not in r:
                lines.append(f"| {r['method']} | {r['sparsity']:.4f} | - | failed: `{r['error'][:150]}` "
                             "| | | | | | | |")
                continue
            a, one, ft = r["after"], r["oneshot"], r.get("finetuned")
            sparse = f"{a['macs_if_sparse']:,}" if r["method"] == "unstructured" else "-"
            lines.append(f"| {r['method']} | {r['sparsity']:.4f} | {r['density']:.4f} | {a['parameters']:,} "
                         f"| {a['nonzero_parameters']:,} | {a['macs']:,} | {sparse} | {fmt(one['mse'])} "
                         f"| {fmt(one['mae'])} | {fmt(ft and ft['mse'])} | {fmt(ft and ft['mae'])} |")
        lines.append("")
    lines += key_numbers(result)
    return "\n".join(lines) + "\n"


def key_numbers(result: dict) -> list[str]:
    """Per model: MSE near 50% sparsity both ways, and the largest sparsity that stays within 10% of dense."""
    lines = ["## Key numbers", "",
             "Unstructured at sparsity 0.488 (density 0.8^3, the grid point nearest 50%) and structured at 0.5; "
             "`tolerates`: the largest grid sparsity up to which every one-shot unstructured MSE stays within "
             "10% of the dense MSE.", "",
             "| model | dense MSE | naive MSE | unstr. 0.488 one-shot | unstr. 0.488 FT | MACs-if-sparse cut "
             "| struct. 0.5 one-shot | struct. 0.5 FT | MAC cut | tolerates |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for dense in sorted(result["dense"], key=lambda d: (REQUIRED + OPTIONAL).index(d["model"])):
        if "error" in dense:
            continue
        rows = {(r["method"], r["sparsity"]): r for r in model_rows(
            [c for c in result["cells"] if c["model"] == dense["model"]]) if "after" in r}
        mse = dense["test"]["mse"]
        tolerated = 0.0
        for (method, sparsity), r in sorted(rows.items()):
            if method != "unstructured":
                continue
            if r["oneshot"]["mse"] > 1.1 * mse:
                break
            tolerated = sparsity
        u, s = rows.get(("unstructured", 0.488), {}), rows.get(("structured", 0.5), {})

        def get(r: dict, key: str) -> float | None:
            return (r.get(key) or {}).get("mse")

        cut = f"{1 - u['after']['macs_if_sparse'] / u['after']['macs']:.0%}" if u else "-"
        mac_cut = f"{s['mac_reduction']:.0%}" if s else "-"
        lines.append(f"| {dense['model']} | {fmt(mse)} | {fmt(dense['naive_test']['mse'])} "
                     f"| {fmt(get(u, 'oneshot'))} | {fmt(get(u, 'finetuned'))} | {cut} | {fmt(get(s, 'oneshot'))} "
                     f"| {fmt(get(s, 'finetuned'))} | {mac_cut} | {tolerated:.3f} |")
    return lines + [""]


def report(result: dict) -> None:
    """Write the JSON and the Markdown, keeping the hand-written comparison with the study."""
    from tsprune_edge.atomic import write_json_atomic

    write_json_atomic(HERE / "results" / "prune_accuracy.json", result)
    md = HERE / "results" / "prune_accuracy.md"
    old = md.read_text() if md.is_file() else ""
    study = old[old.index(STUDY_HEADING):] if STUDY_HEADING in old else f"{STUDY_HEADING}\n\n(to be written)\n"
    md.write_text(render(result) + "\n" + study)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phase", choices=("run", "worker", "remeasure", "report"), default="run",
                        help="remeasure: recount MACs of finished cells; report: re-render, measuring nothing")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", default="/tmp/prune-bench", help="dense and pruned checkpoints (outside the repo)")
    parser.add_argument("--optional-minutes", type=float, default=70.0)
    parser.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ["TSPRUNE_EDGE_DATA_DIR"] = args.data_dir
    work = Path(args.work)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    if args.phase == "worker":
        worker(work, args.deadline, commit)
        return
    if args.phase == "remeasure":
        remeasure(work, commit)
    previous = read(HERE / "results" / "prune_accuracy.json") or {}
    wall = previous.get("wall_minutes")
    if args.phase == "run":
        started = time.time()
        for stale in (work / "claims").glob("*"):  # claims of an interrupted run
            stale.unlink()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        command = [sys.executable, __file__, "--phase", "worker", "--work", str(work), "--data-dir", args.data_dir,
                   "--deadline", str(started + 60 * args.optional_minutes)]
        procs = [subprocess.Popen(command, env=env) for _ in range(args.workers)]
        for proc in procs:
            proc.wait()
        wall = round((time.time() - started) / 60, 1)
    files = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    result = {"benchmark": "prune_accuracy", "data": "ETTh1", "seq_len": 96, "pred_len": 96, "preset": "small",
              "finetune_epochs": FT_EPOCHS, "date": time.strftime("%Y-%m-%d"), "commit": commit,
              "machine": machine(), "workers": args.workers, "wall_minutes": wall,
              "dense": [f for f in files if f["method"] == "dense"],
              "cells": [f for f in files if f["method"] != "dense"]}
    report(result)
    print((HERE / "results" / "prune_accuracy.md").read_text())


if __name__ == "__main__":
    main()
