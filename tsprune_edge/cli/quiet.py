"""Library noise off by default: the C++ logs of TF/LiteRT and absl, oneDNN notices, and Python warnings and log
records below ERROR. Environment variables must be set before those libraries import; a user's own setting wins.
What C++ code still writes to stderr goes to a log file (`log_folder()/native.log`), not the terminal.

The log lives in a private per-user folder (0700, owned by us, not a symlink), opened without following links: a
name another user (or an old run) left in the temp folder is never followed, truncated or allowed to break a
command; when the folder cannot be trusted, the log goes to a fresh unpredictable name instead."""

from __future__ import annotations

import logging
import os
import stat
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TF and LiteRT C++ logs, oneDNN's notice among them
    "GLOG_minloglevel": "3",  # glog and absl C++ logs
    "ABSL_MIN_LOG_LEVEL": "3",
    "GRPC_VERBOSITY": "ERROR",
    "RAY_DEDUP_LOGS": "1",
}


def quiet_libraries(verbose: bool) -> None:
    if verbose:
        warnings.resetwarnings()
        logging.getLogger().setLevel(logging.INFO)
        return
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"tsprune_edge(\.|$)")  # our own warnings are for the user
    logging.getLogger().setLevel(logging.ERROR)
    for name in ("absl", "torchao", "torch", "onnxruntime", "tensorflow", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)


LOG_NAME = "native.log"


def log_folder() -> Path:
    return Path(tempfile.gettempdir()) / f"tsprune-edge-{os.getuid()}"


def _private_folder(folder: Path) -> bool:
    """`folder` exists or is created as a real folder owned by us that no one else can write into."""
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    try:
        info = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def open_log() -> int:
    """A descriptor for this run's native log: `log_folder()/native.log`, else a fresh `tsprune-edge-*.log` in the
    temp folder (O_EXCL), else /dev/null. Never follows a symlink, never fails the command."""
    folder = log_folder()
    if _private_folder(folder):
        try:
            return os.open(folder / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        except OSError:  # a folder or a link at the name: ours, but not a file to write into
            pass
    try:
        fd, _ = tempfile.mkstemp(prefix=f"tsprune-edge-{os.getuid()}-", suffix=".log")
        return fd
    except OSError:  # no room or no right in the temp folder: the noise goes nowhere rather than stop the command
        return os.open(os.devnull, os.O_WRONLY)


@contextmanager
def native_logs_to_file(verbose: bool) -> Iterator[None]:
    """C++ libraries (absl, TF/LiteRT, Ray) write to file descriptor 2 whatever their settings say: point it at a
    log file for the run, and keep Python's own stderr (progress, the error line) on the terminal."""
    if verbose:
        yield
        return
    try:
        on_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, ValueError, OSError):  # a captured stderr (tests): leave it be
        on_fd2 = False
    sys.stderr.flush()
    target = open_log()
    saved = os.dup(2)
    os.dup2(target, 2)
    os.close(target)
    original = sys.stderr
    if on_fd2:
        sys.stderr = open(saved, "w", buffering=1, closefd=False, encoding=original.encoding,  # noqa: SIM115
                          errors="backslashreplace")
    try:
        yield
    finally:
        if on_fd2:
            sys.stderr.flush()
            sys.stderr = original
        os.dup2(saved, 2)
        os.close(saved)
