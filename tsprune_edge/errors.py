"""The failures the CLI turns into one line, each kind with its own exit code (mapped in `cli.main`, documented
in docs/hostile-input.md): the user can tell "fix what you typed" from "the board failed" from "this machine ran
out of room"."""

from __future__ import annotations

import errno
import re
from collections.abc import Callable


class ToolError(Exception):
    """A failure that ends a command with one line naming the problem and the fix."""

    exit_code = 1


class UserError(ToolError):
    """Bad input from the user: the message names the problem and how to fix it. Exit 2."""

    exit_code = 2


class BoardError(ToolError):
    """A board, the connection to it or a runtime on it failed while working; what was measured is kept. Exit 3."""

    exit_code = 3


class ResourceError(ToolError):
    """This machine ran out of something the command needs (disk space, memory); nothing half-written is left
    looking finished. Exit 4."""

    exit_code = 4


NO_ROOM = {errno.ENOSPC, errno.EDQUOT}
_NO_ROOM_TEXT = ("No space left on device", "Disk quota exceeded")
_NO_MEMORY_TEXT = ("can't allocate memory", "std::bad_alloc", "out of memory", "Cannot allocate memory")


def from_environment(exc: BaseException, option_for: Callable[[str | None], str]) -> ToolError | None:
    """The one line for a failure of this machine rather than of the tool: a full disk or quota (exit 4, naming
    the file and the option that chose where it goes), memory exhausted (exit 4), a file that cannot be read or
    written (permission denied, a read-only file system; exit 2, naming it). Looks through the causes, since
    libraries wrap an OSError in their own errors; None for anything else (a bug keeps its traceback)."""
    chain = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for fault in chain:
        text = str(fault)
        if (isinstance(fault, OSError) and fault.errno in NO_ROOM) or any(t in text for t in _NO_ROOM_TEXT):
            where = getattr(fault, "filename", None) or _copied_to(fault)
            return ResourceError(f"the disk is full writing {where or 'the output'}; free space on that disk or "
                                 f"choose another {option_for(where)}")
        if isinstance(fault, MemoryError) or (isinstance(fault, (RuntimeError, OSError))
                                              and any(t in text for t in _NO_MEMORY_TEXT)):
            return ResourceError(f"out of memory ({_memory_limit(text)}); close other programs, raise the limit, or "
                                 "choose smaller sizes (--batch-size, --preset, --seq-len, --pred-len)")
    first = chain[0]
    if isinstance(first, OSError) and first.filename is not None and first.errno is not None:
        return UserError(f"cannot use {first.filename}: {first.strerror or 'error ' + str(first.errno)}; check "
                         "that path and its permissions, or choose another")
    return None


def _memory_limit(text: str) -> str:
    """What failed and under which limit: the allocation torch reports, and `ulimit -v` where one is set."""
    import resource

    tried = re.search(r"allocate (\d+) bytes", text)
    what = f"an allocation of {int(tried[1]) / 2**20:,.0f} MiB failed" if tried else "an allocation failed"
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return what + (f" under this process's {soft / 2**30:.1f} GiB address-space limit (ulimit -v)"
                   if soft != resource.RLIM_INFINITY else " with the machine's memory in use")


def _copied_to(fault: BaseException) -> str | None:
    """The file a folder copy (shutil.copytree's Error: a list of (source, destination, why)) failed to write."""
    listed = fault.args[0] if fault.args and isinstance(fault.args[0], list) else []
    return next((str(entry[1]) for entry in listed if isinstance(entry, tuple) and len(entry) == 3
                 and any(t in str(entry[2]) for t in _NO_ROOM_TEXT)), None)
