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
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.harness import Lab, fan_stanza, snapshot  # noqa: E402
from tests.harness.host import wait  # noqa: E402
from tests.harness.ns import ip  # noqa: E402

UNDERLAYS = {24: "172.16.1.0/24", 20: "172.16.0.0/20", 16: "172.16.0.0/16"}


def measure(prefix: int, hosts: int) -> dict:
    lab = Lab(hosts=hosts, containers=1, fans=fan_stanza(underlay=UNDERLAYS[prefix]),
              tag=f"obj{prefix}")
    try:
        for host in lab.hosts:                  # every host inside the smallest underlay
            lab.switch.assign(host.mac, f"172.16.1.{10 + host.index}")
        lab.start_hosts()
        h1 = lab.hosts[0]
        wait(lambda: ip(h1.ns, "link", "show", "dev", h1.bridge(), check=False).returncode == 0,
             10, "networkd's bridge")
        before = snapshot.count(h1.ns)
        lab.start_fans()
        lab.wait_fans()
        up = snapshot.count(h1.ns)
        lab.add_containers()
        matrix = lab.ping_matrix()
        traffic = snapshot.count(h1.ns)
        return {"before": before, "up": up, "traffic": traffic,
                "slice": str(h1.slice_for()), "reachable": f"{sum(matrix.values())}/{len(matrix)}"}
    finally:
        lab.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="kernel objects per fan vs underlay size")
    parser.add_argument("--hosts", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("objects: needs root (network namespaces)")
    results = {p: measure(p, args.hosts) for p in sorted(UNDERLAYS, reverse=True)}
    kinds = list(next(iter(results.values()))["up"])
    prefixes = list(results)
    print(f"kernel objects on host 1 (of {args.hosts}), VXLAN fan 250.0.0.0/8, upstream datapath")
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
