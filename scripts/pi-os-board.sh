#!/usr/bin/env bash
# The stock emulated Raspberry Pi 4 board: Debian bookworm arm64 under qemu-user, as a fresh Raspberry Pi OS bookworm
# (64-bit) comes: the system Python 3.11 is EXTERNALLY-MANAGED (PEP 668: pip refuses to install into it), with
# python3-venv, pip and numpy 1.24, and no runtime anywhere; `tsprune-edge devices setup` takes it from there.
# Derived from scripts/arm64-board.sh's cached rootfs (built first if missing) without its /opt venvs: the same
# debootstrap, nothing emulated, about a minute. Commands, mounts and cache as scripts/arm64-board.sh; cache files
# are pi-os-board-<key>.tar.zst, keyed by both recipes.
set -euo pipefail
BOARD_VARIANT=stock source "$(dirname "${BASH_SOURCE[0]}")/arm64-board.sh"
