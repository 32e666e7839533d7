"""A plain (non-editable) install ships every subpackage under tsprune_edge and nothing at the top level."""

from __future__ import annotations

import site
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.paths import REPO


def test_wheel_install_works_in_a_new_venv(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(REPO)], check=True)
    (wheel,) = wheels.glob("tsprune_edge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("tsprune_edge/cli/__init__.py", "tsprune_edge/data/forecast.py", "tsprune_edge/models/patchtst.py",
                   "tsprune_edge/export/bundle.py", "tsprune_edge/devices/agent.py", "tsprune_edge/report/stats.py"):
        assert module in names, module
    top_level = {name.split("/")[0] for name in names if not name.startswith("tsprune_edge-")}
    assert top_level == {"tsprune_edge"}

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The dependencies come from this interpreter's site-packages (appended after the venv's own, and without
    # running their .pth files, so an editable install of this repo there stays invisible).
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip()
    Path(venv_site, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    script = venv / "bin" / "tsprune-edge"
    help_text = subprocess.run([str(script), "--help"], check=True, capture_output=True, text=True,
                               cwd=tmp_path).stdout
    for command in ("data", "train", "evaluate", "pipeline"):
        assert command in help_text
    where = subprocess.run([str(python), "-c", "import tsprune_edge.export, tsprune_edge.devices, tsprune_edge;"
                            "print(tsprune_edge.__file__)"], check=True, capture_output=True, text=True,
                           cwd=tmp_path).stdout
    assert Path(where.strip()).is_relative_to(venv)
