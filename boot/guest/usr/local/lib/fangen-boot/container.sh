#!/bin/bash
# container.sh NETNS BRIDGE HOSTPART: make a "container" namespace NETNS with a
# veth into BRIDGE and ask the fan's dnsmasq for the slice's address .HOSTPART
# (udhcpc -r; dnsmasq decides).  The lease is recorded in /run/fangen-boot/NETNS.lease.
set -euo pipefail
ns=$1 bridge=$2 want=$3
lease=/run/fangen-boot/$ns.lease
mkdir -p /run/fangen-boot
# The bridge's address tells the slice: wait for it (the runtime adds it).
addr=
for _ in $(seq 300); do
	addr=$(ip -4 -o addr show dev "$bridge" 2>/dev/null | awk '{print $4; exit}')
	[ -n "$addr" ] && break
	sleep 1
done
[ -n "$addr" ] || { echo "container $ns: $bridge has no address"; exit 1; }
base=${addr%/*}
request=${base%.*}.$want
ip netns delete "$ns" 2>/dev/null || true
ip netns add "$ns"
ip link add "v-$ns" type veth peer name eth0 netns "$ns"
ip link set "v-$ns" mtu "$(cat /sys/class/net/$bridge/mtu)" master "$bridge" up
ip -n "$ns" link set lo up
ip -n "$ns" link set eth0 up
rm -f "$lease" "$lease.events"
LEASE_FILE=$lease ip netns exec "$ns" busybox udhcpc -i eth0 -r "$request" -q -n -t 20 -T 2 \
	-s /usr/local/lib/fangen-boot/udhcpc.sh
echo "container $ns on $bridge: $(grep '^ip=' "$lease")"
