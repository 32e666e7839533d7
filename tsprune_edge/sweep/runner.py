"""Driving a sweep: compute cells on the executor as their inputs become ready, then one bench per model (alone on
the machine, so that no training shares the cores with a measurement), then the report over every model.

Each finished cell's files are written atomically and then its marker `cells/<id>.json`; a cell with a marker is
never redone. A cell that fails leaves its error in `cells/<id>.error.json`, its dependants are not run, the others
go on, and the next run of the same command retries it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tsprune_edge.atomic import write_atomic, write_json_atomic
from tsprune_edge.errors import ToolError, UserError
from tsprune_edge.sweep.executors import Executor
from tsprune_edge.sweep.spec import (
    DENSE_FINETUNED,
    Cell,
    SweepSpec,
    dense_checkpoint,
    expand,
    export_dir,
    load_or_write_spec,
    model_dir,
    results_dir,
)
from tsprune_edge.variants import DENSE, PROBE_VARIANT


def marker(out: Path, cell: Cell) -> Path:
    return Path(out) / "cells" / f"{cell.id}.json"


def error_file(out: Path, cell: Cell) -> Path:
    return Path(out) / "cells" / f"{cell.id}.error.json"


def read_marker(out: Path, cell: Cell) -> dict | None:
    """The cell's marker, or None while the cell is not finished. A marker truncated by a full disk or edited by
    hand would otherwise end the resume in a traceback (or pass a missing file as finished): it is one line."""
    path = marker(out, cell)
    if not path.is_file():
        return None
    problem = None
    try:
        record = json.loads(path.read_bytes())
    except ValueError:  # also bytes that are not UTF-8
        record, problem = None, "not JSON, perhaps truncated"
    if problem is None:
        problem = _marker_problem(record, cell)
    if problem:
        raise UserError(f"{path} is damaged ({problem}); delete it and run the same command again to redo "
                        f"{cell.id}")
    return record


def _marker_problem(record, cell: Cell) -> str | None:
    """What is wrong with a parsed marker, as `_store` and `_bench` write them, or None."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a record"
    if record.get("cell") != cell.id:
        return f"its cell is {record.get('cell')!r}, not {cell.id!r}"
    if cell.kind != "bench":
        files = record.get("files")
        if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            return "files is not a record of names and sha256 sums"
        return None
    run_id = record.get("run_id")
    if not isinstance(run_id, str) or run_id in ("", ".", "..") or Path(run_id).name != run_id:
        return f"run_id {run_id!r} is not a run folder's name"
    bundles = record.get("bundles")
    if not isinstance(bundles, list) or not all(isinstance(b, str) for b in bundles):
        return "bundles is not a list of bundle names"
    return None


def cell_dirs(cell: Cell) -> list[Path]:
    """The folders a cell owns: cleared before its files are written, so nothing of an earlier attempt stays."""
    if cell.kind == "train":
        return [model_dir(cell.model, DENSE), model_dir(cell.model, DENSE_FINETUNED)]
    if cell.variant == DENSE:
        return [export_dir(cell.model) / DENSE, export_dir(cell.model) / PROBE_VARIANT]
    return [model_dir(cell.model, cell.variant), export_dir(cell.model) / cell.variant]


def run_sweep(spec: SweepSpec, out: Path, make_executor: Callable[[], Executor],
              console: Console | None = None) -> dict:
    """Run (or resume) the sweep in `out`; returns {"cells", "skipped", "ran", "failed", "runs"}."""
    console = console or Console(stderr=True)
    spec.validate()
    out = Path(out)
    resuming = load_or_write_spec(out, spec)
    cells = expand(spec)
    records = {c.id: read_marker(out, c) for c in cells}  # every marker checked before any work
    finished = {c.id for c in cells
                if records[c.id] is not None and (c.kind != "bench" or _bench_current(out, c, records[c.id]))}
    console.print(f"sweep {out}: {len(cells)} cells" + (f", {len(finished)} finished earlier and kept"
                                                         if resuming else ""))
    failed: dict[str, str] = {}
    ran: list[str] = []
    compute = [c for c in cells if c.kind != "bench" and c.id not in finished]
    if compute:
        executor = make_executor()
        console.print(f"computing {len(compute)} cells on {executor.name}")
        try:
            _compute(spec, out, compute, finished, executor, failed, ran, console)
        except BaseException:
            executor.close(interrupted=True)
            raise
        executor.close()
    for cell in [c for c in cells if c.kind == "bench" and c.id not in finished]:
        _bench(spec, out, cell, cells, failed, console)
        if cell.id not in failed:
            ran.append(cell.id)
    benched = [(c, read_marker(out, c)) for c in cells if c.kind == "bench"]
    runs = [out / results_dir(c.model) / record["run_id"] for c, record in benched if record is not None]
    return {"cells": len(cells), "skipped": sorted(finished), "ran": ran, "failed": failed, "runs": runs}


def _compute(spec: SweepSpec, out: Path, todo: list[Cell], finished: set[str], executor: Executor,
             failed: dict[str, str], ran: list[str], console: Console) -> None:
    waiting = list(todo)
    running: dict[object, Cell] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("cells", total=len(todo))
        while waiting or running:
            for cell in list(waiting):
                blocked = [n for n in cell.needs if n in failed]
                if blocked:
                    waiting.remove(cell)
                    failed[cell.id] = f"not run: {blocked[0]} failed"
                    progress.advance(task)
                elif all(n in finished for n in cell.needs):
                    waiting.remove(cell)
                    running[executor.submit(spec.to_json(), cell, _inputs(spec, out, cell))] = cell
            if not running:
                break
            for handle, result in executor.wait_any(list(running)):
                cell = running.pop(handle)
                _store(out, cell, result)
                if result["error"]:
                    failed[cell.id] = result["error"]
                    console.print(f"[red]failed[/red] {cell.id} after {result['seconds']:.0f} s: {result['error']}")
                else:
                    finished.add(cell.id)
                    ran.append(cell.id)
                    console.print(f"done {cell.id} ({result['seconds']:.0f} s)")
                progress.advance(task)


def _bundles(out: Path, model: str) -> list[str]:
    return sorted(p.parent.name for p in (out / export_dir(model)).glob("*/manifest.json"))


def _bench_current(out: Path, cell: Cell, record: dict) -> bool:
    """A bench stands while it measured exactly the bundles there are now; a retried variant calls for a new one."""
    return record["bundles"] == _bundles(out, cell.model)


def _inputs(spec: SweepSpec, out: Path, cell: Cell) -> dict[str, bytes]:
    if cell.kind == "train":
        return {}
    paths = dict.fromkeys([dense_checkpoint(cell.model), spec.dense_reference(cell.model)])
    return {str(path): (out / path).read_bytes() for path in paths}


def _store(out: Path, cell: Cell, result: dict) -> None:
    """The cell's files, then its marker (or its error): a kill in between leaves the cell to be redone."""
    for folder in cell_dirs(cell):
        shutil.rmtree(out / folder, ignore_errors=True)
    files = {}
    for name, data in result["outputs"].items():
        write_atomic(out / name, lambda handle, data=data: handle.write(data))
        files[name] = hashlib.sha256(data).hexdigest()
    record = {"cell": cell.id, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": result["seconds"]}
    if result["error"]:
        write_json_atomic(error_file(out, cell), {**record, "error": result["error"]})
        for folder in cell_dirs(cell):  # a failed cell's partial files must not reach the bench
            shutil.rmtree(out / folder, ignore_errors=True)
        return
    error_file(out, cell).unlink(missing_ok=True)
    write_json_atomic(marker(out, cell), {**record, "files": files})


def _bench(spec: SweepSpec, out: Path, cell: Cell, cells: list[Cell], failed: dict[str, str],
           console: Console) -> None:
    """All of a model's bundles in one interleaved run; an unfinished run of an earlier attempt is resumed."""
    from tsprune_edge.devices.bench import bench
    from tsprune_edge.devices.runs import unfinished_run
    from tsprune_edge.report.verdict import undecided

    dense = Cell("variant", cell.model, DENSE)
    if not marker(out, dense).is_file():
        failed[cell.id] = f"not run: {dense.id} " + ("failed" if dense.id in failed else "is not finished")
        return
    skipped = [c.variant for c in cells if c.kind == "variant" and c.model == cell.model and c.id in failed]
    if skipped:
        console.print(f"bench {cell.model} without {', '.join(skipped)} (failed)")
    results = out / results_dir(cell.model)
    resume = unfinished_run(results, spec.device) is not None
    try:
        summary = bench(spec.bench_request(out / export_dir(cell.model), results, resume=resume), console=console,
                        more_rounds=functools.partial(undecided, min_effect=spec.min_effect))
    except ToolError as exc:
        failed[cell.id] = str(exc)
        write_json_atomic(error_file(out, cell), {"cell": cell.id, "error": str(exc)})
        console.print(f"[red]failed[/red] {cell.id}: {exc}")
        return
    error_file(out, cell).unlink(missing_ok=True)
    write_json_atomic(marker(out, cell), {"cell": cell.id, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                          "run_id": summary["run_id"], "bundles": sorted(summary["bundles"]),
                                          "skipped_variants": skipped})
