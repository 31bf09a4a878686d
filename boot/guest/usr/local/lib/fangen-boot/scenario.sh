#!/bin/bash
# The boot check's scenario, run at boot by fangen-boot-scenario.service in every
# guest.  The role (fangen.role=a|b|c on the kernel command line) decides the steps:
#
#   all   the boot: underlay address by DHCP, fan-250 bridge, slice, tunnel, nft
#         table, dnsmasq, the container's lease; timings (systemd-analyze, generators)
#   a     pings the containers of guests b and c over the fan, then edits fan.d and
#         runs `netplan apply`: host-reserve, a second fan, a networkd restart (the fans
#         stay), removal of every fan
#   c     booted with broken fan.d files: a file that is not YAML freezes every fan
#         (fan.d(5), SAFETY), so no fan comes up, yet the system boots, plain networking
#         works and the journal holds FILE:LINE:COL; once that file is fixed (netplan
#         apply) the good fan comes up and the fan with its own error stays down; a
#         drop-in meant to disable the good fan, with a syntax error, changes nothing
#   d     no fan.d at all: the baseline that boot/check.py compares the boot of the
#         others with (when network.target and network-online.target are reached)
#
# Reports on /dev/ttyS1 (a file on the host), one line each:
#   CHECK <name> PASS|FAIL <detail>     INFO <text>     DONE <failures>
set -u
exec 3>/dev/ttyS1
stty -F /dev/ttyS1 -opost 2>/dev/null || true
export PATH=/usr/sbin:/usr/bin:/sbin:/bin SYSTEMD_PAGER= SYSTEMD_COLORS=0 LC_ALL=C.UTF-8

role= peers=bc
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	fangen.role=*) role=${arg#fangen.role=} ;;
	fangen.peers=*) peers=${arg#fangen.peers=} ;;   # the other guests booted with this one
	esac
done
ROLES=/usr/local/share/fangen-boot/roles
n=$(cat "$ROLES/$role/index" 2>/dev/null || echo 0)
UNDERLAY=172.16.$n.10             # the switch's dnsmasq gives guest n this address
SLICE=250.$n.10                   # so fan-250's slice is 250.n.10.0/24
failures=0

out() { echo "$*" >&3; echo "scenario: $*"; }
info() { while IFS= read -r line; do out "INFO $line"; done; }
pass() { out "CHECK $1 PASS ${2:-}"; }
fail() { out "CHECK $1 FAIL ${2:-}"; failures=$((failures + 1)); }
# check NAME CMD...: one check, its output as the detail on failure
check() {
	local name=$1; shift
	local res
	if res=$("$@" 2>&1); then pass "$name" "$(echo "$res" | tail -n 1)"
	else fail "$name" "$(echo "$res" | tr '\n' ' ' | cut -c1-300)"; fi
}
# wait_for SECS CMD...: until CMD succeeds (true) or SECS pass (false)
wait_for() {
	local secs=$1; shift
	local end=$((SECONDS + secs))
	while ! "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || return 1
		sleep 1
	done
}
check_wait() {
	local name=$1 secs=$2; shift 2
	local t0=$SECONDS
	if wait_for "$secs" "$@"; then pass "$name" "after $((SECONDS - t0)) s"
	else fail "$name" "not within $secs s: $* ($("$@" 2>&1 | tr '\n' ' ' | cut -c1-200))"; fi
}

has_addr() { ip -4 -o addr show dev "$1" | grep -q " $2/"; }
underlay_dev() { ip -4 -o addr show | awk -v a="$UNDERLAY" '$4 ~ "^"a"/" {print $2; exit}'; }
unit_active() { [ "$(systemctl is-active "$1")" = active ]; }
lease_ip() { sed -n 's/^ip=//p' "/run/fangen-boot/$1.lease" 2>/dev/null; }
ct_ping() { ip netns exec "$1" busybox ping -c 1 -W 2 "$2"; }
dnsmasq_range() { sed -n 's/^dhcp-range=//p' "/run/fangen/$1/dnsmasq.conf" 2>/dev/null; }
fan_left() {  # prints what of fan $1 remains; true when nothing does
	local left=
	ip link show "$1" >/dev/null 2>&1 && left+=" bridge"
	ip link show "$1-tun" >/dev/null 2>&1 && left+=" tunnel"
	nft list table ip "fangen-$1" >/dev/null 2>&1 && left+=" nft"
	pgrep -f "conf-file=/run/fangen/$1/" >/dev/null && left+=" dnsmasq"
	[ "$(systemctl is-active "fangen@$1.service")" = inactive ] || left+=" fangen@$1"
	[ "$(systemctl is-active "fangen-dnsmasq@$1.service")" = inactive ] || left+=" fangen-dnsmasq@$1"
	ls /run/systemd/network/10-fangen-"$1"* >/dev/null 2>&1 && left+=" networkd-files"
	[ -e "/run/fangen/$1" ] && left+=" /run/fangen/$1"
	ip route show | grep -q "dev $1" && left+=" route"
	echo "${left:-nothing}"
	[ -z "$left" ]
}
apply() {
	local t0=$SECONDS
	netplan apply >/tmp/netplan-apply.log 2>&1
	local rc=$?
	out "INFO netplan apply: exit $rc in $((SECONDS - t0)) s"
	return $rc
}

out "INFO role=$role index=$n kernel=$(uname -r) systemd=$(systemctl --version | head -n1)"

# -- the boot ---------------------------------------------------------------------------
# what the network looks like at this point (for the log)
{ ip -o link; ip -4 -o addr; networkctl list --no-pager; ls /run/systemd/network; } 2>&1 |
	sed 's/^/net: /' | info
state=$(timeout 300 systemctl is-system-running --wait 2>&1)
out "INFO boot finished: system $state"
if [ "$state" != running ] && [ "$state" != degraded ]; then
	systemctl list-jobs --no-pager 2>&1 | sed 's/^/jobs: /' | info
fi
if [ "$state" = running ]; then pass boot.system-running "$state"
else fail boot.system-running "$state: $(systemctl --failed --plain --no-legend | tr '\n' ' ')"; fi
check boot.pid1-systemd test "$(cat /proc/1/comm)" = systemd

check_wait boot.underlay-dhcp 120 sh -c "ip -4 -o addr show | grep -q ' $UNDERLAY/'"
dev=$(underlay_dev)
out "INFO underlay $dev: $(ip -4 -o addr show dev "${dev:-lo}" | awk '{print $4}')"
check boot.underlay-by-networkd sh -c "networkctl status '$dev' | grep -q 'netplan'"
check boot.plain-network busybox ping -c 1 -W 3 172.16.0.1
# issue 11: the host's own networking waits for no fangen unit, directly or by a chain
check boot.network-waits-for-no-fangen sh -c '! systemctl show -P After -P Wants -P Requires \
	network-pre.target network.target network-online.target systemd-networkd.service | grep fangen &&
	! systemd-analyze critical-chain --no-pager network-online.target | grep fangen'
# and no fangen unit started before networkd was up (only the generator runs earlier)
fangen_after_networkd() {
	local up u t early=
	up=$(systemctl show -P ActiveEnterTimestampMonotonic systemd-networkd.service)
	for u in $(systemctl list-units --all --no-legend --plain fangen.service fangen-apply.service \
		fangen-follow.service "fangen@*" "fangen-dnsmasq@*" | awk '{print $1}'); do
		t=$(systemctl show -P InactiveExitTimestampMonotonic "$u")
		[ "${t:-0}" = 0 ] || [ "$t" -ge "$up" ] || early+="$u started at $t us; "
	done
	echo "${early:-none} before networkd was up at $up us"
	[ -z "$early" ]
}
check boot.fangen-starts-after-networkd fangen_after_networkd

if [ "$role" = d ]; then
	check nofan.no-generator-link sh -c '! ls -d /run/systemd/generator*/*/fangen*'
	check nofan.no-fangen-units sh -c '! systemctl list-units --all --no-legend --plain fangen.service \
		fangen-apply.service fangen-follow.service "fangen@*" "fangen-dnsmasq@*" | grep -v " inactive " | grep .'
elif [ "$role" != c ]; then	# role c boots with a file that freezes every fan: its checks are below
	check_wait fan.bridge 180 has_addr fan-250 "$SLICE.1"
	check fan.slice sh -c "fangen show | grep fan-250 | grep -q '$SLICE.0/24'"
	check fan.tunnel ip -d link show fan-250-tun
	check fan.tunnel-port-of-bridge sh -c "ip -o link show fan-250-tun | grep -q 'master fan-250'"
	check fan.nft-table nft list table ip fangen-fan-250
	check_wait fan.runtime-unit 60 unit_active fangen@fan-250.service
	check_wait fan.follower-unit 60 unit_active fangen-follow.service
	check_wait fan.dnsmasq-unit 60 unit_active fangen-dnsmasq@fan-250.service
	check fan.dnsmasq-listens sh -c "ss -lunp | grep -q '$SLICE.1:67\\|0.0.0.0%fan-250:67\\|\\*%fan-250:67'"
	check_wait fan.container-lease 300 test "$(lease_ip ct)" = "$SLICE.100"
	check fan.container-unit unit_active fangen-boot-container.service
	check fan.container-pings-bridge ct_ping ct "$SLICE.1"
	check fan.generated-files ls /run/systemd/network/10-fangen-fan-250.netdev
	check fan.linked-by-generator test -L /run/systemd/generator/multi-user.target.wants/fangen.service
	systemctl status --no-pager fangen.service fangen@fan-250.service fangen-follow.service \
		fangen-dnsmasq@fan-250.service 2>&1 | grep -E '●|Active:|Main PID|Status:' | info
	# issue 11: one small resident follower; it puts back what someone else removed
	fpid=$(systemctl show -P MainPID fangen-follow.service)
	out "INFO footprint fangen-follow.service pid $fpid: $(grep -E '^(VmRSS|VmHWM)' /proc/"$fpid"/status 2>&1 | tr -s ' \t\n' ' ')$(grep -E '^Pss:' /proc/"$fpid"/smaps_rollup 2>/dev/null | tr -s ' \t\n' ' ')"
	gw=$(ip -4 -o addr show dev fan-250 | awk -v s="$SLICE.1/" 'index($4, s) == 1 {print $4; exit}')
	ip addr del "$gw" dev fan-250
	check_wait follow.bridge-address-put-back 60 has_addr fan-250 "$SLICE.1"
	# one resident process; the children it forks for a change (the same command line)
	# end with the change
	check_wait follow.one-resident-process 120 sh -c "[ \$(pgrep -c -f '^/usr/bin/python3 -IS /usr/sbin/fangen run') = 1 ]"
fi

# -- timings ----------------------------------------------------------------------------
out "INFO systemd-analyze: $(systemd-analyze time 2>&1 | head -n 1)"
systemd-analyze blame --no-pager 2>&1 | head -n 12 | sed 's/^/blame: /' | info
systemd-analyze blame --no-pager 2>&1 | grep -E 'fangen|netplan|networkd' | sed 's/^/blame: /' | info
for u in network.target network-online.target fangen@fan-250.service fangen-follow.service fangen-boot-container.service; do
	[ "$role" = d ] && [ "${u#fangen}" != "$u" ] && continue
	systemd-analyze critical-chain --no-pager "$u" 2>&1 | sed 's/^/chain: /' | info
done
# when the network targets were reached, from systemd's own monotonic timestamps:
# boot/check.py compares these between the guests with fans and d (none)
userspace=$(systemctl show -P UserspaceTimestampMonotonic)
networkd=$(systemctl show -P ActiveEnterTimestampMonotonic systemd-networkd.service)
for t in network.target network-online.target; do
	ts=$(systemctl show -P ActiveEnterTimestampMonotonic "$t")
	if [ -n "$ts" ] && [ "$ts" != 0 ]; then
		out "TIMING target $t $(((ts - userspace) / 1000)) ms after systemd started, $((ts / 1000)) ms after the kernel, $(((ts - networkd) / 1000)) ms after systemd-networkd was up"
	else
		out "TIMING target $t not reached"
	fi
done
# the underlay's lease, from networkd's journal line (short-monotonic: [SECONDS.USEC])
lease_s=$(journalctl -b --no-pager -o short-monotonic -u systemd-networkd 2>/dev/null |
	sed -n 's/^\[ *\([0-9.]*\)\].*DHCPv4 address.*/\1/p' | head -n 1)
[ -n "$lease_s" ] && out "TIMING dhcp lease of the underlay $(awk -v s="$lease_s" -v n="$networkd" \
	'BEGIN { printf "%d", s * 1000 - n / 1000 }') ms after systemd-networkd was up"
# the generators, each run 5 times as systemd runs them (fresh output directories)
gen_ms() {
	local gen=$1 i t0 t1 total=0
	for i in 1 2 3 4 5; do
		rm -rf /tmp/gen && mkdir -p /tmp/gen/n /tmp/gen/e /tmp/gen/l
		t0=$(date +%s%N)
		"$gen" /tmp/gen/n /tmp/gen/e /tmp/gen/l >/dev/null 2>&1
		t1=$(date +%s%N)
		total=$((total + (t1 - t0) / 1000))
	done
	echo $((total / 5000))
}
fangen_gen=$(gen_ms /usr/lib/systemd/system-generators/fangen)
netplan_gen=$(gen_ms /usr/lib/systemd/system-generators/netplan)
out "TIMING generator fangen ${fangen_gen} ms netplan ${netplan_gen} ms (mean of 5, in the guest)"
if [ "$role" != d ]; then
	t0=$(date +%s%N); fangen generate >/dev/null 2>&1; t1=$(date +%s%N)
	out "TIMING fangen-generate $(((t1 - t0) / 1000000)) ms (one run of fangen generate, in the guest)"
fi
for u in systemd-networkd.service systemd-networkd-wait-online.service fangen.service \
	fangen@fan-250.service fangen-follow.service fangen-boot-container.service; do
	a=$(systemctl show -P ExecMainStartTimestampMonotonic "$u")
	b=$(systemctl show -P ActiveEnterTimestampMonotonic "$u")
	c=$(systemctl show -P InactiveExitTimestampMonotonic "$u")
	[ -n "$b" ] && [ "$b" != 0 ] && out "TIMING unit $u activating $(((b - c) / 1000)) ms, active at $((b / 1000)) ms after kernel start"
done

# -- role a: across guests, then netplan apply -------------------------------------------
if [ "$role" = a ]; then
	case "$peers" in *b*)
		check_wait fan.ping-container-on-b 300 ct_ping ct 250.2.10.100
		check_wait fan.ping-host-b-bridge 60 ct_ping ct 250.2.10.1 ;;
	esac
	# guest c boots with every fan frozen (a fan.d file that is not YAML): no container there

	# 1. host-reserve: 1 -> 20, netplan apply: dnsmasq serves from .21 on
	old_range=$(dnsmasq_range fan-250)
	sed -i 's/^\(      datapath: upstream\)$/\1\n      host-reserve: 20/' /etc/netplan/fan.d/10-fan.yaml
	apply
	check_wait apply.host-reserve-range 120 sh -c "dnsmasq_range() { sed -n 's/^dhcp-range=//p' /run/fangen/fan-250/dnsmasq.conf; }; dnsmasq_range | grep -q '^$SLICE.21,'"
	out "INFO dhcp-range before: $old_range, after: $(dnsmasq_range fan-250)"
	check_wait apply.dnsmasq-active 60 unit_active fangen-dnsmasq@fan-250.service
	# a new container asks for .5 (reserved now): dnsmasq must hand out .21 or above
	/usr/local/lib/fangen-boot/container.sh ct2 fan-250 5 >/tmp/ct2.log 2>&1
	ip2=$(lease_ip ct2)
	if [ -n "$ip2" ] && [ "${ip2##*.}" -ge 21 ]; then pass apply.host-reserve-live "new container got $ip2"
	else fail apply.host-reserve-live "new container got '${ip2}' ($(tr '\n' ' ' </tmp/ct2.log))"; fi
	check apply.old-container-still-pings ct_ping ct "$SLICE.1"

	# 2. a second fan, netplan apply: it comes up
	install -m 600 "$ROLES/a/second-fan.yaml" /etc/netplan/fan.d/20-second.yaml
	apply
	check_wait apply.second-fan-bridge 120 has_addr fan-251 "251.$n.10.1"
	check_wait apply.second-fan-unit 60 unit_active fangen@fan-251.service
	check_wait apply.second-fan-dnsmasq 60 unit_active fangen-dnsmasq@fan-251.service
	check apply.second-fan-nft nft list table ip fangen-fan-251
	# upstream IPIP fans share one collect-metadata device (fan.d(5), tunnel)
	check apply.second-fan-shared-tunnel sh -c "ip -d link show fangen-ipip | grep -q external"
	check apply.first-fan-untouched ct_ping ct "$SLICE.1"

	# 2b. a networkd restart: no fangen unit is bound to networkd, the fans stay as they are
	runtime_pid=$(systemctl show -P MainPID fangen-follow.service)
	systemctl restart systemd-networkd.service
	check_wait restart.networkd-active 60 unit_active systemd-networkd.service
	check_wait restart.bridge-keeps-slice 60 has_addr fan-250 "$SLICE.1"
	check restart.runtime-not-restarted test "$(systemctl show -P MainPID fangen-follow.service)" = "$runtime_pid"
	check restart.fan-unit-not-restarted unit_active fangen@fan-250.service
	check_wait restart.container-pings-bridge 60 ct_ping ct "$SLICE.1"
	case "$peers" in *b*) check_wait restart.ping-container-on-b 60 ct_ping ct 250.2.10.100 ;; esac

	# 3. remove every fan, netplan apply: all gone
	ip netns exec ct busybox true
	ip link del v-ct 2>/dev/null; ip link del v-ct2 2>/dev/null
	ip netns delete ct; ip netns delete ct2
	rm -f /etc/netplan/fan.d/*.yaml
	apply
	check_wait apply.removed-fan-250 120 fan_left fan-250
	check_wait apply.removed-fan-251 120 fan_left fan-251
	check apply.no-dnsmasq sh -c '! pgrep -a dnsmasq'
	check apply.no-fangen-nft sh -c '! nft list tables | grep fangen'
	check apply.no-fangen-links sh -c '! ip -o link show | grep -E "fan-25|fan-.*-tun|fangen-ipip"'
	check apply.no-fangen-units sh -c '! systemctl list-units --no-legend --plain "fangen@*" "fangen-dnsmasq@*" | grep -v inactive | grep .'
	check_wait apply.follower-stopped 60 sh -c '! systemctl is-active -q fangen-follow.service'
	check apply.underlay-still-up has_addr "$dev" "$UNDERLAY"
	out "INFO after removal: links $(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')"
	out "INFO after removal: nft $(nft list tables | tr '\n' ' ')"
	out "INFO after removal: /run/fangen: $(ls -A /run/fangen 2>/dev/null | tr '\n' ' ')"
fi

# -- role c: broken fan.d files at boot ------------------------------------------------
no_fan() {  # nothing of any fan: no links, no networkd files, no runtime unit
	! ip link show fan-250 && ! ip link show fan-251 && ! ip link show fan-252 &&
		! ls /run/systemd/network/10-fangen-* && ! unit_active fangen@fan-250.service
}
mentions() { journalctl -b --no-pager -o cat 2>&1 | grep -c "$1"; }
if [ "$role" = c ]; then
	journal=$(journalctl -b --no-pager -o cat 2>&1)
	check broken.journal-file-line-col grep -qE '/etc/netplan/fan.d/20-broken.yaml:[0-9]+:[0-9]+: ' <<<"$journal"
	check broken.journal-yaml-syntax grep -qE '/etc/netplan/fan.d/30-syntax.yaml:[0-9]+:[0-9]+: ' <<<"$journal"
	check broken.journal-frozen grep -qF '30-syntax.yaml cannot be used: every fan is frozen' <<<"$journal"
	grep -E 'fan.d/(20-broken|30-syntax).yaml:[0-9]+:[0-9]+|every fan is frozen' <<<"$journal" | sort -u | head -n 6 | info
	# 30-syntax.yaml is not YAML: every fan frozen, and at boot (no earlier output) none comes up
	check broken.frozen-no-fan no_fan
	check broken.netplan-networking has_addr "$dev" "$UNDERLAY"
	check broken.no-failed-units sh -c '! systemctl --failed --no-legend --plain | grep .'

	# fixed: the good fan comes up; fan-251 (its own error) stays down, frozen alone
	rm -f /etc/netplan/fan.d/30-syntax.yaml
	apply
	check_wait broken.good-fan-up-after-fix 180 has_addr fan-250 "$SLICE.1"
	check_wait broken.good-fan-unit 60 unit_active fangen@fan-250.service
	check broken.bad-fan-absent sh -c '! ip link show fan-251 && ! ip link show fan-252'

	# a drop-in meant to disable fan-250, with a syntax error: fan-250 does not change
	seen=$(mentions '/etc/netplan/fan.d/90-off.yaml:')
	printf 'network:\n  fan:\n    fan-250:\n      enabled: false\n    oops\n' >/etc/netplan/fan.d/90-off.yaml
	chmod 600 /etc/netplan/fan.d/90-off.yaml
	apply
	if wait_for 120 sh -c "[ \$(journalctl -b --no-pager -o cat | grep -c '/etc/netplan/fan.d/90-off.yaml:') -gt $seen ]"; then
		if has_addr fan-250 "$SLICE.1" && unit_active fangen@fan-250.service &&
			ls /run/systemd/network/10-fangen-fan-250.netdev >/dev/null 2>&1; then
			pass broken.disable-dropin-frozen "fan-250 unchanged"
		else
			fail broken.disable-dropin-frozen "fan-250 changed: $(ip -4 -o addr show dev fan-250 2>&1) $(systemctl is-active fangen@fan-250.service)"
		fi
	else
		fail broken.disable-dropin-frozen "fangen apply did not report 90-off.yaml within 120 s"
	fi
	rm -f /etc/netplan/fan.d/90-off.yaml
fi

systemctl --failed --no-legend --plain | sed 's/^/failed unit: /' | info
journalctl -b --no-pager -p warning -o short-monotonic 2>&1 | grep -iE 'fangen|dnsmasq' | grep -v 'Failed to start\|Failed with result' | tail -n 20 | sed 's/^/journal: /' | info
if [ $failures -gt 0 ]; then
	journalctl -b --no-pager -o short-monotonic -u 'fangen@*' -u 'fangen-dnsmasq@*' \
		-u fangen-apply -u fangen.service -u fangen-follow.service 2>&1 |
		grep -vE 'Consumed|Scheduled restart|Stopped|Starting|Failed (with|to start)|Deactivated|Finished|Main process exited|dnsmasq(-dhcp)?\[' |
		awk '!seen[substr($0, index($0, "]: "))]++' | tail -n 80 | sed 's/^/debug: /' | info
fi
out "DONE $failures"
