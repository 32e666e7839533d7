"""A plain (non-editable) install ships every subpackage under tsprune_edge and nothing at the top level, and an
install without the TFLite extra exports and benches ONNX.

The wheel is built from this checkout and installed, without its dependencies, into a new venv; the dependencies
come from this interpreter's site-packages (the dev install of scripts/setup.sh, torch from the local CPU build),
listed in a .pth file after the venv's own, without running their .pth files, so an editable install of this repo
there stays invisible. Installing them afresh from an index needs the network and minutes; this is the same code
path for what the tests ask."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.paths import REPO

TFLITE_MODULES = ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(REPO)], check=True)
    (built,) = wheels.glob("tsprune_edge-*.whl")
    return built


def site_dirs() -> list[Path]:
    """This interpreter's site-packages folders, those a .pth file added included (a worktree's venv may take its
    dependencies from another venv that way)."""
    return [Path(p) for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


def install(wheel: Path, venv: Path, dependencies: list[Path]) -> Path:
    """A new venv at `venv` with `wheel` installed and `dependencies` on its path; its python."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip()
    Path(venv_site, "deps.pth").write_text("".join(f"{d}\n" for d in dependencies))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    return python


def pulled_in(roots: list[str], extra: str) -> set[str]:
    """The installed distributions (canonical names) that the requirements `roots` bring, markers evaluated for
    `extra` on the roots and for the extras each requirement asks of its distribution below them."""
    seen: set[tuple[str, str]] = set()
    todo = [(text, extra) for text in roots]
    while todo:
        text, context = todo.pop()
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": context}):
            continue
        name = canonicalize_name(requirement.name)
        for wanted in ("", *requirement.extras):
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            try:
                todo += [(r, wanted) for r in metadata.requires(name) or []]
            except metadata.PackageNotFoundError:
                continue
    return {name for name, _ in seen}


def top_level(names: set[str]) -> set[str]:
    """The entries of site-packages that the distributions `names` own (packages, modules, dist-info)."""
    entries = set()
    for name in names:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            continue
        entries |= {f.parts[0] for f in files if f.parts and f.parts[0] != ".."}
    return entries


def without_tflite_extra(folder: Path) -> list[Path]:
    """Copies of site_dirs() (links to every entry) without what only the TFLite extra brings."""
    requires = metadata.requires("tsprune-edge")
    base = pulled_in(requires, "")
    extra_only = pulled_in(requires, "tflite") - base
    assert {"litert-torch", "ai-edge-litert"} <= extra_only
    hidden = top_level(extra_only) - top_level(base)  # a namespace folder shared with a base dependency stays
    copies = []
    for index, site in enumerate(site_dirs()):
        copy = folder / str(index)
        copy.mkdir(parents=True)
        for entry in site.iterdir():
            if entry.name not in hidden and not entry.name.endswith(".pth"):
                (copy / entry.name).symlink_to(entry)
        copies.append(copy)
    return copies


def run(command: list, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd)


def test_wheel_install_works_in_a_new_venv(tmp_path, wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("tsprune_edge/cli/__init__.py", "tsprune_edge/data/forecast.py", "tsprune_edge/models/patchtst.py",
                   "tsprune_edge/export/bundle.py", "tsprune_edge/devices/agent.py", "tsprune_edge/report/stats.py"):
        assert module in names, module
    top = {name.split("/")[0] for name in names if not name.startswith("tsprune_edge-")}
    assert top == {"tsprune_edge"}

    python = install(wheel, tmp_path / "venv", site_dirs())
    help_text = subprocess.run([str(tmp_path / "venv" / "bin" / "tsprune-edge"), "--help"], check=True,
                               capture_output=True, text=True, cwd=tmp_path).stdout
    for command in ("data", "train", "evaluate", "pipeline"):
        assert command in help_text
    where = subprocess.run([str(python), "-c", "import tsprune_edge.export, tsprune_edge.devices, tsprune_edge;"
                            "print(tsprune_edge.__file__)"], check=True, capture_output=True, text=True,
                           cwd=tmp_path).stdout
    assert Path(where.strip()).is_relative_to(tmp_path / "venv")


def test_an_install_without_the_tflite_extra_exports_and_benches_onnx(tmp_path, wheel, monkeypatch):
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    python = install(wheel, tmp_path / "venv", without_tflite_extra(tmp_path / "deps"))
    cli = tmp_path / "venv" / "bin" / "tsprune-edge"
    absent = run([python, "-c", "import importlib.util as u; print([u.find_spec(m) for m in "
                  f"{TFLITE_MODULES!r}], u.find_spec('onnxruntime') is not None)"], tmp_path)
    assert absent.stdout.split() == ["[None,", "None,", "None]", "True"], absent.stderr

    train = ("--model", "dlinear", "--data", "synthetic", "--epochs", "1", "--method", "unstructured",
             "--sparsity", "0.5", "--finetune-epochs", "0")
    refused = run([cli, "export", *train, "--format", "tflite", "--out", tmp_path / "tflite",
                   "--runs", tmp_path / "tflite-runs"], tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith("error: --format tflite needs litert-torch: "
                                     "pip install 'tsprune-edge[tflite]'"), refused.stderr
    assert not (tmp_path / "tflite").exists() and not (tmp_path / "tflite-runs").exists()

    exported = run([cli, "export", *train, "--format", "onnx", "--out", tmp_path / "bundles",
                    "--runs", tmp_path / "runs"], tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == ["dense", "percall", "unstructured-0.5"]
    benched = run([cli, "bench", "--device", "desktop", "--runtime", "onnxruntime", "--artifacts",
                   tmp_path / "bundles", "--results", tmp_path / "results", "--rounds", "2", "--max-rounds", "2",
                   "--min-time", "0.2", "--min-iters", "20"], tmp_path)
    assert benched.returncode == 0, benched.stderr
    (result,) = (tmp_path / "results").iterdir()
    items = json.loads((result / "bench.json").read_text())["items"]
    assert [item["id"] for item in items] == ["dense__onnx__t1", "percall__onnx__t1", "unstructured-0.5__onnx__t1"]
