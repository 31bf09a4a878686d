#!/bin/bash
# Boot a kernel under qemu (TCG) with the host's root filesystem (9p,
# read-only) and run one shell command inside; exit with its exit code.
#
#   kernel/boot.sh [options] -- COMMAND...
#     --kernel FILE    kernel image (default: kernel/build.sh's bzImage)
#     --initrd FILE    initramfs (needed by kernels with 9p/virtio as modules)
#     --out DIR        directory shared read-write with the guest at /tmp/out
#                      (default: a fresh temporary directory)
#     --mem MB         guest memory (default 1024)
#     --timeout SECS   kill qemu after SECS (default 900)
#     --append ARGS    extra kernel command line
#     --allow-oops     do not fail when the console shows an oops or warning
#     --quiet          do not copy the console to stderr (it is kept in OUT/console.log)
#     --icount SHIFT   instruction clock: while the guest runs, each instruction
#                      takes 2^SHIFT ns of guest time; while it idles, its clock
#                      follows the host's (qemu -icount shift=SHIFT,sleep=on).
#                      A CPU-bound benchmark then measures instructions, not the
#                      host's load (kernel/bench.sh uses it)
#
# The command runs as root in the guest with /tmp, /run, /var/tmp on tmpfs,
# its working directory the current host directory (read-only), and
# FANGEN_VM_OUT=/tmp/out.  Its output goes to OUT/output and to stdout; the
# guest's console to OUT/console.log.  Exit codes: the command's, or 124
# (timeout), 125 (the guest never reported), 126 (oops/warning on the console).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
kernel= initrd= out= mem=1024 timeout=900 append= allow_oops=0 quiet=0 icount=
# an option's value: one line and exit 2 when it is missing (or, with a pattern,
# does not match it), not an unbound-variable error
value() {  # option, pattern, what it takes, the rest of the arguments
	local opt=$1 pat=$2 what=$3
	shift 3
	[ $# -ge 2 ] && [[ $2 =~ $pat ]] || { echo "$0: $opt takes $what" >&2; exit 2; }
}
while [ $# -gt 0 ]; do
	case "$1" in
	--kernel) value "$1" . "a file" "$@"; kernel=$2; shift 2 ;;
	--initrd) value "$1" . "a file" "$@"; initrd=$2; shift 2 ;;
	--out) value "$1" . "a directory" "$@"; out=$2; shift 2 ;;
	--mem) value "$1" '^[1-9][0-9]*$' "a size in MiB" "$@"; mem=$2; shift 2 ;;
	--timeout) value "$1" '^[1-9][0-9]*$' "a number of seconds" "$@"; timeout=$2; shift 2 ;;
	--append) value "$1" '' "kernel arguments" "$@"; append=$2; shift 2 ;;
	--allow-oops) allow_oops=1; shift ;;
	--quiet) quiet=1; shift ;;
	--icount) [[ ${2:-} =~ ^([0-9]|10)$ ]] || { echo "$0: --icount takes a shift of 0..10" >&2; exit 2; }
		icount=$2; shift 2 ;;
	--) shift; break ;;
	*) echo "usage: $0 [options] -- COMMAND..." >&2; exit 2 ;;
	esac
done
[ $# -gt 0 ] || { echo "$0: no command" >&2; exit 2; }
[ -n "$kernel" ] || kernel=$("$HERE/build.sh")
if [ -z "$out" ]; then
	out=$(mktemp -d /tmp/fangen-vm.XXXXXX)
else
	mkdir -p "$out"
fi
out=$(cd "$out" && pwd)
rm -f "$out/rc" "$out/output" "$out/console.log"

# The command, run by kernel/guest-init.sh inside the guest.
{
	echo "cd $(printf %q "$PWD") 2>/dev/null || cd /"
	printf '%q ' "$@"
	echo
} > "$out/cmd"
# The working directory (the checkout) is shared on its own too: the guest puts tmpfs
# over /tmp, /run and /var/tmp, which would hide a checkout there (CI clones anywhere).
printf '%s\n' "$PWD" > "$out/wd"

cmdline="console=ttyS0 root=/dev/root rootfstype=9p"
cmdline+=" rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose ro"
cmdline+=" init=$HERE/guest-init.sh panic=-1 oops=panic loglevel=4 $append"

qemu=(qemu-system-x86_64 -accel tcg -m "$mem" -smp 1 -nodefaults -no-reboot
	-display none -vga none -no-user-config
	-chardev "file,id=con,path=$out/console.log" -serial chardev:con
	-fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap
	-device virtio-9p-pci,fsdev=root,mount_tag=root
	-fsdev "local,id=out,path=$out,security_model=none"
	-device virtio-9p-pci,fsdev=out,mount_tag=fangenout
	-fsdev "local,id=wd,path=$PWD,security_model=none,readonly=on,multidevs=remap"
	-device virtio-9p-pci,fsdev=wd,mount_tag=fangenwd
	-kernel "$kernel" -append "$cmdline")
[ -z "$initrd" ] || qemu+=(-initrd "$initrd")
[ -z "$icount" ] || qemu+=(-icount "shift=$icount,sleep=on")

start=$(date +%s.%N)
if [ $quiet = 0 ]; then
	touch "$out/console.log"
	tail -F -n +1 "$out/console.log" >&2 2>/dev/null &
	tailpid=$!
fi
set +e
timeout "$timeout" "${qemu[@]}" </dev/null
qrc=$?
set -e
if [ $quiet = 0 ]; then
	sleep 0.3
	kill "$tailpid" 2>/dev/null || true
	wait "$tailpid" 2>/dev/null || true
fi
end=$(date +%s.%N)
printf 'kernel/boot.sh: guest ran %.1f s (qemu exit %d), output in %s\n' \
	"$(echo "$end - $start" | bc)" "$qrc" "$out" >&2

[ ! -f "$out/output" ] || cat "$out/output"
if [ $qrc = 124 ]; then
	echo "kernel/boot.sh: timeout after $timeout s" >&2
	exit 124
fi
if [ $allow_oops = 0 ] &&
	grep -E "Oops|BUG:|WARNING:|Call Trace|Kernel panic|general protection" "$out/console.log" >&2; then
	echo "kernel/boot.sh: kernel oops/warning on the console ($out/console.log)" >&2
	exit 126
fi
if [ ! -f "$out/rc" ]; then
	echo "kernel/boot.sh: the guest did not report an exit code; console:" >&2
	tail -30 "$out/console.log" >&2
	exit 125
fi
exit "$(cat "$out/rc")"
