"""Issue 16's benchmark: latency-budget pruning on this desktop, measured honestly.

For Transformer, PatchTST and FEDformer on ETTh1 (small preset, seq_len 96, pred_len 96, published schedule), for
ONNX Runtime and LiteRT at 1 thread, batch 1, at budgets of 0.7x, 0.5x and 0.35x of dense's measured p50: one
`tsprune-edge fit` per case (one latency table per model and runtime, cached and reused by the three budgets),
with uniform structured models (heads+FFN, and with the width) at 0.25/0.5/0.75 fine-tuned the same and measured in
the same run as the fitted model (`--uniform`). Per case it records: measured p50 and 95% interval against the
budget, whether it is within (upper end at most 3% over) and uses at least 85% of it, test MSE of the fitted model
against the uniform model of the nearest measured latency not above the budget, the predictor's leave-one-out and
held-out errors, and the wall time of the fit. One more fit against the emulated arm64 board checks the flow.

Needs a quiet machine (run it under /work/wt/briefs/wait-quiet or on a dedicated box). Resumable: each case writes
benchmarks/results/fit/<model>-<runtime>-<budget>.json as it finishes and a rerun skips it.

Usage: python benchmarks/fit.py [--work /tmp/fit-bench] [--models transformer,patchtst,fedformer]
                                [--runtimes onnxruntime,tflite] [--budgets 0.7,0.5,0.35] [--epochs N]
                                [--finetune-epochs 1] [--rounds 5] [--smoke]
`--smoke`: illness, one epoch, one model, one runtime, one budget, 2 quick rounds: the script's own check.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "fit"
TOOL = [sys.executable, "-m", "tsprune_edge"]
UNIFORM = "0.25,0.5,0.75"


def run(args: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run([*TOOL, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done


def dense_checkpoint(work: Path, model: str, data: list[str], epochs: list[str]) -> Path:
    out = work / "dense" / model
    if not (out / "model.pt").is_file():
        run(["train", "--model", model, *data, "--preset", "small", *epochs, "--out", str(out)])
    return out / "model.pt"


def dense_p50(work: Path, checkpoint: Path, runtime: str, quick: list[str]) -> float:
    """Dense's p50 from the latency table: a fit asking 1.0001x measures the table (cached) and is refused as
    'nothing to do' only if dense is already within, so read the table file instead."""
    cache = work / "cache"
    tables = sorted(cache.glob(f"desktop-{runtime}-t1-*.json"))
    for table in tables:
        record = json.loads(table.read_text())
        if record["key"]["config"] == _config(checkpoint):
            return next(p["p50_ms"] for p in record["probes"] if p["name"] == "dense")
    # no table yet: a fit at a speedup measures it (and the result is a real case of its own, discarded here)
    run(["fit", str(checkpoint), "--speedup", "1.5", "--runtime", runtime, "--threads", "1", "--max-rounds", "1",
         "--finetune-epochs", "0", *quick, "--cache", str(cache), "--out", str(work / "warm" / runtime /
                                                                               checkpoint.parent.name), "--force"])
    return dense_p50(work, checkpoint, runtime, quick)


def _config(checkpoint: Path) -> dict:
    from tsprune_edge.checkpoint import load_checkpoint

    return json.loads(json.dumps(load_checkpoint(checkpoint).config, default=str))


def case(work: Path, checkpoint: Path, name: str, runtime: str, budget: list[str], finetune: str,
         quick: list[str], device: list[str]) -> dict:
    path = RESULTS / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    out = work / "fits" / name
    start = time.monotonic()
    run(["fit", str(checkpoint), *budget, *device, "--runtime", runtime,
         "--threads", "1", "--finetune-epochs", finetune, "--uniform", UNIFORM, *quick,
         "--cache", str(work / "cache"), "--out", str(out), "--force"])
    wall = time.monotonic() - start
    fit = json.loads((out / "fit.json").read_text())
    chosen = next(c for c in fit["candidates"] if c["round"] == fit["chosen"])
    budget = fit["budget_ms"]
    comparison = fit["comparison"] or {}
    nearest = next((p for p in comparison.get("points", []) if p["name"] == comparison.get("nearest_uniform")), None)
    record = {"case": name, "budget_ms": budget, "status": fit["status"], "p50_ms": chosen["p50_ms"],
              "p50_high_ms": chosen["p50_high_ms"], "within": chosen["p50_high_ms"] <= budget * 1.03,
              "used": chosen["p50_ms"] / budget, "mse": chosen["mse"], "nearest_uniform": nearest,
              "mse_not_worse": comparison.get("mse_not_worse_than_nearest_uniform"),
              "on_pareto_front": comparison.get("on_pareto_front"),
              "leave_one_out": {k: fit["predictor"]["leave_one_out"][k] for k in ("median_abs", "worst_abs")},
              "held_out": {k: fit["predictor"]["held_out_whole_models"][k] for k in ("median_abs", "worst_abs")},
              "table_reused": fit["table"]["reused"], "wall_s": wall, "widths": chosen["widths"]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fit-bench"))
    parser.add_argument("--models", default="transformer,patchtst,fedformer")
    parser.add_argument("--runtimes", default="onnxruntime,tflite")
    parser.add_argument("--budgets", default="0.7,0.5,0.35")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--finetune-epochs", default="1")
    parser.add_argument("--rounds", default="5")
    parser.add_argument("--board", default=None, help="also one fit against this device (e.g. an emulated arm64 "
                        "profile) with --host; correctness of the flow, not its timings")
    parser.add_argument("--host", default=None)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    data = ["--data", "ETTh1", "--pred-len", "96"]
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    quick = ["--rounds", args.rounds]
    models, runtimes, budgets = args.models.split(","), args.runtimes.split(","), [float(b) for b in
                                                                                  args.budgets.split(",")]
    if args.smoke:
        global RESULTS
        RESULTS = args.work / "results"
        data = ["--data", "illness", "--pred-len", "24", "--seq-len", "36", "--label-len", "18"]
        epochs, quick = ["--epochs", "1"], ["--rounds", "2", "--min-time", "0.1", "--min-iters", "10"]
        models, runtimes, budgets = ["transformer"], ["onnxruntime"], [0.7]
    for model in models:
        checkpoint = dense_checkpoint(args.work, model, data, epochs)
        for runtime in runtimes:
            dense_ms = dense_p50(args.work, checkpoint, runtime, quick)
            for share in budgets:
                record = case(args.work, checkpoint, f"{model}-{runtime}-{share:g}", runtime,
                              ["--budget-ms", f"{dense_ms * share:.6f}"], "0" if args.smoke else args.finetune_epochs,
                              quick, ["--device", "desktop"])
                print(json.dumps({k: record[k] for k in ("case", "status", "budget_ms", "p50_ms", "within", "used",
                                                         "mse_not_worse", "wall_s")}))
    if args.board:
        checkpoint = dense_checkpoint(args.work, models[0], data, epochs)  # the board's own dense p50: --speedup
        print(json.dumps(case(args.work, checkpoint, f"{models[0]}-{args.board}", "onnxruntime",
                              ["--speedup", "1.5"], "0", quick, ["--device", args.board, "--host", args.host])))


if __name__ == "__main__":
    main()
