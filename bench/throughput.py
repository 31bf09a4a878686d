#!/usr/bin/python3
"""Throughput: container to container across two hosts over the fan, against two
hand-built VXLAN baselines on the same topology, in the same run.

Paths (all between containers on host namespaces h1 and h2, MTU 1450):

* ``fan``: the fan as fangen builds it (VXLAN, upstream datapath: on this kernel a
  plain VXLAN device on the fan bridge whose tc programs encapsulate every frame;
  real networkd and ``fangen run`` in each host, containers leased by the fan's
  dnsmasq);
* ``l2``: an L2 VXLAN with a static remote, the containers on-link in one /16
  (what a person builds by hand for two hosts; the fan's VXLAN path is L2 too);
* ``routed``: a flannel-style routed VXLAN, one route + neighbour + FDB entry per peer.
* ``l2md`` (``--external``): the ``l2`` tunnel on a collect-metadata VXLAN device
  whose one fixed remote a trivial tc program sets (``tunnels.l2_external``): the
  kernel's collect-metadata path without any fan logic, so ``l2md / l2`` is what that
  path costs by itself and ``fan / l2md`` what the fan's programs add;
* ``l2nc`` (``--steps``, with ``l2md``): the ``l2`` tunnel with every packet marked,
  so it may not use its cached route to the remote (``tunnels.l2_nocache``).
  ``--steps`` then prints the gap between ``l2`` and the fan split by cause:
  ``l2nc / l2`` the per-packet route lookup, ``l2md / l2nc`` the metadata dst (what
  the tunnel-key path costs, which the fan's IPv4 no longer takes), ``l2bpf / l2``
  the fan's own encapsulation, ``fan / l2bpfs`` the fan's programs;
* ``l2bpf`` (``--encap``, and with ``--steps``): ``l2md`` with IPv4 encapsulated by the
  program itself, with fangen's encapsulation code and one fixed remote
  (``tunnels.l2_encap``): the fan's transmit path without the fan's decisions, so
  ``l2bpf / l2`` is what that path costs (or saves) against the static tunnel;
* ``l2bpfs`` (with ``--encap``): the same program on the static tunnel's device
  (``tunnels.l2_encap_static``), so ``l2bpf / l2bpfs`` is what receiving on a
  collect-metadata device (a metadata dst allocated per packet) costs, and ``fan /
  l2bpfs`` what the fan's programs add to the same transmit and receive paths;
* ``fanmd`` (with ``--encap``): the fan as it was before its tunnel became a plain
  VXLAN device: the fan's own programs on a collect-metadata device
  (``tunnels.fan_metadata``; 252.0.0.0/8 on port 4795), so ``fan / fanmd`` is what the
  plain device changes and ``fanmd / l2bpf`` the fan's programs on the old device;
* ``fan-kernel`` (a kernel with Ubuntu's VXLAN fan, ``/proc/sys/net/fan/vxlan``: the
  patched kernel in ``make bench-vxlan-vm``): a second fan on the same hosts,
  251.0.0.0/8 on port 4792, with ``datapath: kernel`` (a VXLAN device with a fan
  map, no tc programs), its own container per host;
* ``bare`` (``--bare``): iperf3 host to host over the underlay, for reference;
* ``fan6`` (``--ipv6``): the same fan made dual-stack (overlay6), the same containers
  over their SLAAC addresses: IPv6 beside IPv4 ("fan / fan6" is IPv4 over IPv6);
* ``fan@REF`` (``--ref REF``): the same fan with the tc programs of git revision
  REF's ``fangen/datapath/fanprog.py`` (say ``main``), swapped in place
  (:func:`fangen.datapath.upstream.attach`) before each measurement of a fan path,
  so a change to the programs is measured side by side with what it replaces.

Every round measures every path, in an order rotated each round (so drift on a
busy machine hits all alike), with iperf3: one TCP stream (Gbit/s received), and
UDP with 64-byte payloads at an unlimited rate (``-u -l 64 -b 0``), counting the
packets the *receiver* got per second.  With each it records the CPU time iperf3's
client and server used (their getrusage, as iperf3 reports it; this kernel has no
separate IRQ time accounting, so the softirq work done in their context -- veth,
bridge, VXLAN, BPF -- is in it) per KiB or per packet received: on a shared machine
that figure depends much less on the share of the CPUs a run happens to get than
Gbit/s or packets per second do.  Beside it, the whole machine's busy CPU time during
the measurement (/proc/stat: user, system, irq and softirq, without idle and steal) per
KiB or packet: this one also holds softirq work deferred to ksoftirqd, which getrusage
misses, and whatever else the machine did meanwhile (the same for every path, on
average; iperf3's own start and stop are in it too).  Prints per path the median, min..max and the
interquartile range, and the ratios fan/baseline (of the medians, and the median of
the per-round ratios).  ``--profile`` then runs each path once more
under ``perf record`` (cpu-clock sampling, whole machine, iperf3 and softirq
threads kept) and with BPF run-time statistics on, and prints where the cycles go.
Each ratio's per-round values also get a 95% bootstrap confidence interval of their
median (:func:`bench.stats.median_ci`): what a claim like "at least 0.97x" needs is the
low end of that interval, not one median.  ``--only fan,l2`` measures just those paths
(shorter rounds, so the two measurements of a pair are closer in time, and more rounds
fit), ``--pin`` puts iperf3's client on CPU 0 and its server on CPU 1 every time.
``--threads N`` then runs fan and l2 N times each under ``perf record`` and prints the
CPU per GiB by thread: what ksoftirqd, the RCU threads and idle take beside iperf3.
Asserts nothing about time.

Run as root: /usr/bin/python3 bench/throughput.py [--rounds 7] [--seconds 5] [--profile]
             [--only fan,l2] [--pin]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import cycles, tunnels  # noqa: E402
from fangen.datapath import kernelfan  # noqa: E402
from bench.stats import (Summary, busy_ticks, median_ci, ratios, rotated,  # noqa: E402
                         summary, whole)
from tests.harness import HarnessError, Lab, fan_stanza  # noqa: E402
from tests.harness.ns import Run, nsexec  # noqa: E402
from tests.harness.perf import iperf3_end  # noqa: E402

NAMES = {"fan": "fan (upstream datapath)", "l2": "L2 VXLAN, static remote",
         "l2md": "L2 VXLAN, external + fixed key",
         "l2nc": "L2 VXLAN, static, no dst cache",
         "routed": "routed VXLAN, per-peer state", "bare": "bare underlay",
         "fan6": "fan over IPv6 (overlay6)", "fan-kernel": "fan (kernel datapath)",
         "l2bpf": "L2 VXLAN, external, encapsulated by the program",
         "l2bpfs": "L2 VXLAN, static, encapsulated by the program",
         "fanmd": "fan on a collect-metadata device (before)"}
OVERLAY6 = "fd5a:fa00::/48"
KERNEL_FAN = "fan251"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# --pin: iperf3's client on CPU 0 and its server on CPU 1 (``-A n,m`` on the client sets
# both).  A packet's softirq work runs on the CPU that sent it (veth hands it to the
# backlog of the sending CPU), so the data path runs on CPU 0 and the ACKs on CPU 1, the
# same way every round, instead of wherever the scheduler put the two processes.
PIN = ("-A", "0,1")


def ref_fanprog(ref: str, workdir: str):
    """git revision REF's fanprog module, imported under another name."""
    text = subprocess.run(["git", "-C", REPO, "show", f"{ref}:fangen/datapath/fanprog.py"],
                          check=True, capture_output=True, text=True).stdout
    path = os.path.join(workdir, "fanprog_ref.py")
    with open(path, "w") as out:
        out.write(text)
    spec = importlib.util.spec_from_file_location("fanprog_ref", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class Programs:
    """Which fanprog module's programs are on the lab's fan devices; swaps them."""

    def __init__(self, lab: Lab, modules: dict) -> None:
        from fangen.datapath import fanprog
        from fangen.fanmap import FanMap
        self.lab, self.modules, self.current = lab, modules, "fan"
        stanza = lab.fans[lab.fan]
        self.fmap = FanMap.parse(stanza["overlay"], stanza["underlay"])
        self.devices = {h.ns: cycles.fan_device(h.ns) for h in lab.hosts}
        self.modules.setdefault("fan", fanprog)

    def params(self, module, host):
        """``module``'s FanParams for ``host`` as fangen attached them there: the
        encapsulation and the plain device recorded in its state, where the module
        knows them (a revision from before the plain device cannot drive one)."""
        import dataclasses
        from ipaddress import IPv4Address, IPv4Network

        from fangen.datapath.encap import Encap
        params = module.FanParams.for_host(self.fmap, host.address(), "vxlan")
        with open(os.path.join(host.root, "run/fangen", self.lab.fan, "state.json")) as fh:
            rec = json.load(fh)["tc"][self.devices[host.ns]]["params"]
        fields = {f.name for f in dataclasses.fields(params)}
        extra = {}
        if rec.get("underlay_index") and "encap" in fields:
            extra["encap"] = Encap(IPv4Address(rec["local"]), rec["underlay_index"],
                                   rec["port"], IPv4Network(rec["connected"]))
        if rec.get("plain"):
            if "plain" not in fields:
                raise HarnessError("the fan's tunnel is a plain VXLAN device, which this "
                                   "revision's programs cannot drive (they predate it)")
            extra["plain"] = True
        return dataclasses.replace(params, **extra)

    def use(self, name: str) -> None:
        if name not in self.modules or name == self.current:
            return
        from fangen.datapath import upstream
        from tests.harness.ns import iproute_in
        module, saved = self.modules[name], upstream.fanprog
        for host in self.lab.hosts:
            params = self.params(module, host)
            with contextlib.closing(iproute_in(host.ns)) as ipr:
                index = ipr.link_lookup(ifname=self.devices[host.ns])[0]
                upstream.fanprog = module
                try:
                    if not upstream.attach(ipr, index, params, self.lab.fan):
                        raise HarnessError(f"{host.name}: {name}'s programs not attached")
                finally:
                    upstream.fanprog = saved
        self.current = name


def machine_busy_ns() -> int:
    """The whole machine's busy CPU time so far (/proc/stat, without idle and steal)."""
    with open("/proc/stat", encoding="ascii") as f:
        return busy_ticks(f.read()) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def run_iperf3(run: Run, server_ns: str, server_addr: str, client_ns: str, seconds: float,
               extra: tuple = (), port: int = 5202) -> dict:
    """One iperf3 measurement; returns the client's JSON ``end`` section, with the whole
    machine's busy CPU time during it (nanoseconds) added as ``machine_busy_ns``."""
    before = machine_busy_ns()
    end = iperf3_end(run, server_ns, server_addr, client_ns, seconds, port, extra)
    return {**end, "machine_busy_ns": machine_busy_ns() - before}


def _cpu_seconds(end: dict, seconds: float) -> float:
    """CPU time of the iperf3 client and server (getrusage; this kernel has no separate
    IRQ time accounting, so softirq work done in their context is included)."""
    cpu = end.get("cpu_utilization_percent", {})
    return (cpu.get("host_total", 0) + cpu.get("remote_total", 0)) / 100 * seconds


def tcp(run: Run, srv_ns: str, srv_addr: str, cli_ns: str, seconds: float,
        pin: tuple = ()) -> dict:
    """One TCP stream: {"gbps": received, "cpu_ns_per_kb": CPU ns per KiB received}.
    ``pin``: extra iperf3 client flags, ``("-A", "0,1")`` for :data:`PIN`."""
    end = run_iperf3(run, srv_ns, srv_addr, cli_ns, seconds, pin)
    got = end.get("sum_received") or {}
    if not got.get("seconds"):
        raise HarnessError("iperf3: no receiver summary in its output")
    kib = got["bytes"] / 1024
    return {"gbps": got["bits_per_second"] / 1e9, "bytes": got["bytes"],
            "cpu_ns_per_kb": _cpu_seconds(end, got["seconds"]) * 1e9 / kib if kib else 0.0,
            "machine_ns_per_kb": end["machine_busy_ns"] / kib if kib else 0.0}


def udp(run: Run, srv_ns: str, srv_addr: str, cli_ns: str, seconds: float,
        length: int = 64, pin: tuple = ()) -> dict:
    """UDP, LENGTH-byte payloads, unlimited rate (``-u -l LEN -b 0``): {"pps": packets per
    second the receiver got, "packets": that count, "cpu_ns_per_pkt": iperf3 CPU per packet}."""
    end = run_iperf3(run, srv_ns, srv_addr, cli_ns, seconds,
                     ("-u", "-l", str(length), "-b", "0", *pin))
    got = end.get("sum_received") or end.get("sum") or {}
    if not got.get("seconds"):
        raise HarnessError("iperf3 -u: no receiver summary in its output")
    packets = got["packets"] - got["lost_packets"]
    return {"pps": packets / got["seconds"], "packets": packets,
            "cpu_ns_per_pkt": _cpu_seconds(end, got["seconds"]) * 1e9 / packets
            if packets else 0.0,
            "machine_ns_per_pkt": end["machine_busy_ns"] / packets if packets else 0.0}


STEPS = [("l2nc", "l2", "route lookup per packet (no dst cache)"),
         ("l2md", "l2nc", "collect-metadata: metadata dst, fixed-key program"),
         ("l2bpfs", "l2", "encapsulation in the program, plain receive"),
         ("l2bpf", "l2bpfs", "collect-metadata receive (a metadata dst per packet)"),
         ("l2bpf", "l2", "encapsulation in the program, metadata receive"),
         ("fan", "l2bpfs", "the fan's programs (per-packet decision, ARP encapsulated)"),
         ("fanmd", "l2bpf", "the fan's programs on a collect-metadata device"),
         ("fan", "fanmd", "a plain device instead of a collect-metadata one"),
         ("fan", "l2", "all of it"),
         ("fan", "l2md", "against the tunnel-key path"),
         ("fan-kernel", "l2", "the kernel datapath")]


def build(lab: Lab, bare: bool, ipv6: bool = False, external: bool = False,
          steps: bool = False, encap: bool = False) -> dict[str, tuple[str, str, str]]:
    """{path: (server ns, server address, client ns)}; the fan is checked to carry traffic."""
    kernel = KERNEL_FAN in lab.fans
    lab.start_hosts()
    for host in lab.hosts:
        host.start_fangen_run(list(lab.fans))
    lab.wait_fans()
    fan_a, fan_b = lab.add_containers()
    if not all(lab.ping_matrix([fan_a, fan_b]).values()):
        raise HarnessError("the fan does not carry traffic between the containers")
    h1, h2 = lab.hosts
    if kernel:
        lab.wait_fans(fan=KERNEL_FAN)
        kf = lab.add_containers(1, fan=KERNEL_FAN)
    hosts = [(h1.ns, h1.address()), (h2.ns, h2.address())]
    l2_a, l2_b, l2_addr = tunnels.l2_static(lab.run, hosts)
    rt_a, rt_b, rt_addr = tunnels.routed(lab.run, hosts)
    paths = {"fan": (fan_b.ns, fan_b.address, fan_a.ns),
             "l2": (l2_b, l2_addr, l2_a),
             "routed": (rt_b, rt_addr, rt_a)}
    if steps:
        nc_a, nc_b, nc_addr = tunnels.l2_nocache(lab.run, hosts)
        paths["l2nc"] = (nc_b, nc_addr, nc_a)
    if external or steps:
        md_a, md_b, md_addr = tunnels.l2_external(lab.run, hosts)
        paths["l2md"] = (md_b, md_addr, md_a)
    if encap or steps:
        bp_a, bp_b, bp_addr = tunnels.l2_encap(lab.run, hosts)
        paths["l2bpf"] = (bp_b, bp_addr, bp_a)
        bs_a, bs_b, bs_addr = tunnels.l2_encap_static(lab.run, hosts)
        paths["l2bpfs"] = (bs_b, bs_addr, bs_a)
        fm_a, fm_b, fm_addr = tunnels.fan_metadata(lab.run, hosts)
        paths["fanmd"] = (fm_b, fm_addr, fm_a)
    if kernel:
        paths["fan-kernel"] = (kf[1].ns, kf[1].address, kf[0].ns)
    if bare:
        paths["bare"] = (h2.ns, h2.address(), h1.ns)
    if ipv6:
        paths["fan6"] = (fan_b.ns, fan_b.wait_address6(), fan_a.ns)
    for name, (srv_ns, srv_addr, cli_ns) in paths.items():
        res = nsexec(cli_ns, "busybox", "ping", "-c", "3", "-W", "1", srv_addr, check=False)
        if res.returncode != 0:
            raise HarnessError(f"{NAMES[name]}: {srv_addr} does not answer from {cli_ns}")
    return paths


METRICS = {   # key: (title, unit, format)
    "gbps": ("TCP throughput", "Gbit/s received, 1 stream", "6.2f"),
    "cpu_ns_per_kb": ("TCP CPU cost", "iperf3 CPU ns per KiB received, lower is better", "6.1f"),
    "kpps": ("UDP small packets", "kpps received, 64-byte payload", "6.1f"),
    "cpu_ns_per_pkt": ("UDP CPU cost", "iperf3 CPU ns per packet received, lower is better",
                       "6.0f"),
    "machine_ns_per_kb": ("TCP machine CPU cost", "busy CPU ns of the whole machine per KiB "
                          "received, ksoftirqd included, lower is better", "6.1f"),
    "machine_ns_per_pkt": ("UDP machine CPU cost", "busy CPU ns of the whole machine per "
                           "packet received, lower is better", "6.0f"),
}


def paired(series: dict[str, list[float]], num: str, base: str) -> tuple[float, Summary,
                                                                        tuple[float, float]]:
    """``num / base``: the ratio of the medians, the per-round ratios' summary and the 95%
    interval of their median."""
    of_medians = summary(series[num]).median / summary(series[base]).median
    per_round = ratios(series[num], series[base])
    return of_medians, summary(per_round), median_ci(per_round)


def report(results: dict[str, dict[str, list[float]]], metric: str) -> None:
    title, unit, fmt = METRICS[metric]
    series = results[metric]
    print(f"\n{title}: median  [min .. max]  IQR q1 .. q3  ({unit}, "
          f"{len(series['fan'])} rounds)")
    for name, vals in series.items():
        print(f"  {NAMES[name]:<32} {summary(vals).text(fmt)}")
    fans = [n for n in series if n.startswith("fan")]
    for num in fans:
        for base in [n for n in series if n not in fans or (num == "fan" and n != "fan")]:
            of_medians, per_round, (lo, hi) = paired(series, num, base)
            print(f"  {num} / {base:<10} {of_medians:.3f}x of medians; per-round ratios "
                  f"{per_round.text('.3f')}; 95% CI of their median {lo:.3f} .. {hi:.3f}")


def report_steps(results: dict[str, dict[str, list[float]]], metric: str,
                 steps: list[tuple[str, str, str]] = STEPS) -> None:
    """The gap between the static tunnel and the fan, split by cause (``--steps``)."""
    title, _, _ = METRICS[metric]
    series = results[metric]
    steps = [s for s in steps if s[0] in series and s[1] in series]
    print(f"\n{title}, step by step from the static tunnel to the fan "
          "(ratio of medians; per-round ratios median [min .. max] (95% CI of that median)):")
    for num, base, what in steps:
        of_medians, per_round, (lo, hi) = paired(series, num, base)
        print(f"  {num + ' / ' + base:<14} {of_medians:.3f}x  "
              f"{per_round.median:.3f} [{per_round.low:.3f} .. {per_round.high:.3f}] "
              f"({lo:.3f} .. {hi:.3f})  {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description="fan vs hand-built VXLAN tunnels")
    parser.add_argument("--seconds", type=whole(1, 3600), default=5,
                        help="per measurement, whole seconds (default 5)")
    parser.add_argument("--rounds", type=whole(1, 1000), default=7,
                        help="alternating rounds (default 7)")
    parser.add_argument("--bare", action="store_true", help="also the bare underlay")
    parser.add_argument("--ipv6", action="store_true",
                        help="a dual-stack fan, measured over IPv6 too (fan6)")
    parser.add_argument("--external", action="store_true",
                        help="also L2 VXLAN on a collect-metadata device with a fixed key")
    parser.add_argument("--steps", action="store_true",
                        help="also l2nc and l2md, and split the fan/l2 gap by cause")
    parser.add_argument("--encap", action="store_true",
                        help="also l2bpf and l2bpfs, the fan's encapsulation with a fixed "
                             "remote, received by a collect-metadata or a plain device, and "
                             "fanmd, the fan's programs on a collect-metadata device")
    parser.add_argument("--no-udp", action="store_true", help="TCP only")
    parser.add_argument("--only", metavar="PATHS",
                        help="measure only these paths, comma-separated (e.g. fan,l2): "
                             "shorter rounds, so each pair of measurements is closer in time")
    parser.add_argument("--pin", action="store_true",
                        help="iperf3 client on CPU 0, server on CPU 1 (needs 2 CPUs)")
    parser.add_argument("--ref", metavar="REV",
                        help="also the fan with git revision REV's tc programs (fan@REV)")
    parser.add_argument("--threads", type=whole(0, 100), default=0, metavar="N",
                        help="then N alternating TCP runs of fan and l2 under perf: CPU per "
                             "GiB by thread (ksoftirqd, RCU, idle), default 0 (off)")
    parser.add_argument("--profile", action="store_true",
                        help="then profile each path once (perf, BPF run-time statistics)")
    parser.add_argument("--profile-seconds", type=float, default=8, metavar="S",
                        help="length of each profiled run (default 8)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("throughput: needs root (network namespaces)")
    wanted = []
    if args.only:
        wanted = [p.strip() for p in args.only.split(",") if p.strip()]
        known = set(NAMES) | ({f"fan@{args.ref}"} if args.ref else set())
        if "fan" not in wanted or len(wanted) < 2 or any(p not in known for p in wanted):
            sys.exit(f"throughput: --only {args.only!r}: give fan and at least one of "
                     f"{', '.join(n for n in NAMES if n != 'fan')}, comma-separated")
    if args.pin and (os.cpu_count() or 1) < 2:
        sys.exit("throughput: --pin needs two CPUs")
    fans = fan_stanza(overlay6=OVERLAY6) if args.ipv6 else fan_stanza()
    if kernelfan.present()["vxlan"]:
        fans.update(fan_stanza(KERNEL_FAN, overlay="251.0.0.0/8", datapath="kernel",
                               vxlan={"port": 4792}))
    lab = Lab(hosts=2, containers=1, tag="tput", ipv6=args.ipv6, fans=fans)
    try:
        paths = build(lab, args.bare, args.ipv6, args.external, args.steps, args.encap)
        modules = {}
        if args.ref:
            ref = f"fan@{args.ref}"
            modules[ref] = ref_fanprog(args.ref, lab.run.workdir)
            NAMES[ref] = f"fan, {args.ref}'s programs"
            paths = {"fan": paths["fan"], ref: paths["fan"],
                     **{k: v for k, v in paths.items() if k != "fan"}}
        progs = Programs(lab, modules)
        if args.ref:
            cycles.test_run_costs(progs.modules)
        order = list(paths)
        if wanted:
            missing = [p for p in wanted if p not in paths]
            if missing:
                raise HarnessError(f"--only: {missing[0]} is not built in this run (its "
                                   f"option is missing, or this kernel has no kernel fan)")
            order = [p for p in order if p in wanted]
        pin = PIN if args.pin else ()
        metrics = ["gbps", "cpu_ns_per_kb", "machine_ns_per_kb"] + (
            [] if args.no_udp else ["kpps", "cpu_ns_per_pkt", "machine_ns_per_pkt"])
        results = {m: {name: [] for name in order} for m in metrics}
        load = os.getloadavg()
        print(f"iperf3, {args.seconds:g} s per measurement, {args.rounds} rounds, order rotated "
              f"each round; {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} "
              f"{load[2]:.2f} at the start" + ("; iperf3 pinned (client CPU 0, server CPU 1)"
                                                if pin else ""))
        for r in range(args.rounds):
            line = []
            for name in rotated(order, r):
                progs.use(name if name.startswith("fan") else progs.current)
                t = tcp(lab.run, *paths[name], args.seconds, pin)
                results["gbps"][name].append(t["gbps"])
                for key in ("cpu_ns_per_kb", "machine_ns_per_kb"):
                    results[key][name].append(t[key])
                text = f"{name} {t['gbps']:5.2f} Gbit/s"
                if not args.no_udp:
                    u = udp(lab.run, *paths[name], args.seconds, pin=pin)
                    results["kpps"][name].append(u["pps"] / 1e3)
                    for key in ("cpu_ns_per_pkt", "machine_ns_per_pkt"):
                        results[key][name].append(u[key])
                    text += f" {u['pps'] / 1e3:5.1f} kpps {u['cpu_ns_per_pkt']:5.0f} ns/pkt"
                line.append(text)
            print(f"  round {r + 1}: " + "; ".join(line), flush=True)
        for metric in metrics:
            report(results, metric)
        if args.steps or args.encap:
            for metric in metrics:
                report_steps(results, metric)
        load = os.getloadavg()
        print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        if args.threads:
            cycles.by_thread(lab, ("fan", "l2"), NAMES,
                             lambda name, s: tcp(lab.run, *paths[name], s, pin),
                             args.seconds, args.threads)
        if args.profile:
            cycles.run_all(lab, paths, NAMES,
                           lambda name, s: udp(lab.run, *paths[name], s), args.profile_seconds,
                           lambda name: progs.use(name if name.startswith("fan")
                                                  else progs.current))
        return 0
    except HarnessError as exc:
        print(f"throughput: {exc}", file=sys.stderr)
        return 1
    finally:
        lab.close()


if __name__ == "__main__":
    sys.exit(main())
