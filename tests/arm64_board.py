"""Emulated arm64 boards for tests: Debian arm64 under qemu-user, in a chroot; Raspberry-Pi-4-like (bookworm, the
runtimes in /opt venvs) by default, a stock Raspberry Pi OS bookworm (EXTERNALLY-MANAGED, no runtime) with
PI_OS_SCRIPT, a stock Jetson-Nano-like one (bullseye, no runtime) with JETSON_SCRIPT; `tsprune-edge devices setup`
takes the stock ones to ready. `Board.offline_wrapper` is a ForceCommand whose sessions have no network at all.

For correctness only (does the agent run, do the runtimes load and compute on aarch64); emulated timings mean
nothing. Needs root on Linux x86_64. `scripts/arm64-board.sh` (or `scripts/jetson-board.sh`) builds the root
filesystem once (several minutes, emulated pip installs) and caches it as a zstd tarball keyed by its recipe; a
board restores it in seconds.

    from tests.arm64_board import emulated_board
    from tests.sshd import running_sshd

    with emulated_board(tmp_path) as board:
        board.run(["uname", "-m"]).stdout                    # 'aarch64\\n'
        board.copy_in(AGENT, "/root/agent.py")
        board.run([board.pythons["tflite_runtime"], "agent.py", "preflight", "--runtime", "tflite_runtime"])
        # a real sshd on 127.0.0.1 whose sessions (commands, scp, rsync) land in the board:
        with running_sshd(tmp_path / "sshd", extra_config=[f"ForceCommand {board.wrapper}"]) as server:
            subprocess.run(["ssh", "-F", server.ssh_config, "board", "uname -m"])
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "arm64-board.sh"
# runtime name (as agent.py spells it) -> interpreter inside the board that has it
PYTHONS = {"onnxruntime": "/opt/ort/bin/python", "tflite_runtime": "/opt/tflite/bin/python",
           "ai_edge_litert": "/opt/litert/bin/python"}
# The stock Pi 4 board (what a fresh Pi OS bookworm 64-bit has): system Python 3.11 only, no runtime anywhere.
PI_OS_SCRIPT = REPO / "scripts" / "pi-os-board.sh"
# The stock Jetson-Nano-class board: Debian bullseye (Python 3.9, numpy 1.19.5), no runtime, Cortex-A57.
JETSON_SCRIPT = REPO / "scripts" / "jetson-board.sh"
BOARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUILD_RECORD = "/usr/share/tsprune-edge-board/build.json"  # inside the board: versions, build time, cache key
STATE_DIR = Path("/run/tsprune-edge-arm64-board")  # binfmt bookkeeping, shared with scripts/arm64-board.sh
BINFMT_ENTRY = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
CPUS = ("cortex-a72", "cortex-a57", "cortex-a53")  # QEMU_CPU: Raspberry Pi 4, Jetson Nano, Raspberry Pi 3
BUILD_TIMEOUT_S = 1800  # a cold build (debootstrap + emulated pip installs) takes ~5-10 min


class BoardError(RuntimeError):
    """The board could not be built, restored, mounted or torn down."""


def unavailable_reason() -> str | None:
    """Why no emulated board can run on this machine, or None when one can."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return f"the emulated arm64 board needs an x86_64 Linux host (this is {sys.platform} {platform.machine()})"
    if os.geteuid() != 0:
        return "the emulated arm64 board needs root (debootstrap, mount, chroot)"
    if not shutil.which("apt-get") and not all(shutil.which(tool) for tool in ("update-binfmts", "zstd")):
        return "the emulated arm64 board needs apt-get, or qemu-user-static, binfmt-support and zstd installed"
    return None


def _script(*args: str, timeout: float = 120, cpu: str | None = None, stream: bool = False,
            script: Path = SCRIPT) -> subprocess.CompletedProcess:
    """Run a board script (scripts/arm64-board.sh or scripts/jetson-board.sh); stream=True passes its progress
    (stderr) through instead of capturing it."""
    env = dict(os.environ, **({"TSPRUNE_EDGE_BOARD_CPU": cpu} if cpu else {}))
    proc = subprocess.run(["bash", str(script), *args], stdout=subprocess.PIPE,
                          stderr=None if stream else subprocess.PIPE, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or "(its progress went to stderr)").strip().splitlines()[-30:])
        raise BoardError(f"scripts/{script.name} {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
    return proc


def cache_tarball() -> Path:
    """Where the cached root filesystem for the current recipe lives (it may not exist yet)."""
    cache = Path(os.environ.get("TSPRUNE_EDGE_BOARD_CACHE", Path.home() / ".cache/tsprune-edge/arm64-board"))
    return cache / f"arm64-board-{_script('key').stdout.strip()}.tar.zst"


def mounts_under(root: Path) -> list[str]:
    """Mount points at or under root, innermost (most recent) first."""
    root_text = os.path.realpath(root)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])  # \040: a space
            if point == root_text or point.startswith(root_text + "/"):
                found.append(point)
    return found[::-1]


class _Binfmt:
    """The kernel's qemu-aarch64 entry: enabled if needed, disabled again by the last user if one of us enabled it.

    Each user (a board here, scripts/arm64-board.sh while building) holds a shared flock on binfmt.users."""

    def __init__(self) -> None:
        self.enabled_by_us = False  # this board enabled it
        self.disabled_by_us = False  # ... and this board disabled it at teardown
        self._users = None

    @staticmethod
    def on() -> bool:
        try:
            return BINFMT_ENTRY.read_text().splitlines()[0].strip() == "enabled"
        except (OSError, IndexError):
            return False

    def acquire(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        with open(STATE_DIR / "binfmt.mutex", "a") as mutex:
            fcntl.flock(mutex, fcntl.LOCK_EX)
            if not self.on():
                proc = subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True, text=True)
                if proc.returncode != 0 or not self.on():
                    raise BoardError(f"cannot enable the qemu-aarch64 binfmt entry: {proc.stderr.strip()}")
                (STATE_DIR / "binfmt.enabled-by-us").touch()
                self.enabled_by_us = True
            self._users = open(STATE_DIR / "binfmt.users", "a")  # noqa: SIM115 (held for the board's life)
            fcntl.flock(self._users, fcntl.LOCK_SH)

    def release(self) -> None:
        if self._users is None:
            return
        with open(STATE_DIR / "binfmt.mutex", "a") as mutex:
            fcntl.flock(mutex, fcntl.LOCK_EX)
            try:
                fcntl.flock(self._users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                last = True
            except BlockingIOError:
                last = False
            marker = STATE_DIR / "binfmt.enabled-by-us"
            if last and marker.exists():
                subprocess.run(["update-binfmts", "--disable", "qemu-aarch64"], capture_output=True, check=True)
                marker.unlink()
                self.disabled_by_us = True
            self._users.close()
            self._users = None


@dataclass
class Board:
    """A mounted emulated board. Paths in `pythons`, `run` and `copy_in` are paths inside the board."""

    root: Path  # the root filesystem, on the host
    wrapper: Path  # executable for sshd's ForceCommand: runs $SSH_ORIGINAL_COMMAND inside the board
    offline_wrapper: Path  # the same in a network namespace of its own: no interface up, no route (--offline)
    cpu: str = "cortex-a72"  # QEMU_CPU and the cpuinfo's CPU part: one of CPUS
    pythons: dict[str, str] = field(default_factory=lambda: dict(PYTHONS))
    record: dict = field(default_factory=dict)  # the build record: versions inside, build time, cache key
    binfmt: _Binfmt = field(default_factory=_Binfmt, repr=False)

    @property
    def env(self) -> dict[str, str]:
        """The clean environment of every board command (nothing of the host's, pip settings included)."""
        return {"PATH": BOARD_PATH, "HOME": "/root", "LANG": "C.UTF-8", "QEMU_CPU": self.cpu,
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_DEFAULT_TIMEOUT": "120",
                "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt"}  # as scripts/board-lib.sh's board_env

    def run(self, argv: Sequence[str], *, cwd: str = "/root", env: Mapping[str, str] | None = None,
            input: str | None = None, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess:
        """Run argv inside the board (chroot, clean environment plus `env`); stdout and stderr captured as text."""
        root = str(self.root)

        def enter() -> None:  # in the child, before exec: the executable is then looked up inside the board
            os.chroot(root)
            os.chdir(cwd)

        return subprocess.run(list(argv), env={**self.env, **(env or {})}, input=input, capture_output=True,
                              text=True, errors="replace", timeout=timeout, check=check, preexec_fn=enter)

    def sh(self, command: str, **kwargs) -> subprocess.CompletedProcess:
        """Run a shell command line inside the board."""
        return self.run(["/bin/sh", "-c", command], **kwargs)

    def host_path(self, board_path: str) -> Path:
        """The host path of an absolute path inside the board."""
        if not board_path.startswith("/"):
            raise ValueError(f"not an absolute board path: {board_path}")
        return self.root / board_path.lstrip("/")

    def copy_in(self, source: str | os.PathLike, board_path: str) -> str:
        """Copy a host file or directory into the board; returns board_path."""
        target = self.host_path(board_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(source).is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
        return board_path


def _write_offline_wrapper(path: Path, wrapper: Path) -> None:
    """A ForceCommand that runs `wrapper` under `unshare --net`: the session's commands get a network namespace
    with only a loopback that is down, so the board reaches no index (pip fails at once) while sshd, outside it,
    still carries the session, scp and rsync over its pipes."""
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    path.write_text(f"#!/bin/sh\n# the board without a network: see tests/arm64_board.py\n"
                    f"exec {unshare} --net {shlex.quote(str(wrapper))}\n")
    path.chmod(0o755)


def logging_wrapper(path: Path, wrapper: Path, log: Path) -> Path:
    """A ForceCommand that appends each session's command line to `log`, then runs it through `wrapper`: what
    the host started on the board, exactly (the agent's interpreter and environment included)."""
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$SSH_ORIGINAL_COMMAND\" >>{shlex.quote(str(log))}\n"
                    f"exec {shlex.quote(str(wrapper))}\n")
    path.chmod(0o755)
    return path


@contextlib.contextmanager
def emulated_board(workdir: str | os.PathLike, *, cpu: str = "cortex-a72", keep: bool = False,
                   script: Path = SCRIPT, pythons: Mapping[str, str] = PYTHONS) -> Iterator[Board]:
    """Restore (or first build) the board that `script` makes (the Pi-4-class bookworm one by default; PI_OS_SCRIPT
    with pythons={} for the stock Pi OS one; JETSON_SCRIPT with cpu="cortex-a57" and pythons={} for the stock
    Nano-class one) into workdir/rootfs, mount it, yield a Board; unmount at exit.

    Mounts: proc (with the host's binfmt_misc, read-only, so the agent knows it is emulated), an ARM cpuinfo over
    proc/cpuinfo (without it onnxruntime and ai-edge-litert crash under qemu), sysfs read-only and a minimal /dev.
    Teardown unmounts innermost first (lazily where busy), disables the binfmt entry if this board enabled it and
    no other user remains, and deletes the root filesystem unless keep=True (never while anything is mounted).
    """
    reason = unavailable_reason()
    if reason:
        raise BoardError(reason)
    if cpu not in CPUS:
        raise ValueError(f"cpu must be one of {', '.join(CPUS)}, not {cpu!r}")
    workdir = Path(workdir).resolve()
    root = workdir / "rootfs"
    wrapper = workdir / "board-ssh-wrapper"
    board = Board(root=root, wrapper=wrapper, offline_wrapper=workdir / "board-ssh-wrapper-offline", cpu=cpu,
                  pythons=dict(pythons))
    try:  # a cold build shows its progress
        _script("restore", str(root), timeout=BUILD_TIMEOUT_S, stream=True, script=script)
        board.binfmt.acquire()
        _script("mount", str(root), cpu=cpu, script=script)
        _script("wrapper", str(root), str(wrapper), cpu=cpu, script=script)
        _write_offline_wrapper(board.offline_wrapper, wrapper)
        record = board.host_path(BUILD_RECORD)
        board.record = json.loads(record.read_text()) if record.is_file() else {}
        yield board
    finally:
        errors = []
        if root.exists():
            try:
                _script("umount", str(root), script=script)
            except BoardError as exc:
                errors.append(str(exc))
        try:
            board.binfmt.release()
        except (OSError, subprocess.CalledProcessError) as exc:
            errors.append(f"cannot release the binfmt entry: {exc}")
        left = mounts_under(root) if root.exists() else []
        if left:
            errors.append(f"still mounted, so {root} was kept: {left}")
        elif not keep and root.exists():
            shutil.rmtree(root)
        if errors:
            raise BoardError("; ".join(errors))
