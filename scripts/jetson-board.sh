#!/usr/bin/env bash
# An emulated Jetson-Nano-class arm64 board for tests and CI: Debian bullseye arm64 (Python 3.9, pip, venv and
# numpy 1.19.5 from Debian) under qemu-user with a Cortex-A57 cpuinfo, stock: no runtime installed, as a fresh
# JetPack has none for its Python. `tsprune-edge devices setup --device jetson-nano` installs numpy and ONNX Runtime
# 1.10.0 (the newest engine a Nano's Python 3.6 installs; the same version and wheel family, cp39 here) into a venv.
# For correctness only: emulated timings mean nothing, and there is no GPU, CUDA or TensorRT inside. Commands,
# mounts, binfmt handling and cache: as scripts/arm64-board.sh (shared code in scripts/board-lib.sh); cache files
# are jetson-board-<key>.tar.zst.
set -euo pipefail

# ---------------------------------------------------------------- the recipe (hashed into the cache key)
RECIPE_VERSION=2
SUITE=bullseye
PACKAGES=python3,python3-numpy,python3-venv,python3-pip,ca-certificates,rsync,openssh-sftp-server
QEMU_CPU_MODEL=${TSPRUNE_EDGE_BOARD_CPU:-cortex-a57}
RECIPE_VARS=(RECIPE_VERSION SUITE PACKAGES)
BOARD_NAME=jetson-board
BOARD_PYTHONS=()

build_rootfs() {  # build_rootfs ROOT MIRROR: the whole recipe (its text is part of the cache key)
  local root=$1 mirror=$2
  debootstrap --arch=arm64 --foreign --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$mirror" >&2
  log "first stage (download, unpack) done at ${SECONDS}s"
  echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/zz-build-unsafe-io"  # no fsyncs for a throwaway build
  # shellcheck disable=SC2046  # board_env is word-split on purpose
  env -i $(board_env) chroot "$root" /debootstrap/debootstrap --second-stage >&2
  rm -f "$root/etc/dpkg/dpkg.cfg.d/zz-build-unsafe-io"
  log "second stage (emulated dpkg) done at ${SECONDS}s"
  board_umount "$root"
  mkdir -p "$root$BOARD_SHARE"  # for the build record (board_mount makes it too, but the stock board is not mounted)
  : >"$root/etc/resolv.conf"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/root/.cache
}

# shellcheck source=scripts/board-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/board-lib.sh"
main "$@"
