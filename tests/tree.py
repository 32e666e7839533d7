"""A file tree's exact state, to assert that a refused command (or a test sharing a fixture) changed nothing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root` with its size, mtime and sha256 (folders by name)."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            state[os.path.relpath(os.path.join(folder, name), root)] = ("dir",)
        for name in files:
            path = os.path.join(folder, name)
            info = os.stat(path)
            state[os.path.relpath(path, root)] = (info.st_size, info.st_mtime_ns,
                                                  hashlib.sha256(Path(path).read_bytes()).hexdigest())
    return state
