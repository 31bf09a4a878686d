#!/usr/bin/python3
"""IPIP throughput: the fan against a hand-built IPIP tunnel, in the kernel VM.

This machine's kernel has no ipip, so this runs under qemu (``make bench-ipip-vm``:
Debian's stock kernel, then the fan-patched kernel).  Each path gets its own
underlay switch and pair of host namespaces, with one container per host behind a
bridge (routed: the host is the container's gateway, MTU 1480), so the paths
share nothing but the kernel:

* ``fan``: the upstream datapath as fangen builds it, a collect-metadata IPIP
  device (``ipip external``) with fangen's tc programs
  (:func:`fangen.datapath.upstream.attach`), the overlay 250.0.0.0/8 routed via it;
  the egress program encapsulates IPv4 itself and sends it to the underlay
  interface (:mod:`fangen.datapath.encap`), as ``fangen up`` has it do;
* ``fan-kernel`` (fan-patched kernel only): the kernel datapath, an IPIP device
  with a fan map (:func:`fangen.datapath.kernelfan.create_ipip_fan`);
* ``ipip``: a hand-built point-to-point tunnel (``ip link add tun0 type ipip
  remote PEER local SELF``) with one route to the peer's container subnet;
* ``ipipnc``: ``ipip`` with a tc egress program that marks every packet, so the
  tunnel may not use its cached route to the peer (a route lookup per packet, as
  on a collect-metadata device: ``bpf_skb_set_tunnel_key`` sets ``TUNNEL_NOCACHE``);
* ``ipipmd``: a collect-metadata IPIP device driven by a program that sets one
  fixed key (bench/tunnels.py ``static_key_program``): the kernel's
  collect-metadata path without any fan logic;
* ``ipipbpf``: ``ipipmd`` whose program then encapsulates IPv4 itself to the one
  remote with fangen's code (bench/tunnels.py ``encap_program``): the fan's transmit
  path without the fan's decisions.

The report then splits the gap between ``ipip`` and the fan by cause:
``ipipnc / ipip`` the per-packet route lookup, ``ipipmd / ipipnc`` the metadata
dst, ``ipipbpf / ipip`` the encapsulation in the program, ``fan / ipipbpf`` the fan's
programs.

Rounds, metrics and the printout are bench/throughput.py's (TCP Gbit/s and CPU per
KiB, UDP 64-byte kpps and CPU per packet; medians, spread, ratios).  The guest is
emulated (qemu TCG, one CPU): absolute figures are far below the host's; the
ratios between paths on the same emulated CPU are what this shows.  Asserts nothing.

Run as root: /usr/bin/python3 bench/ipip.py [--rounds 7] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from ipaddress import ip_address

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import cycles, throughput, tunnels  # noqa: E402
from bench.stats import rotated, whole  # noqa: E402
from fangen.datapath import kernelfan, rtnl, upstream  # noqa: E402
from fangen.datapath.encap import Encap  # noqa: E402
from fangen.datapath.fanprog import FanParams  # noqa: E402
from fangen.fanmap import FanMap  # noqa: E402
from tests.harness import HarnessError  # noqa: E402
from tests.harness.ns import Run, ip, nsexec, plug, switch_ns, sysctl, veth  # noqa: E402

MTU = 1480
FMAP = FanMap.parse("250.0.0.0/8", "172.16.0.0/16")
NAMES = {"fan": "fan, upstream datapath", "fan-kernel": "fan, kernel datapath",
         "ipip": "IPIP by hand, static remote", "ipipnc": "IPIP by hand, no dst cache",
         "ipipmd": "IPIP external + fixed key",
         "ipipbpf": "IPIP external, encap in program"}
STEPS = [("ipipnc", "ipip", "route lookup per packet (no dst cache)"),
         ("ipipmd", "ipipnc", "collect-metadata: metadata dst, fixed-key program"),
         ("ipipbpf", "ipip", "encapsulation in the program, metadata receive"),
         ("fan", "ipipbpf", "the fan's programs (per-packet decision, ingress check)"),
         ("fan", "ipip", "all of it"),
         ("fan", "ipipmd", "against the tunnel-key path"),
         ("fan-kernel", "ipip", "the kernel datapath")]


HOSTS: dict[str, list[str]] = {}
"""The two host namespaces of each path, by the tag it was built with."""


def _host(run: Run, sw: str, tag: str, n: int, addr: str) -> str:
    h = run.netns(f"{tag}h{n}")
    HOSTS.setdefault(tag, []).append(h)
    plug(sw, f"{tag}{n}", h, "ul0", f"{addr}/{FMAP.underlay.prefixlen}")
    sysctl(h, "net.ipv4.ip_forward", 1)
    return h


def _container(run: Run, h: str, tag: str, n: int, net: str, gw: str, addr: str) -> str:
    ip(h, "link", "add", "br0", "type", "bridge")
    ip(h, "addr", "add", f"{gw}/{net.split('/')[1]}", "dev", "br0")
    ip(h, "link", "set", "br0", "up")
    c = run.netns(f"{tag}c{n}")
    veth(h, "c0", c, "eth0", mtu=MTU)
    ip(h, "link", "set", "c0", "master", "br0")
    ip(c, "addr", "add", f"{addr}/{net.split('/')[1]}", "dev", "eth0")
    ip(c, "route", "add", "default", "via", gw)
    return c


def fan(run: Run, kernel: bool) -> tuple[str, str, str]:
    """(client container, server address, server container) of a two-host IPIP fan."""
    tag = "k" if kernel else "f"
    sw = switch_ns(run, f"{tag}sw")
    ends = []
    for n, addr in enumerate(("172.16.1.2", "172.16.2.3") if kernel else
                             ("172.16.3.4", "172.16.4.5"), 1):
        h = _host(run, sw, tag, n, addr)
        params = FanParams.for_host(FMAP, addr, "ipip")
        gw = params.own_slice.network_address + 1
        if kernel:
            with rtnl.Rtnl(netns=h) as nl:
                kernelfan.create_ipip_fan(nl, "tun0", addr, [FMAP], mtu=MTU, up=True)
        else:
            ip(h, "link", "add", "tun0", "mtu", str(MTU), "type", "ipip", "external")
            ip(h, "link", "set", "tun0", "up")
            ipr = run.ipr(h)
            params = replace(params, encap=Encap(ip_address(addr),
                                                 ipr.link_lookup(ifname="ul0")[0], 0,
                                                 FMAP.underlay))
            if not upstream.attach(ipr, ipr.link_lookup(ifname="tun0")[0], params):
                raise HarnessError(f"{h}: the fan's programs are not attached")
        c = _container(run, h, tag, n, str(params.own_slice), str(gw), str(gw + 1))
        ip(h, "route", "add", str(FMAP.overlay), "dev", "tun0", "src", str(gw))
        ends.append((c, str(gw + 1)))
    return ends[0][0], ends[1][1], ends[1][0]


def by_hand(run: Run, tag: str = "p", net: int = 96, mark: bool = False,
            external: bool = False, encap: bool = False) -> tuple[str, str, str]:
    """A two-host IPIP tunnel with a static remote; ``mark``: every packet marked
    (``ipipnc``); ``external``: on a collect-metadata device with a fixed key (``ipipmd``),
    ``encap`` too: IPv4 encapsulated by its program (``ipipbpf``)."""
    sw = switch_ns(run, f"{tag}sw")
    addrs = (f"172.16.{net - 91}.6", f"172.16.{net - 90}.7")
    ends = []
    for n, (addr, peer) in enumerate(zip(addrs, reversed(addrs)), 1):
        h = _host(run, sw, tag, n, addr)
        if external:
            ip(h, "link", "add", "tun0", "mtu", str(MTU), "type", "ipip", "external")
        else:
            ip(h, "link", "add", "tun0", "mtu", str(MTU), "type", "ipip", "remote", peer,
               "local", addr)
        ip(h, "link", "set", "tun0", "up")
        if encap:
            ul0 = run.ipr(h).link_lookup(ifname="ul0")[0]
            tunnels.egress_program(h, "tun0", tunnels.encap_program(
                0, 0, addr, peer, ul0, str(FMAP.underlay), ipip=True), "encap")
        elif external:
            tunnels.egress_program(h, "tun0", tunnels.static_key_program(0, peer),
                                    "static_key")
        elif mark:
            tunnels.egress_program(h, "tun0", tunnels.mark_program(), "mark")
        c = _container(run, h, tag, n, f"10.{net}.{n}.0/24",
                       f"10.{net}.{n}.1", f"10.{net}.{n}.2")
        ip(h, "route", "add", f"10.{net}.{3 - n}.0/24", "dev", "tun0")
        ends.append((c, f"10.{net}.{n}.2"))
    return ends[0][0], ends[1][1], ends[1][0]


TAGS = {"fan": "f", "fan-kernel": "k", "ipip": "p", "ipipnc": "n", "ipipmd": "m",
        "ipipbpf": "b"}


def program_costs(run: Run, paths: dict, seconds: float) -> None:
    """One TCP run per path with BPF run-time statistics on: each path's tc programs
    (on tun0 of both hosts), their runs, ns per run and their share of the CPU time."""
    fd = cycles.enable_bpf_stats()
    if fd is None:
        print("\nBPF run-time statistics: BPF_ENABLE_STATS refused")
        return
    try:
        print(f"\ntc programs during one TCP run of {seconds:g} s per path (BPF run-time "
              f"statistics on; share = their run time / the run's CPU time, "
              f"{os.cpu_count()} CPU(s)):")
        for name in paths:
            # keyed by id too: a hook holds several filters (the fan's and the final drop)
            ids = {(n, hook, pid): pid for n, h in enumerate(HOSTS[TAGS[name]], 1)
                   for hook, pids in cycles.tc_program_ids(h, "tun0").items() for pid in pids}
            if not ids:
                continue
            before = {key: cycles.prog_counters(pid) for key, pid in ids.items()}
            got = throughput.tcp(run, *paths[name], seconds)
            after = {key: cycles.prog_counters(pid) for key, pid in ids.items()}
            parts, total = [], 0
            for (n, hook, pid), (t0, c0) in before.items():
                t1, c1 = after[(n, hook, pid)]
                total += t1 - t0
                if c1 > c0:
                    parts.append(f"h{n} {hook} {c1 - c0} runs {(t1 - t0) / (c1 - c0):.0f} ns")
            share = total / (seconds * 1e9 * (os.cpu_count() or 1))
            print(f"  {name:<10} {got['gbps']:5.2f} Gbit/s, programs {share:6.2%} of the CPU: "
                  + "; ".join(parts))
    finally:
        os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser(description="IPIP fan vs a hand-built IPIP tunnel")
    parser.add_argument("--seconds", type=whole(1, 3600), default=3,
                        help="per measurement, whole seconds (default 3)")
    parser.add_argument("--rounds", type=whole(1, 1000), default=7,
                        help="alternating rounds (default 7)")
    parser.add_argument("--no-program-costs", action="store_true",
                        help="skip the TCP run per path with BPF run-time statistics on")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("ipip: needs root (network namespaces)")
    throughput.NAMES.update(NAMES)
    with Run("ipipb") as run:
        try:
            built = {"fan": fan(run, False), "ipip": by_hand(run),
                     "ipipnc": by_hand(run, "n", 95, mark=True),
                     "ipipmd": by_hand(run, "m", 94, external=True),
                     "ipipbpf": by_hand(run, "b", 93, external=True, encap=True)}
            if kernelfan.present()["ipip"]:
                built["fan-kernel"] = fan(run, True)
            paths = {}
            for name, (cli, srv_addr, srv) in built.items():
                if nsexec(cli, "busybox", "ping", "-c", "3", "-W", "2", srv_addr,
                          check=False).returncode:
                    raise HarnessError(f"{NAMES[name]}: {srv_addr} does not answer")
                paths[name] = (srv, srv_addr, cli)
            order = list(paths)
            metrics = ["gbps", "cpu_ns_per_kb", "kpps", "cpu_ns_per_pkt"]
            results = {m: {name: [] for name in order} for m in metrics}
            print(f"IPIP, kernel {os.uname().release}, iperf3 {args.seconds:g} s per "
                  f"measurement, {args.rounds} rounds, order rotated each round; "
                  f"{os.cpu_count()} CPU(s)")
            for r in range(args.rounds):
                line = []
                for name in rotated(order, r):
                    t = throughput.tcp(run, *paths[name], args.seconds)
                    u = throughput.udp(run, *paths[name], args.seconds)
                    results["gbps"][name].append(t["gbps"])
                    results["cpu_ns_per_kb"][name].append(t["cpu_ns_per_kb"])
                    results["kpps"][name].append(u["pps"] / 1e3)
                    results["cpu_ns_per_pkt"][name].append(u["cpu_ns_per_pkt"])
                    line.append(f"{name} {t['gbps']:5.2f} Gbit/s {u['pps'] / 1e3:5.1f} kpps")
                print(f"  round {r + 1}: " + "; ".join(line), flush=True)
            for metric in metrics:
                throughput.report(results, metric)
            for metric in metrics:
                throughput.report_steps(results, metric, STEPS)
            if not args.no_program_costs:
                program_costs(run, paths, args.seconds)
            return 0
        except HarnessError as exc:
            print(f"ipip: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
