#!/bin/bash
# Install what the kernel harness needs (Debian 12, as root): build tools,
# the kernel source package, qemu, and what the tests use inside the guest.
# Only missing packages are installed (scripts/need-packages.sh).
set -euo pipefail

PKGS=(
	build-essential bc bison flex libelf-dev libssl-dev cpio kmod xz-utils patch
	linux-source-6.1
	qemu-system-x86
	iproute2 util-linux busybox-static
	python3 python3-pytest python3-pyroute2
)

exec "$(dirname "$0")/../scripts/need-packages.sh" kernel/deps.sh "${PKGS[@]}"
