#!/usr/bin/python3
"""Throughput: container to container across hosts over the fan, side by side with a
hand-made plain VXLAN tunnel between the same host namespaces, and the bare underlay.

One run, the same namespaces, measurements interleaved (fan, plain, bare, fan, ...)
so that drift on a busy machine hits all three alike.  Prints Gbit/s and ratios;
asserts nothing about time.  Target: fan >= 0.97x the plain tunnel.

The plain tunnel path mirrors the fan's hop for hop: a second pair of container
namespaces, each on its own plain bridge in the host namespace whose port is
``ip link add pvx type vxlan id 4242 remote OTHER local SELF dstport 4789 dev up0``
(MTU 1450 like the fan); the bare underlay is iperf3 host to host over up0.

Run as root: /usr/bin/python3 bench/throughput.py [--seconds 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.harness import Lab  # noqa: E402
from tests.harness.ns import ip  # noqa: E402
from tests.harness.perf import iperf3  # noqa: E402

PLAIN_VNI = 4242
PLAIN_PORT = 4789          # not the fan's 8472: both tunnels live in the same namespaces
PLAIN_MTU = 1450
PLAIN_NET = "10.99.0"


def plain_tunnel(lab: Lab, a, b) -> tuple[str, str, str]:
    """Container-like namespaces on a plain VXLAN between hosts a and b: (ns_a, ns_b, addr_b)."""
    ends = []
    for n, (host, peer) in enumerate(((a, b), (b, a)), 1):
        ip(host.ns, "link", "add", "pvx", "mtu", str(PLAIN_MTU), "type", "vxlan", "id",
           str(PLAIN_VNI), "remote", peer.address(), "local", host.address(),
           "dstport", str(PLAIN_PORT), "dev", "up0")
        ip(host.ns, "link", "add", "pbr", "mtu", str(PLAIN_MTU), "type", "bridge",
           "forward_delay", "0")
        ip(host.ns, "link", "set", "pvx", "master", "pbr", "up")
        ip(host.ns, "link", "set", "pbr", "up")
        ns = lab.run.netns(f"plain{n}")
        ip(ns, "link", "add", "eth0", "mtu", str(PLAIN_MTU), "type", "veth", "peer", "name",
           "vplain", "netns", host.ns)
        ip(host.ns, "link", "set", "vplain", "mtu", str(PLAIN_MTU), "master", "pbr", "up")
        ip(ns, "addr", "add", f"{PLAIN_NET}.{n}/24", "dev", "eth0")
        ip(ns, "link", "set", "eth0", "up")
        ends.append(ns)
    return ends[0], ends[1], f"{PLAIN_NET}.2"


def main() -> int:
    parser = argparse.ArgumentParser(description="fan vs plain VXLAN vs bare underlay")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("throughput: needs root (network namespaces)")
    lab = Lab(hosts=2, containers=1, tag="tput")
    try:
        lab.start_hosts()
        lab.start_fans()
        lab.wait_fans()
        fan_a, fan_b = lab.add_containers()
        h1, h2 = lab.hosts
        plain_a, plain_b, plain_addr = plain_tunnel(lab, h1, h2)
        if not all(lab.ping_matrix([fan_a, fan_b]).values()):
            print("the fan does not carry traffic between the containers", file=sys.stderr)
            return 1
        paths = {
            "fan (upstream datapath)": (fan_b.ns, fan_b.address, fan_a.ns),
            "plain vxlan tunnel": (plain_b, plain_addr, plain_a),
            "bare underlay": (h2.ns, h2.address(), h1.ns),
        }
        results: dict[str, list[float]] = {name: [] for name in paths}
        print(f"iperf3, 1 TCP stream, {args.seconds:g} s per measurement, "
              f"{args.rounds} round(s), interleaved; {os.cpu_count()} CPUs")
        for r in range(1, args.rounds + 1):
            for name, (srv_ns, srv_addr, cli_ns) in paths.items():
                gbps = iperf3(lab.run, srv_ns, srv_addr, cli_ns, args.seconds)
                results[name].append(gbps)
                print(f"  round {r}  {name:<24} {gbps:6.2f} Gbit/s", flush=True)
        mean = {name: statistics.mean(v) for name, v in results.items()}
        fan, plain, bare = (mean[n] for n in paths)
        print("\nmean of the rounds")
        for name in paths:
            print(f"  {name:<24} {mean[name]:6.2f} Gbit/s")
        per_round = [f / p for f, p in zip(results["fan (upstream datapath)"],
                                           results["plain vxlan tunnel"], strict=True)]
        print(f"\nfan / plain vxlan   = {fan / plain:.3f}x   (target >= 0.97x; per round: "
              + ", ".join(f"{x:.3f}" for x in per_round) + ")")
        print(f"fan / bare underlay = {fan / bare:.3f}x")
        print(f"plain / bare        = {plain / bare:.3f}x")
        return 0
    finally:
        lab.close()


if __name__ == "__main__":
    sys.exit(main())
