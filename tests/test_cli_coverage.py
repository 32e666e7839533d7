"""Coverage read from the CLI itself: every command the app registers is run by a test of what it does, and
every model `tsprune-edge models` lists is in each registry-wide test.

Why these fail when something new arrives without tests: the expected sets come from the CLI, not from a list
here. Registering `app.command("distill")` adds ("distill",) to `command_paths()`; no test module holds a
`cli("distill", ...)`, `main(["distill", ...])` or argv line for it, so the first test names it (and
tests/test_hostile.py's `test_every_command_has_bad_input_rows` names it too, having no `CASES` row for it).
Registering a model adds a row to `tsprune-edge models`; the registry-wide tests parametrise over
`available_models()`, so they take it at once, and the second test checks that they did: a registry-wide module
that lists its models by hand, skips one, or is no longer parametrised by model leaves the new name out of its
collected test ids, and the test names the model and the module.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cli_commands import command_of, command_paths, invocations
from tests.paths import REPO
from tsprune_edge.models import available_models

# The tests parametrised over every registered model, and what each proves for a model.
REGISTRY_WIDE = {
    "tests/test_models.py": "the deployment signature, a training step, the registry",
    "tests/test_export_parity.py": "ONNX Runtime and LiteRT agree with torch",
    "tests/test_export_opset13.py": "opset-13 ONNX agrees with torch, dense and pruned by each method",
}
# Command lines there are refusals only; a command's own tests show what it does.
BAD_INPUT_HOMES = {"test_hostile.py", "test_hostile_properties.py"}


def test_every_command_is_run_by_a_test_of_what_it_does():
    paths = command_paths()
    assert {("train",), ("data", "fetch"), ("devices", "check")} <= paths  # the walk reaches into the groups
    run = {command_of(args, paths) for module in sorted((REPO / "tests").glob("test_*.py"))
           if module.name not in BAD_INPUT_HOMES for args in invocations(module)}
    missing = sorted(" ".join(path) for path in paths - run)
    assert not missing, f"no test runs `tsprune-edge {missing[0]}` (all: {missing}); test what it does"


def test_the_models_the_cli_lists_are_in_every_registry_wide_test(cli):
    listed = _listed_models(cli)
    assert listed == available_models() and len(listed) >= 8
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                *REGISTRY_WIDE], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert collected.returncode == 0, collected.stdout[-2000:] + collected.stderr[-2000:]
    for module in REGISTRY_WIDE:
        per_test = _models_per_test(collected.stdout, module, listed)
        assert per_test, f"{module} has no test parametrised by model"
        for test, models in per_test.items():
            assert models == set(listed), f"{module}::{test} does not cover {sorted(set(listed) - models)}"


def _listed_models(cli) -> list[str]:
    """The first column of `tsprune-edge models`' table (rows whose name cell is empty continue the row above)."""
    result = cli("models")
    assert result.code == 0, result.err
    cells = [line.split("│")[1].strip() for line in result.out.splitlines() if line.startswith("│")]
    return [cell for cell in cells if cell]


def _models_per_test(collected: str, module: str, models: list[str]) -> dict[str, set[str]]:
    """test function -> the models among its collected ids (`test_x[7-7-dlinear]` holds dlinear)."""
    found: dict[str, set[str]] = {}
    for line in collected.splitlines():
        if not line.startswith(f"{module}::") or "[" not in line:
            continue
        test, params = line.removeprefix(f"{module}::").rstrip("]").split("[", 1)
        named = set(params.split("-")) & set(models)
        if named:
            found.setdefault(test, set()).update(named)
    return found


def test_the_scan_reads_every_form_of_command_line(tmp_path: Path):
    """The scanner itself: each way a test writes a command line is found, and cut at the first non-literal."""
    module = tmp_path / "test_forms.py"
    module.write_text('CLI = [sys.executable, "-m", "tsprune_edge"]\n'
                      'cli("bench", "--device", x, "--rounds")\n'
                      'T("devices", "show", name)\n'
                      'main(["export", "--format", "onnx"])\n'
                      'subprocess.run([*CLI, "sweep", *GRID])\n'
                      'subprocess.run([python, "-m", "tsprune_edge", "data", "list"])\n')
    assert invocations(module) == [("bench", "--device"), ("devices", "show"), ("export", "--format", "onnx"),
                                   ("sweep",), ("data", "list")]
    paths = command_paths()
    assert [command_of(a, paths) for a in invocations(module)] == [("bench",), ("devices", "show"), ("export",),
                                                                  ("sweep",), ("data", "list")]
    assert command_of(("--verbose", "train"), paths) == ("train",) and command_of(("nope",), paths) is None
