"""Entries of the fit cache (latency tables, sensitivity tables, fine-tuned dense references) read back safely: a
damaged entry (truncated, edited, of the wrong shape) is set aside, renamed and never deleted, with one line saying
so, and the caller measures it again. A cache entry is the tool's own file: it is never a reason to stop a fit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rich.console import Console

T = TypeVar("T")
DAMAGED = ".damaged"


def read_entry(path: Path, check: Callable[[object], T], what: str, console: Console) -> T | None:
    """`check(parsed JSON)` of the entry at `path` (it raises ValueError, KeyError, TypeError on a bad shape), or
    None: no entry, or a damaged one, then set aside."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return check(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        set_aside(path, f"{what} {path} is damaged ({type(exc).__name__})", console)
        return None


def set_aside(path: Path, why: str | None, console: Console, redo: str = "measuring it again") -> Path:
    """Rename a damaged cache entry (file or folder) to `<name>.damaged[-N]` and say so in one line (`why` None:
    a part of an entry already named, renamed silently)."""
    path = Path(path)
    aside = path.with_name(path.name + DAMAGED)
    number = 1
    while aside.exists():
        number += 1
        aside = path.with_name(f"{path.name}{DAMAGED}-{number}")
    path.rename(aside)
    if why is not None:
        console.print(f"{why}: set aside as {aside.name}, {redo}")
    return aside
