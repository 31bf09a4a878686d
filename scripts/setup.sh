#!/bin/sh
# Install what fangen, its tests, the demo and the benchmarks need on Debian 12 (as root).
# Idempotent and quiet: packages already present are not fetched again.
set -eu

PACKAGES="
systemd dbus
dnsmasq-base nftables netplan.io iproute2
busybox-static isc-dhcp-client iperf3 tcpdump
python3 python3-yaml python3-jsonschema python3-pyroute2 python3-dbus
python3-pytest python3-fastjsonschema python3-venv
mandoc
clang llvm libbpf-dev bpftool
make
docker.io podman containernetworking-plugins lxd uidmap
python3-matplotlib
"

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (apt-get install)" >&2
    exit 1
fi

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done

if [ -z "$missing" ]; then
    echo "setup: all packages present"
    exit 0
fi

echo "setup: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: no extra daemons; policy-rc.d keeps maintainer scripts from
# starting services (dnsmasq, networkd) on the machine running this.
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    created_policy=yes
fi
trap 'if [ -n "$created_policy" ]; then rm -f "$policy"; fi' EXIT
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "setup: done"
