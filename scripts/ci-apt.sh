#!/usr/bin/env bash
# Install the Debian packages the test suite needs (a real loopback sshd, ssh/scp and rsync for the transport tests).
# Idempotent: apt-get skips what is already installed. Add packages to PACKAGES only.
set -euo pipefail
PACKAGES="openssh-server openssh-client rsync qemu-user-static binfmt-support debootstrap debian-archive-keyring zstd iproute2 util-linux"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q -o DPkg::Lock::Timeout=300
# shellcheck disable=SC2086  # PACKAGES is a space-separated list on purpose
$SUDO apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 $PACKAGES
