"""Imports flow one way: no cycle between files, none between folders, and no layer imports one above it.

The graph is read from the sources with `ast`, every import counted, those inside functions included (a lazy
import is how a cycle hides). Modules are the ones the wheel ships, at the names pyproject.toml maps them to
(`export/` is `tsprune_edge.export`, `devices/` is `tsprune_edge.devices`). An import names a module; the
packages above it run first but are not edges (a package's __init__ that imports its own modules is no cycle).
A folder is a subpackage; each module at the top of tsprune_edge is a unit of its own.

The layering, bottom first (LAYERS): a unit may import its own layer and those below it, never one above.
- foundation: the version, errors, file formats, atomic writes, the default job's settings (stdlib only);
- data, then models and a model's shape record (architecture.py);
- training and checkpoints (train, checkpoint, workflow);
- prune (prune/dimensions.py is torch-free, so the layers above can name dimensions without torch);
- variants: the bundle names, which name pruned dimensions;
- export (and export_job, which prunes and exports);
- devices: profiles, transports, the bench. prune and export never import devices: a board's alignment reaches
  them as a plain int from the CLI (cli/pruning_options.py). devices/agent.py runs alone on a board and imports
  nothing from the package;
- report (reads bench runs);
- fit and sweep (prune, export, bench and judge on boards);
- cli.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
ROOT = "tsprune_edge"

LAYERS = (
    ("foundation", (ROOT, f"{ROOT}.errors", f"{ROOT}.formats", f"{ROOT}.atomic", f"{ROOT}.defaults")),
    ("data", (f"{ROOT}.data",)),
    ("models", (f"{ROOT}.models", f"{ROOT}.architecture")),
    ("training", (f"{ROOT}.train", f"{ROOT}.checkpoint", f"{ROOT}.workflow")),
    ("prune", (f"{ROOT}.prune",)),
    ("variants", (f"{ROOT}.variants",)),
    ("export", (f"{ROOT}.export", f"{ROOT}.export_job", f"{ROOT}.baselines")),
    ("devices", (f"{ROOT}.devices",)),
    ("report", (f"{ROOT}.report",)),
    ("fit and sweep", (f"{ROOT}.fit", f"{ROOT}.sweep")),
    ("cli", (f"{ROOT}.cli", f"{ROOT}.__main__")),
)

@dataclass(frozen=True)
class Import:
    source: str
    target: str
    where: str  # path:line of the import statement


def shipped_modules() -> dict[str, tuple[Path, bool]]:
    """{module name: (file, is a package)} for every module of the packages pyproject.toml ships."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = setuptools["package-dir"]
    modules = {}
    for package in setuptools["packages"]:
        base = max((p for p in mapped if package == p or package.startswith(p + ".")), key=len)
        folder = REPO / mapped[base] / Path(*package[len(base):].split(".")[1:])
        for path in sorted(folder.glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = (path, path.stem == "__init__")
    return modules


MODULES = shipped_modules()


def _owner(name: str) -> str | None:
    """The module `name` is, or the one it is an attribute of (`from pkg import name` where name is no module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> list[Import]:
    """Every import of a package module by `module`, at any depth of its code."""
    path, is_package = MODULES[module]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                origin = f"{base}.{node.module}" if node.module else base
            else:
                origin = node.module
            names = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in MODULES else origin
                     for alias in node.names]
        else:
            continue
        where = f"{path.relative_to(REPO)}:{node.lineno}"
        for name in names:
            if name == ROOT or name.startswith(ROOT + "."):
                target = _owner(name)
                assert target is not None, f"{where} imports {name}, which the package does not ship"
                if target != module:
                    found.append(Import(module, target, where))
    return found


EDGES = [edge for module in MODULES for edge in imports_of(module)]


def unit(module: str) -> str:
    """The folder (first-level subpackage) a module belongs to, or the module itself at the top of the package."""
    parts = module.split(".")
    folder = ".".join(parts[:2])
    return folder if len(parts) > 1 and MODULES.get(folder, (None, False))[1] else module


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle [a, b, ..., a] of `graph`, or None (depth-first search for an edge back into the path)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def describe(cycle: list[str], edges: list[Import], key) -> str:
    steps = []
    for a, b in zip(cycle, cycle[1:], strict=False):
        where = sorted({e.where for e in edges if key(e.source) == a and key(e.target) == b})
        steps.append(f"  {a} -> {b}   ({', '.join(where)})")
    return "\n".join(steps)


def test_the_package_is_read_whole():
    """The walk sees every folder and the modules that lived in cycles (a wrong pyproject mapping finds none)."""
    for name in (f"{ROOT}.export.bundle", f"{ROOT}.devices.agent", f"{ROOT}.prune.width", f"{ROOT}.report.html",
                 f"{ROOT}.cli", f"{ROOT}.checkpoint"):
        assert name in MODULES
    edges = {(e.source, e.target) for e in EDGES}
    assert (f"{ROOT}.report.render", f"{ROOT}.report.html") in edges  # imported inside write_report
    assert (f"{ROOT}.export.bundle", ROOT) in edges  # from tsprune_edge import __version__


def test_no_cycle_between_files():
    graph: dict[str, set[str]] = {}
    for edge in EDGES:
        graph.setdefault(edge.source, set()).add(edge.target)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between files:\n" + describe(cycle, EDGES, lambda m: m)


def test_no_cycle_between_folders():
    graph: dict[str, set[str]] = {}
    for edge in EDGES:
        if unit(edge.source) != unit(edge.target):
            graph.setdefault(unit(edge.source), set()).add(unit(edge.target))
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between folders:\n" + describe(cycle, EDGES, unit)


def test_every_unit_has_a_layer_and_imports_none_above_it():
    rank = {name: index for index, (_, names) in enumerate(LAYERS) for name in names}
    units = {unit(module) for module in MODULES}
    assert units == set(rank), f"units without a layer: {sorted(units - set(rank))}; stale: {sorted(set(rank) - units)}"
    upward = [f"  {e.where}: {e.source} ({LAYERS[rank[unit(e.source)]][0]}) imports {e.target} "
              f"({LAYERS[rank[unit(e.target)]][0]})" for e in EDGES if rank[unit(e.target)] > rank[unit(e.source)]]
    assert not upward, "imports up the layering (see this test's docstring):\n" + "\n".join(upward)


def test_the_board_agent_imports_nothing_from_the_package():
    """devices/agent.py is copied alone to a board (stdlib, numpy and one runtime there)."""
    assert imports_of(f"{ROOT}.devices.agent") == []


def test_devices_imports_nothing_from_the_report():
    """The bench takes the rule for adding rounds as an argument; the run folder's owner is devices/runs.py."""
    found = [e for e in EDGES if e.source.startswith(f"{ROOT}.devices") and e.target.startswith(f"{ROOT}.report")]
    assert not found, [e.where for e in found]


# What reads a manifest, a bench run, a report or a fit.
READERS = (f"{ROOT}.formats", f"{ROOT}.devices.readings", f"{ROOT}.devices.runs", f"{ROOT}.export.manifest",
           f"{ROOT}.report.verdict", f"{ROOT}.report.cells", f"{ROOT}.report.render", f"{ROOT}.report.html",
           f"{ROOT}.report.profile_diff", f"{ROOT}.fit.state")
HEAVY = ("torch", "onnx", "ai_edge_litert", "litert_torch", "tensorflow")


def test_reading_results_needs_neither_torch_nor_a_tflite_runtime(tmp_path):
    """In a fresh interpreter: import every reader, render the committed study report (plots included) and read a
    fit's budget; none of the heavy frameworks is loaded."""
    import json
    import subprocess

    (tmp_path / "fit" / "results" / "run").mkdir(parents=True)
    (tmp_path / "fit" / "fit.json").write_text(json.dumps({"budget_ms": 1.5}))
    code = (f"import importlib, json, sys\n"
            f"from pathlib import Path\n"
            f"for name in {READERS!r}:\n"
            f"    importlib.import_module(name)\n"
            f"from tsprune_edge.report.render import write_report\n"
            f"from tsprune_edge.report.verdict import fit_target\n"
            f"rows = json.loads(Path({str(REPO / 'benchmarks/results/study/report.json')!r}).read_text())['rows']\n"
            f"written = write_report(rows[:12], Path({str(tmp_path / 'report')!r}))\n"
            f"budget = fit_target(Path({str(tmp_path / 'fit' / 'results' / 'run')!r}))\n"
            f"print(json.dumps([len(written), budget, sorted(m for m in {HEAVY!r} if m in sys.modules)]))")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    written, budget, heavy = json.loads(ran.stdout)
    assert budget == {"budget_ms": 1.5, "speedup": None} and written > 4 and heavy == []
