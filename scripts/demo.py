#!/usr/bin/python3
"""fangen demo: three fan hosts with two containers each, in network namespaces.

Builds (with tests/harness) an underlay switch handing out 172.16.0.0/16 by DHCP,
an "outside" namespace holding 203.0.113.1, three hosts running real
systemd-networkd on the units `fangen generate` wrote plus `fangen run`, and two
containers per host that get their addresses from the fan's dnsmasq (IPv4 by DHCP;
the fan is dual-stack, so IPv6 by SLAAC from its router advertisements, unless
--no-ipv6).  Prints the hosts, the containers, a ping matrix (and an IPv6 one), a NAT
check and one iperf3 figure, then
removes everything it made (also on Ctrl-C or failure).  Run as root:
`make demo` (which first runs scripts/setup.sh) or `/usr/bin/python3 scripts/demo.py`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

OK, FAIL = "✓", "✗"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--containers", type=int, default=2, help="per host")
    parser.add_argument("--seconds", type=int, default=3, help="iperf3 duration")
    parser.add_argument("--no-ipv6", action="store_true",
                        help="an IPv4-only fan (no overlay6)")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the work directory (networkd, fangen, dnsmasq logs)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("demo: needs root (network namespaces); try: sudo make demo", file=sys.stderr)
        return 1
    if not sys.stdout.encoding or "utf" not in sys.stdout.encoding.lower():
        global OK, FAIL
        OK, FAIL = "ok", "--"

    from tests.harness import DOC_ADDR, Lab, fan_stanza
    from tests.harness.outside import WHOAMI_PORT
    from tests.harness.packets import whoami

    # SIGTERM (and SIGHUP) clean up like Ctrl-C does, even where SIGINT was inherited ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    six = not args.no_ipv6
    fans = fan_stanza(overlay6=OVERLAY6) if six else fan_stanza()
    print(f"fangen demo: a VXLAN fan 250.0.0.0/8{' + ' + OVERLAY6 if six else ''} over a "
          f"DHCP underlay 172.16.0.0/16, {args.hosts} hosts x {args.containers} containers\n")
    lab = None
    status = 1
    try:
        with step("underlay switch (DHCP) and outside 203.0.113.1"):
            lab = Lab(hosts=args.hosts, containers=args.containers, tag="demo",
                      keep_workdir=args.keep_logs, fans=fans, ipv6=six)
        print(f"      namespaces: {lab.run.prefix}-*")
        with step("hosts: fangen generate, dbus-daemon, systemd-networkd, DHCP lease"):
            lab.start_hosts()
        with step("fans: fangen run fan250 on every host"):
            lab.start_fans()
            lab.wait_fans()
        with step("containers: veth into the fan bridge, DHCP from the fan's dnsmasq"):
            lab.add_containers()
        if six:
            with step("containers: IPv6 by SLAAC from the fan's router advertisements"):
                for c in lab.containers:
                    c.wait_address6()

        print("\nHosts")
        rows = [("host", "underlay (DHCP)", "slice", "bridge address")]
        for h in lab.hosts:
            sl = h.slice_for()
            rows.append((h.name, h.address(), str(sl), ", ".join(h.addresses(h.bridge()))))
            if six:
                sl6 = slice6(h)
                rows.append(("", "", str(sl6), f"{sl6.network_address + 1}"))
        table(rows)
        show = lab.hosts[0].fangen("show", check=False)
        if show.returncode == 0 and show.stdout.strip():
            print(f"\n`fangen show` on {lab.hosts[0].name}:")
            for line in show.stdout.rstrip().splitlines():
                print("  " + line)

        print("\nContainers")
        rows = [("container", "host", "address", "router", "mtu")]
        for c in lab.containers:
            lease = c.lease()
            rows.append((c.name, c.host.name, f"{lease['ip']}/{lease['prefixlen']}",
                         lease["router"], lease["mtu"]))
            if six:
                mtu6 = c.exec("cat", "/proc/sys/net/ipv6/conf/eth0/mtu", check=False)
                route = c.exec("ip", "-6", "route", "show", "default", check=False).stdout
                router = route.split()[2] if route.startswith("default via") else "?"
                rows.append(("", "", f"{c.address6}/64", router, mtu6.stdout.strip()))
        table(rows)

        print("\nPing matrix (row pings column)")
        matrix = lab.ping_matrix()
        names = [c.name for c in lab.containers]
        rows = [("",) + tuple(names)]
        for a in names:
            rows.append((a,) + tuple("·" if a == b else (OK if matrix[(a, b)] else FAIL)
                                     for b in names))
        table(rows)
        good = sum(matrix.values())
        print(f"  {good}/{len(matrix)} pairs reachable")
        good6 = total6 = 0
        if six:
            print("\nIPv6 ping matrix (row pings column's SLAAC address)")
            cs = lab.containers
            matrix6 = {(a.name, b.name): any(a.ping(b.address6) for _ in range(3))
                       for a in cs for b in cs if a is not b}
            rows = [("",) + tuple(names)]
            for a in names:
                rows.append((a,) + tuple("·" if a == b else (OK if matrix6[(a, b)] else FAIL)
                                         for b in names))
            table(rows)
            good6, total6 = sum(matrix6.values()), len(matrix6)
            print(f"  {good6}/{total6} pairs reachable")

        print("\nNAT to the outside")
        lab.outside.whoami()
        nat_ok = True
        for h in lab.hosts:
            c = lab.containers_of(h)[0]
            try:
                seen = whoami(c.ns, DOC_ADDR, WHOAMI_PORT)
            except OSError as exc:
                seen = f"error: {exc}"
            ok = seen == h.address()
            nat_ok &= ok
            print(f"  {c.name} ({c.address}) -> {DOC_ADDR}: seen as {seen} "
                  f"{OK if ok else FAIL}")

        a, b = lab.containers[0], lab.containers[-1]
        print(f"\nThroughput {a.name} ({a.host.name}) -> {b.name} ({b.host.name}), "
              f"iperf3 {args.seconds} s over the fan")
        gbps = iperf3(lab, server=b, client=a, seconds=args.seconds)
        print(f"  {gbps:.2f} Gbit/s" if gbps else "  iperf3 failed")

        status = 0 if good == len(matrix) and good6 == total6 and nat_ok and gbps else 1
        print(f"\nResult: {'all good' if status == 0 else 'something failed'}")
    except KeyboardInterrupt:
        print("\ninterrupted")
        status = 130
    except Exception as exc:                          # noqa: BLE001 - report, then clean up
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        if lab is not None:
            lab.run.keep_workdir = True
            print(f"logs kept in {lab.run.workdir}", file=sys.stderr)
        status = 1
    finally:
        if lab is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)      # let cleanup finish
            print("\nCleaning up ...", end=" ", flush=True)
            lab.close()
            print("done: every namespace and process removed")
            if args.keep_logs:
                print(f"logs: {lab.run.workdir}")
    return status


OVERLAY6 = "fd5a:fa00::/48"


def slice6(host):
    import ipaddress

    from fangen.fanmap import FanMap6
    from tests.harness.switch import UNDERLAY

    return FanMap6(ipaddress.IPv6Network(OVERLAY6), UNDERLAY).slice_for_host(host.address())


class step:
    """Prints '[...] what ... done (1.2 s)'."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self):
        print(f"  ... {self.what}", end="", flush=True)
        self.t0 = time.monotonic()
        return self

    def __exit__(self, exc_type, *_):
        took = time.monotonic() - self.t0
        print(f"  [{'failed' if exc_type else 'done'} {took:.1f} s]", flush=True)
        return False


def table(rows) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = (str(v).ljust(w) for v, w in zip(row, widths, strict=True))
        print("  " + "  ".join(cells).rstrip())
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def iperf3(lab, server, client, seconds: int) -> float | None:
    """Gbit/s received, or None (with the reason printed)."""
    from tests.harness import HarnessError
    from tests.harness.perf import iperf3 as run_iperf3
    try:
        return run_iperf3(lab.run, server.ns, server.address, client.ns, seconds)
    except HarnessError as exc:
        print(f"  {exc}")
        return None


if __name__ == "__main__":
    sys.exit(main())
