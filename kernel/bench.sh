#!/bin/bash
# make bench-ipip-vm: bench/ipip.py (the IPIP fan vs a hand-built IPIP tunnel) in
# the qemu guest, on Debian's stock kernel (upstream datapath) and on the
# fan-patched kernel (upstream and kernel datapaths).  make bench-vxlan-vm: the
# same for bench/throughput.py --steps (VXLAN).  Prints ratios; not part of
# make check.  Run it under the VM lock like the other VM targets.
#
#   kernel/bench.sh [--stock|--patched] [--wallclock] [--script FILE]
#     --stock, --patched  one of the two kernels (default: both)
#     --wallclock         time the guest by the host's clock (plain TCG)
#     --script FILE       the benchmark to run (default bench/ipip.py);
#                         its options come from BENCH_ARGS
#
# By default the guest runs on an instruction clock (boot.sh --icount 0: while
# the guest is busy, one instruction is one nanosecond of guest time; while it
# idles, its clock follows the host's).  Under plain TCG the guest's clock
# follows the host's load and single rounds range over a factor of seven; on
# the instruction clock a CPU-bound figure is instructions per byte or per
# packet, the same in every round, and the ratios compare the paths'
# instruction counts.  What it cannot show is what costs cycles without costing instructions (cache misses,
# branch mispredictions, memory allocation's cache effects): that is what the
# host's own run (make bench-fan) measures, with its noise.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
which=both icount=(--icount 0) script=bench/ipip.py
while [ $# -gt 0 ]; do
	case "$1" in
	--stock|--patched) which=$1; shift ;;
	--wallclock) icount=(); shift ;;
	--script) [ $# -ge 2 ] || { echo "$0: --script needs a file" >&2; exit 2; }
		script=$2; shift 2 ;;
	*) echo "usage: $0 [--stock|--patched] [--wallclock] [--script FILE]" >&2; exit 2 ;;
	esac
done
"$HERE/deps.sh"
cd "$ROOT"
[ -f "$script" ] || { echo "$0: no such benchmark: $script" >&2; exit 2; }
clock="instruction clock (qemu -icount shift=0,sleep=on)"
[ ${#icount[@]} -gt 0 ] || clock="host's clock (plain TCG: noisy)"
rc=0
run() {  # what, boot args...
	local what=$1 out
	shift
	out=$(mktemp -d /tmp/fangen-bench-vm.XXXXXX)
	echo "bench-vm: $script on the $what, guest timed by the $clock" >&2
	"$HERE/boot.sh" --quiet --out "$out" --timeout "${FANGEN_KERNEL_TIMEOUT:-3600}" \
		"${icount[@]}" "$@" -- \
		/usr/bin/python3 "$script" ${BENCH_ARGS:-} > "$out/bench.txt" || rc=1
	echo "# $script on the $what; guest timed by the $clock"
	cat "$out/bench.txt"
	echo "bench-vm: $what: console in $out" >&2
}
if [ "$which" != --patched ]; then
	read -r kernel initrd moddir < <("$HERE/stock.sh")
	run "Debian stock kernel $(basename "$(dirname "$kernel")")" --kernel "$kernel" \
		--initrd "$initrd" --append "fangen.modules=$moddir"
fi
if [ "$which" != --stock ]; then
	kernel=$("$HERE/build.sh")
	run "patched kernel $(basename "$(dirname "$kernel")")" --kernel "$kernel"
fi
exit $rc
