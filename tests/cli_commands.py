"""The commands the CLI itself registers, and the command lines tests write, so coverage checks follow the app
rather than a list kept by hand."""

from __future__ import annotations

import ast
from pathlib import Path

_MARKERS = {"tsprune_edge", "tsprune-edge"}  # what a command line names the CLI by (`-m tsprune_edge`, the script)


def command_paths() -> set[tuple[str, ...]]:
    """Every command of `tsprune_edge.cli.app`, groups walked: {("train",), ("data", "fetch"), ...}."""
    import typer

    from tsprune_edge.cli import app

    def walk(command, prefix: tuple[str, ...]) -> set[tuple[str, ...]]:
        children = getattr(command, "commands", None)
        if children is None:
            return {prefix}
        return {path for name, child in children.items() for path in walk(child, (*prefix, name))}

    return walk(typer.main.get_command(app), ())


def invocations(source: Path) -> list[tuple[str, ...]]:
    """The literal arguments of every command line in a test module: `cli("bench", ...)`, `T("bench", ...)` (the
    hostile table), `main(["bench", ...])` and argv lists holding `-m tsprune_edge` or `tsprune-edge`. Each is cut
    at its first argument that is not a string literal."""
    tree = ast.parse(source.read_text(), str(source))
    launchers = {target.id for node in tree.body if isinstance(node, ast.Assign)  # CLI = [python, "-m", ...]
                 and isinstance(node.value, ast.List | ast.Tuple) and _MARKERS & set(_literals(node.value.elts, False))
                 for target in node.targets if isinstance(target, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("cli", "T"):
            found.append(_literals(node.args))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "main" and node.args \
                and isinstance(node.args[0], ast.List | ast.Tuple):
            found.append(_literals(node.args[0].elts))
        elif isinstance(node, ast.List | ast.Tuple):
            for i, element in enumerate(node.elts):
                if (isinstance(element, ast.Constant) and element.value in _MARKERS) or (
                        isinstance(element, ast.Starred) and isinstance(element.value, ast.Name)
                        and element.value.id in launchers):
                    found.append(_literals(node.elts[i + 1:]))
    return [args for args in found if args]


def command_of(args: tuple[str, ...], paths: set[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The registered command an argument list runs (options before it skipped), or None."""
    words = [a for a in args if not a.startswith("-")]
    for length in (2, 1):
        if tuple(words[:length]) in paths:
            return tuple(words[:length])
    return None


def _literals(nodes: list[ast.expr], stop: bool = True) -> tuple[str, ...]:
    words = []
    for node in nodes:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            words.append(node.value)
        elif stop:
            break
    return tuple(words)

