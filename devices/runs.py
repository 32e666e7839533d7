"""The bench run folder, the contract between measuring (bench) and judging (report, fit, sweep): the one module
that knows its layout. Torch-free.

    RESULTS/<device>-<YYYYmmdd-HHMMSS>[-N]/
        plan.json            what the board agent measures (sent to the board as it is)
        state.json           started | fetched | unfetched | done, and the board folder
        preflight.json       what the board has: interpreters, runtimes, machine
        raw/<id>__r<N>.json  one measurement, as the agent wrote it (pass 1 of round N; `__r<N>b.json` the round's
                             mirrored pass 2); raw/run.json the agent's record of its run
        bench.json           the summary the report reads, written last
        control/             bench --control: the A/A control bundle, a byte-different copy of dense (export/control.py)
        .owner               a token written when the folder was made: clean-up removes only a folder it proves ours
        .lock                held (flock) by the one bench working in the folder, for the run's whole life

plan, state, preflight and bench carry a format name and version (tsprune_edge.formats); files from before versions
were recorded read as version 0. Two benches never share a folder: a new run's folder is made with an atomic mkdir
(a suffix when another bench took the name in the same second), and `--resume` takes up only an unfinished run that
no live bench holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import itertools
import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from tsprune_edge.atomic import write_json_atomic
from tsprune_edge.errors import UserError
from tsprune_edge.formats import checked_version, stamped

DEFAULT_ROUNDS = 5  # bench's default: see docs/bench.md (coverage and width)
DEFAULT_MAX_ROUNDS = 10  # bench adds rounds up to this while a verdict is undecided
DEFAULT_MIN_TIME = 1.0  # timed seconds per measurement; a round measures each item twice (forward, mirrored)

BENCH, STATE, PLAN, PREFLIGHT = "bench.json", "state.json", "plan.json", "preflight.json"
RAW, AGENT_RUN = "raw", "run.json"
OWNER, LOCK = ".owner", ".lock"
DONE = "done"
_ROUND = re.compile(r"(?P<id>.+)__r(?P<round>[0-9]+)(?P<mirrored>b?)\.json")
Measurement = tuple[int, int]  # (round, pass): pass 1 runs the round's order forward, pass 2 mirrored


def read_json(path: Path, kind: str | None = None) -> Any:
    """A file a bench wrote: one line naming it when it is damaged (truncated, not JSON, another kind of file, or
    written by a newer tsprune-edge)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is damaged or not from this tsprune-edge ({type(exc).__name__}); run "
                        "`tsprune-edge bench` again for that run") from None
    if kind is not None:
        checked_version(kind, record, path)
    return record


def _write(run_dir: Path, name: str, kind: str, record: dict) -> Path:
    path = Path(run_dir) / name
    write_json_atomic(path, stamped(kind, record))
    return path


def write_plan(run_dir: Path, plan: dict) -> Path:
    """plan.json, stamped: the board agent reads it too and ignores the keys it does not know."""
    return _write(run_dir, PLAN, "plan", plan)


def read_plan(run_dir: Path) -> dict:
    return read_json(Path(run_dir) / PLAN, "plan")


def write_state(run_dir: Path, state: dict) -> None:
    _write(run_dir, STATE, "state", state)


def read_state(run_dir: Path) -> dict:
    return read_json(Path(run_dir) / STATE, "state")


def write_preflight(run_dir: Path, preflight: dict) -> None:
    _write(run_dir, PREFLIGHT, "preflight", preflight)


def write_bench(run_dir: Path, summary: dict) -> None:
    _write(run_dir, BENCH, "bench", summary)


def read_bench(run_dir: Path) -> dict:
    """A finished run's bench.json, refused in one line if there is none or it cannot be read as one."""
    path = Path(run_dir) / BENCH
    if not path.is_file():
        raise UserError(f"{run_dir} is not a finished bench run (no {BENCH}); run `tsprune-edge bench` or finish it "
                        "with --resume")
    run = read_json(path)
    version = checked_version("bench", run, path)
    if version == 0 and "bundles" not in run:  # benches before bundle facts were recorded
        raise UserError(f"{path} has no bundle facts (an older bench); run `tsprune-edge bench` again")
    return run


def round_paths(run_dir: Path, item_id: str) -> list[tuple[Measurement, Path]]:
    """((round, pass), file) of an item's measurements, in round order (r2 before r10, a round's pass 1 first)."""
    found = []
    for path in (Path(run_dir) / RAW).glob(f"{glob.escape(item_id)}__r*.json"):
        match = _ROUND.fullmatch(path.name)
        if match and match["id"] == item_id:
            found.append(((int(match["round"]), 2 if match["mirrored"] else 1), path))
    return sorted(found)


def measurement_name(key: Measurement) -> str:
    """How flags and warnings name a measurement: r3 for round 3's (first) pass, r3b for its mirrored pass."""
    number, which = key
    return f"r{number}{'b' if which == 2 else ''}"


def passes_per_round(run_dir: Path) -> int:
    """How many passes each round ran (2 since the mirrored order; runs before it ran 1): the agent's run.json
    says, else a mirrored file proves 2."""
    path = Path(run_dir) / RAW / AGENT_RUN
    record = read_json(path) if path.is_file() else {}
    if isinstance(record, dict) and isinstance(record.get("passes_per_round"), int):
        return record["passes_per_round"]
    return 2 if any(p.name.endswith("b.json") for p in all_round_paths(run_dir)) else 1


def all_round_paths(run_dir: Path) -> list[Path]:
    """Every measurement file of a run, whatever its item."""
    return sorted(p for p in (Path(run_dir) / RAW).glob("*__r*.json") if _ROUND.fullmatch(p.name))


def read_round(path: Path) -> dict:
    """One measurement (an agent's result: a latency, or an error)."""
    result = read_json(path)
    if not isinstance(result, dict):
        raise UserError(f"{path} is damaged or not from this tsprune-edge (a JSON {type(result).__name__}); run "
                        "`tsprune-edge bench` again for that run")
    return result


def read_rounds(run_dir: Path, item_id: str) -> dict[Measurement, dict]:
    """An item's measurements by (round, pass), in round order."""
    return {number: read_round(path) for number, path in round_paths(run_dir, item_id)}


def read_first_round(run_dir: Path, item_id: str) -> dict | None:
    """Round 1 of an item, where it was measured (profiles and accuracy are recorded there only)."""
    path = Path(run_dir) / RAW / f"{item_id}__r1.json"
    return read_round(path) if path.is_file() else None


def read_order(run_dir: Path) -> dict:
    """The order the board ran each round in, as the agent's run.json records it (it rotates every round)."""
    path = Path(run_dir) / RAW / AGENT_RUN
    record = read_json(path) if path.is_file() else {}
    if not isinstance(record, dict) or "orders" not in record:
        return {}
    return {"rule": record.get("order_rule"), "rounds": record["orders"]}


def beside_results(run_dir: Path, name: str) -> Path:
    """A file beside the results folder that holds this run, e.g. a fit's OUT/fit.json for OUT/results/<run>."""
    return Path(run_dir).resolve().parent.parent / name


def _order_key(path: Path, device: str) -> tuple[str, int] | None:
    """(time, n) of a run folder named <device>-<YYYYmmdd-HHMMSS>[-n]; None for any other name."""
    match = re.fullmatch(rf"{re.escape(device)}-([0-9]{{8}}-[0-9]{{6}})(?:-([0-9]+))?", path.name)
    return (match[1], int(match[2] or 1)) if match else None


def device_runs(results: Path, device: str) -> list[Path]:
    """The runs of `device` under `results` that got as far as a state.json, oldest first."""
    keyed = [(key, p.parent) for p in Path(results).glob(f"{glob.escape(device)}-*/{STATE}")
             if (key := _order_key(p.parent, device)) is not None]
    return [path for _, path in sorted(keyed)]


def _time_key(path: Path) -> tuple[str, int, str]:
    """(time, n, name) of a run folder of any device, `<device>-<YYYYmmdd-HHMMSS>[-n]`; a folder named otherwise
    sorts before every run, by its name."""
    match = re.fullmatch(r".+-([0-9]{8}-[0-9]{6})(?:-([0-9]+))?", path.name)
    return (match[1], int(match[2] or 1), path.name) if match else ("", 0, path.name)


def finished_runs(results: Path) -> list[Path]:
    """The runs under `results` whose bench.json is written, any device, oldest first by the time in their names
    (a `-10` suffix after `-9`, which sorting names alone gets wrong)."""
    return sorted((p.parent for p in Path(results).glob(f"*/{BENCH}")), key=_time_key)


def latest_run(folder: Path) -> Path | None:
    """`folder` itself when it is a finished run, else the latest finished run under it; None where there is none."""
    if (Path(folder) / BENCH).is_file():
        return Path(folder)
    found = finished_runs(folder)
    return found[-1] if found else None


def finished(run_dir: Path) -> bool:
    """A run whose measurement ended: its state is done, or its bench.json is written. Never resumed."""
    return (Path(run_dir) / BENCH).is_file() or read_state(run_dir).get("status") == DONE


def unfinished_run(results: Path, device: str) -> Path | None:
    """The latest run of `device` under `results` that did not finish, which `--resume` would take up."""
    unfinished = [run for run in device_runs(results, device) if not finished(run)]
    return unfinished[-1] if unfinished else None


class RunFolder:
    """A run folder this process holds: made by it (`fresh`) or taken up to resume. Its lock is held until
    `release`; `owner` is the token of the bench that made it (the board folder carries it too)."""

    def __init__(self, path: Path, fresh: bool, owner: str, lock: int, made_results: bool = False) -> None:
        self.path, self.fresh, self.owner, self._lock = path, fresh, owner, lock
        self._made_results = made_results  # the results folder too was made for this run

    def release(self) -> None:
        if self._lock >= 0:
            os.close(self._lock)  # closing the descriptor ends the flock
            self._lock = -1

    def discard(self) -> None:
        """Remove a fresh folder that measured nothing, if its owner mark proves it is this run's."""
        if self.fresh and read_owner(self.path) == self.owner:
            shutil.rmtree(self.path, ignore_errors=True)
            if self._made_results:
                with contextlib.suppress(OSError):  # another bench's run may be in it by now: then it stays
                    self.path.parent.rmdir()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def claim(results: Path, device: str, resume: bool) -> RunFolder:
    """A new run folder, or with `resume` the latest unfinished one, locked for this process."""
    return _take_unfinished(Path(results), device) if resume else _create(Path(results), device)


def _create(results: Path, device: str) -> RunFolder:
    made_results = not results.exists()
    base = f"{device}-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in itertools.count(1):  # mkdir is atomic: of two benches in one second, one gets the -2 name
        path = results / (base if n == 1 else f"{base}-{n}")
        results.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            continue
        break
    lock = _try_lock(path)
    if lock is None:  # cannot happen: nobody else made this folder
        raise UserError(f"{path} was made just now and is locked already; run the bench again")
    return RunFolder(path, True, _write_owner(path), lock, made_results)


def _take_unfinished(results: Path, device: str) -> RunFolder:
    path = unfinished_run(results, device)
    if path is None:
        raise UserError(f"nothing to resume for {device} under {results}; run the bench without --resume")
    lock = _try_lock(path)
    if lock is None:
        raise UserError(f"another bench is running {path} (it holds {path / LOCK}); wait for it to finish, or run "
                        "the bench without --resume")
    if finished(path):  # it finished while we looked
        os.close(lock)
        raise UserError(f"{path} finished meanwhile; nothing to resume for {device} under {results}")
    return RunFolder(path, False, read_owner(path) or _write_owner(path), lock)


def _try_lock(path: Path) -> int | None:
    """The descriptor of `path`/.lock, locked exclusively; None while another process holds it."""
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _write_owner(path: Path) -> str:
    """Mark the folder as this run's (runs from before owner marks get one when resumed by the lock holder)."""
    token = secrets.token_hex(16)
    fd = os.open(path / OWNER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def read_owner(path: Path) -> str | None:
    try:
        return (Path(path) / OWNER).read_text().strip() or None
    except (OSError, ValueError):
        return None
