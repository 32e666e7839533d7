"""Atomic file writes: a reader sees the old file or the whole new one, never half of it."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

_UMASK = os.umask(0o022)  # read once: mkstemp makes files 0600, a finished file gets the usual 0666 & ~umask
os.umask(_UMASK)


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write` on a temporary file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with naming(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o666 & ~_UMASK)
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """An OSError while writing `path` (a full disk, a quota) names `path`, not the scratch file nor nothing: the
    one line the user sees says which file could not be written."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None or (exc.filename is not None and not Path(exc.filename).name.startswith(".")):
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def write_json_atomic(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


@contextmanager
def scratch_beside(dst: Path) -> Iterator[Path]:
    """An empty scratch file beside `dst`, for writers that take a path rather than a handle; finish it with
    `replace_finished`. Removed unless it was moved away."""
    dst = Path(dst)
    with naming(dst):
        fd, name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
        os.close(fd)
    try:
        with naming(dst):
            yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def replace_finished(tmp: Path, dst: Path) -> None:
    """Give a file written by someone else's writer the usual permissions (mkstemp leaves 0600, some converters
    recreate the file 0755), then rename it over `dst` atomically."""
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, dst)
