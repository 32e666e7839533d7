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
echo "tsprune-edge installed in .venv ($($py -c 'import torch; print("torch", torch.__version__)'))"
