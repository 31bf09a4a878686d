# Kernel fan patch harness (kernel/README.md).  Included by the top-level
# Makefile; leaves its default goal alone.
_KERNEL_MK_GOAL := $(.DEFAULT_GOAL)

.PHONY: kernel-check kernel-check-stock kernel-build kernel-checkpatch kernel-deps bench-ipip-vm bench-vxlan-vm

# make check (CI): the patch must stay checkpatch-clean, work under qemu, and the
# upstream datapath must work on Debian's stock kernel (it has the ipip module).
CHECK_TARGETS += kernel-checkpatch kernel-check kernel-check-stock

# Build (cached in /var/cache/fangen/kernel/<key>), boot under qemu, run tests/kernel.
kernel-check:
	kernel/check.sh

# The same tests (and the upstream datapath's) on Debian's stock kernel.
kernel-check-stock:
	kernel/check.sh --stock

# Not in make check: bench/ipip.py (IPIP fan vs a hand-built IPIP tunnel) and
# bench/throughput.py --steps (VXLAN) under qemu on the instruction clock, stock
# kernel then patched kernel; print ratios (kernel/bench.sh says what they measure).
# 7 rounds of 2 s (what docs/SPEED.md quotes); BENCH_ARGS adds or overrides options.
bench-ipip-vm:
	BENCH_ARGS="--rounds 7 --seconds 2 $${BENCH_ARGS:-}" kernel/bench.sh

bench-vxlan-vm:
	BENCH_ARGS="--steps --rounds 7 --seconds 2 $${BENCH_ARGS:-}" \
		kernel/bench.sh --script bench/throughput.py

kernel-deps:
	kernel/deps.sh

kernel-build: kernel-deps
	kernel/build.sh

kernel-checkpatch: kernel-build
	kernel/checkpatch.sh

.DEFAULT_GOAL := $(_KERNEL_MK_GOAL)
