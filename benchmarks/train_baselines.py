"""Test MSE/MAE and seconds per epoch on ETTh1, seq_len 96, pred_len 96, for every registered model.

Three phases. Accuracy: each model at the small preset, trained with its published schedule and early stopping
(patience 3); test metrics of the best epoch. Load on the machine does not change these. Timing: seconds per
training step, median of `--steps` real ETTh1 steps after 2 warm-up steps, at the small and the paper preset,
times the steps in one epoch (the paper preset is too slow to train to convergence on a 2-core CPU). Timing
must run on a quiet machine. Lookback 720 (`--phase lookback720`): the tiny forecasters (SparseTSF, FITS) at their
paper preset, seq_len 720, with their authors' schedules, against the published ETTh1-96 test MSE; one file each
in train_accuracy/ named <model>-720.json.

Usage: python benchmarks/train_baselines.py [--phase accuracy|lookback720|timing|all|report] [--models a,b] [--steps 20]
                                            [--data-dir ../shared/data]
Accuracy writes one file per model into benchmarks/results/train_accuracy/ as it finishes (a rerun skips models
already there, so an interrupted run loses nothing); timing and the report go to
benchmarks/results/train_baselines.{json,md}. Accuracy workers may run side by side (one thread each);
timing must run alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
# Published ETTh1 pred_len 96 test MSE at seq_len 96, as quoted in this project's model-zoo issue.
PUBLISHED_MSE = {"fedformer": 0.376, "autoformer": 0.449, "itransformer": 0.386, "patchtst": 0.414}
# Published ETTh1 pred_len 96 test MSE at seq_len 720, every test window (drop_last fixed): the FITS and SparseTSF
# papers' tables as quoted in issue 26.
PUBLISHED_MSE_720 = {"sparsetsf": 0.362, "fits": 0.372}


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}


def time_steps(name: str, preset: str, steps: int) -> dict:
    """Seconds per training step at `preset` on real ETTh1 batches, and per epoch by extrapolation."""
    from tsprune_edge.data import WindowSpec, load_forecast_data
    from tsprune_edge.models import create_model, model_entry, resolve_config

    cfg = resolve_config(name, preset, pred_len=96)
    data = load_forecast_data("ETTh1", WindowSpec(cfg.seq_len, cfg.label_len, 96))
    torch.manual_seed(0)
    model = create_model(name, preset, pred_len=96, calendar_features=data.calendar_names).train()
    schedule = model_entry(name).schedule
    optimiser = torch.optim.Adam(model.parameters(), lr=schedule.lr)
    batches = data.batches("train", schedule.batch_size, shuffle=True, rng=np.random.default_rng(0))
    durations = []
    for step in range(steps + 2):
        history, calendar, target = next(batches)
        started = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(history, calendar), target).backward()
        optimiser.step()
        if step >= 2:
            durations.append(time.perf_counter() - started)
    per_epoch = -(-data.n_windows("train") // schedule.batch_size)
    return {"model": name, "preset": preset, "parameters": sum(p.numel() for p in model.parameters()),
            "timed_steps": steps,
            "seconds_per_step_median": round(float(np.median(durations)), 4),
            "seconds_per_epoch_extrapolated": round(float(np.median(durations)) * per_epoch, 1),
            "steps_per_epoch": per_epoch}


def render(result: dict) -> str:
    m = result["machine"]
    lines = [f"# Training baselines: ETTh1, seq_len 96, pred_len 96 ({result['date']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
             f"Python {m['python']}. Commit {result['commit']}.", "",
             "Small preset: each model's published schedule, early stopping on validation loss (patience 3), "
             "test metrics of the best epoch; trained with one torch thread, two models side by side (load does not "
             "change these figures). Published MSE: seq_len 96 figures quoted in the model-zoo issue "
             "(other models: not quoted). The naive forecast repeats the last observed value.", "",
             "| model | params | epochs run (best) | test MSE | test MAE | naive MSE | published MSE |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["small"]:
        lines.append(f"| {r['model']} | {r['parameters']:,} | {r['epochs_run']} ({r['best_epoch']}) "
                     f"| {r['test_mse']} | {r['test_mae']} | {r['naive_test_mse']} "
                     f"| {PUBLISHED_MSE.get(r['model'], '-')} |")
    lines += ["", f"Seconds per epoch: median of {result['timed_steps']} real ETTh1 training steps after 2 warm-up "
              f"steps, times the steps in one epoch, measured on a quiet machine ({result.get('timed_at', '?')}). "
              "The paper preset (the study's widths) is not trained to convergence here.", "",
              "| model | preset | params | s/step | steps/epoch | s/epoch |", "|---|---|---:|---:|---:|---:|"]
    for r in result["timing"]:
        lines.append(f"| {r['model']} | {r['preset']} | {r['parameters']:,} | {r['seconds_per_step_median']} "
                     f"| {r['steps_per_epoch']} | {r['seconds_per_epoch_extrapolated']} |")
    lines += lookback720_lines(result)
    return "\n".join(lines) + "\n"


def lookback720_lines(result: dict) -> list[str]:
    """The tiny forecasters at seq_len 720 against their papers' ETTh1-96 figures."""
    rows = result.get("lookback720") or []
    if not rows:
        return []
    published = result["published_mse_720"]
    lines = ["", "## Lookback 720: the tiny forecasters against their papers", "",
             "ETTh1, seq_len 720, pred_len 96, features M; the 12/4/4-month train/val/test split and standard "
             "scaling fitted on the training months, as in the papers. Test MSE/MAE on scaled values over every "
             "test window: a window starts at every step (stride 1) and none is dropped (no `drop_last`), "
             f"{rows[0]['test_windows']} windows. Each model's paper preset and its authors' schedule (lr, batch, "
             "epochs, patience; lr held 3 epochs then * 0.9 each epoch), early stopping on validation MSE, test "
             "metrics of the best epoch; seed 2021, one run each. Published: the papers' figures with the test "
             "loader's `drop_last` fixed. Wall time on this shared 2-core machine (other jobs running, nice 10).",
             "", "| model | params | lr | batch | max epochs (patience) | epochs run (best) | test MSE | test MAE "
             "| published MSE | difference | wall |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s, ref = r["schedule"], published.get(r["model"])
        diff = f"{100 * (r['test_mse'] - ref) / ref:+.1f}%" if ref else "-"
        lines.append(f"| {r['model']} | {r['parameters']:,} | {s['lr']:g} | {s['batch_size']} "
                     f"| {s['max_epochs']} ({s['patience']}) | {r['epochs_run']} ({r['best_epoch']}) "
                     f"| {r['test_mse']} | {r['test_mae']} | {ref or '-'} | {diff} "
                     f"| {r['wall_seconds_total'] / 60:.1f} min |")
    commits = sorted({r["commit"] for r in rows})
    lines += ["", f"Commit {', '.join(commits)}; machine {rows[0]['machine']['cpu']}, "
              f"{rows[0]['machine']['cores']} cores, torch {rows[0]['machine']['torch']}. "
              "Rerun: `python benchmarks/train_baselines.py --phase lookback720` (a model whose file is in "
              "train_accuracy/ is skipped)."]
    return lines


def train_accuracy(name: str, preset: str = "small") -> dict:
    from tsprune_edge.workflow import train_to_dir

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        m = train_to_dir(model=name, data="ETTh1", pred_len=96, preset=preset, out=Path(tmp) / name)
    t = m["training"]
    return {"model": name, "preset": preset, "seq_len": m["data"]["seq_len"], "parameters": m["parameters"],
            "test_windows": m["test"]["windows"], "wall_seconds_total": round(time.perf_counter() - started, 1),
            "epochs_run": t["epochs_run"],
            "best_epoch": t["best_epoch"], "schedule": t["schedule"], "history": t["history"],
            "wall_seconds_per_epoch": round(t["seconds_per_epoch"], 2), "torch_threads": torch.get_num_threads(),
            "test_mse": round(m["test"]["mse"], 4), "test_mae": round(m["test"]["mae"], 4),
            "naive_test_mse": round(m["naive_test"]["mse"], 4), "date": time.strftime("%Y-%m-%d %H:%M")}


def lookback720_rows(accuracy_dir: Path, models: list[str]) -> dict:
    """The seq_len 720 rows and the small-preset rows, read from their per-model files."""
    return {"published_mse_720": PUBLISHED_MSE_720,
            "small": [json.loads((accuracy_dir / f"{n}.json").read_text()) for n in models
                      if (accuracy_dir / f"{n}.json").is_file()],
            "lookback720": [json.loads((accuracy_dir / f"{n}-720.json").read_text()) for n in models
                            if (accuracy_dir / f"{n}-720.json").is_file()]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--models", default=None, help="comma-separated subset (default: all registered)")
    parser.add_argument("--phase", choices=("accuracy", "lookback720", "timing", "all", "report"), default="all",
                        help="report: re-render the JSON and Markdown from the committed files, measuring nothing")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    os.environ["TSPRUNE_EDGE_DATA_DIR"] = args.data_dir

    from tsprune_edge.atomic import write_json_atomic
    from tsprune_edge.models import available_models

    names = args.models.split(",") if args.models else available_models()
    unknown = [n for n in names if n not in available_models()]
    if unknown:  # before anything is trained or written
        print(f"error: unknown model {unknown[0]!r}; available: {', '.join(available_models())}", file=sys.stderr)
        sys.exit(2)
    accuracy_dir = HERE / "results" / "train_accuracy"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    if args.phase in ("accuracy", "all"):
        for name in names:
            if (accuracy_dir / f"{name}.json").is_file():
                continue
            print(f"== {name}: training (small preset)", file=sys.stderr, flush=True)
            row = train_accuracy(name)
            write_json_atomic(accuracy_dir / f"{name}.json", {**row, "commit": commit, "machine": machine()})
    if args.phase == "accuracy":
        return
    results_file = HERE / "results" / "train_baselines.json"
    if args.phase == "lookback720":
        for name in (names if args.models else PUBLISHED_MSE_720):
            if (accuracy_dir / f"{name}-720.json").is_file():
                continue
            print(f"== {name}: training (paper preset, seq_len 720)", file=sys.stderr, flush=True)
            row = train_accuracy(name, "paper")
            write_json_atomic(accuracy_dir / f"{name}-720.json", {**row, "commit": commit, "machine": machine()})
    if args.phase in ("report", "lookback720"):
        result = json.loads(results_file.read_text())
        result.update(lookback720_rows(accuracy_dir, available_models()))
        write_json_atomic(results_file, result)
        (HERE / "results" / "train_baselines.md").write_text(render(result))
        return
    timing = []
    for name in names:
        for preset in ("small", "paper"):
            print(f"== {name} {preset}: timing {args.steps} steps", file=sys.stderr, flush=True)
            timing.append(time_steps(name, preset, args.steps))
    if args.models and results_file.is_file():  # a subset re-timed: the other models keep their rows
        timing = [r for r in json.loads(results_file.read_text())["timing"] if r["model"] not in names] + timing
        timing.sort(key=lambda r: (r["model"], r["preset"] != "small"))
    small = [json.loads((accuracy_dir / f"{n}.json").read_text()) for n in available_models()
             if (accuracy_dir / f"{n}.json").is_file()]
    result = {"benchmark": "train_baselines", "data": "ETTh1", "seq_len": 96, "pred_len": 96,
              "date": time.strftime("%Y-%m-%d"), "machine": machine(), "commit": commit,
              "published_mse": PUBLISHED_MSE, "small": small, "timing": timing, "timed_steps": args.steps,
              "timed_at": time.strftime("%Y-%m-%d %H:%M"), **lookback720_rows(accuracy_dir, available_models())}
    write_json_atomic(HERE / "results" / "train_baselines.json", result)
    text = render(result)
    (HERE / "results" / "train_baselines.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
