"""OUT/fit.json, the fit folder's own record (format `tsprune-edge/fit`). It is the first file a fit writes into OUT,
before any candidate, so an interrupted fit's folder says what it is and which request made it: the same command
continues it, another request is refused naming what differs. Rewritten (atomically) when a round starts and ends
and when the fit ends. A damaged or edited file is one line naming it, never a traceback. Torch-free."""

from __future__ import annotations

import json
from numbers import Real
from pathlib import Path

from tsprune_edge.atomic import write_json_atomic
from tsprune_edge.errors import UserError
from tsprune_edge.formats import checked_version, stamped

FIT_FILE = "fit.json"
RUNNING = "running"  # unfinished: rerun the same command to continue
FINISHED = ("met", "met, underused", "unreachable")


def write_state(out: Path, record: dict) -> dict:
    stamped_record = stamped("fit", record)
    write_json_atomic(Path(out) / FIT_FILE, stamped_record)
    return stamped_record


def read_state(out: Path) -> dict | None:
    """OUT's fit.json checked (format, version, the fields a resume reads), or None where there is none."""
    path = Path(out) / FIT_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} cannot be read ({_reason(exc)}); move it away, or choose another --out") from None
    checked_version("fit", record, path)
    problem = _problem(record)
    if problem:
        raise UserError(f"{path} is damaged or was edited ({problem}); move it away, or choose another --out")
    return record


def check_out(out: Path, request: dict, force: bool) -> dict | None:
    """Whether `out` may take this fit: the unfinished fit of this very request there (returned, to continue), a
    finished one only with --force (None: start over), an empty or new folder (None); anything else refused."""
    out = Path(out)
    if not out.is_dir() or not any(out.iterdir()):
        return None
    record = read_state(out)
    if record is None:
        raise UserError(f"{out} holds other files and no {FIT_FILE}: it is not a fit folder; choose another --out")
    if record["status"] == RUNNING:
        differ = differences(record["request"], request)
        if differ:
            raise UserError(f"{out} holds an unfinished fit of another request ({'; '.join(differ)}); rerun that "
                            "command to continue it, or choose another --out")
        return record
    if not force:
        raise UserError(f"{out} holds a finished fit ({record['status']}); pass --force to start over, or choose "
                        "another --out")
    return None


def differences(before: dict, now: dict, prefix: str = "") -> list[str]:
    """What differs between two request records, as the options that set it: `--speedup 1.25, now 1.5`."""
    found = []
    for key in sorted(set(before) | set(now), key=lambda k: list(now).index(k) if k in now else len(now)):
        old, new = before.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found += differences(old, new)
        elif old != new:
            name = "CHECKPOINT" if key == "checkpoint" else "--" + key.replace("_", "-")
            found.append(f"{name} {_shown(old)}, now {_shown(new)}")
    return found


def _shown(value: object) -> str:
    if value is None:
        return "not given"
    return ",".join(map(str, value)) or "none" if isinstance(value, list) else str(value)


def _problem(record: dict) -> str | None:
    """The first field a resume would misread, or None."""
    if record.get("status") not in (RUNNING, *FINISHED):
        return f"status {record.get('status')!r}"
    if not isinstance(record.get("request"), dict):
        return "request is not an object"
    candidates = record.get("candidates")
    if not isinstance(candidates, list):
        return "candidates is not a list"
    for number, candidate in enumerate(candidates, 1):
        if not isinstance(candidate, dict):
            return f"candidate {number} is not an object"
        wrong = [key for key, kind in _CANDIDATE.items()
                 if not isinstance(candidate.get(key), kind) or isinstance(candidate.get(key), bool) != (kind is bool)]
        if wrong or candidate["round"] != number:
            return f"candidate {number}: {wrong[0] if wrong else 'round'}"
    current = record.get("current")
    if current is not None and not (isinstance(current, dict) and isinstance(current.get("step"), str)
                                    and isinstance(current.get("runs_before"), list)):
        return "current"
    return None


_CANDIDATE = {"round": int, "name": str, "widths": dict, "checkpoint": str, "run": str, "p50_ms": Real,
              "p50_high_ms": Real, "next_target_ms": Real, "budget_used": Real, "met": bool}


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
