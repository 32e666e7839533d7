"""Where tables go: stdout, at the terminal's width, or wide enough that no figure is cut when piped to a file."""

from __future__ import annotations

import sys

from rich.console import Console

PIPED_WIDTH = 200


def table_console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)
