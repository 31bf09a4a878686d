#!/bin/bash
# make kernel-check: install what is missing, build (or reuse) the patched
# kernel, boot it under qemu and run tests/kernel inside; print the pytest
# summary and exit non-zero on failure.
#
#   kernel/check.sh            the patched kernel (kernel/patches)
#   kernel/check.sh --stock    Debian's stock kernel (linux-image-amd64):
#                              upstream IPIP/BPF only; fan-patch tests skip
#   PYTEST_ARGS="-k ping" kernel/check.sh    pass extra pytest arguments
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
stock=0
[ "${1:-}" != --stock ] || stock=1

t0=$(date +%s)
"$HERE/deps.sh"

boot_args=()
if [ $stock = 1 ]; then
	read -r kernel initrd moddir < <("$HERE/stock.sh")
	boot_args+=(--kernel "$kernel" --initrd "$initrd" --append "fangen.modules=$moddir")
	what="Debian stock kernel $(basename "$kernel")"
else
	kernel=$("$HERE/build.sh")
	boot_args+=(--kernel "$kernel")
	what="patched kernel $(basename "$(dirname "$kernel")")"
fi
t1=$(date +%s)

out=${FANGEN_KERNEL_OUT:-$(mktemp -d /tmp/fangen-kernel-check.XXXXXX)}
mkdir -p "$out"
# Each kernel runs the tests that are about it, so nothing is skipped: the fan
# patch's tests on the patched kernel; on the stock kernel the refusal test and
# the upstream datapath (its IPIP mode needs the ipip module this host lacks), with
# examples/two-fans.yaml (two IPIP fans sharing one device), and the VRF variant of a
# multi-homed host (test_vrf.py: neither this host's kernel nor the patched one has vrf).
if [ $stock = 1 ]; then
	tests=(tests/kernel/test_stock.py tests/netns/test_upstream_datapath.py
		tests/kernel/test_runtime.py::test_fangen_up_upstream_ipip
		tests/kernel/test_multifan.py tests/kernel/test_vrf.py)
else
	tests=(tests/kernel --ignore=tests/kernel/test_stock.py
		--ignore=tests/kernel/test_multifan.py --ignore=tests/kernel/test_vrf.py)
fi
echo "kernel-check: booting the $what, running ${tests[*]}" >&2
cd "$ROOT"
set +e
# shellcheck disable=SC2086
"$HERE/boot.sh" --quiet --out "$out" --timeout "${FANGEN_KERNEL_TIMEOUT:-900}" "${boot_args[@]}" -- \
	/usr/bin/python3 -m pytest -p no:cacheprovider -q -rs --durations=5 \
	--junitxml=/tmp/out/junit.xml "${tests[@]}" ${PYTEST_ARGS:-} > "$out/pytest.txt"
rc=$?
set -e
t2=$(date +%s)
tail -n 40 "$out/pytest.txt"
echo "kernel-check: $what: exit $rc; build/fetch $((t1 - t0)) s, boot+tests $((t2 - t1)) s;" \
	"console and junit in $out" >&2
exit $rc
