"""Where the cycles go on each path of bench/throughput.py (``--profile``).

Two tools that work on this machine (a VM without hardware counters: ``perf stat -e
instructions`` reports "not supported", so ``bpftool prog profile`` cannot run):

* BPF run-time statistics: ``BPF_ENABLE_STATS`` (the syscall ``bpftool prog
  profile`` and ``sysctl kernel.bpf_stats_enabled`` use) turns on per-program
  ``run_time_ns`` / ``run_cnt`` for as long as the returned descriptor is open, so
  closing it (or this process ending) turns it off again.  We read the counters of
  the fan's two programs, found by id from ``tc filter show`` in host 1 and 2:
  nanoseconds per run is the programs' own per-packet cost.
* ``perf record -e cpu-clock -a``: timer sampling of the whole machine while one
  UDP small-packet measurement runs; the report keeps the samples of the iperf3
  processes and the softirq threads (the veth/bridge/VXLAN work of a namespace
  pair runs in their context) and lists the kernel symbols by share.  Other
  engineers' work on the machine falls outside those threads.

The result is printed, not asserted.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter

from tests.harness.ns import sh

SYS_BPF = 321                  # x86_64
BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0
COMMS = "iperf3,ksoftirqd/0,ksoftirqd/1"
FREQ = 2000                   # perf sampling frequency, Hz


def enable_bpf_stats() -> int | None:
    """A descriptor that keeps BPF run-time statistics on while open, or None."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    attr = (ctypes.c_uint8 * 8)()
    ctypes.c_uint32.from_buffer(attr).value = BPF_STATS_RUN_TIME
    fd = libc.syscall(ctypes.c_long(SYS_BPF), ctypes.c_long(BPF_ENABLE_STATS),
                      ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))
    return fd if fd >= 0 else None


def fan_programs(ns: str) -> dict[str, int]:
    """{"egress"/"ingress": program id} of fangen's tc filters in a host namespace."""
    found = {}
    links = json.loads(sh("ip", "-n", ns, "-j", "link", "show").stdout or "[]")
    for link in links:
        for hook in ("ingress", "egress"):
            text = sh("tc", "-n", ns, "filter", "show", "dev", link["ifname"], hook,
                      check=False).stdout
            m = re.search(r"fangen:\S+.* id (\d+)", text)
            if m:
                found[hook] = int(m.group(1))
    return found


def tc_program_ids(ns: str, dev: str) -> dict[str, list[int]]:
    """{"ingress"/"egress": ids of every BPF program on that tc hook of ``dev``}."""
    found = {}
    for hook in ("ingress", "egress"):
        text = sh("tc", "-n", ns, "filter", "show", "dev", dev, hook, check=False).stdout
        found[hook] = [int(i) for i in re.findall(r" id (\d+)", text)]
    return found


def fan_device(ns: str) -> str:
    """The device fangen's tc filters are on in a host namespace."""
    links = json.loads(sh("ip", "-n", ns, "-j", "link", "show").stdout or "[]")
    for link in links:
        text = sh("tc", "-n", ns, "filter", "show", "dev", link["ifname"], "egress",
                  check=False).stdout
        if "fangen:fan:" in text:
            return link["ifname"]
    raise LookupError(f"{ns}: no device with fangen's filters")


def prog_counters(prog_id: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a program."""
    data = json.loads(sh("bpftool", "-j", "prog", "show", "id", str(prog_id)).stdout)
    return data.get("run_time_ns", 0), data.get("run_cnt", 0)


def perf_works() -> bool:
    res = sh("perf", "stat", "-e", "cpu-clock", "true", check=False)
    return res.returncode == 0


def record(out: str, work) -> None:
    """``perf record -e cpu-clock -a`` for as long as ``work()`` runs."""
    perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-c",
                             str(1_000_000_000 // FREQ), "-a", "-o", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        time.sleep(0.5)
        work()
    finally:
        os.kill(perf.pid, signal.SIGINT)
        try:
            perf.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(perf.pid, signal.SIGKILL)
            perf.wait()


def symbol_samples(data: str) -> dict[str, int]:
    """{kernel or user symbol: samples} in the iperf3 and softirq threads."""
    res = sh("perf", "report", "-i", data, "--stdio", "-q", "-n", "--no-children",
             "--sort", "sym", "--comms", COMMS, check=False, timeout=180)
    out: dict[str, int] = {}
    for line in res.stdout.splitlines():
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+\[[^\]]+\]\s+(\S+)", line)
        if m:
            out[m.group(2)] = out.get(m.group(2), 0) + int(m.group(1))
    return out


# symbol prefixes -> the part of the path they belong to (first match wins)
GROUPS = [
    ("BPF programs and helpers", ("bpf_", "___bpf", "__bpf", "cls_bpf", "tcf_", "tcx_",
                                  "sch_handle", "tc_run")),
    ("VXLAN and UDP tunnel", ("vxlan", "udp_tunnel", "iptunnel", "ip_tunnel", "skb_tunnel",
                              "__iptunnel")),
    ("tunnel metadata dst", ("metadata_dst", "__metadata_dst", "dst_cache", "tun_dst",
                             "md_dst", "udp_tun_rx_dst")),
    ("route lookup", ("fib_", "ip_route_output", "ip_route_input", "__ip_route",
                      "ip_route_", "__fib", "rt_dst", "ipv4_dst", "dst_release", "dst_alloc",
                      "rt_", "__mkroute", "xfrm_lookup")),
    ("netfilter, conntrack, bridge netfilter", ("nf_", "nft_", "br_nf", "ipv4_conntrack",
                                                "__nf", "ipv4_confirm", "hash_conntrack")),
    ("bridge", ("br_", "__br", "nbp_")),
    ("veth", ("veth_",)),
    ("memory (skb alloc/free, slab)", ("kmem_", "kfree", "__kmalloc", "kmalloc", "skb_release",
                                       "__alloc_skb", "skb_free", "__slab", "slab_", "___slab",
                                       "consume_skb", "kfree_skb", "napi_", "__build_skb",
                                       "skb_defer")),
]


def group_of(sym: str) -> str:
    for name, prefixes in GROUPS:
        if sym.startswith(prefixes):
            return name
    return "other (socket, syscall, scheduler, iperf3, ...)"


def per_packet(samples: dict[str, int], packets: int) -> dict[str, float]:
    """Samples -> CPU nanoseconds per packet (one sample = 1/FREQ s of one CPU)."""
    return {sym: n * 1e9 / FREQ / packets for sym, n in samples.items()} if packets else {}


def run_all(lab, paths: dict, names: dict, measure, seconds: float,
            prepare=lambda name: None) -> None:
    """Profile each path once with a UDP small-packet run (``measure(name, s) -> dict``),
    then run the fan once more with BPF run-time statistics on (not under perf: the
    statistics add two clock reads per program run)."""
    use_perf = perf_works()
    print(f"\nprofile: one UDP 64-byte run of {seconds:g} s per path"
          + (f"; perf cpu-clock every {1000 / FREQ:g} ms, threads {COMMS}" if use_perf else
             " (perf does not work here)"))
    costs: dict[str, dict[str, float]] = {}
    for name in paths if use_perf else ():
        data = os.path.join(lab.run.workdir, f"perf-{name}.data")
        got: dict = {}
        prepare(name)
        record(data, lambda n=name: got.update(measure(n, seconds)))
        costs[name] = per_packet(symbol_samples(data), got["packets"])
        print(f"\n  {names[name]}: {got['pps'] / 1e3:.1f} kpps received, iperf3 CPU "
              f"{got['cpu_ns_per_pkt']:.0f} ns per packet; sampled in those threads "
              f"{sum(costs[name].values()):.0f} ns per packet; top symbols (ns per packet):")
        top = sorted(costs[name].items(), key=lambda kv: -kv[1])[:10]
        print("    " + ", ".join(f"{sym} {ns:.0f}" for sym, ns in top))
    if "fan" in costs:
        for base in [n for n in costs if n != "fan"]:
            compare(costs["fan"], costs[base], base)
    for name in [n for n in paths if n.startswith("fan")]:
        prepare(name)
        bpf_run(lab, lambda s, n=name: measure(n, s), seconds, names[name])


def bpf_run(lab, measure, seconds: float, title: str = "fan") -> None:
    """The fan's programs' own cost per run, from BPF run-time statistics."""
    progs = {h.name: fan_programs(h.ns) for h in lab.hosts}
    fd = enable_bpf_stats()
    if fd is None:
        print("\n  BPF run-time statistics: BPF_ENABLE_STATS refused")
        return
    try:
        before = {(h, d): prog_counters(i) for h, p in progs.items() for d, i in p.items()}
        got = measure(seconds)
        after = {(h, d): prog_counters(i) for h, p in progs.items() for d, i in p.items()}
    finally:
        os.close(fd)
    print(f"\n  {title} with BPF run-time statistics on: {got['pps'] / 1e3:.1f} kpps, iperf3 CPU "
          f"{got['cpu_ns_per_pkt']:.0f} ns per packet")
    for key, (t0, c0) in before.items():
        t1, c1 = after[key]
        if c1 - c0 > 100:
            print(f"    program {key[1]:<7} on {key[0]}: {c1 - c0:>9} runs, "
                  f"{(t1 - t0) / (c1 - c0):6.1f} ns per run")


def compare(fan: dict[str, float], base: dict[str, float], base_name: str) -> None:
    """Per-packet CPU by part of the path, fan minus baseline, and the symbols behind it."""
    def grouped(costs):
        out: dict[str, float] = {}
        for sym, ns in costs.items():
            out[group_of(sym)] = out.get(group_of(sym), 0.0) + ns
        return out
    gf, gb = grouped(fan), grouped(base)
    print(f"\n  fan vs {base_name}, sampled CPU ns per packet by part of the path "
          f"(fan, {base_name}, difference):")
    for group in sorted(set(gf) | set(gb), key=lambda g: -(gf.get(g, 0) - gb.get(g, 0))):
        print(f"    {group:<46} {gf.get(group, 0):7.0f} {gb.get(group, 0):7.0f} "
              f"{gf.get(group, 0) - gb.get(group, 0):+7.0f}")
    print(f"    {'total':<46} {sum(gf.values()):7.0f} {sum(gb.values()):7.0f} "
          f"{sum(gf.values()) - sum(gb.values()):+7.0f}")
    diff = {s: fan.get(s, 0) - base.get(s, 0) for s in set(fan) | set(base)}
    more = sorted(diff.items(), key=lambda kv: -kv[1])[:10]
    print("    symbols the fan spends more in: "
          + ", ".join(f"{s} {d:+.0f}" for s, d in more if d > 0))


KERNEL_THREADS = ("ksoftirqd", "rcu", "kworker")   # work a path may leave to the kernel


def parse_threads(report: str) -> dict[tuple[str, str], int]:
    """``perf report --sort comm,sym -n`` text -> {(thread, symbol): samples}, numbered
    kernel threads folded together (``ksoftirqd/0`` and ``/1`` are ``ksoftirqd/N``)."""
    out: dict[tuple[str, str], int] = {}
    for line in report.splitlines():
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+(\S+)\s+\[[^\]]+\]\s+(\S+)", line)
        if m:
            key = (re.sub(r"/\d+$", "/N", m.group(2)), m.group(3))
            out[key] = out.get(key, 0) + int(m.group(1))
    return out


def by_thread(lab, pair: tuple[str, str], names: dict, measure, seconds: float,
              rounds: int) -> None:
    """Where the CPU of a TCP stream goes, by thread: ``rounds`` alternating runs of each
    path of ``pair`` (``measure(name, s) -> dict`` with "bytes") under ``perf record -a``;
    CPU milliseconds per GiB received by thread (idle is ``swapper``), and the symbols of
    the kernel's softirq, RCU and worker threads (:data:`KERNEL_THREADS`), which iperf3's
    getrusage does not see."""
    if not perf_works():
        print("\nthreads: perf does not work here")
        return
    samples = {name: Counter() for name in pair}
    gib = dict.fromkeys(pair, 0.0)
    for r in range(rounds):
        for name in (pair if r % 2 == 0 else pair[::-1]):
            data = os.path.join(lab.run.workdir, f"perf-threads-{name}-{r}.data")
            got: dict = {}
            record(data, lambda n=name: got.update(measure(n, seconds)))
            gib[name] += got["bytes"] / 2 ** 30
            res = sh("perf", "report", "-i", data, "--stdio", "-q", "-n", "--no-children",
                     "--sort", "comm,sym", check=False, timeout=180)
            samples[name].update(parse_threads(res.stdout))
    print(f"\nthreads: {rounds} alternating TCP runs of {seconds:g} s per path under perf "
          "(whole machine); CPU ms per GiB received")
    for name in pair:
        if not gib[name]:
            print(f"  {names[name]}: nothing received")
            continue
        per_gib = 1000 / FREQ / gib[name]          # one sample is 1/FREQ s of one CPU
        threads = Counter()
        for (comm, _), n in samples[name].items():
            threads[comm] += n
        print(f"  {names[name]}: " + ", ".join(
            f"{c} {n * per_gib:.0f}" for c, n in threads.most_common(6)))
        kernel = Counter({k: n for k, n in samples[name].items()
                          if k[0].startswith(KERNEL_THREADS)})
        print("    in the kernel's threads: " + ", ".join(
            f"{c} {s} {n * per_gib:.1f}" for (c, s), n in kernel.most_common(8)))


def test_run_costs(modules: dict, rounds: int = 7, repeat: int = 200_000) -> None:
    """The programs alone: ns per run under ``BPF_PROG_TEST_RUN`` (``repeat`` runs in the
    kernel, no stack around them) for each module's egress on an IPv4 frame and an ARP
    frame, ``rounds`` alternating rounds; median and min..max."""
    from bench.stats import rotated, summary
    from fangen.datapath import bpf
    from fangen.fanmap import FanMap
    from tests.harness import packets

    fmap = FanMap.parse("250.0.0.0/8", "172.16.0.0/16")
    frames = {"IPv4": packets.ethernet(0x0800, packets.ipv4("250.1.2.10", "250.3.4.5",
                                                            bytes(8))),
              "ARP": packets.arp("250.1.2.10", "250.3.4.5")}
    fds = {}
    try:
        for name, module in modules.items():
            params = module.FanParams.for_host(fmap, "172.16.1.2", "vxlan")
            code = bpf.assemble(module.egress(params))
            fds[name] = bpf.prog_load(code, name="fan_bench")
        times = {(n, f): [] for n in fds for f in frames}
        for r in range(rounds):
            for name in rotated(list(fds), r):
                for kind, frame in frames.items():
                    res = bpf.prog_test_run(fds[name], frame, repeat=repeat)
                    times[(name, kind)].append(float(res.duration_ns))
    finally:
        for fd in fds.values():
            os.close(fd)
    print(f"\nVXLAN egress program alone (BPF_PROG_TEST_RUN, {repeat} runs per figure, "
          f"{rounds} alternating rounds): ns per run, median [min .. max]")
    for (name, kind), vals in times.items():
        s = summary(vals)
        print(f"  {name:<12} {kind:<5} {s.text('6.1f')}")
