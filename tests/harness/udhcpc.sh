#!/bin/sh
# udhcpc event script of the harness's containers: apply the lease inside the
# container's namespace and record it in $LEASE_FILE (KEY=VALUE lines) for the test.
# Runs in the container's namespace (udhcpc was started with ip netns exec).
set -u
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    rm -f "$LEASE_FILE"
    echo "deconfig" >> "$LEASE_FILE.events"
    ;;
bound|renew)
    len="${mask:-}"
    if [ -z "$len" ]; then
        len=$(echo "$subnet" | awk -F. '{n=0; for(i=1;i<=4;i++){b=$i; while(b>0){n+=b%2; b=int(b/2)}} print n}')
    fi
    ip -4 addr flush dev "$interface"
    [ -n "${mtu:-}" ] && ip link set "$interface" mtu "$mtu"
    ip -4 addr add "$ip/$len" dev "$interface"
    if [ -n "${router:-}" ]; then
        ip -4 route replace default via "${router%% *}" dev "$interface"
    fi
    tmp="$LEASE_FILE.tmp"
    {
        echo "ip=$ip"
        echo "prefixlen=$len"
        echo "router=${router:-}"
        echo "mtu=${mtu:-}"
        echo "dns=${dns:-}"
        echo "serverid=${serverid:-}"
        echo "lease=${lease:-}"
    } > "$tmp"
    mv "$tmp" "$LEASE_FILE"
    echo "$1 $ip" >> "$LEASE_FILE.events"
    ;;
leasefail|nak)
    echo "$1" >> "$LEASE_FILE.events"
    ;;
esac
exit 0
