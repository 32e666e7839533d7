"""Format name and version of every file one command writes for another to read (bench.json, state.json,
plan.json, fit.json, report.json, ...): a reader reads its own and older versions, and refuses a newer major
version in one line instead of misreading it. Torch-free.

A version is an integer major: a change an older reader would misread bumps it; an added field does not.
Files written before versions were recorded read as version 0.
"""

from __future__ import annotations

from pathlib import Path

from tsprune_edge.errors import UserError

PREFIX = "tsprune-edge/"
VERSIONS = {  # the version this code writes, and the newest it reads
    "bench": 1,
    "state": 1,
    "plan": 1,
    "preflight": 1,
    "report": 1,
    "fit": 1,
    "setup": 1,
}


def stamped(kind: str, record: dict) -> dict:
    """`record` with its format name and version first (a record's own `format`/`version` keys are replaced)."""
    rest = {k: v for k, v in record.items() if k not in ("format", "version")}
    return {"format": PREFIX + kind, "version": VERSIONS[kind], **rest}


def checked_version(kind: str, record: object, path: Path | str) -> int:
    """The version of `record` read from `path`, refused in one line if it is another kind of file or newer than
    this tsprune-edge reads; 0 for a file from before versions were recorded."""
    if not isinstance(record, dict):
        raise UserError(f"{path} is not a {PREFIX}{kind} file (a JSON {type(record).__name__}, not an object)")
    name = record.get("format")
    if name is not None and name != PREFIX + kind:
        raise UserError(f"{path} is a {name} file, not {PREFIX}{kind}")
    version = record.get("version", 0) if name is not None else 0
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise UserError(f"{path} has an invalid format version {version!r}")
    if version > VERSIONS[kind]:
        raise UserError(f"{path} was written by a newer tsprune-edge ({PREFIX}{kind} version {version}; this one "
                        f"reads up to {VERSIONS[kind]}): upgrade tsprune-edge to read it")
    return version
