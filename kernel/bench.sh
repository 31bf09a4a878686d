#!/bin/bash
# make bench-ipip-vm: bench/ipip.py (the IPIP fan vs a hand-built IPIP tunnel) in
# the qemu guest, on Debian's stock kernel (upstream datapath) and on the
# fan-patched kernel (upstream and kernel datapaths).  Prints ratios; not part of
# make check.  Run it under the VM lock like the other VM targets.
#
#   kernel/bench.sh [--stock|--patched]    one of the two (default: both)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
which=${1:-both}
"$HERE/deps.sh"
cd "$ROOT"
rc=0
run() {  # what, boot args...
	local what=$1 out
	shift
	out=$(mktemp -d /tmp/fangen-bench-ipip.XXXXXX)
	echo "bench-ipip-vm: $what" >&2
	"$HERE/boot.sh" --quiet --out "$out" --timeout "${FANGEN_KERNEL_TIMEOUT:-900}" "$@" -- \
		/usr/bin/python3 bench/ipip.py ${BENCH_ARGS:-} > "$out/bench.txt" || rc=1
	cat "$out/bench.txt"
	echo "bench-ipip-vm: $what: console in $out" >&2
}
if [ "$which" != --patched ]; then
	read -r kernel initrd moddir < <("$HERE/stock.sh")
	run "Debian stock kernel $(basename "$kernel")" --kernel "$kernel" --initrd "$initrd" \
		--append "fangen.modules=$moddir"
fi
if [ "$which" != --stock ]; then
	kernel=$("$HERE/build.sh")
	run "patched kernel $(basename "$(dirname "$kernel")")" --kernel "$kernel"
fi
exit $rc
