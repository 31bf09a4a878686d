#!/bin/bash
# Install what the kernel harness needs (Debian 12, as root): build tools,
# the kernel source package, qemu, and what the tests use inside the guest.
# Only missing packages are installed, so a warm run costs one dpkg-query.
set -euo pipefail

PKGS=(
	build-essential bc bison flex libelf-dev libssl-dev cpio kmod xz-utils patch
	linux-source-6.1
	qemu-system-x86
	iproute2 util-linux busybox-static
	python3 python3-pytest python3-pyroute2
)

missing=()
for p in "${PKGS[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] || exit 0

if [ "$(id -u)" != 0 ]; then
	echo "kernel/deps.sh: missing packages (run as root): ${missing[*]}" >&2
	exit 1
fi
echo "kernel/deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
	apt-get update >&2
	apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi
