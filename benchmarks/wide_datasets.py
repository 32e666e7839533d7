"""Wide datasets: seconds per training epoch, peak memory and an ONNX export for each model at the small preset,
on files in the published format of electricity (321 variables, 26304 hourly rows) and traffic (862 variables,
17544 rows), seq_len 96, pred_len 96, features M.

The real files are not redistributable here, so the benchmark writes files of the same shape and date format
(`tsprune_edge.data.synthetic.write_wide_csv`). Each (model, width) runs in a fresh process so its peak resident
memory (ru_maxrss) is its own: the CSV read, the scaled splits, `--steps` training steps at the model's published
batch size after 2 warm-up steps, then an ONNX export of the model validated against torch (the bundle's samples
and test split included). Seconds per epoch are extrapolated from the median step times the steps in one epoch:
full epochs at these widths would take hours on a 2-core CPU. Both wall and CPU seconds are recorded; on a shared
machine the wall figure is inflated by other work, the CPU figure much less.

The CLI pass (`--cli-pass`) carries every registered model, at each width, through the real command line on a
short file of the same columns and date format (CLI_ROWS rows: the width is what export and bench scale with):
`train --epochs 1`, `export` (ONNX and TFLite, dense and one pruned variant) and `bench --device desktop --accuracy`,
each stage in its own child process whose exit code, wall and CPU seconds and peak memory are recorded, with the
artifacts' sizes and errors, the test split's shape and the board's test MSE beside torch's. Each combination is
saved as it finishes; a second run skips those that passed or were refused (resumable).

Usage: nice python benchmarks/wide_datasets.py [--models dlinear,itransformer,patchtst] [--steps 5]
       nice python benchmarks/wide_datasets.py --cli-pass [--models all] [--pause-while /tmp/QUIET]
       nice python benchmarks/wide_datasets.py --step-check transformer,informer,autoformer,fedformer,crossformer
       python benchmarks/wide_datasets.py --report   (re-render the Markdown from the JSON files)
Writes benchmarks/results/wide_datasets.{json,md} (the CLI pass under "cli_pass") and wide_datasets_step_check.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WIDTHS = {"electricity": (321, 26304), "traffic": (862, 17544)}
# PatchTST runs every variable as its own series: at its published batch of 128 windows, 862 variables would need about
# 12 GiB (4.6 GiB measured at 321, times 862/321), over half of this shared 23 GiB machine. It is measured at 32.
SMALLER_BATCH = {("patchtst", 862): 32}


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "load_average_at_start": os.getloadavg(), "python": platform.python_version(), "torch": torch.__version__}


def measure(model_name: str, csv: Path, steps: int) -> dict:
    """One model on one wide file, in this process: training steps, then an ONNX bundle."""
    import torch

    from tsprune_edge.checkpoint import make_checkpoint, save_checkpoint
    from tsprune_edge.data import WindowSpec, load_forecast_data
    from tsprune_edge.export.bundle import ExportRequest, write_bundles
    from tsprune_edge.models import create_model, model_entry, resolve_config

    cfg = resolve_config(model_name, "small", pred_len=96)
    started = time.perf_counter()
    data = load_forecast_data(str(csv), WindowSpec(cfg.seq_len, cfg.label_len, 96))
    load_seconds = time.perf_counter() - started
    width = len(data.columns)
    torch.manual_seed(0)
    model = create_model(model_name, "small", pred_len=96, enc_in=width, c_out=width,
                         calendar_features=data.calendar_names).train()
    schedule = model_entry(model_name).schedule
    batch_size = SMALLER_BATCH.get((model_name, width), schedule.batch_size)
    optimiser = torch.optim.Adam(model.parameters(), lr=schedule.lr)
    batches = data.batches("train", batch_size, shuffle=True, rng=np.random.default_rng(0))
    wall, cpu = [], []
    for step in range(steps + 2):
        history, calendar, target = next(batches)
        w0, c0 = time.perf_counter(), time.process_time()
        optimiser.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(history, calendar), target).backward()
        optimiser.step()
        if step >= 2:
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
    train_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    per_epoch = -(-data.n_windows("train") // batch_size)
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "model.pt"
        save_checkpoint(make_checkpoint(model, data.describe(), data.scaling(), {"preset": "small"}), checkpoint)
        started = time.perf_counter()
        manifest = write_bundles(Path(tmp) / "export", {"dense": checkpoint}, ExportRequest(formats=("onnx",)))["dense"]
        export_seconds = time.perf_counter() - started
    onnx = manifest["artifacts"]["onnx"]
    return {"model": model_name, "variables": width, "train_windows": data.n_windows("train"),
            "batch_size": batch_size, "published_batch_size": schedule.batch_size,
            "parameters": sum(p.numel() for p in model.parameters()), "timed_steps": steps,
            "load_seconds": round(load_seconds, 1),
            "wall_seconds_per_step": round(float(np.median(wall)), 4),
            "cpu_seconds_per_step": round(float(np.median(cpu)), 4), "steps_per_epoch": per_epoch,
            "wall_seconds_per_epoch_extrapolated": round(float(np.median(wall)) * per_epoch, 1),
            "cpu_seconds_per_epoch_extrapolated": round(float(np.median(cpu)) * per_epoch, 1),
            "peak_rss_mib_training": round(train_rss / 1024),
            "export_seconds": round(export_seconds, 1), "onnx_bytes": onnx["bytes"],
            "onnx_max_abs_error": max(v["max_abs_error"] for v in onnx["validation"]),
            "test_split_bytes": manifest["test_split"]["bytes"],
            "peak_rss_mib_with_export": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def step_check(models: list[str]) -> list[dict]:
    """Does each model train at these widths at all? One forward and backward pass on 4 random windows per
    (model, width), in one process: CPU seconds and the process's peak memory so far (it only grows)."""
    import torch

    from tsprune_edge.models import create_model, resolve_config

    rows = []
    for name in models:
        for width, _ in WIDTHS.values():
            cfg = resolve_config(name, "small", pred_len=96)
            torch.manual_seed(0)
            model = create_model(name, "small", pred_len=96, enc_in=width, c_out=width,
                                 calendar_features=("month", "day", "weekday", "hour"))
            history, calendar = torch.randn(4, cfg.seq_len, width), torch.rand(4, cfg.seq_len + 96, 4)
            started = time.process_time()
            model(history, calendar).pow(2).mean().backward()
            rows.append({"model": name, "variables": width, "windows": 4,
                         "cpu_seconds": round(time.process_time() - started, 2),
                         "peak_rss_mib_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


RESULTS = HERE / "results" / "wide_datasets.json"
CLI_ROWS = 1000  # the fewest rows whose 70/10/20 validation split still holds one 96 + 96 window (100 + 96 >= 192)
BENCH_FAST = ("--rounds", "1", "--max-rounds", "1", "--min-time", "0.05", "--min-iters", "3")  # correctness, not timing
DONE = ("passed", "refused")  # a resumed CLI pass skips these; a failed combination runs again


def run_stage(args: list[str], env: dict, pause_while: Path | None = None) -> dict:
    """One CLI command in its own child: exit code, wall and CPU seconds, peak resident memory (the child's and its
    own children's, from wait4) and the last line it wrote to stderr (a refusal's one line). It starts only once
    `pause_while` does not exist: on a shared machine, another job's timing window."""
    while pause_while is not None and pause_while.exists():
        time.sleep(20)
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "tsprune_edge", *args], stdout=subprocess.DEVNULL,
                                 stderr=err, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
    return {"rc": child.returncode, "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024), "last_line": lines[-1] if lines else ""}


def cli_outcome(run: Path, export: Path, results: Path) -> dict:
    """What a passed combination produced: the dense bundle's signature, artifacts, samples and test split as
    written, and each artifact's test MSE on the desktop agent beside torch's."""
    metrics = json.loads((run / "metrics.json").read_text())
    manifest = json.loads((export / "dense" / "manifest.json").read_text())
    with np.load(export / "dense" / "samples.npz") as samples, np.load(export / "dense" / "test.npz") as test:
        shapes = {"samples_history": list(samples["history"].shape),
                  "samples_expected": list(samples["expected"].shape), "test_values": list(test["values"].shape)}
    artifacts = {fmt: {"bytes": a["bytes"], "max_abs_error": max(v["max_abs_error"] for v in a["validation"]),
                       "inputs": {i["name"]: i["shape"] for i in a.get("inputs", [])},
                       "outputs": {o["name"]: o["shape"] for o in a.get("outputs", [])}}
                 for fmt, a in manifest["artifacts"].items()}
    from tsprune_edge.devices.runs import finished_runs, read_bench

    (bench_run,) = finished_runs(results)
    items = read_bench(bench_run)["items"]
    board = [{"bundle": i["bundle"], "format": i["format"], "correct": i["correct"], **i.get("accuracy", {})}
             for i in items if not i["probe"]]
    return {"parameters": metrics["parameters"], "train_batch_size": metrics["training"]["schedule"]["batch_size"],
            "train_seconds": metrics["training"]["seconds_total"],
            "torch_test": {k: metrics["test"][k] for k in ("mse", "windows")},
            "artifacts": artifacts, "test_split_bytes": manifest["test_split"]["bytes"], **shapes, "board": board}


def cli_pass_one(model: str, csv: Path, work: Path, env: dict, pause_while: Path | None) -> dict:
    """`train --epochs 1`, `export` and `bench --accuracy` of one model on one wide file, through the CLI; stops at
    the first stage that does not exit 0 (exit 2 with an `error:` line is a refusal)."""
    run, export, results = work / "run", work / "export", work / "results"
    commands = {
        "train": ["train", "--model", model, "--data", str(csv), "--epochs", "1", "--out", str(run)],
        "export": ["export", "--checkpoint", str(run / "model.pt"), "--method", "unstructured", "--finetune-epochs",
                   "0", "--out", str(export), "--runs", str(work / "runs")],
        "bench": ["bench", "--device", "desktop", "--accuracy", "--artifacts", str(export), "--results", str(results),
                  *BENCH_FAST],
    }
    row: dict = {"model": model, "stages": {}}
    for stage, args in commands.items():
        result = row["stages"][stage] = run_stage(args, env, pause_while)
        print(f"   {stage}: {json.dumps(result)}", file=sys.stderr, flush=True)
        if result["rc"] != 0:
            refused = result["rc"] == 2 and result["last_line"].startswith("error:")
            return {**row, "status": "refused" if refused else "failed", "stage": stage}
    return {**row, "status": "passed", **cli_outcome(run, export, results)}


def cli_pass(models: list[str], pause_while: Path | None) -> None:
    """Every (model, width) not yet passed or refused, each saved into RESULTS as soon as it finishes."""
    from tsprune_edge.atomic import write_json_atomic
    from tsprune_edge.data.synthetic import write_wide_csv

    result = json.loads(RESULTS.read_text())
    record = result.setdefault("cli_pass", {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                            "machine": machine(), "rows_in_file": CLI_ROWS, "rows": []})
    done = {(r["model"], r["variables"]) for r in record["rows"] if r["status"] in DONE}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TSPRUNE_EDGE_DEVICES_DIR": str(Path(tmp) / "profiles")}
        files = {file: write_wide_csv(Path(tmp) / f"{file}.csv", variables, CLI_ROWS)
                 for file, (variables, _) in WIDTHS.items()}
        for name in models:  # model by model, in the order given: both widths of a model finish together
            for file, (variables, _) in WIDTHS.items():
                if (name, variables) in done:
                    continue
                csv = files[file]
                print(f"== {name} at {variables} variables", file=sys.stderr, flush=True)
                row = {"file": file, "variables": variables, "commit": commit(),
                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
                       **cli_pass_one(name, csv, Path(tmp) / f"{name}-{variables}", env, pause_while)}
                record["rows"] = [r for r in record["rows"] if (r["model"], r["variables"]) != (name, variables)]
                record["rows"].append(row)
                write_json_atomic(RESULTS, result)
                RESULTS.with_suffix(".md").write_text(render(result))


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=HERE).stdout.strip()


def render(result: dict) -> str:
    m = result["machine"]
    lines = [f"# Wide datasets: time per epoch and peak memory ({result['date']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, torch {m['torch']} "
             f"({m['torch_threads']} threads), Python {m['python']}; load average at start "
             f"{', '.join(f'{x:.1f}' for x in m['load_average_at_start'])} (a shared machine: wall times are "
             f"inflated by other work, CPU times much less). Commit {result['commit']}.", "",
             "Small preset, seq_len 96, pred_len 96, features M, each model's published batch size except PatchTST "
             "at 862 variables (32, not 128: see SMALLER_BATCH in the script). Files written in "
             "the published format (same shape and date format; values synthetic). Seconds per epoch: the median of "
             f"{result['timed_steps']} training steps after 2 warm-up steps, times the steps in one epoch "
             "(extrapolated, not a full epoch). Peak memory: the process's maximum resident set (ru_maxrss), "
             "CSV read and scaled splits included; the export column adds the ONNX export and its validation.", "",
             "| file | variables | model | params | batch | steps/epoch | CPU s/step | wall s/step | CPU s/epoch "
             "| wall s/epoch | peak MiB (train) | peak MiB (with export) | export s | ONNX KB | max error |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['file']} | {r['variables']} | {r['model']} | refused or failed: {r['error']} |"
                         + " |" * 11)
            continue
        lines.append(f"| {r['file']} | {r['variables']} | {r['model']} | {r['parameters']:,} | {r['batch_size']} "
                     f"| {r['steps_per_epoch']} | {r['cpu_seconds_per_step']} | {r['wall_seconds_per_step']} "
                     f"| {r['cpu_seconds_per_epoch_extrapolated']} | {r['wall_seconds_per_epoch_extrapolated']} "
                     f"| {r['peak_rss_mib_training']} | {r['peak_rss_mib_with_export']} | {r['export_seconds']} "
                     f"| {r['onnx_bytes'] / 1000:.0f} | {r['onnx_max_abs_error']:.1e} |")
    checked = HERE / "results" / "wide_datasets_step_check.json"
    if checked.is_file():
        check = json.loads(checked.read_text())
        lines += ["", f"The other models, one training step each ({check['date']}, same machine): forward and backward "
                  "on 4 random windows at the small preset. It shows they train at these widths; it is not a time "
                  "per epoch. Peak memory is the checking process's maximum so far.", "",
                  "| model | variables | CPU s (4 windows) | peak MiB so far |", "|---|---:|---:|---:|"]
        lines += [f"| {r['model']} | {r['variables']} | {r['cpu_seconds']} | {r['peak_rss_mib_so_far']} |"
                  for r in check["rows"]]
    if "cli_pass" in result:
        lines += ["", *render_cli_pass(result["cli_pass"])]
    return "\n".join(lines) + "\n"


def render_cli_pass(record: dict) -> list[str]:
    """The CLI pass as a table: one row per (model, width), stages as wall / CPU seconds and peak MiB."""
    m = record["machine"]
    lines = [f"## Every model through the CLI at full width (started {record['started']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, torch {m['torch']}; each row notes "
             "its commit and the load average when it started (a shared machine: wall times are inflated by other "
             "work, and by the time a stage was held stopped while another job timed; CPU times are not). "
             f"A file of {record['rows_in_file']} rows in the published format (same columns and hourly dates) per "
             "width: `train --epochs 1` at the small preset and the model's published batch size, `export` "
             "(ONNX and TFLite; dense, unstructured-0.5 without fine-tuning, and the per-call probe) and "
             f"`bench --device desktop --accuracy {' '.join(BENCH_FAST)}`, each in its own process. Stage cells: "
             "wall s / CPU s / peak MiB (ru_maxrss of the command and its children). Max error: the dense "
             "artifact against torch on the sample windows. MSE: the dense model's test split, torch in `train` "
             "and the desktop agent on each artifact in `bench --accuracy`.", "",
             "| variables | model | status | batch | train | export | bench | ONNX KB | TFLite KB "
             "| max error ONNX / TFLite | test.npz | torch MSE | board MSE ONNX / TFLite | commit | load |",
             "|---:|---|---|---:|---|---|---|---:|---:|---|---|---:|---|---|---|"]
    for r in sorted(record["rows"], key=lambda r: (r["variables"], r["model"])):
        cells = [" / ".join(str(st[k]) for k in ("wall_s", "cpu_s", "peak_rss_mib")) for st in r["stages"].values()]
        cells += [""] * (3 - len(cells))
        head = f"| {r['variables']} | {r['model']} | {r['status']}"
        tail = f"| {r['commit']} | {', '.join(map(str, r['load_average_at_start']))} |"
        if r["status"] != "passed":
            why = r["stages"][r["stage"]]["last_line"].replace("|", "\\|")
            lines.append(f"{head} at {r['stage']}: {why} | | {' | '.join(cells)} | | | | | | {tail}")
            continue
        art = r["artifacts"]
        dense = {b["format"]: b for b in r["board"] if b["bundle"] == "dense"}
        lines.append(f"{head} | {r['train_batch_size']} | {' | '.join(cells)} | {art['onnx']['bytes'] / 1000:.0f} "
                     f"| {art['tflite']['bytes'] / 1000:.0f} "
                     f"| {art['onnx']['max_abs_error']:.1e} / {art['tflite']['max_abs_error']:.1e} "
                     f"| {' x '.join(map(str, r['test_values']))} | {r['torch_test']['mse']:.4f} "
                     f"| {dense['onnx']['mse']:.4f} / {dense['tflite']['mse']:.4f} {tail}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="dlinear,itransformer,patchtst")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "CSV"), help=argparse.SUPPRESS)
    parser.add_argument("--report", action="store_true", help="re-render the Markdown from the JSON only")
    parser.add_argument("--step-check", default=None, help="comma-separated models: one training step at each width "
                        "instead of the timing (written to results/wide_datasets_step_check.json)")
    parser.add_argument("--cli-pass", action="store_true", help="carry --models (all: every registered model) "
                        "through train, export and bench at each width, resuming where the last pass stopped")
    parser.add_argument("--pause-while", type=Path, default=None, help="CLI pass: start no stage while this file "
                        "exists (another job's timing window on a shared machine, e.g. /tmp/QUIET)")
    args = parser.parse_args()
    if args.cli_pass:
        from tsprune_edge.models import available_models

        cli_pass(available_models() if args.models == "all" else args.models.split(","), args.pause_while)
        return
    if args.step_check:
        from tsprune_edge.atomic import write_json_atomic

        write_json_atomic(HERE / "results" / "wide_datasets_step_check.json",
                          {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "rows": step_check(args.step_check.split(","))})
        return
    if args.report:
        result = json.loads(RESULTS.read_text())
        RESULTS.with_suffix(".md").write_text(render(result))
        return
    if args.one:
        print(json.dumps(measure(args.one[0], Path(args.one[1]), args.steps)))
        return

    from tsprune_edge.atomic import write_json_atomic
    from tsprune_edge.data.synthetic import write_wide_csv

    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit(), "machine": machine(),
              "timed_steps": args.steps, "rows": []}
    if RESULTS.is_file() and "cli_pass" in (earlier := json.loads(RESULTS.read_text())):
        result["cli_pass"] = earlier["cli_pass"]  # a new timing keeps the CLI pass
    with tempfile.TemporaryDirectory() as tmp:
        for file, (variables, rows) in WIDTHS.items():
            csv = write_wide_csv(Path(tmp) / f"{file}.csv", variables, rows)
            for name in args.models.split(","):
                print(f"== {name} on {file} ({variables} variables)", file=sys.stderr, flush=True)
                run = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--one", name, str(csv)],
                                     capture_output=True, text=True)
                row = {"file": file, "variables": variables, "rows_in_file": rows}
                if run.returncode == 0:
                    row.update(json.loads(run.stdout.strip().splitlines()[-1]))
                else:
                    row.update(model=name, error=(run.stderr.strip().splitlines() or ["?"])[-1])
                result["rows"].append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    write_json_atomic(RESULTS, result)
    RESULTS.with_suffix(".md").write_text(render(result))


if __name__ == "__main__":
    main()
