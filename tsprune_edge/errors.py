"""The failures the CLI turns into one line, each kind with its own exit code (mapped in `cli.main`, documented
in docs/hostile-input.md): the user can tell "fix what you typed" from "the board failed" from "this machine ran
out of room"."""


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
