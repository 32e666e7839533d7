"""The board's identity, asked before a latency table is read: a table measured on another board (reached by the
same name), or under another runtime version, is not this board's timings.

What the agent's preflight reports (the runtime that runs the format and its version, the CPU model, the board's
model, machine, OS, Python, emulation), the board's machine id (/etc/machine-id, recorded only as a keyed hash: the
id itself is the machine's secret) and, over SSH, the SHA256 fingerprints of the host key the strict host-key check
accepted: the known_hosts entries ssh matched for this host. Read after a connection succeeded, so they are the
keys the board presented (with --accept-new-host-key, the one just added); a reinstalled board, or another board
behind the same name or port, has another key, and ssh refuses it until known_hosts is changed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import shutil
import subprocess
from pathlib import Path

from tsprune_edge.devices.bench import AGENT, STEP_TIMEOUT, open_transport, run_preflight, usable_runtime
from tsprune_edge.devices.setup_record import board_profile
from tsprune_edge.devices.transport import SshTransport, Transport
from tsprune_edge.errors import BoardError, UserError
from tsprune_edge.fit.measure import Target

MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")  # systemd's, then D-Bus's (older boards)
MACHINE_ID_KEY = b"tsprune-edge latency table"  # machine-id(5): hash it with an application key, never show it


def board_identity(target: Target) -> dict:
    """What decides the board's timings beyond the profile. The preflight runs in a folder of its own on the board
    (a fresh name, removed after)."""
    profile = target.profile
    request = target.bench_request(Path("."), Path("."), False)
    remote = f"{profile.workdir.rstrip('/')}/fit-identity-{secrets.token_hex(6)}"
    with open_transport(profile, request) as transport:
        profile = board_profile(transport, profile)  # the venv `devices setup` made, where it did
        transport.run(["mkdir", "-p", "--", profile.workdir], timeout=STEP_TIMEOUT)
        if transport.run(["mkdir", "--", remote], timeout=STEP_TIMEOUT).returncode != 0:
            raise BoardError(f"{transport.name}: cannot create {remote}; check the profile's workdir and the "
                             "board's disk")
        try:
            transport.put([AGENT], remote, STEP_TIMEOUT)
            report = run_preflight(transport, profile, remote, request)
        finally:
            transport.run(["rm", "-rf", "--", remote], timeout=STEP_TIMEOUT)
        machine_id = _machine_id(transport)
        host_key = host_key_fingerprints(transport.settings) if isinstance(transport, SshTransport) else None
    chosen = usable_runtime(target.format, profile, report)
    if chosen is None:
        raise UserError(f"no runtime on {profile.name} runs {target.format} artifacts; run `tsprune-edge devices "
                        f"check {profile.name}` for the fix")
    runtime, python = chosen
    found = report["interpreters"][python]
    return {"runtime": runtime, "runtime_version": found["runtimes"][runtime].get("version"),
            "cpu": (found.get("cpu") or {}).get("model"), "board": found.get("board"),
            "machine": found.get("machine"), "os": found.get("os"), "python": found.get("python"),
            "emulated": bool(found.get("emulated")), "machine_id": machine_id, "host_key": host_key}


def _machine_id(transport: Transport) -> str | None:
    """A keyed hash of the board's machine id (16 hex digits), None where the board has none."""
    script = " || ".join(f"cat {path} 2>/dev/null" for path in MACHINE_ID_FILES)
    done = transport.run(["sh", "-c", script], timeout=STEP_TIMEOUT)
    value = done.stdout.strip() if done.returncode == 0 else b""
    return hmac.new(MACHINE_ID_KEY, value, hashlib.sha256).hexdigest()[:16] if value else None


def host_key_fingerprints(settings: dict[str, str]) -> str | None:
    """The SHA256 fingerprints (sorted, space-separated) of the known_hosts entries ssh matches for this
    destination, as `ssh -G` resolved it: its HostKeyAlias, else `host` or `[host]:port`, in the user's then the
    global known-hosts files. None where no file has an entry (a key ssh accepts through a CA, say) or ssh-keygen,
    which comes with the ssh client, is missing."""
    if shutil.which("ssh-keygen") is None:
        return None
    host, port = settings.get("hostname", ""), settings.get("port", "22")
    name = settings.get("hostkeyalias") or (host if port == "22" else f"[{host}]:{port}")
    found = set()
    for kind in ("userknownhostsfile", "globalknownhostsfile"):
        for path in _files(settings.get(kind, "")):
            done = subprocess.run(["ssh-keygen", "-F", name, "-f", str(path), "-l"], capture_output=True,
                                  text=True, timeout=STEP_TIMEOUT)
            found.update(field for line in done.stdout.splitlines() if not line.startswith("#")
                         for field in line.split() if field.startswith("SHA256:"))
    return " ".join(sorted(found)) or None


def _files(value: str) -> list[Path]:
    """The existing files of an `ssh -G` list of known-hosts files. ssh prints them space-separated, unquoted: a
    path with spaces is rebuilt from its parts while the parts alone name no file."""
    files, part = [], ""
    for word in value.split(" "):
        part = f"{part} {word}" if part else word
        path = Path(part).expanduser()
        if path.is_file():
            files.append(path)
            part = ""
    return files
