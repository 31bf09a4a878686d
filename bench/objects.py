#!/usr/bin/python3
"""Kernel objects fangen creates per fan as the underlay grows from /24 to /16.

For each underlay prefix (/24, /20, /16 around 172.16.1.0/24, hosts at 172.16.1.11-13;
overlay 250.0.0.0/8, so slices of /16, /20, /24) a fresh lab of three hosts runs real networkd and
``fangen run`` (VXLAN, upstream datapath).  On host 1 we count links, addresses,
routes, neighbours, FDB entries, tc filters and nft rules:

* before fangen (networkd has made the bridge from the generated units),
* after ``fangen run`` brought the fan up: the difference is what fangen made;
* after a container on every host and a full ping matrix: what traffic adds
  (the container's veth, and what the kernel learns: ARP/FDB entries of the peers
  actually talked to; none of it is made by fangen or scales with the underlay).

Target: the "made by fangen" row is the same for every prefix.  Prints a table;
asserts nothing.  Run as root: /usr/bin/python3 bench/objects.py

``--overlay6``: a dual-stack fan (overlay6 fd5a:fa00::/56, /52, /48 beside the /24, /20,
/16 underlays, so every host's IPv6 slice is a /64), with IPv6 on in the namespaces, and
the IPv6 addresses, routes and neighbours counted too.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.harness import Lab, fan_stanza, snapshot  # noqa: E402
from tests.harness.host import wait  # noqa: E402
from tests.harness.ns import ip  # noqa: E402
from tests.harness.snapshot import _json  # noqa: E402

UNDERLAYS = {24: "172.16.1.0/24", 20: "172.16.0.0/20", 16: "172.16.0.0/16"}


def overlay6_for(prefix: int) -> str:
    """The IPv6 overlay whose slices are /64 over a /prefix underlay."""
    return f"fd5a:fa00::/{64 - (32 - prefix)}"


def count(ns: str, six: bool) -> dict[str, int]:
    counts = snapshot.count(ns)
    if six:
        counts["ipv6 addresses"] = sum(len([a for a in link.get("addr_info", []) if "local" in a])
                                       for link in _json(ns, "-6", "addr", "show"))
        counts["ipv6 routes"] = len(_json(ns, "-6", "route", "show", "table", "all"))
        # entries someone made (learnt ones come and go with router/neighbour discovery)
        counts["ipv6 neighbours, static"] = len([
            n for n in _json(ns, "-6", "neigh", "show")
            if {"PERMANENT", "NOARP"} & set(n.get("state", []))])
    return counts


def measure(prefix: int, hosts: int, six: bool = False) -> dict:
    extra = {"overlay6": overlay6_for(prefix)} if six else {}
    lab = Lab(hosts=hosts, containers=1, fans=fan_stanza(underlay=UNDERLAYS[prefix], **extra),
              tag=f"obj{prefix}", ipv6=six)
    try:
        for host in lab.hosts:                  # every host inside the smallest underlay
            lab.switch.assign(host.mac, f"172.16.1.{10 + host.index}")
        lab.start_hosts()
        h1 = lab.hosts[0]
        wait(lambda: ip(h1.ns, "link", "show", "dev", h1.bridge(), check=False).returncode == 0,
             10, "networkd's bridge")
        before = count(h1.ns, six)
        lab.start_fans()
        lab.wait_fans()
        if six:     # the bridge's IPv6 address comes with the IPv4 one, DAD aside
            wait(lambda: count(h1.ns, six)["ipv6 addresses"] > before["ipv6 addresses"], 10,
                 "the bridge's IPv6 address")
        up = count(h1.ns, six)
        lab.add_containers()
        if six:
            for c in lab.containers:
                c.wait_address6()
        matrix = lab.ping_matrix()
        if six:
            matrix.update({(a.name, b.name, 6): any(a.ping(b.address6) for _ in range(3))
                           for a in lab.containers for b in lab.containers if a is not b})
        traffic = count(h1.ns, six)
        return {"before": before, "up": up, "traffic": traffic,
                "slice": str(h1.slice_for()), "reachable": f"{sum(matrix.values())}/{len(matrix)}"}
    finally:
        lab.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="kernel objects per fan vs underlay size")
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--overlay6", action="store_true",
                        help="a dual-stack fan (IPv6 slices of /64), IPv6 objects counted")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("objects: needs root (network namespaces)")
    results = {p: measure(p, args.hosts, args.overlay6) for p in sorted(UNDERLAYS, reverse=True)}
    kinds = list(next(iter(results.values()))["up"])
    prefixes = list(results)
    six = " + overlay6 (/64 IPv6 slices)" if args.overlay6 else ""
    print(f"kernel objects on host 1 (of {args.hosts}), VXLAN fan 250.0.0.0/8{six}, "
          "upstream datapath")
    header = f"  {'':<28}" + "".join(f"{'/' + str(p) + ' underlay':>16}" for p in prefixes)
    print(header)
    print(f"  {'slice':<28}" + "".join(f"{results[p]['slice']:>16}" for p in prefixes))
    print("\n  made by fangen (after up - before):")
    constant = True
    for kind in kinds:
        vals = [results[p]["up"][kind] - results[p]["before"][kind] for p in prefixes]
        constant &= len(set(vals)) == 1
        print(f"    {kind:<26}" + "".join(f"{v:>16}" for v in vals))
    totals = [sum(results[p]["up"][k] - results[p]["before"][k] for k in kinds) for p in prefixes]
    print(f"    {'total':<26}" + "".join(f"{v:>16}" for v in totals))
    print("\n  added by traffic (a container per host, full ping matrix; after - up):")
    for kind in kinds:
        vals = [results[p]["traffic"][kind] - results[p]["up"][kind] for p in prefixes]
        print(f"    {kind:<26}" + "".join(f"{v:>16}" for v in vals))
    print(f"    {'pairs reachable':<26}" + "".join(f"{results[p]['reachable']:>16}"
                                                 for p in prefixes))
    ratio = max(totals) / min(totals) if min(totals) else float("nan")
    print(f"\nobjects made by fangen, /16 vs /24 underlay: {totals[-1]} vs {totals[0]} "
          f"({ratio:.2f}x; target: constant) -> {'constant' if constant else 'NOT constant'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
