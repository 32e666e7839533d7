"""The README's main job, run exactly as a user runs it: `tsprune-edge pipeline` from the installed CLI in a fresh
folder, with nothing else given. Writes benchmarks/results/main_job.{json,md}: the machine, the commit, the command,
the answer lines it printed, dense and pruned test MSE (torch and the board's), and per runtime the speedup with its
95% interval and both labels, read from the run's own report. README's Quick start quotes this file
(tests/test_readme_figures.py checks every quoted figure).

    .venv/bin/python benchmarks/main_job.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
COMMAND = ["tsprune-edge", "pipeline"]  # the README's main job, on the built-in default
# a line of report.cells.answer_lines: "variant, format (runtime), N threads: headline"
ANSWER = re.compile(r"^\S+, \S+ \(.*\), \d+ threads?: ")
ROW_KEYS = ("format", "runtime", "threads", "rounds", "speedup", "speedup_low", "speedup_high", "verdict",
            "predicted_speedup", "torch_mse", "board_mse", "mse_change", "mse_change_low", "mse_change_high",
            "accuracy_label", "accuracy_source", "headline")


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else None
    return {"system": platform.system(), "arch": platform.machine(), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "load_average_before": list(os.getloadavg())}


def commit() -> dict:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    return {"commit": head, "dirty": dirty}


def run(folder: Path) -> dict:
    """Run the main job in `folder` (its runs/ land there) and read back what it printed and wrote."""
    cli = Path(sys.executable).parent / COMMAND[0]
    started = time.perf_counter()
    done = subprocess.run([str(cli), *COMMAND[1:]], cwd=folder, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "100"})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"error: the main job failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    out = folder / "runs" / "pipeline"
    rows = json.loads((out / "report" / "report.json").read_text())["rows"]
    answer = [line for line in done.stdout.splitlines() if ANSWER.match(line)]
    variants: dict[str, dict] = {}
    for row in rows:
        if row["variant"] in ("dense", "percall") or not row.get("headline"):
            continue
        variants.setdefault(row["variant"], {})[row["format"]] = {k: row.get(k) for k in ROW_KEYS}
    pruning = {name: json.loads((out / name / "pruning.json").read_text()) for name in variants}
    name = next(iter(pruning))
    test = pruning[name]["test"]
    dense, pruned = test["dense"]["mse"], (test["finetuned"] or test["pruned"])["mse"]
    return {"seconds": round(seconds, 1), "stdout": done.stdout, "answer": answer, "variants": variants,
            "test_mse": {"variant": name, "dense": dense, "pruned": pruned, "change": pruned / dense - 1,
                         "dense_before_finetune": test["source"]["mse"],
                         "pruned_before_finetune": test["pruned"]["mse"]},
            "training": pruning[name]["training_budget"]["comparison"],
            "finetune": pruning[name]["request"]}


def markdown(result: dict) -> str:
    mse = result["test_mse"]
    lines = [
        "# The main job (README Quick start)", "",
        f"`{' '.join(result['command'])}` from the installed CLI in a fresh folder, commit "
        f"{result['commit']['commit'][:7]}{' (dirty tree)' if result['commit']['dirty'] else ''}, "
        f"{result['date']}, on {result['machine']['cpu']} ({result['machine']['cores']} cores, "
        f"load average {result['machine']['load_average_before'][0]:.1f} before), {result['seconds']:.0f} s.", "",
        "The answer it printed first:", "", "```", *result["answer"], "```", "",
        f"Test MSE after the same training ({result['training']}): dense {mse['dense']:.4f}, {mse['variant']} "
        f"{mse['pruned']:.4f} ({mse['change']:+.1%}); before fine-tuning dense {mse['dense_before_finetune']:.4f}, "
        f"pruned one-shot {mse['pruned_before_finetune']:.4f}.", "",
        "| variant | format | runtime | speedup [95%] | predicted | label | MSE change [95%] (source) | accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, formats in result["variants"].items():
        for fmt, r in formats.items():
            lines.append(f"| {name} | {fmt} | {r['runtime']} | {r['speedup']:.2f}x [{r['speedup_low']:.2f}, "
                         f"{r['speedup_high']:.2f}] | {r['predicted_speedup']:.2f}x | {r['verdict']} | "
                         f"{r['mse_change']:+.1%} [{r['mse_change_low']:+.1%}, {r['mse_change_high']:+.1%}] "
                         f"({r['accuracy_source']}) | {r['accuracy_label']} |")
    return "\n".join(lines) + "\n\nWritten by `benchmarks/main_job.py`.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this new folder and keep it (default: a temp folder)")
    args = parser.parse_args()
    info = {"command": COMMAND, "machine": machine(), "commit": commit(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.keep:
        args.keep.mkdir(parents=True)
        result = run(args.keep)
    else:
        folder = Path(tempfile.mkdtemp(prefix="main_job-"))
        try:
            result = run(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    result = {**info, **result}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "main_job.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "main_job.md").write_text(markdown(result))
    print("\n".join(result["answer"]))


if __name__ == "__main__":
    main()
