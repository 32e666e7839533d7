"""Library noise off by default: the C++ logs of TF/LiteRT and absl, oneDNN notices, and Python warnings and log
records below ERROR. Environment variables must be set before those libraries import; a user's own setting wins.
What C++ code still writes to stderr goes to a log file (`log_file()`), not the terminal."""

from __future__ import annotations

import logging
import os
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


def log_file() -> Path:
    return Path(tempfile.gettempdir()) / f"tsprune-edge-{os.getuid()}.log"


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
    target = os.open(log_file(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
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
