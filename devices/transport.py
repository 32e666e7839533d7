"""How the bench reaches a board: run a command there, copy files in, copy results back.

`LocalTransport` is this machine. `SshTransport` drives the system OpenSSH client rather than a Python SSH library,
so whatever already works for `ssh board` (~/.ssh/config, the agent, ProxyJump, keys on hardware tokens) works here
too, and one shared connection (ControlMaster) makes each later command cost a round trip instead of a login.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from tsprune_edge.errors import BoardError, UserError

RETRY_PAUSE_S = 1.0  # before the one retry of a connection that failed in a way that may pass
LOGIN_S = 30.0  # on top of ConnectTimeout for the first connection: key exchange and login on a slow board
PROBE_TIMEOUT_S = 30.0  # small housekeeping commands (rsync probe, mkdir, closing the shared connection)
MUX_SOCKET = "mux"
ADDED_KEY = "Warning: Permanently added"  # ssh's note for an accepted new host key, not a failure

# (what ssh logs, what we say, worth one retry?): the first match wins, so the changed-key banner is checked before
# the "Host key verification failed" line it also ends with. Placeholders come from `ssh -G` and the options.
FAILURES = (
    ("REMOTE HOST IDENTIFICATION HAS CHANGED",
     "{host}'s host key has CHANGED since it was saved in known_hosts; refusing to connect (reinstalled board or "
     "someone in between?); if the change is expected remove the old key with `{forget_key}`", False),
    ("Host key verification failed",
     "{host}'s host key is not in known_hosts; connect once with ssh, or pass --accept-new-host-key", False),
    ("Permission denied",
     "{host} refused our key for {user}; install it on the board with `{copy_id}` or pass the key it accepts",
     False),
    ("Too many authentication failures",
     "{host} refused our keys for {user} (too many tried); pass the one it accepts as the identity", False),
    ("Connection refused", "cannot reach {host}:{port} (connection refused); is sshd running and the port right?",
     False),
    ("No route to host", "cannot reach {host}:{port} (no route to host); is the board on and on this network?", True),
    ("Network is unreachable", "cannot reach {host}:{port} (network unreachable); is this machine's network up?",
     True),
    ("timed out", "cannot reach {host}:{port} (connection timed out); is the board on and the address right?", True),
    ("Could not resolve hostname", "cannot resolve {host}; check the address or the Host entry in your ssh config",
     False),
    ("kex_exchange_identification",
     "{host}:{port} closed the connection before the SSH handshake; is it sshd, and not overloaded?", True),
    ("Connection reset", "{host}:{port} reset the connection; is it sshd, and not overloaded?", True),
    ("Connection closed", "{host}:{port} closed the connection; is it sshd, and not overloaded?", True),
)


class Transport(ABC):
    """One way to reach a board; the bench orchestrator never cares which."""

    name: str

    @abstractmethod
    def run(self, argv: list[str], timeout: float, input: bytes | None = None,
            on_line: Callable[[str], None] | None = None) -> subprocess.CompletedProcess:
        """Run argv (no shell) and return its exit status and bytes output, whatever the status: a failing command
        is the caller's to judge. Raises UserError when the board cannot be reached or `timeout` passes.
        `on_line` gets each line of stdout (without its newline) as it arrives; stdout is still returned whole."""

    @abstractmethod
    def put(self, sources: list[Path], remote_dir: str, timeout: float) -> None:
        """Copy files and folders (recursively) into `remote_dir`, created if missing."""

    @abstractmethod
    def get(self, remote_dir: str, local_dir: Path, timeout: float) -> None:
        """Copy what is under `remote_dir` (regular files, recursively; links followed) into `local_dir`."""

    @abstractmethod
    def close(self) -> None:
        """Release what the transport holds; safe to call twice."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LocalTransport(Transport):
    """The board is this machine: used to benchmark the host and to test the bench without a board."""

    name = "local"

    def run(self, argv: list[str], timeout: float, input: bytes | None = None,
            on_line: Callable[[str], None] | None = None) -> subprocess.CompletedProcess:
        try:
            return _call(argv, timeout, input, on_line)
        except subprocess.TimeoutExpired:
            raise BoardError(f"local: `{_brief(argv)}` timed out after {timeout:g} s") from None
        except OSError as exc:  # answer as a shell over ssh would (127/126), so both transports read the same
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            return subprocess.CompletedProcess(argv, code, b"", f"{argv[0]}: {exc.strerror}\n".encode())

    def put(self, sources: list[Path], remote_dir: str, timeout: float) -> None:
        target = Path(remote_dir)
        target.mkdir(parents=True, exist_ok=True)
        for source in _existing(sources):
            if source.is_dir():
                shutil.copytree(source, target / source.name, dirs_exist_ok=True)
            else:
                shutil.copy2(source, target / source.name)

    def get(self, remote_dir: str, local_dir: Path, timeout: float) -> None:
        """Each file copied beside its target and renamed over it, as rsync does: a fetch cut short (Ctrl-C, a
        kill, a power cut) leaves every fetched file whole or absent, never a truncated measurement."""
        source = Path(remote_dir)
        if not source.is_dir():
            raise UserError(f"local: {remote_dir} is not a folder; nothing to fetch")
        for path in sorted(source.rglob("*")):
            target = local_dir / path.relative_to(source)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.part")  # never matches a measurement's name
            try:
                shutil.copy2(path, partial)
            except OSError as exc:  # a full disk: named by the file it was fetching, not by the board's copy
                partial.unlink(missing_ok=True)
                raise OSError(exc.errno, exc.strerror, str(target)) from exc
            os.replace(partial, target)

    def close(self) -> None:
        """Nothing to release: no connection, no temp files."""


class SshTransport(Transport):
    """A board over the system OpenSSH client, sharing one connection between commands and copies.

    Host keys are checked strictly unless `accept_new_host_key` (trust on first use, never a changed key).
    `copier="scp"` is for boards without rsync; by default rsync is used when both ends have it (it skips files
    that are already there), else scp. The remote login shell must be POSIX (sh, bash, dash, zsh, busybox ash).
    Remote paths are absolute or relative to the login folder; `~` is not expanded.
    """

    def __init__(self, destination: str, *, port: int | None = None, ssh_config: Path | None = None,
                 identity: Path | None = None, known_hosts: Path | None = None, accept_new_host_key: bool = False,
                 connect_timeout: float = 20.0, copier: Literal["auto", "scp"] = "auto") -> None:
        if not destination or destination.startswith("-"):
            raise UserError(f"bad SSH destination {destination!r}; pass user@address or a Host alias")
        destination, port = split_destination(destination, port)
        if destination.startswith(("-", "@")) or destination.endswith("@"):
            raise UserError(f"bad SSH destination {destination!r}; pass user@address or a Host alias")
        for what, path in (("ssh config", ssh_config), ("identity", identity)):
            if path is not None and not Path(path).expanduser().is_file():
                raise UserError(f"{what} file {path} not found")
        if shutil.which("ssh") is None:
            raise UserError("the OpenSSH client (ssh) is not installed; install openssh-client")
        self.destination = destination
        self._explicit = {"port": port, "ssh_config": ssh_config, "identity": identity, "known_hosts": known_hosts}
        self._connect_timeout = connect_timeout
        self._copier = copier
        options = _client_options(port, ssh_config, identity, known_hosts, accept_new_host_key, connect_timeout)
        self._settings = self._resolve(options)
        user, host, port_text = self._settings["user"], self._settings["hostname"], self._settings["port"]
        self.name = f"ssh {user}@{host}" + ("" if port_text == "22" else f":{port_text}")
        self.control_dir = Path(tempfile.mkdtemp(prefix="tsp-ssh-", dir=_socket_parent()))
        self._log = self.control_dir / "ssh.log"  # ssh's own messages, kept apart from the command's stderr
        self._options = [*options, "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_dir / MUX_SOCKET}",
                         "-o", "ControlPersist=60"]
        self._connected = False
        self._copy_tool: str | None = None

    def run(self, argv: list[str], timeout: float, input: bytes | None = None,
            on_line: Callable[[str], None] | None = None) -> subprocess.CompletedProcess:
        if not self._connected:
            self._connect()
        try:
            done = self._ssh(argv, timeout, input, on_line)
        except subprocess.TimeoutExpired:
            raise BoardError(f"{self.name}: `{_brief(argv)}` timed out after {timeout:g} s") from None
        failure = self._failure(done)
        if failure:
            raise UserError(failure[0])
        return subprocess.CompletedProcess(argv, done.returncode, done.stdout, done.stderr)

    def put(self, sources: list[Path], remote_dir: str, timeout: float) -> None:
        paths = [str(p) for p in _existing(sources)]
        made = self.run(["mkdir", "-p", "--", remote_dir], PROBE_TIMEOUT_S)
        if made.returncode != 0:
            raise UserError(f"{self.name}: cannot create {remote_dir}: {_first_line(made.stderr)}")
        target = f"{_copy_host(self.destination)}:{remote_dir}/"
        self._copy(["--", *paths, target], f"copying to {self.name}:{remote_dir}", timeout)

    def get(self, remote_dir: str, local_dir: Path, timeout: float) -> None:
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        # "dir/." is scp's way to say "the contents"; rsync's is a trailing slash
        source = f"{_copy_host(self.destination)}:{remote_dir}/" + ("" if self.copy_tool == "rsync" else ".")
        self._copy(["--", source, f"{local_dir}/"], f"copying from {self.name}:{remote_dir}", timeout)

    def close(self) -> None:
        """Stop the shared connection now (not ControlPersist seconds later) and remove the socket folder."""
        if (self.control_dir / MUX_SOCKET).exists():
            try:
                _call(["ssh", *self._options, "-O", "exit", "--", self.destination], PROBE_TIMEOUT_S, None)
            except subprocess.TimeoutExpired:
                pass  # the master still ends on its own after ControlPersist
        shutil.rmtree(self.control_dir, ignore_errors=True)

    @property
    def settings(self) -> dict[str, str]:
        """What ssh resolved for this destination (`ssh -G`: hostname, port, known-hosts files, HostKeyAlias...)."""
        return dict(self._settings)

    @property
    def copy_tool(self) -> str:
        """"rsync" or "scp", decided once: rsync needs to be installed on both ends."""
        if self._copy_tool is None:
            rsync = self._copier == "auto" and shutil.which("rsync") is not None and \
                self.run(["command", "-v", "rsync"], PROBE_TIMEOUT_S).returncode == 0
            self._copy_tool = "rsync" if rsync else "scp"
        return self._copy_tool

    def _resolve(self, options: list[str]) -> dict[str, str]:
        """What ssh will really use for this destination (alias, config and options applied), for messages."""
        try:
            done = _call(["ssh", "-G", *options, "--", self.destination], PROBE_TIMEOUT_S, None)
        except subprocess.TimeoutExpired:
            raise UserError(f"`ssh -G {self.destination}` hung; check your ssh config") from None
        if done.returncode != 0:
            raise UserError(f"ssh cannot use {self.destination}: {_first_line(done.stderr)}")
        settings: dict[str, str] = {}
        for line in done.stdout.decode(errors="replace").splitlines():
            key, _, value = line.partition(" ")
            settings.setdefault(key, value)
        return settings

    def _connect(self) -> None:
        """Open the shared connection, retrying once: on busy networks a first connection now and then stalls."""
        budget = self._connect_timeout + LOGIN_S
        for attempt in range(2):
            if attempt:
                time.sleep(RETRY_PAUSE_S)
            try:
                failure = self._failure(self._ssh(["true"], budget, None))
            except subprocess.TimeoutExpired:
                failure = (f"connecting to {self._where()} timed out after {budget:g} s; is the board overloaded or "
                           "the network lossy?", True)
            if failure is None:
                self._connected = True
                return
            if not failure[1]:
                break
        raise UserError(failure[0])

    def _ssh(self, argv: list[str], timeout: float, input: bytes | None,
             on_line: Callable[[str], None] | None = None) -> subprocess.CompletedProcess:
        # ssh hands the command to the remote login shell as one string: quote it for that shell
        self._log.write_bytes(b"")
        return _call(["ssh", *self._options, "-E", str(self._log), "--", self.destination, shlex.join(argv)],
                     timeout, input, on_line)

    def _failure(self, done: subprocess.CompletedProcess) -> tuple[str, bool] | None:
        """(message, transient) when ssh itself failed; None when the exit status is the remote command's."""
        logged = [line for line in self._log.read_text(errors="replace").splitlines()
                  if line.strip() and not line.startswith(ADDED_KEY)]
        if done.returncode != 255 or not logged:
            return None
        text = "\n".join(logged)
        for pattern, message, transient in FAILURES:
            if pattern in text:
                return message.format(**self._facts()), transient
        return f"ssh to {self._where()} failed: {logged[-1].strip()}", False

    def _facts(self) -> dict[str, str]:
        """The placeholders of FAILURES, with the fix commands spelled for this destination and these options."""
        host, port = self._settings["hostname"], self._settings["port"]
        copy_id = ["ssh-copy-id", *self._flag("-F", "ssh_config"), *self._flag("-i", "identity"),
                   *self._flag("-p", "port"), self.destination]
        forget_key = ["ssh-keygen", *self._flag("-f", "known_hosts"), "-R",
                      host if port == "22" else f"[{host}]:{port}"]
        return {"host": host, "port": port, "user": self._settings["user"], "copy_id": shlex.join(copy_id),
                "forget_key": shlex.join(forget_key)}

    def _flag(self, flag: str, option: str) -> list[str]:
        value = self._explicit[option]
        return [flag, str(value)] if value else []

    def _where(self) -> str:
        return f"{self._settings['hostname']}:{self._settings['port']}"

    def _copy(self, args: list[str], what: str, timeout: float) -> None:
        if not self._connected:
            self._connect()
        if self.copy_tool == "rsync":  # -L: links become files, as scp and the local copy do
            command = ["rsync", "-rtL", "-e", shlex.join(["ssh", *self._options]), *args]
        else:
            command = ["scp", "-r", *self._options, *args]
        try:
            done = _call(command, timeout, None)
        except subprocess.TimeoutExpired:
            raise BoardError(f"{what} timed out after {timeout:g} s") from None
        if done.returncode != 0:
            raise BoardError(f"{what} failed: {_first_line(done.stderr)}")


def split_destination(destination: str, port: int | None = None) -> tuple[str, int | None]:
    """(user@host, port) from `ssh://user@host:2222` (ssh reads that form, scp and rsync do not: their targets are
    `user@host:path` with the port given apart), or the destination as given with `port`. A port in the URL and a
    different `port` is refused."""
    if not destination.startswith("ssh://"):
        return destination, port
    rest = destination[len("ssh://"):]
    if rest.endswith("/"):
        rest = rest[:-1]
    user, _, hostport = rest.rpartition("@")
    found = re.fullmatch(r"\[([^\]/]+)\](?::(\d+))?|([^:/\[\]@]+)(?::(\d+))?", hostport)
    if not found or "/" in user:
        raise UserError(f"bad SSH destination {destination!r}; pass ssh://user@host:port, user@host or a Host alias")
    host = found.group(1) or found.group(3)
    given = found.group(2) or found.group(4)
    url_port = int(given) if given else None
    if url_port is not None and not 0 < url_port < 65536:
        raise UserError(f"bad SSH port {url_port} in {destination!r}; ports are 1 to 65535")
    if url_port is not None and port is not None and url_port != port:
        raise UserError(f"{destination!r} names port {url_port} but --port says {port}; give the port once")
    return (f"{user}@{host}" if user else host), port or url_port


def _copy_host(destination: str) -> str:
    """The destination as scp and rsync read it before `:path`: an IPv6 address in brackets."""
    user, at, host = destination.rpartition("@")
    return f"{user}{at}[{host}]" if ":" in host else destination


def _client_options(port: int | None, ssh_config: Path | None, identity: Path | None, known_hosts: Path | None,
                    accept_new_host_key: bool, connect_timeout: float) -> list[str]:
    """Options for ssh, scp and rsync's ssh alike (`-o Port`, because scp spells the port flag -P)."""
    options = ["-F", str(Path(ssh_config).expanduser())] if ssh_config else []
    options += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, round(connect_timeout))}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                "-o", f"StrictHostKeyChecking={'accept-new' if accept_new_host_key else 'yes'}"]
    if port:
        options += ["-o", f"Port={port}"]
    if identity:
        options += ["-o", "IdentitiesOnly=yes", "-i", str(Path(identity).expanduser())]
    if known_hosts:  # quoted: ssh reads this option as a space-separated list of files
        options += ["-o", f'UserKnownHostsFile="{Path(known_hosts).expanduser().absolute()}"']
    return options


def _call(command: list[str], timeout: float, input: bytes | None,
          on_line: Callable[[str], None] | None = None) -> subprocess.CompletedProcess:
    """Run `command` in its own process group, so a timeout or Ctrl-C also ends what it started (scp's ssh)."""
    stdin = subprocess.DEVNULL if input is None else subprocess.PIPE
    with subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          start_new_session=True) as proc:
        try:
            if on_line is None:
                out, err = proc.communicate(input, timeout=timeout)
            else:
                out, err = _stream(proc, input, timeout, on_line)
        except BaseException:  # the group is not ours, so Ctrl-C would not reach it either
            _kill_group(proc)
            raise
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def _stream(proc: subprocess.Popen, input: bytes | None, timeout: float,
            on_line: Callable[[str], None]) -> tuple[bytes, bytes]:
    """communicate(), but each stdout line goes to `on_line` (in this thread) as soon as it arrives. Threads read
    the pipes, so neither can fill up and block the command; raises TimeoutExpired as communicate() does."""
    lines: queue.Queue[bytes | None] = queue.Queue()
    err: list[bytes] = []

    def read_out() -> None:
        for line in iter(proc.stdout.readline, b""):
            lines.put(line)
        lines.put(None)

    def write_in() -> None:
        try:
            proc.stdin.write(input)
            proc.stdin.close()
        except OSError:  # the command exited without reading it all, as communicate() allows
            pass

    workers = [threading.Thread(target=read_out, daemon=True),
               threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)]
    if input is not None:
        workers.append(threading.Thread(target=write_in, daemon=True))
    for worker in workers:
        worker.start()
    deadline, out = time.monotonic() + timeout, []
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            raise subprocess.TimeoutExpired(proc.args, timeout) from None
        if line is None:
            break
        out.append(line)
        on_line(line.decode(errors="replace").rstrip("\r\n"))
    proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
    for worker in workers:
        worker.join(max(deadline - time.monotonic(), 0.01))
    return b"".join(out), b"".join(err)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _socket_parent() -> str | None:
    """Where the control socket's folder goes: unix socket paths are limited to ~104-108 bytes and ssh appends a
    17-character suffix while binding, so a long $TMPDIR (macOS) falls back to /tmp."""
    return None if len(tempfile.gettempdir()) <= 40 else "/tmp"


def _existing(sources: list[Path]) -> list[Path]:
    paths = [Path(s) for s in sources]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UserError(f"cannot copy {', '.join(missing)}: no such file or folder")
    return paths


def _brief(argv: list[str]) -> str:
    text = shlex.join(argv)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return next((line for line in lines if not line.startswith(ADDED_KEY)), "no error message")
