"""How often does the bench call a model faster than itself? The A/A rate of `bench --control` on this machine.

One small dense bundle (DLinear, one epoch on the built-in data, ONNX and TFLite) is benched again and again on
this machine (the desktop profile, the local transport, the real agent) with `--control`: dense against a
byte-different copy of itself. Every run is judged by the report's own code (verdict_rows), and the rate of each
label is counted with a 95% Clopper-Pearson interval. A sound bench calls the control EQUIVALENT; the acceptance
asks that REAL SPEEDUP (a false one here) come out in at most 1% of runs.

Resumable: each run's verdicts are kept in WORK/verdicts/NNNN.json, and a re-run skips the runs done. Runs are
short (few rounds, a small minimum time): the rate is that of short benches on a machine shared with other work.

Usage: nice -n 15 python benchmarks/aa_control.py [--runs 200] [--work runs/aa_control] [--rounds 5]
       [--min-time 0.05] [--min-iters 20] [--deadline 23:00]   (the deadline in UTC: stop starting runs then)
Writes benchmarks/results/aa_control.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

from scipy.stats import binomtest

from tsprune_edge.atomic import write_atomic, write_json_atomic
from tsprune_edge.report.control import control_check
from tsprune_edge.report.stats import EQUIVALENT, LABELS, REAL_SPEEDUP
from tsprune_edge.variants import CONTROL, DENSE

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def make_bundle(work: Path) -> Path:
    """WORK/artifacts holding only the dense bundle of a DLinear trained one epoch (made once)."""
    from tsprune_edge.export.bundle import ExportRequest
    from tsprune_edge.export_job import ExportJob, run_export_job

    artifacts = work / "artifacts"
    if (artifacts / DENSE / "manifest.json").is_file():
        return artifacts
    job = ExportJob(methods=("unstructured",), model="dlinear", epochs=1, finetune_epochs=0)
    run_export_job(job, ExportRequest(), work / "export", work / "checkpoints")
    shutil.rmtree(artifacts, ignore_errors=True)
    shutil.copytree(work / "export" / DENSE, artifacts / DENSE)
    return artifacts


def one_run(artifacts: Path, work: Path, args: argparse.Namespace) -> dict:
    """A real bench with --control (fixed rounds), judged by the report's code: the control's rows."""
    from tsprune_edge.devices.bench import BenchRequest, bench
    from tsprune_edge.report.verdict import verdict_rows

    results = work / "results"
    started = time.monotonic()
    summary = bench(BenchRequest(device="desktop", artifacts=artifacts, results=results, rounds=args.rounds,
                                 max_rounds=args.rounds, min_time=args.min_time, min_iters=args.min_iters,
                                 control=True))
    rows = verdict_rows(results / summary["run_id"])
    controls = [{k: r.get(k) for k in ("format", "runtime", "threads", "paired_rounds", "speedup", "speedup_low",
                                       "speedup_high", "verdict")} for r in rows if r["variant"] == CONTROL]
    return {"run_id": summary["run_id"], "seconds": time.monotonic() - started, "controls": controls,
            "trustworthy": control_check(rows)["trustworthy"]}


def rate(k: int, n: int) -> dict:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return {"count": k, "runs": n, "rate": k / n, "low": ci.low, "high": ci.high}


def summarize(records: list[dict], args: argparse.Namespace) -> dict:
    """Per runtime and over both: the rate of each label, REAL SPEEDUP and any non-EQUIVALENT."""
    settings = sorted({c["format"] for r in records for c in r["controls"]})
    by_format = {}
    for fmt in settings:
        verdicts = [c["verdict"] for r in records for c in r["controls"] if c["format"] == fmt]
        counts = Counter(verdicts)
        by_format[fmt] = {"labels": {label: rate(counts[label], len(verdicts)) for label in
                                     [*LABELS, *sorted(set(counts) - set(LABELS))] if counts[label]},
                          "false_real_speedup": rate(counts[REAL_SPEEDUP], len(verdicts)),
                          "not_equivalent": rate(len(verdicts) - counts[EQUIVALENT], len(verdicts))}
    n = len(records)
    any_real = sum(any(c["verdict"] == REAL_SPEEDUP for c in r["controls"]) for r in records)
    flagged = sum(r["trustworthy"] is False for r in records)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
    return {"machine": machine(), "commit": commit.stdout.strip(), "date": dt.datetime.now(dt.UTC).isoformat(),
            "settings": {"device": "desktop", "transport": "local", "model": "dlinear (1 epoch, built-in data)",
                         "rounds": args.rounds, "max_rounds": args.rounds, "min_time_s": args.min_time,
                         "min_iters": args.min_iters, "runs_asked": args.runs, "niced": "nice -n 15"},
            "runs": n, "median_run_s": sorted(r["seconds"] for r in records)[n // 2] if n else None,
            "by_format": by_format, "run_any_false_real_speedup": rate(any_real, n) if n else None,
            "run_flagged": rate(flagged, n) if n else None,
            "per_run": [{"run_id": r["run_id"], **{c["format"]: [c["speedup"], c["speedup_low"], c["speedup_high"],
                                                             c["verdict"]] for c in r["controls"]}}
                        for r in records]}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    return {"cpu": cpu, "cores": len(__import__("os").sched_getaffinity(0)), "python": platform.python_version(),
            "platform": platform.platform()}


def pct(r: dict) -> str:
    return f"{r['rate']:.1%} [{r['low']:.1%}, {r['high']:.1%}] ({r['count']}/{r['runs']})"


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = ["# A/A control: dense against a byte-different copy of itself", "",
             f"`python benchmarks/aa_control.py` at commit {result['commit']}, {result['date'][:16]} UTC, on "
             f"{result['machine']['cpu']} ({result['machine']['cores']} cores, shared with other work), "
             f"{result['machine']['platform']}.", "",
             f"{result['runs']} runs of `tsprune-edge bench --control` (device {s['device']}, {s['transport']} "
             f"transport, real agent), {s['model']}, ONNX Runtime and LiteRT, 1 thread; --rounds {s['rounds']} "
             f"--max-rounds {s['max_rounds']} (fixed rounds) --min-time {s['min_time_s']} --min-iters "
             f"{s['min_iters']}; median {result['median_run_s']:.0f} s per run, run {s['niced']}. Each run judged by "
             "the report's own code (verdict_rows); rates with 95% Clopper-Pearson intervals.", "",
             "| runtime | false REAL SPEEDUP | not EQUIVALENT (flagged) |", "|---|---|---|"]
    for fmt, found in result["by_format"].items():
        lines.append(f"| {fmt} | {pct(found['false_real_speedup'])} | {pct(found['not_equivalent'])} |")
    lines += ["", f"Runs with a false REAL SPEEDUP in either runtime: {pct(result['run_any_false_real_speedup'])}; "
              f"runs the report flags (a control not EQUIVALENT): {pct(result['run_flagged'])}. Acceptance: false "
              "REAL SPEEDUP at most 1%.", "", "Every label, per runtime:", "", "| runtime | label | rate |",
              "|---|---|---|"]
    for fmt, found in result["by_format"].items():
        lines += [f"| {fmt} | {label} | {pct(r)} |" for label, r in found["labels"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--work", type=Path, default=HERE.parent / "runs" / "aa_control")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.05)
    parser.add_argument("--min-iters", type=int, default=20)
    parser.add_argument("--deadline", default=None, help="HH:MM UTC: start no run after it")
    parser.add_argument("--summarize", action="store_true", help="only write the results of the runs done")
    args = parser.parse_args()
    verdicts = args.work / "verdicts"
    verdicts.mkdir(parents=True, exist_ok=True)
    artifacts = make_bundle(args.work)
    deadline = None
    if args.deadline:
        hour, minute = map(int, args.deadline.split(":"))
        deadline = dt.datetime.now(dt.UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    for number in range(1, args.runs + 1):
        path = verdicts / f"{number:04d}.json"
        if args.summarize or path.is_file():
            continue
        if deadline and dt.datetime.now(dt.UTC) >= deadline:
            print(f"deadline {args.deadline} UTC reached before run {number}")
            break
        record = one_run(artifacts, args.work, args)
        write_json_atomic(path, record)
        print(f"run {number}: {record['seconds']:.0f} s, " + ", ".join(
            f"{c['format']} {c['speedup']:.3f} [{c['speedup_low']:.3f}, {c['speedup_high']:.3f}] {c['verdict']}"
            if c["speedup"] else f"{c['format']} {c['verdict']}" for c in record["controls"]), flush=True)
    records = [json.loads(p.read_text()) for p in sorted(verdicts.glob("*.json"))]
    result = summarize(records, args)
    write_json_atomic(RESULTS / "aa_control.json", result)
    write_atomic(RESULTS / "aa_control.md", lambda handle: handle.write(markdown(result).encode()))
    print((RESULTS / "aa_control.md").read_text())


if __name__ == "__main__":
    main()
