#!/usr/bin/env bash
# Install tsprune-edge with every extra into ./.venv on a fresh machine. Idempotent: a second run only checks.
# PyTorch goes first and stays pinned (constraints.txt): an unpinned torch requirement pulls a multi-GB CUDA build.
# --system also installs, with apt, what the tests' boards need (a loopback sshd, rsync, qemu for an arm64 board).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--system" ]; then
  bash scripts/ci-apt.sh
fi
python3 - <<'PY' || { echo "error: tsprune-edge needs Python >= 3.10 as python3" >&2; exit 2; }
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY
[ -x .venv/bin/python ] || python3 -m venv .venv
py=.venv/bin/python
$py -m pip install -q --disable-pip-version-check --upgrade pip
$py -m pip install -q --disable-pip-version-check "torch==2.13.0"
$py -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[tflite,ray,dev]"
# For the tests (--system): the board agent runs under CPython 3.6 as on a Jetson Nano (tests/py36.py: a venv in
# ~/.cache with numpy 1.19.5 and onnxruntime 1.10.0 from PyPI). Slow networks: pip retries and waits longer; without
# CPython 3.6 setup goes on and those tests fail, saying what is missing.
if [ "${1:-}" = "--system" ]; then
  PIP_DEFAULT_TIMEOUT=120 PIP_RETRIES=10 $py -m tests.py36 || echo "warning: the agent's Python 3.6 tests will fail" >&2
fi
echo "tsprune-edge installed in .venv ($($py -c 'import torch; print("torch", torch.__version__)'))"
