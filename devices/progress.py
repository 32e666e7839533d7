"""Live progress of a bench run on the host's console, from the events the board agent streams while it measures
(one JSON line per measurement started and finished, over SSH as well as locally)."""

from __future__ import annotations

import json
import time

from rich.console import Console
from rich.markup import escape


def describe(event: dict) -> str:
    """`[3/12] round 1/2 dense onnx (onnxruntime, 1 thread)`: which measurement, where it is in the run."""
    threads = f"{event['threads']} thread" + ("s" if event["threads"] != 1 else "")
    variant = event["id"].split("__")[0]
    count = event["done"] + (1 if event["event"] == "measuring" else 0)
    return (f"[{count}/{event['total']}] round {event['round']}/{event['rounds']} {variant} {event['format']} "
            f"({event['runtime']}, {threads})")


def outcome(event: dict) -> str:
    """What became of one measurement: its p50 and duration, that it was already measured, or why it failed."""
    if event["event"] == "skipped":
        return "already measured"
    if event["event"] == "failed":
        return f"FAILED: {event.get('error', 'no reason given')}"
    p50 = f"p50 {event['p50_s'] * 1e3:.3f} ms, " if event.get("p50_s") is not None else ""
    return f"{p50}{event.get('wall_s', 0.0):.1f} s"


class BenchProgress:
    """A status line for the measurement running (animated on a terminal) and one printed line per measurement
    finished. Lines that are not agent events are ignored: the run's final summary is read from the whole output."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.began = time.monotonic()
        self.events: list[dict] = []
        self._status = None

    def __enter__(self) -> BenchProgress:
        self._status = self.console.status("waiting for the board's first measurement")
        self._status.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._status.stop()

    def __call__(self, line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        if not isinstance(event, dict) or "event" not in event:
            return
        self.events.append(event)
        elapsed = f"{time.monotonic() - self.began:.0f} s elapsed"
        if event["event"] == "measuring":
            self._status.update(escape(f"measuring {describe(event)}, {elapsed}"))
        else:
            self.console.print(escape(f"  {describe(event)}: {outcome(event)} ({elapsed})"), highlight=False,
                               soft_wrap=True)
