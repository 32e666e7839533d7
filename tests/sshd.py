"""A real OpenSSH server on 127.0.0.1 for tests: throwaway keys and config in a tmp dir, never /etc/ssh or ~/.ssh.

Tests that need a board over SSH use the `sshd_server` fixture (tests/conftest.py) or the
`running_sshd` context manager directly, e.g. with `extra_config=["ForceCommand /path/wrapper"]` for a second
sshd in front of an emulated board. Without the packages the fixture fails (never skips): a CI that lacks them
must install them, not silently test less.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL_HINT = "run scripts/ci-apt.sh (as root) to install openssh-server, openssh-client and rsync"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it; systemd normally creates it
ALIAS = "board"
START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SshServer:
    """A running loopback sshd and the client files that reach it."""

    port: int
    pid: int
    user: str
    host_key_pub: str  # "ssh-ed25519 AAAA..." as in a known_hosts line
    identity: Path  # private key the server accepts
    known_hosts: Path  # pre-filled with the host key
    ssh_config: Path  # Host `board` -> this server, with the identity and known_hosts above
    log: Path
    root: Path

    @property
    def destination(self) -> str:
        return f"{self.user}@127.0.0.1"


def tool(name: str) -> str:
    """Path of an OpenSSH/rsync binary; fails the test with the install hint when it is missing."""
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if not found:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}")
    return found


def make_key(path: Path) -> str:
    """A fresh passphrase-less ed25519 key pair at `path`; returns the public key line."""
    subprocess.run([tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "tsprune-edge-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path.with_suffix(".pub").read_text().strip()


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def running_sshd(root: Path, extra_config: Sequence[str] = ()) -> Iterator[SshServer]:
    """Start sshd in the foreground on a free loopback port with its files under `root`; stop it on exit.

    `extra_config` lines come before ours, so they win where sshd keeps the first value (ForceCommand, PermitRootLogin,
    PasswordAuthentication...); a Match block would swallow our lines, so it does not belong there.
    """
    sshd = tool("sshd")
    _ensure_privsep_dir()
    root.mkdir(parents=True, exist_ok=True)
    user, port = getpass.getuser(), free_port()
    host_key_pub = make_key(root / "host_ed25519")
    (root / "authorized_keys").write_text(make_key(root / "client_ed25519") + "\n")
    known_hosts = root / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {' '.join(host_key_pub.split()[:2])}\n")
    _write_server_config(root, port, extra_config)
    _write_client_config(root, port, user)
    log = root / "sshd.log"
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(root / "sshd_config"), "-E", str(log)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(proc, port, log)
        yield SshServer(port=port, pid=proc.pid, user=user, host_key_pub=host_key_pub,
                        identity=root / "client_ed25519", known_hosts=known_hosts, ssh_config=root / "ssh_config",
                        log=log, root=root)
    finally:
        _stop(proc)


def _ensure_privsep_dir() -> None:
    if PRIVSEP_DIR.is_dir():
        return
    try:
        PRIVSEP_DIR.mkdir(mode=0o755)
    except OSError as exc:
        pytest.fail(f"sshd needs {PRIVSEP_DIR} and it cannot be created ({exc}); create it as root")


def _write_server_config(root: Path, port: int, extra_config: Sequence[str]) -> None:
    # extra lines go first: sshd keeps the first value it reads for most keywords
    lines = [*extra_config,
             "ListenAddress 127.0.0.1",
             f"Port {port}",
             f"HostKey {root / 'host_ed25519'}",
             f"AuthorizedKeysFile {root / 'authorized_keys'}",
             f"PidFile {root / 'sshd.pid'}",
             "StrictModes no",  # keys live under a world-readable tmp dir
             "UsePAM no",
             "PasswordAuthentication no",
             "KbdInteractiveAuthentication no",
             "PermitRootLogin prohibit-password",
             f"Subsystem sftp {SFTP_SERVER}"]  # OpenSSH 9 scp speaks SFTP
    (root / "sshd_config").write_text("\n".join(lines) + "\n")


def _write_client_config(root: Path, port: int, user: str) -> None:
    lines = [f"Host {ALIAS}",
             "    HostName 127.0.0.1",
             f"    Port {port}",
             f"    User {user}",
             f"    IdentityFile {root / 'client_ed25519'}",
             "    IdentitiesOnly yes",
             f"    UserKnownHostsFile {root / 'known_hosts'}",
             "    GlobalKnownHostsFile /dev/null",
             "    BatchMode yes"]
    (root / "ssh_config").write_text("\n".join(lines) + "\n")


def _wait_listening(proc: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            detail = log.read_text().strip() if log.exists() else "no log"
            pytest.fail(f"sshd did not start on 127.0.0.1:{port}: {detail}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the listener and the per-connection sshd processes it forked (each runs in its own session)."""
    for pid in [*_children(proc.pid), proc.pid]:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, read from /proc (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...)."""
    found = []
    for child in _children(pid):
        found += [child, *descendants(child)]
    return found
