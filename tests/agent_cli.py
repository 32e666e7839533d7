"""Driving the board agent as a board does: devices/agent.py in a subprocess under a given interpreter, its one JSON
line (or progress events then a summary) read back, and the plan files `run` takes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

AGENT = Path(__file__).resolve().parents[1] / "devices" / "agent.py"
FAST = ("--min-time", "0.2", "--min-iters", "20", "--max-warmup", "0.5")


def agent(python: str | Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), str(AGENT), *args], capture_output=True, text=True, timeout=timeout)


def one_json_line(proc: subprocess.CompletedProcess) -> dict:
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout + proc.stderr
    return json.loads(lines[0])


def run_output(proc: subprocess.CompletedProcess) -> tuple[list[dict], dict]:
    """`run` prints one progress event per measurement started and finished, then its summary last."""
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert lines and all("event" in line for line in lines[:-1]) and "event" not in lines[-1], proc.stdout
    return lines[:-1], lines[-1]


def write_plan(path: Path, items: list[dict], rounds: int) -> Path:
    plan = {"items": items, "rounds": rounds, "min_time": 0.2, "min_iters": 20, "max_warmup": 0.5,
            "cooldown": {"max_seconds": 2.0, "within_c": 5.0}}
    path.write_text(json.dumps(plan))
    return path
