"""How precise is the board agent? Two numbers on this desktop, for the small Transformer's dense artifacts:

1. Repeatability: the agent's median latency over 5 separate invocations (fresh process each) on the same artifact;
   goal: spread (max - min) / median <= 2%.
2. Overhead: the agent's mean per-iteration latency against a bare loop timing the same runtime call in bulk
   (one perf_counter pair around N calls, same process setup); goal <= 1%. The two alternate five times each
   (agent, bare, agent, ...) so drift hits both.

Usage: python benchmarks/harness_precision.py [--work /tmp/harness-precision] [--min-time 2]
Writes benchmarks/results/harness_precision.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from train_baselines import machine

HERE = Path(__file__).resolve().parent
AGENT = HERE.parent / "devices" / "agent.py"
RESULTS = HERE / "results"
REPEATS = 5
RUNTIMES = {"onnx": "onnxruntime", "tflite": "ai_edge_litert"}

BARE_LOOP = r"""
import json, sys, time
import numpy as np
bundle, fmt, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3])
samples = np.load(bundle + "/samples.npz")
history, calendar = samples["history"][:1], samples["calendar"][:1]
if fmt == "onnx":
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(bundle + "/model.onnx", options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feed = dict(zip(names, (history, calendar)))
    call = lambda: session.run(None, feed)
else:
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=bundle + "/model.tflite", num_threads=1)
    runner = interpreter.get_signature_runner()
    names = interpreter.get_signature_list()["serving_default"]["inputs"]
    feed = dict(zip(names, (history, calendar)))
    call = lambda: runner(**feed)
for _ in range(max(iterations // 10, 50)):
    call()
start = time.perf_counter()
for _ in range(iterations):
    call()
print(json.dumps({"mean_s": (time.perf_counter() - start) / iterations}))
"""


def make_bundle(work: Path) -> Path:
    from tsprune_edge.export.bundle import ExportRequest, write_bundles
    from tsprune_edge.workflow import train_to_dir

    dense = work / "dense" / "model.pt"
    if not dense.is_file():
        train_to_dir(model="transformer", data="synthetic", pred_len=96, preset="small", epochs=1, out=dense.parent)
    if not (work / "export" / "dense" / "manifest.json").is_file():
        write_bundles(work / "export", {"dense": dense}, ExportRequest())
    return work / "export" / "dense"


def agent_measure(bundle: Path, fmt: str, min_time: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run([sys.executable, str(AGENT), "measure", "--bundle", str(bundle), "--format", fmt, "--runtime",
                        RUNTIMES[fmt], "--threads", "1", "--min-time", str(min_time), "--min-iters", "100",
                        "--out", str(out)], check=True, capture_output=True)
        result = json.loads(out.read_text())
    return {"p50_s": result["latency"]["p50"], "mean_s": result["latency"]["mean"], "n": result["latency"]["n"]}


def bare_loop(bundle: Path, fmt: str, iterations: int) -> float:
    done = subprocess.run([sys.executable, "-c", BARE_LOOP, str(bundle), fmt, str(iterations)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["mean_s"]


def run(work: Path, min_time: float) -> dict:
    bundle = make_bundle(work)
    formats = {}
    for fmt in RUNTIMES:
        agent, bare = [], []
        for _ in range(REPEATS):
            agent.append(agent_measure(bundle, fmt, min_time))
            bare.append(bare_loop(bundle, fmt, agent[-1]["n"]))
        p50s = [a["p50_s"] for a in agent]
        median = statistics.median(p50s)
        overheads = [a["mean_s"] / b - 1 for a, b in zip(agent, bare, strict=True)]
        formats[fmt] = {
            "runtime": RUNTIMES[fmt], "agent": agent, "bare_mean_s": bare,
            "p50_median_s": median, "p50_spread": (max(p50s) - min(p50s)) / median,
            "overhead_each": overheads, "overhead_median": statistics.median(overheads),
        }
        print(f"{fmt}: spread {formats[fmt]['p50_spread']:.2%}, overhead {formats[fmt]['overhead_median']:+.2%}",
              file=sys.stderr)
    return {"machine": machine(), "min_time": min_time, "repeats": REPEATS, "formats": formats}


def render(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Harness precision: the board agent on this desktop",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}. Artifacts: the small Transformer's dense "
        f"bundle (synthetic data), 1 thread, batch 1; {result['repeats']} agent invocations of >= "
        f"{result['min_time']:g} s each, each followed by a bare loop of as many calls.",
        "",
        "| format | runtime | agent p50 per invocation (ms) | spread of p50 | goal | agent mean / bare loop - 1 "
        "(median of 5) | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for fmt, f in result["formats"].items():
        p50s = ", ".join(f"{a['p50_s'] * 1e3:.4f}" for a in f["agent"])
        lines.append(f"| {fmt} | {f['runtime']} | {p50s} | {f['p50_spread']:.2%} | "
                     f"{'met' if f['p50_spread'] <= 0.02 else 'not met'} (<= 2%) | {f['overhead_median']:+.2%} | "
                     f"{'met' if abs(f['overhead_median']) <= 0.01 else 'not met'} (<= 1%) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/harness-precision"))
    parser.add_argument("--min-time", type=float, default=2.0)
    args = parser.parse_args()
    result = run(args.work, args.min_time)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "harness_precision.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "harness_precision.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
