"""Two leaderboard processes on one machine: the main run, and a train-ahead run that only trains dense models.

One training process gains little from this machine's second core (2 torch threads train Transformer and Autoformer
on ETTm1 only 1.2-1.3x faster than 1), so two 1-thread processes, one training the dense models the main run will
need later, do more work than one. Latency must still be measured with nothing else running: the main run stops
every registered train-ahead process (SIGSTOP) while it measures (a fit's latency table and verification, a
dataset's bench, the lookback-720 training estimate) and lets it go on after (SIGCONT). Claims keep the two from
training the same cell.

Files, all under <work>/sharing (the work folder, never the record): `helpers/<pid>` a registered train-ahead
process; `claims/<cell>` the pid computing that cell; `measure.lock` held while measuring and to register;
`state.lock` held to claim a cell and to update the kept checkpoints. A pid is acted on only while it is alive and
its command line names leaderboard.py, so a stale file (a process killed) or a reused pid is never signalled.
Stdlib only: no torch.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCRIPT = b"leaderboard.py"


def _folder(work: Path, *parts: str) -> Path:
    path = Path(work, "sharing", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_leaderboard(pid: int) -> bool:
    """Whether `pid` is a live process, other than this one, whose command line names leaderboard.py."""
    if pid == os.getpid():
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return False
    return state not in ("Z", "X") and any(part.endswith(SCRIPT) for part in cmdline.split(b"\0"))


def process_state(pid: int) -> str:
    """The kernel's one-letter state of `pid` ("T" when stopped); "" when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return ""


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def state_lock(work: Path):
    """Held to claim a cell and to update the record's kept checkpoints (both processes do both)."""
    return _locked(_folder(work) / "state.lock")


def helpers(work: Path) -> list[int]:
    """The registered train-ahead processes that are alive; a file left by one that is gone is removed."""
    alive = []
    for path in sorted(_folder(work, "helpers").iterdir()):
        if path.name.isdigit() and is_leaderboard(int(path.name)):
            alive.append(int(path.name))
        else:
            path.unlink(missing_ok=True)
    return alive


@contextmanager
def registered(work: Path) -> Iterator[None]:
    """This process as a train-ahead helper for as long as the block runs. Registering waits for a measurement in
    progress to end, so a helper never starts beside one."""
    mine = _folder(work, "helpers") / str(os.getpid())
    with _locked(_folder(work) / "measure.lock"):
        mine.write_text("")
    try:
        yield
    finally:
        mine.unlink(missing_ok=True)


@contextmanager
def quiet(work: Path, settle_s: float = 5.0) -> Iterator[list[int]]:
    """Every registered helper stopped for the block (yields their pids); continued after, whatever happens in it.
    Holding measure.lock keeps a new helper from registering meanwhile."""
    with _locked(_folder(work) / "measure.lock"):
        stopped = []
        try:
            for pid in helpers(work):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            deadline = time.monotonic() + settle_s
            while any(process_state(pid) not in ("T", "") for pid in stopped) and time.monotonic() < deadline:
                time.sleep(0.05)
            yield stopped
        finally:
            for pid in stopped:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass


def claim(work: Path, cell: str) -> bool:
    """Take `cell` for this process: False while another live leaderboard process holds it (a claim left by one
    that is gone is taken over)."""
    path = _folder(work, "claims") / cell
    with state_lock(work):
        if path.is_file():
            text = path.read_text().strip()
            if text.isdigit() and int(text) != os.getpid() and is_leaderboard(int(text)):
                return False
        path.write_text(str(os.getpid()))
        return True


def holder(work: Path, cell: str) -> int | None:
    """The live leaderboard process, other than this one, that holds `cell`; None when none does."""
    path = _folder(work, "claims") / cell
    text = path.read_text().strip() if path.is_file() else ""
    return int(text) if text.isdigit() and is_leaderboard(int(text)) else None


def release(work: Path, cell: str) -> None:
    path = _folder(work, "claims") / cell
    with state_lock(work):
        if path.is_file() and path.read_text().strip() == str(os.getpid()):
            path.unlink()
