"""The board's python as `devices setup` left it: where `<workdir>/setup.json` exists, its venv's interpreter and
environment (OPENBLAS_CORETYPE on the Nano) replace the profile's, for every command that runs the agent (`bench`,
`fit`, `sweep`, `devices check`). One function decides it, so they all run the same interpreter."""

from __future__ import annotations

import dataclasses
import json

from tsprune_edge.devices.profiles import DeviceProfile
from tsprune_edge.devices.transport import Transport
from tsprune_edge.errors import UserError
from tsprune_edge.formats import PREFIX, checked_version

SETUP_FORMAT = PREFIX + "setup"
RECORD_TIMEOUT = 60.0


def record_path(profile: DeviceProfile) -> str:
    return f"{profile.workdir.rstrip('/')}/setup.json"


def read_record(transport: Transport, profile: DeviceProfile) -> dict | None:
    """The board's setup record, None where setup has not run (or did not finish: the record is written last)."""
    path = record_path(profile)
    done = transport.run(["cat", "--", path], timeout=RECORD_TIMEOUT)
    if done.returncode != 0:
        return None
    where = f"{profile.name}:{path}"
    try:
        record = json.loads(done.stdout.decode("utf-8", "replace"))
    except ValueError:
        raise UserError(f"{where} is not a readable setup record; fix: run `tsprune-edge devices setup --device "
                        f"{profile.name}` again") from None
    checked_version("setup", record, where)
    if not isinstance(record.get("python"), str) or not isinstance(record.get("env", {}), dict):
        raise UserError(f"{where} lacks the venv's python; fix: run `tsprune-edge devices setup --device "
                        f"{profile.name}` again")
    return record


def board_profile(transport: Transport, profile: DeviceProfile) -> DeviceProfile:
    """`profile` with the board's python: the set-up venv's (and its environment) where the record exists; the
    runtimes the venv holds leave any per-runtime interpreter the profile names."""
    record = read_record(transport, profile)
    if record is None:
        return profile
    installed = record.get("runtimes") or {}
    return dataclasses.replace(profile, python=record["python"], environment=dict(record.get("env") or {}),
                               interpreters={k: v for k, v in profile.interpreters.items() if k not in installed})
