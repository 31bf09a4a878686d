"""Multi-homed hosts (issue 15): a fan's encapsulated traffic leaves by its own underlay.

Needs root.  Two fan hosts on two segments of the underlay 10.20.0.0/16, 10.20.1.0/24 and
10.20.2.0/24, joined by a router namespace (10.20.1.1, 10.20.2.1).  Each host's default
route points to a "front" namespace of its own (10.10.1.1, 10.10.2.1), which does not
reach the underlay: the main table sends packets for the other segment there.  Host 2
also has the default route a DHCP client would put on its underlay interface (a higher
metric, so the front one wins), which ``underlay-gateway: dhcp`` takes.

An nft counter in each front namespace counts packets arriving for the underlay network;
one in the router counts the fan's VXLAN packets it forwards.  The control run, without
the new keys, fails: the containers do not reach each other.  Its outer packets do not
go to the front either: without the keys the fan's tunnel is a plain VXLAN device, whose
programs send by the underlay interface only (host 1 has no route to the other segment
there).  With the keys they do, through the router, none to the front; the host's own
traffic to the underlay still follows the main table.  ``down`` leaves the rules and
routes as they were.  VXLAN, as this machine's kernel has no ipip.
"""

from __future__ import annotations

import os
import time

import pytest
import yaml

from tests.harness import cli
from tests.harness.cli import fangen
from tests.harness.ns import Run, ip, nsexec, ping, sh, sysctl, veth

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: netns, bpf(2), nft")

VX_MTU = 1450
HOSTS = [  # (underlay address, its router, front address, front router, slice address)
    ("10.20.1.5", "10.20.1.1", "10.10.1.2", "10.10.1.1", "251.1.5.10"),
    ("10.20.2.7", "10.20.2.1", "10.10.2.2", "10.10.2.1", "251.2.7.10"),
]
COUNT = ("table ip t { chain c { type filter hook prerouting priority 0; "
         "ip daddr 10.20.0.0/16 udp dport 8472 counter; "
         "ip daddr 10.20.0.0/16 ip protocol icmp counter; }; }")


def stanza(gateway: str | None) -> str:
    fan = {"overlay": "251.0.0.0/8", "underlay": "10.20.0.0/16", "type": "vxlan",
           "dhcp": False, "bridge": "br-st"}
    if gateway is not None:
        fan.update({"underlay-gateway": gateway, "underlay-table": 100})
    return yaml.safe_dump({"network": {"version": 2, "fan": {"st": fan}}})


def counters(ns: str) -> tuple[int, int]:
    """(VXLAN packets, ICMP packets) for the underlay that reached ``ns``."""
    out = nsexec(ns, "nft", "list", "table", "ip", "t").stdout
    found = [int(line.split("packets")[1].split()[0]) for line in out.splitlines()
             if "counter packets" in line]
    return found[0], found[1]


def rules_and_tables(ns: str) -> tuple[str, str]:
    return (ip(ns, "rule").stdout,
            ip(ns, "route", "show", "table", "all").stdout)


class World:
    def __init__(self, run: Run, tmp_path):
        self.run = run
        self.router = run.netns("rt")
        sysctl(self.router, "net.ipv4.ip_forward", 1)
        nsexec(self.router, "nft", COUNT)
        self.hosts, self.fronts, self.containers = [], [], []
        for i, (addr, gw, front, front_gw, c_addr) in enumerate(HOSTS, 1):
            h, f = run.netns(f"h{i}"), run.netns(f"f{i}")
            veth(h, "eth1", self.router, f"r{i}")
            ip(h, "addr", "add", f"{addr}/24", "dev", "eth1")
            ip(self.router, "addr", "add", f"{gw}/24", "dev", f"r{i}")
            veth(h, "eth0", f, "up0")
            ip(h, "addr", "add", f"{front}/24", "dev", "eth0")
            ip(f, "addr", "add", f"{front_gw}/24", "dev", "up0")
            ip(h, "route", "add", "default", "via", front_gw, "dev", "eth0", "metric", "100")
            nsexec(f, "nft", COUNT)
            root = str(tmp_path / f"h{i}")
            self.hosts.append((h, root))
            self.fronts.append(f)
        # host 2's underlay got its gateway "by DHCP": a default route on eth1 that loses
        # to the front's (networkd's DHCP routes have metric 1024)
        ip(self.hosts[1][0], "route", "add", "default", "via", HOSTS[1][1], "dev", "eth1",
           "metric", "1024", "proto", "dhcp")

    def install(self, gateways) -> None:
        for (h, root), gw in zip(self.hosts, gateways):
            cli.install(root, stanza(gw), "st.yaml")

    def plug_containers(self) -> None:
        for i, (h, _) in enumerate(self.hosts):
            c = self.run.netns(f"c{i + 1}")
            veth(h, "c-st", c, "eth0", mtu=VX_MTU)
            ip(h, "link", "set", "c-st", "master", "br-st")
            ip(c, "addr", "add", f"{HOSTS[i][4]}/8", "dev", "eth0")
            ip(c, "route", "add", "default", "via", HOSTS[i][4].rsplit(".", 1)[0] + ".1")
            self.containers.append(c)

    def replug(self) -> None:
        for h, _ in self.hosts:
            ip(h, "link", "set", "c-st", "master", "br-st")

    def front_vxlan(self) -> int:
        return sum(counters(f)[0] for f in self.fronts)


@pytest.fixture
def world(tmp_path):
    with Run("mh") as run:
        yield World(run, tmp_path)


def test_fan_traffic_leaves_by_its_underlay_gateway(world):
    w = world
    before = [rules_and_tables(h) for h, _ in w.hosts]

    # control: without the keys the outer packets follow the default route to the front
    w.install([None, None])
    for h, root in w.hosts:
        fangen(h, root, "up", "st")
    w.plug_containers()
    (c1, c2), b_addr = w.containers, HOSTS[1][4]
    assert not ping(c1, b_addr, count=2, wait=1), "control run: the fan should not work"
    assert "external" not in ip(w.hosts[0][0], "-d", "link", "show", "st-tun").stdout
    assert w.front_vxlan() == 0, "control run: a plain device's packet went to the front"
    assert counters(w.router)[0] == 0
    for h, root in w.hosts:
        fangen(h, root, "down", "st")

    # with the keys: host 1 names its router, host 2 takes the one DHCP gave eth1
    w.install(["10.20.1.1", "dhcp"])
    front_before = w.front_vxlan()
    dry = fangen(w.hosts[0][0], w.hosts[0][1], "up", "--dry-run", "st").stdout
    assert dry.splitlines()[-3:] == [
        "add route 10.20.1.0/24 dev #2 scope link src 10.20.1.5 table 100",
        "add route 10.20.0.0/16 via 10.20.1.1 dev #2 src 10.20.1.5 table 100",
        "add rule priority 32700 to 10.20.0.0/16 ipproto udp dport 8472 lookup 100"], dry
    for h, root in w.hosts:
        fangen(h, root, "up", "st")
    w.replug()
    assert ping(c1, b_addr, count=3), "host 1's container -> host 2's"
    assert ping(c2, HOSTS[0][4], count=3), "host 2's container -> host 1's"
    assert counters(w.router)[0] >= 12, "the outer packets did not cross the router"
    assert w.front_vxlan() == front_before, "outer packets went to the front"

    h1, h2 = (h for h, _ in w.hosts)
    assert ip(h1, "rule").stdout.count("lookup 100") == 1
    assert "to 10.20.0.0/16 ipproto udp dport 8472 lookup 100 proto 250" in ip(h1, "rule").stdout
    assert ip(h1, "route", "show", "table", "100").stdout.splitlines() == [
        "10.20.0.0/16 via 10.20.1.1 dev eth1 proto 250 src 10.20.1.5 ",
        "10.20.1.0/24 dev eth1 proto 250 scope link src 10.20.1.5 "]
    assert "10.20.0.0/16 via 10.20.2.1 dev eth1 proto 250" in \
        ip(h2, "route", "show", "table", "100").stdout

    # containers' own traffic leaves by the main table, NATed to the front address
    assert ping(c1, HOSTS[0][3], count=1)

    # the host's own traffic to the underlay keeps the main table (the default route)
    front_icmp = counters(w.fronts[0])[1]
    assert not ping(h1, HOSTS[1][0], count=1, wait=1)
    assert counters(w.fronts[0])[1] == front_icmp + 1

    # a removed rule or route comes back with the next up (run follows it by events)
    ip(h1, "route", "flush", "table", "100")
    fangen(h1, w.hosts[0][1], "up", "st")
    assert ping(c1, b_addr, count=2)

    # down removes exactly what up added; so does down --force without the state
    # (by the fan's record of its table)
    for h, _ in w.hosts:
        ip(h, "link", "del", "c-st")
    os.unlink(os.path.join(w.hosts[1][1], "run/fangen/st/state.json"))     # state lost
    for (h, root), was, force in zip(w.hosts, before, ([], ["--force"])):
        fangen(h, root, "down", *force, "st")
        assert rules_and_tables(h) == was
    assert "dev eth1 proto dhcp" in ip(h2, "route").stdout    # the DHCP route stays


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_run_follows_the_dhcp_gateway_and_puts_back_the_rule(world):
    """``fangen run`` on host 2: a new DHCP gateway on eth1 moves the route in the fan's
    table; a rule someone removed (networkd does when it starts) comes back."""
    w = world
    w.install(["10.20.1.1", "dhcp"])
    (h1, root1), (h2, root2) = w.hosts
    fangen(h1, root1, "up", "st")
    proc = cli.spawn(h2, root2, "run", "st")
    w.run.procs.append(proc)
    table = lambda: ip(h2, "route", "show", "table", "100", check=False).stdout  # noqa: E731
    wait_until(lambda: "via 10.20.2.1 dev eth1" in table(), 20, "the route by 10.20.2.1")
    w.plug_containers()
    c1, _ = w.containers
    assert ping(c1, HOSTS[1][4], count=2)

    # the lease names another router: the route follows, the old one goes
    ip(w.router, "addr", "add", "10.20.2.254/24", "dev", "r2")
    ip(h2, "route", "replace", "default", "via", "10.20.2.254", "dev", "eth1",
       "metric", "1024", "proto", "dhcp")
    wait_until(lambda: "via 10.20.2.254 dev eth1" in table(), 10, "the route by 10.20.2.254")
    assert "via 10.20.2.1 " not in table()
    assert ping(c1, HOSTS[1][4], count=2)

    # the rule removed by someone else comes back
    ip(h2, "rule", "del", "priority", "32700")
    wait_until(lambda: "lookup 100 proto 250" in ip(h2, "rule").stdout, 10, "the rule")
    assert ping(c1, HOSTS[1][4], count=2)
    w.run.stop(proc)
    # a rule of protocol 250 in the same table that is not this fan's (another fan's
    # vrf may name a table number this fan uses) stays
    other = ["priority", "32700", "to", "10.30.0.0/16", "ipproto", "udp", "dport", "4789",
             "lookup", "100", "proto", "250"]
    ip(h2, "rule", "add", *other)
    fangen(h2, root2, "down", "st")
    assert [line for line in ip(h2, "rule").stdout.splitlines() if "lookup 100" in line] == [
        "32700:\tfrom all to 10.30.0.0/16 ipproto udp dport 4789 lookup 100 proto 250"]
    assert table() == ""
    ip(h2, "rule", "del", *other)


def test_missing_vrf_is_one_line_and_adds_no_rule(world):
    """``vrf:`` names a VRF netplan makes; when there is none, up says so in one line
    (this machine's kernel has no vrf at all: tests/kernel/test_vrf.py runs the rest)."""
    h, root = world.hosts[0]
    fan = yaml.safe_load(stanza(None))
    fan["network"]["fan"]["st"]["vrf"] = "vrf-st"
    cli.install(root, yaml.safe_dump(fan), "st.yaml")
    rules = ip(h, "rule").stdout
    res = fangen(h, root, "up", "st", check=False)
    assert res.returncode != 0
    assert res.stderr.strip().splitlines() == [
        "fangen: vrf vrf-st does not exist: define it (netplan's vrfs:, or a networkd "
        ".netdev of Kind=vrf) with eth1 in it"], res.stderr
    assert ip(h, "rule").stdout == rules
    fangen(h, root, "down", "st")
