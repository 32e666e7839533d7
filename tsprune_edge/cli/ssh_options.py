"""How every command that measures on a board reaches it over SSH (`bench`, `fit`, `sweep`, `devices check`): the
options declared once, with their help, and the one check of their values. The transport hands the same port and
key to ssh, scp and rsync alike.

Each factory returns a fresh typer option (a command's signature takes it as the parameter's default)."""

from __future__ import annotations

import typer

from tsprune_edge.cli import guards


def host():
    return typer.Option(None, help="SSH destination of the board: user@address, ssh://user@address:port or a "
                        "~/.ssh/config alias.")


def port():
    return typer.Option(None, help="The board's SSH port (default: the destination's, the ssh config's, else 22).")


def identity():
    return typer.Option(None, help="Private key file the board accepts; only this key is offered.")


def accept_new_host_key():
    return typer.Option(False, help="Trust an unknown host key on first contact (never a changed one).")


def ssh_config():
    return typer.Option(None, help="An ssh_config file to use instead of ~/.ssh/config.")


def check(port_number: int | None) -> None:
    """Refuse a port outside 1..65535 in one line, before anything connects."""
    guards.number("--port", port_number, 1, 65535)
