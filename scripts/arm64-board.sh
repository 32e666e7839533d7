#!/usr/bin/env bash
# An emulated Raspberry-Pi-4-like arm64 board for tests and CI: a Debian bookworm arm64 root filesystem run under
# qemu-user (binfmt) in a chroot. For correctness only: emulated timings mean nothing (FIELD-NOTES).
# Needs root on Linux x86_64 (apt, debootstrap, mount, chroot). tests/arm64_board.py drives it from Python.
# Two variants share one debootstrap: this script's board has the runtimes in /opt venvs; scripts/pi-os-board.sh
# derives the stock one from it (a fresh Raspberry Pi OS bookworm: EXTERNALLY-MANAGED, no runtime anywhere) by
# unpacking its cached tarball without the venvs, in about a minute and with nothing emulated.
#
#   arm64-board.sh deps               apt-install the host packages that are missing (HOST_PACKAGES)
#   arm64-board.sh key                print the recipe hash that keys the cache
#   arm64-board.sh build [--force]    make sure the cached rootfs tarball exists (cold build ~5-10 min); print its path
#   arm64-board.sh restore ROOT       build if needed, then unpack the rootfs into ROOT (missing or empty)
#   arm64-board.sh mount ROOT         mount proc (+ binfmt_misc, ro), sysfs (ro), a minimal /dev and an ARM
#                                     Cortex-A72 cpuinfo over ROOT/proc/cpuinfo; copy the host's DNS and CA bundle in
#   arm64-board.sh umount ROOT        unmount everything under ROOT, innermost first (lazily where busy)
#   arm64-board.sh exec ROOT CMD...   run CMD inside (cwd /root) with a clean environment; needs binfmt enabled
#   arm64-board.sh wrapper ROOT FILE  write an sshd ForceCommand wrapper that runs $SSH_ORIGINAL_COMMAND inside
#   arm64-board.sh binfmt-enable|binfmt-disable   the kernel's qemu-aarch64 entry (disable: only if we enabled it)
#
# Inside both: Python 3.11 with /usr/lib/python3.11/EXTERNALLY-MANAGED, python3-venv, pip and numpy 1.24 (system,
#   as Raspberry Pi OS bookworm), rsync, sftp-server. This board adds
#   /opt/ort     onnxruntime     (venv over the system site-packages: numpy 1.24)
#   /opt/tflite  tflite-runtime  (venv over the system site-packages: tflite-runtime 2.14 needs numpy<2)
#   /opt/litert  ai-edge-litert  (isolated venv: it pulls numpy 2)
#
# Cache: ${TSPRUNE_EDGE_BOARD_CACHE:-$HOME/.cache/tsprune-edge/<board>}/<board>-<key>.tar.zst (+ .json with the
# versions inside), <board> = arm64-board or pi-os-board, <key> = hash of the recipe below (variables and
# build_rootfs; pi-os-board's hashes that and its own build_rootfs). Older keys are deleted.
# The Debian mirror comes from TSPRUNE_EDGE_BOARD_MIRROR, else from the host's apt sources; it is not in the key.
set -euo pipefail

# ---------------------------------------------------------------- the recipe (hashed into the cache key)
RECIPE_VERSION=1
SUITE=bookworm
PACKAGES=python3,python3-numpy,python3-venv,python3-pip,ca-certificates,rsync,openssh-sftp-server
ORT_REQS=(onnxruntime==1.31.1)
TFLITE_REQS=(tflite-runtime==2.14.0 "numpy<2")
LITERT_REQS=(ai-edge-litert==2.3.0)
QEMU_CPU_MODEL=${TSPRUNE_EDGE_BOARD_CPU:-cortex-a72}
RECIPE_VARS=(RECIPE_VERSION SUITE PACKAGES ORT_REQS TFLITE_REQS LITERT_REQS)
BOARD_NAME=arm64-board
BOARD_PYTHONS=(onnxruntime=/opt/ort/bin/python tflite_runtime=/opt/tflite/bin/python
  ai_edge_litert=/opt/litert/bin/python)

build_rootfs() {  # build_rootfs ROOT MIRROR: the whole recipe (its text is part of the cache key)
  local root=$1 mirror=$2 venv
  debootstrap --arch=arm64 --foreign --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$mirror" >&2
  log "first stage (download, unpack) done at ${SECONDS}s"
  # dpkg's fsyncs are slow under emulation; a throwaway build does not need them
  echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/zz-build-unsafe-io"
  # shellcheck disable=SC2046  # board_env is word-split on purpose
  env -i $(board_env) chroot "$root" /debootstrap/debootstrap --second-stage >&2
  rm -f "$root/etc/dpkg/dpkg.cfg.d/zz-build-unsafe-io"
  log "second stage (emulated dpkg) done at ${SECONDS}s"
  board_umount "$root"  # in case the second stage left proc/sys behind
  board_mount "$root"
  in_board "$root" python3 -m venv --system-site-packages /opt/ort
  in_board "$root" /opt/ort/bin/pip install --no-cache-dir "${ORT_REQS[@]}" >&2
  in_board "$root" python3 -m venv --system-site-packages /opt/tflite
  in_board "$root" /opt/tflite/bin/pip install --no-cache-dir "${TFLITE_REQS[@]}" >&2
  in_board "$root" python3 -m venv /opt/litert
  in_board "$root" /opt/litert/bin/pip install --no-cache-dir "${LITERT_REQS[@]}" >&2
  log "pip installs done at ${SECONDS}s"
  for venv in ort tflite litert; do  # what each venv holds beyond the system packages
    in_board "$root" "/opt/$venv/bin/pip" freeze --local >"$root$BOARD_SHARE/$venv.freeze.txt"
  done
  # one real import each: the record of what is inside, and a check that the runtimes load under emulation
  in_board "$root" /opt/ort/bin/python -c 'import json, platform, numpy, onnxruntime as m
print(json.dumps({"python": platform.python_version(), "machine": platform.machine(), "numpy": numpy.__version__,
                  "onnxruntime": {"numpy": numpy.__version__, "version": m.__version__}}))' >"$root/tmp/ort.json"
  in_board "$root" /opt/tflite/bin/python -c 'import json, numpy, tflite_runtime as m, tflite_runtime.interpreter
print(json.dumps({"tflite_runtime": {"numpy": numpy.__version__, "version": m.__version__}}))' >"$root/tmp/tflite.json"
  in_board "$root" /opt/litert/bin/python -c 'import json, numpy, ai_edge_litert as m, ai_edge_litert.interpreter
print(json.dumps({"ai_edge_litert": {"numpy": numpy.__version__, "version": m.__version__}}))' >"$root/tmp/litert.json"
  board_umount "$root"
  local bundle=$root/etc/ssl/certs/ca-certificates.crt
  [ -e "$bundle.board" ] && mv -f "$bundle.board" "$bundle"
  : >"$root/etc/resolv.conf"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/root/.cache
}

# ---------------------------------------------------------------- the stock variant (scripts/pi-os-board.sh)
if [ "${BOARD_VARIANT:-}" = stock ]; then
  RUNTIMES_RECIPE="$(declare -p "${RECIPE_VARS[@]}"; declare -f build_rootfs)"  # its key follows the recipe above
  RECIPE_VARS=(RUNTIMES_RECIPE)
  BOARD_NAME=pi-os-board
  BOARD_PYTHONS=()
  build_rootfs() {  # build_rootfs ROOT MIRROR: the runtimes board less its pip installs, without running anything
    local root=$1 runtimes
    runtimes=$(env -u BOARD_VARIANT bash "$(dirname "${BASH_SOURCE[0]}")/arm64-board.sh" build)
    zstd -q -d -c "$runtimes" | tar --numeric-owner -xpf - -C "$root"
    # the pip installs went only into the /opt venvs (--no-cache-dir); their freeze lists and the build record
    # live in BOARD_SHARE: what is left is debootstrap's system, as a fresh Pi OS bookworm (64-bit) has it
    rm -rf "$root"/opt/* "$root$BOARD_SHARE"/*
    # Debian's python3.11 ships PEP 668's marker, as Pi OS's does: a board without it is not a stock bookworm
    [ -s "$root/usr/lib/python3.11/EXTERNALLY-MANAGED" ] || die "no EXTERNALLY-MANAGED marker in python3.11"
    log "stock rootfs derived from $runtimes at ${SECONDS}s"
  }
fi

# shellcheck source=scripts/board-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/board-lib.sh"
main "$@"
