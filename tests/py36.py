"""The Jetson Nano's Python on this machine: a virtual environment of real CPython 3.6 with the runtimes JetPack 4.6
takes (numpy 1.19.5, onnxruntime 1.10.0, PyPI's x86_64 cp36 wheels), so the board agent's tests run it under the
interpreter it must support. Built once into a cache folder; scripts/setup.sh builds it in CI
(`python -m tests.py36`), and a test without the interpreter fails, never skips (CI has it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

INTERPRETER = Path(os.environ.get("TSPRUNE_EDGE_PY36", Path.home() / ".pyenv" / "versions" / "3.6.15" / "bin" /
                                  "python3.6"))
VENV = Path(os.environ.get("TSPRUNE_EDGE_PY36_VENV", Path.home() / ".cache" / "tsprune-edge" / "py36"))
# What the Nano's runtimes need on Python 3.6 (FIELD-NOTES): pip >= 19.3 reads manylinux2014 wheels and 21.3 is the
# last pip for 3.6; ORT 1.10 is the last cp36 wheel and needs numpy >= 1.19.5; protobuf >= 3.20 breaks on 3.6.
PIP = "pip>=19.3,<22"
PACKAGES = ("numpy==1.19.5", "onnxruntime==1.10.0", "protobuf<3.20")
STAMP = "tsprune-edge-packages.txt"  # inside the venv: what it was built with, so a changed pin rebuilds it


class Missing(Exception):
    """The interpreter or the packages are not there: the message says how to get them."""


def python() -> Path:
    """The venv's interpreter, built (minutes, from PyPI) if absent or built with other pins."""
    wanted = "\n".join((PIP, *PACKAGES)) + "\n"
    stamp = VENV / STAMP
    if stamp.is_file() and stamp.read_text() == wanted and (VENV / "bin" / "python").is_file():
        return VENV / "bin" / "python"
    if not INTERPRETER.is_file():
        raise Missing(f"no CPython 3.6 at {INTERPRETER}: install it (pyenv install 3.6.15) or set TSPRUNE_EDGE_PY36")
    partial = VENV.with_name(VENV.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    steps = [[str(INTERPRETER), "-m", "venv", str(partial)],
             [str(partial / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", PIP],
             [str(partial / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              "--only-binary=:all:", *PACKAGES]]
    for argv in steps:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise Missing(f"{' '.join(argv[2:5])} failed: {(done.stderr or done.stdout).strip()[-400:]}")
    (partial / STAMP).write_text(wanted)
    shutil.rmtree(VENV, ignore_errors=True)
    # built aside so a half-built venv never looks ready; bin/python finds its venv from where it is (pyvenv.cfg),
    # so the renamed venv works (only its pip scripts keep the old path, and nothing here calls them)
    partial.rename(VENV)
    return VENV / "bin" / "python"


if __name__ == "__main__":
    try:
        print(f"CPython 3.6 venv for the agent's tests: {python()}")
    except Missing as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
