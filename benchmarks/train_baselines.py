"""Test MSE/MAE and seconds per epoch on ETTh1, pred_len 96: every registered model at the small preset
(full published schedule with early stopping), plus one timed epoch at the paper preset.

Usage: python benchmarks/train_baselines.py [--data-dir ../shared/data] [--paper-epochs 1]
Writes benchmarks/results/train_baselines.{json,md}. Run it alone: other load skews the seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
# Published ETTh1 pred_len 96 test MSE/MAE at seq_len 96 (PatchTST: the iTransformer paper's Table;
# Transformer: the Informer/Autoformer papers' vanilla Transformer baseline).
PUBLISHED = {
    "transformer": {"mse": 0.865, "mae": 0.713, "source": "Autoformer (Wu et al. 2021), Table 2, Transformer"},
    "patchtst": {"mse": 0.414, "mae": 0.419, "source": "iTransformer (Liu et al. 2024), Table 9, PatchTST"},
}


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--paper-epochs", type=int, default=1)
    parser.add_argument("--models", default=None, help="comma-separated subset (default: all registered)")
    args = parser.parse_args()
    os.environ["TSPRUNE_EDGE_DATA_DIR"] = args.data_dir

    from tsprune_edge.models import available_models
    from tsprune_edge.workflow import train_to_dir

    names = args.models.split(",") if args.models else available_models()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            for preset, epochs in (("small", None), ("paper", args.paper_epochs)):
                print(f"== {name} {preset}", file=sys.stderr, flush=True)
                started = time.perf_counter()
                m = train_to_dir(model=name, data="ETTh1", pred_len=96, preset=preset, epochs=epochs,
                                 out=Path(tmp) / f"{name}-{preset}")
                t = m["training"]
                rows.append({"model": name, "preset": preset, "parameters": m["parameters"],
                             "epochs_run": t["epochs_run"], "best_epoch": t["best_epoch"],
                             "max_epochs": t["schedule"]["max_epochs"],
                             "seconds_per_epoch": round(t["seconds_per_epoch"], 2),
                             "wall_seconds": round(time.perf_counter() - started, 1),
                             "test_mse": round(m["test"]["mse"], 4), "test_mae": round(m["test"]["mae"], 4),
                             "naive_test_mse": round(m["naive_test"]["mse"], 4),
                             "published": PUBLISHED.get(name)})
    result = {"benchmark": "train_baselines", "data": "ETTh1", "pred_len": 96, "seq_len": 96,
              "date": time.strftime("%Y-%m-%d"), "machine": machine(),
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                       cwd=HERE).stdout.strip(), "rows": rows}
    from tsprune_edge.atomic import write_json_atomic

    write_json_atomic(HERE / "results" / "train_baselines.json", result)
    lines = [f"# Training baselines: ETTh1, seq_len 96, pred_len 96 ({result['date']})", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
             f"torch {result['machine']['torch']} ({result['machine']['torch_threads']} threads), "
             f"Python {result['machine']['python']}. Commit {result['commit']}.", "",
             "Small preset: the model's published schedule with early stopping (patience 3). Paper preset: "
             f"{args.paper_epochs} epoch(s), to time an epoch at the study's widths (its MSE is not converged).", "",
             "| model | preset | params | epochs (best) | s/epoch | test MSE | test MAE | repeat-last MSE "
             "| published MSE/MAE |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        pub = r["published"]
        pub_text = f"{pub['mse']} / {pub['mae']} ({pub['source']})" if pub else "-"
        lines.append(f"| {r['model']} | {r['preset']} | {r['parameters']:,} | {r['epochs_run']} ({r['best_epoch']}) "
                     f"| {r['seconds_per_epoch']} | {r['test_mse']} | {r['test_mae']} | {r['naive_test_mse']} "
                     f"| {pub_text} |")
    (HERE / "results" / "train_baselines.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
