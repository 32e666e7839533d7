# shellcheck shell=bash
# Shared by the emulated arm64 boards (scripts/arm64-board.sh: Raspberry Pi 4 class, bookworm; scripts/jetson-board.sh:
# Jetson Nano class, bullseye): sourced after the board's recipe, which defines
#   BOARD_NAME      names the cache files (<BOARD_NAME>-<key>.tar.zst) and prefixes messages
#   RECIPE_VARS     the names of the recipe variables hashed into the cache key (with build_rootfs)
#   BOARD_PYTHONS   runtime=/opt/<venv>/bin/python for each runtime inside (written to the build record)
#   QEMU_CPU_MODEL  cortex-a72, cortex-a57 or cortex-a53 (QEMU_CPU and the cpuinfo's CPU part)
#   build_rootfs ROOT MIRROR  the build; it leaves /tmp/<venv>.json (versions) and <venv>.freeze.txt per venv
# then calls main "$@". See scripts/arm64-board.sh for the commands.

# ---------------------------------------------------------------- fixed settings
HOST_PACKAGES=(qemu-user-static binfmt-support debootstrap debian-archive-keyring zstd)
CACHE_DIR=${TSPRUNE_EDGE_BOARD_CACHE:-$HOME/.cache/tsprune-edge/$BOARD_NAME}
STATE_DIR=/run/tsprune-edge-arm64-board  # binfmt bookkeeping shared with tests/arm64_board.py
BOARD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
BOARD_SHARE=/usr/share/tsprune-edge-board  # inside the board: its cpuinfo file and build record
ZSTD_LEVEL=${TSPRUNE_EDGE_BOARD_ZSTD_LEVEL:-9}

die() { echo "$BOARD_NAME: error: $*" >&2; exit 1; }
log() { echo "$BOARD_NAME: $*" >&2; }

need_root() { [ "$(id -u)" = 0 ] || die "needs root (debootstrap, mount, chroot)"; }

cache_key() {
  { declare -p "${RECIPE_VARS[@]}"; declare -f build_rootfs; } |
    sha256sum | cut -c1-16
}
tarball() { echo "$CACHE_DIR/$BOARD_NAME-$(cache_key).tar.zst"; }

deps() {
  need_root
  local missing=() pkg
  for pkg in "${HOST_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} = 0 ] && return 0
  log "installing host packages: ${missing[*]}"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

debian_mirror() {
  if [ -n "${TSPRUNE_EDGE_BOARD_MIRROR:-}" ]; then echo "$TSPRUNE_EDGE_BOARD_MIRROR"; return; fi
  local uri
  # deb822 (URIs:) or one-line (deb URI suite ...) sources; the first plain Debian archive, not the security one
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    sed -n -e 's/^URIs:[[:space:]]*//p' -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' |
    tr ' ' '\n' | grep -E '/debian/?$' | grep -v security | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# ---------------------------------------------------------------- binfmt: enable once, disable when the last user goes
# Every user (this script while building, each tests/arm64_board.py board) holds a shared flock on binfmt.users for
# its life; the entry is disabled on release only if we enabled it and no other user remains.
binfmt_on() { [ "$(head -n1 /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null)" = enabled ]; }

binfmt_acquire() {
  need_root
  mkdir -p "$STATE_DIR"
  exec 7>>"$STATE_DIR/binfmt.mutex" 8>>"$STATE_DIR/binfmt.users"
  flock 7
  if ! binfmt_on; then
    update-binfmts --enable qemu-aarch64 || die "update-binfmts --enable qemu-aarch64 failed"
    binfmt_on || die "the qemu-aarch64 binfmt entry is still not enabled"
    touch "$STATE_DIR/binfmt.enabled-by-us"
    log "enabled the qemu-aarch64 binfmt entry"
  fi
  flock -s 8
  flock -u 7
}

binfmt_release() {
  [ -e /proc/self/fd/8 ] || return 0
  flock 7
  if flock -n -x 8 && [ -e "$STATE_DIR/binfmt.enabled-by-us" ]; then
    update-binfmts --disable qemu-aarch64 && rm -f "$STATE_DIR/binfmt.enabled-by-us" &&
      log "disabled the qemu-aarch64 binfmt entry"
  fi
  exec 8>&- 7>&-
}

# ---------------------------------------------------------------- mounts
mounts_under() {  # mount points at or under $1, in reverse mount order (innermost first)
  local root mp
  root=$(realpath -m "$1")
  awk '{print $5}' /proc/self/mountinfo | tac | while read -r mp; do
    mp=$(printf '%b' "$mp")  # mountinfo escapes spaces and such as \040
    if [ "$mp" = "$root" ] || [ "${mp#"$root"/}" != "$mp" ]; then echo "$mp"; fi
  done
}

board_umount() {
  local mp
  mounts_under "$1" | while read -r mp; do
    umount "$mp" 2>/dev/null || umount -l "$mp" || log "cannot unmount $mp"
  done
  [ -z "$(mounts_under "$1")" ] || { log "still mounted under $1: $(mounts_under "$1" | tr '\n' ' ')"; return 1; }
}

write_cpuinfo() {  # an ARM cpuinfo (Pi 4's by default), one entry per host CPU: onnxruntime and ai-edge-litert
  local n i part  # crash (SIGSEGV) under qemu when they read the host's x86 cpuinfo (FIELD-NOTES)
  case $QEMU_CPU_MODEL in
    cortex-a72) part=0xd08 ;;  # Raspberry Pi 4
    cortex-a57) part=0xd07 ;;  # Jetson Nano
    cortex-a53) part=0xd03 ;;  # Raspberry Pi 3 / Zero 2
    *) die "unsupported TSPRUNE_EDGE_BOARD_CPU $QEMU_CPU_MODEL (cortex-a72, cortex-a57 or cortex-a53)" ;;
  esac
  n=$(getconf _NPROCESSORS_CONF)
  for ((i = 0; i < n; i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 3\n\n' "$part"
  done
  if [ "$QEMU_CPU_MODEL" = cortex-a72 ]; then
    printf 'Hardware\t: BCM2835\nRevision\t: c03115\nSerial\t\t: 10000000deadbeef\n'
    printf 'Model\t\t: Raspberry Pi 4 Model B Rev 1.5 (emulated: qemu-user %s)\n' "$QEMU_CPU_MODEL"
  fi
}

board_mount() {
  local root=$1 dev
  need_root
  [ -x "$root/bin/sh" ] && [ -d "$root/proc" ] || die "$root is not a board root filesystem"
  [ -z "$(mounts_under "$root")" ] || die "$root already has mounts; umount it first"
  mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
  # so the agent can tell it is emulated (it reads /proc/sys/fs/binfmt_misc/qemu-aarch64)
  if mountpoint -q /proc/sys/fs/binfmt_misc; then
    mount --bind /proc/sys/fs/binfmt_misc "$root/proc/sys/fs/binfmt_misc"
    mount -o remount,bind,ro "$root/proc/sys/fs/binfmt_misc"
  fi
  mkdir -p "$root$BOARD_SHARE"
  write_cpuinfo >"$root$BOARD_SHARE/cpuinfo"
  mount --bind "$root$BOARD_SHARE/cpuinfo" "$root/proc/cpuinfo"
  mount -o remount,bind,ro "$root/proc/cpuinfo"
  mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
  # a minimal /dev of its own (a bind of the host's /dev would let the board write the host's /dev/shm)
  mount -t tmpfs -o nosuid,mode=0755,size=64m tmpfs "$root/dev"
  for dev in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
    IFS=: read -r name major minor <<<"$dev"
    mknod -m 0666 "$root/dev/$name" c "$major" "$minor"
  done
  ln -s /proc/self/fd "$root/dev/fd"
  ln -s /proc/self/fd/0 "$root/dev/stdin"
  ln -s /proc/self/fd/1 "$root/dev/stdout"
  ln -s /proc/self/fd/2 "$root/dev/stderr"
  mkdir -m 1777 "$root/dev/shm"
  mkdir -m 0755 "$root/dev/pts"
  # pip inside needs DNS and, behind a TLS-inspecting proxy, the host's CA bundle
  cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  local bundle=/etc/ssl/certs/ca-certificates.crt
  if [ -s $bundle ] && [ -d "$root/etc/ssl/certs" ]; then
    [ -e "$root$bundle.board" ] || cp -p "$root$bundle" "$root$bundle.board" 2>/dev/null || true
    cp $bundle "$root$bundle"
  fi
}

board_env() {  # the clean environment every board command gets (host pip settings must not leak in); PIP_CERT:
  # the CA bundle board_mount copies in (a venv's upgraded pip on Python < 3.10 trusts only its own certifi, which
  # fails behind a TLS-inspecting proxy)
  echo PATH=$BOARD_PATH HOME=/root LANG=C.UTF-8 QEMU_CPU="$QEMU_CPU_MODEL" PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120 PIP_CERT=/etc/ssl/certs/ca-certificates.crt
}

in_board() {  # in_board ROOT CMD...: run CMD inside at /root with a clean environment
  local root=$1; shift
  # shellcheck disable=SC2046,SC2016  # board_env is word-split on purpose; $HOME expands inside the board
  env -i $(board_env) chroot "$root" /bin/sh -c 'cd "$HOME" || exit 1; exec "$@"' board "$@"
}

write_wrapper() {  # write_wrapper ROOT FILE
  local root file=$2
  root=$(realpath "$1")
  case $root in *"'"*) die "the board path must not contain a single quote: $root" ;; esac
  cat >"$file" <<EOF
#!/bin/sh
# sshd ForceCommand wrapper: run the client's command (ssh CMD, scp/sftp's sftp-server, rsync --server) inside the
# emulated arm64 board at $root, in /root, with a clean environment. Written by scripts/board-lib.sh.
exec /usr/bin/env -i $(board_env) /usr/sbin/chroot '$root' /bin/sh -c \\
  'cd "\$HOME" || exit 1; if [ -n "\$1" ]; then exec /bin/sh -c "\$1"; else exec /bin/bash -l; fi' \\
  board "\$SSH_ORIGINAL_COMMAND"
EOF
  chmod 0755 "$file"
}

# ---------------------------------------------------------------- build (the recipe's build_rootfs does the work)
build() {
  need_root
  local force=${1:-} out key start root mirror
  out=$(tarball)
  key=$(cache_key)
  mkdir -p "$CACHE_DIR"
  exec 9>>"$CACHE_DIR/.build.lock"
  flock 9  # one build at a time; a waiting caller then finds the tarball
  deps  # also on a cache hit: a board needs qemu-user-static, binfmt-support and zstd
  if [ -s "$out" ] && [ "$force" != --force ]; then echo "$out"; return 0; fi
  start=$(date +%s)
  SECONDS=0
  mirror=$(debian_mirror)
  root=$(mktemp -d "$CACHE_DIR/build-$key.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -f '$out.part'; board_umount '$root' || true; [ -n \"\$(mounts_under '$root')\" ] || rm -rf '$root'
    binfmt_release" EXIT
  binfmt_acquire
  log "building the $SUITE arm64 rootfs (key $key, mirror $mirror, emulated: several minutes)"
  build_rootfs "$root" "$mirror"
  local built=$(($(date +%s) - start))
  python3 - "$root" "$key" "$built" "$mirror" "$SUITE" "${BOARD_PYTHONS[@]}" >"$root$BOARD_SHARE/build.json" <<'PY'
import json, sys, time
root, key, seconds, mirror, suite = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
pythons = dict(spec.split("=", 1) for spec in sys.argv[6:])
record = {"key": key, "suite": suite, "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
          "build_seconds": seconds, "mirror": mirror, "pythons": pythons}
for name in sorted({path.split("/")[2] for path in pythons.values()}):  # /opt/<name>/bin/python
    with open(f"{root}/tmp/{name}.json") as f:
        record.update(json.loads(f.read().strip().splitlines()[-1]))
    with open(f"{root}/usr/share/tsprune-edge-board/{name}.freeze.txt") as f:
        record.setdefault("freeze", {})[f"/opt/{name}"] = f.read().split()
print(json.dumps(record, indent=1))
PY
  local spec venv
  for spec in "${BOARD_PYTHONS[@]}"; do venv=${spec#*=/opt/}; rm -f "$root/tmp/${venv%%/*}.json"; done
  log "packing $out"
  tar --numeric-owner -C "$root" -cf - . | zstd -q -f -T0 "-$ZSTD_LEVEL" -o "$out.part"
  cp "$root$BOARD_SHARE/build.json" "${out%.tar.zst}.json"
  mv -f "$out.part" "$out"
  flock -u 9  # the tarball is in place: waiting callers need not wait for the cleanup
  find "$CACHE_DIR" -maxdepth 1 -name "$BOARD_NAME-*" ! -name "$BOARD_NAME-$key.*" -delete
  log "built in ${built}s, packed in $(($(date +%s) - start - built))s: $(du -h "$out" | cut -f1)"
  echo "$out"
}

restore() {
  local root=$1 out start
  need_root
  [ ! -e "$root" ] || [ -z "$(ls -A "$root")" ] || die "$root exists and is not empty"
  out=$(build)
  start=$(date +%s%N)
  mkdir -p "$root"
  zstd -q -d -c "$out" | tar --numeric-owner -xpf - -C "$root"
  log "restored $out into $root in $((($(date +%s%N) - start) / 1000000)) ms"
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    deps) deps ;;
    key) cache_key ;;
    build) build "${1:-}" ;;
    restore) [ $# = 1 ] || die "usage: restore ROOT"; restore "$1" ;;
    mount) [ $# = 1 ] || die "usage: mount ROOT"; board_mount "$1" ;;
    umount) [ $# = 1 ] || die "usage: umount ROOT"; need_root; board_umount "$1" || exit 1 ;;
    exec) [ $# -ge 2 ] || die "usage: exec ROOT CMD..."; binfmt_on || die "the qemu-aarch64 binfmt entry is off"
      in_board "$@" ;;
    wrapper) [ $# = 2 ] || die "usage: wrapper ROOT FILE"; write_wrapper "$1" "$2" ;;
    binfmt-enable) need_root; binfmt_on || { update-binfmts --enable qemu-aarch64
      mkdir -p "$STATE_DIR"; touch "$STATE_DIR/binfmt.enabled-by-us"; } ;;
    binfmt-disable) need_root; if [ -e "$STATE_DIR/binfmt.enabled-by-us" ]; then
        update-binfmts --disable qemu-aarch64; rm -f "$STATE_DIR/binfmt.enabled-by-us"; fi ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}
