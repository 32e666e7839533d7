#!/usr/bin/env bash
# An emulated Jetson-Nano-class arm64 board for tests and CI: Debian bullseye arm64 (Python 3.9, numpy 1.19.5 from
# Debian) under qemu-user with a Cortex-A57 cpuinfo, and ONNX Runtime 1.10.0, the newest engine a Nano's Python 3.6
# installs (the same version and wheel family; cp39 here). For correctness only: emulated timings mean nothing, and
# there is no GPU, CUDA or TensorRT inside. Commands, mounts, binfmt handling and cache: as scripts/arm64-board.sh
# (shared code in scripts/board-lib.sh); cache files are jetson-board-<key>.tar.zst.
#
# Inside the board: /opt/ort  onnxruntime 1.10.0 (venv over the system site-packages: Debian's numpy 1.19.5)
set -euo pipefail

# ---------------------------------------------------------------- the recipe (hashed into the cache key)
RECIPE_VERSION=1
SUITE=bullseye
PACKAGES=python3,python3-numpy,python3-venv,python3-pip,ca-certificates,rsync,openssh-sftp-server
ORT_REQS=(onnxruntime==1.10.0 "protobuf<3.20")  # protobuf<3.20 as on the Nano's Python 3.6
QEMU_CPU_MODEL=${TSPRUNE_EDGE_BOARD_CPU:-cortex-a57}
RECIPE_VARS=(RECIPE_VERSION SUITE PACKAGES ORT_REQS)
BOARD_NAME=jetson-board
BOARD_PYTHONS=(onnxruntime=/opt/ort/bin/python)

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
  board_mount "$root"
  in_board "$root" python3 -m venv --system-site-packages /opt/ort
  in_board "$root" /opt/ort/bin/pip install --no-cache-dir "${ORT_REQS[@]}" >&2
  log "pip install done at ${SECONDS}s"
  in_board "$root" /opt/ort/bin/pip freeze --local >"$root$BOARD_SHARE/ort.freeze.txt"
  # one real import: the record of what is inside, and a check that the runtime loads under emulation
  in_board "$root" /opt/ort/bin/python -c 'import json, platform, numpy, onnxruntime as m
print(json.dumps({"python": platform.python_version(), "machine": platform.machine(), "numpy": numpy.__version__,
                  "onnxruntime": {"numpy": numpy.__version__, "version": m.__version__}}))' >"$root/tmp/ort.json"
  board_umount "$root"
  local bundle=$root/etc/ssl/certs/ca-certificates.crt
  [ -e "$bundle.board" ] && mv -f "$bundle.board" "$bundle"
  : >"$root/etc/resolv.conf"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/root/.cache
}

# shellcheck source=scripts/board-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/board-lib.sh"
main "$@"
