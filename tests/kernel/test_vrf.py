"""Multi-homed hosts with the underlay in a VRF (issue 15, ``vrf: NAME`` in fan.d(5)).

Runs inside the qemu guest on Debian's stock kernel (make kernel-check-stock): this
project's machines have no vrf module.  The layout of tests/netns/test_multihome.py: two
fan hosts on two segments of 10.20.0.0/16 joined by a router, each host's main table
sending its default route to a "front" namespace that does not reach the underlay.  Here
each host's underlay NIC is a port of a VRF ``vrf-st`` (table 10) holding the default
route by the segment's router, as netplan's ``vrfs:`` makes it; the test makes the VRF,
fangen only names it.

* IPIP and VXLAN fans carry traffic across the router, and nothing reaches the front;
* the rule is what does it: without it (removed by hand) the fan fails again;
* VXLAN: the fan's UDP socket is bound to no device, so fangen sets
  net.ipv4.udp_l3mdev_accept=1 (the kernel's VRF documentation); with 0 the fan fails.
  tcp_l3mdev_accept stays as it was (the fan has no TCP socket);
* down removes the rule and puts the sysctl back; the VRF, its port and its routes stay.
"""

from __future__ import annotations

import os

import pytest
import yaml

from tests.harness import cli
from tests.harness.cli import fangen
from tests.harness.ns import Run, ip, ipip_available, nsexec, ping, sysctl, veth

HOSTS = [  # (underlay address, its router, front address, front router, slice address)
    ("10.20.1.5", "10.20.1.1", "10.10.1.2", "10.10.1.1", "251.1.5.10"),
    ("10.20.2.7", "10.20.2.1", "10.10.2.2", "10.10.2.1", "251.2.7.10"),
]
VRF_TABLE = 10


def vrf_available() -> bool:
    with Run("v") as run:
        ns = run.netns("probe")
        return ip(ns, "link", "add", "vrfprobe", "type", "vrf", "table", "1",
                  check=False).returncode == 0


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(os.geteuid() == 0 and not vrf_available(),
                       reason="this kernel has no vrf: make kernel-check-stock runs this"),
]


def counting(kind: str) -> str:
    outer = "udp dport 8472" if kind == "vxlan" else "ip protocol 4"
    return (f"table ip t {{ chain c {{ type filter hook prerouting priority 0; "
            f"ip daddr 10.20.0.0/16 {outer} counter; }}; }}")


def counter(ns: str) -> int:
    out = nsexec(ns, "nft", "list", "table", "ip", "t").stdout
    return int(out.split("counter packets")[1].split()[0])


def read_sysctl(ns: str, key: str) -> str:
    return nsexec(ns, "cat", "/proc/sys/" + key.replace(".", "/")).stdout.strip()


class World:
    def __init__(self, run: Run, tmp_path, kind: str):
        self.run = run
        self.router = run.netns("rt")
        sysctl(self.router, "net.ipv4.ip_forward", 1)
        nsexec(self.router, "nft", counting(kind))
        self.hosts, self.fronts, self.containers = [], [], []
        for i, (addr, gw, front, front_gw, _) in enumerate(HOSTS, 1):
            h, f = run.netns(f"h{i}"), run.netns(f"f{i}")
            # what netplan's vrfs: {vrf-st: {table: 10, interfaces: [eth1], routes: ...}} makes
            ip(h, "link", "add", "vrf-st", "type", "vrf", "table", str(VRF_TABLE))
            ip(h, "link", "set", "vrf-st", "up")
            veth(h, "eth1", self.router, f"r{i}")
            ip(h, "link", "set", "eth1", "master", "vrf-st")
            ip(h, "addr", "add", f"{addr}/24", "dev", "eth1")
            ip(h, "route", "add", "default", "via", gw, "dev", "eth1", "table", str(VRF_TABLE))
            ip(self.router, "addr", "add", f"{gw}/24", "dev", f"r{i}")
            veth(h, "eth0", f, "up0")
            ip(h, "addr", "add", f"{front}/24", "dev", "eth0")
            ip(f, "addr", "add", f"{front_gw}/24", "dev", "up0")
            ip(h, "route", "add", "default", "via", front_gw, "dev", "eth0")
            nsexec(f, "nft", counting(kind))
            root = str(tmp_path / f"h{i}")
            fan = {"overlay": "251.0.0.0/8", "underlay": "10.20.0.0/16", "type": kind,
                   "dhcp": False, "bridge": "br-st", "vrf": "vrf-st"}
            cli.install(root, yaml.safe_dump({"network": {"version": 2, "fan": {"st": fan}}}),
                        "st.yaml")
            self.hosts.append((h, root))
            self.fronts.append(f)

    def plug_containers(self, mtu: int) -> None:
        for i, (h, _) in enumerate(self.hosts):
            c = self.run.netns(f"c{i + 1}")
            veth(h, "c-st", c, "eth0", mtu=mtu)
            ip(h, "link", "set", "c-st", "master", "br-st")
            prefix = "8" if self.kind == "vxlan" else "24"
            ip(c, "addr", "add", f"{HOSTS[i][4]}/{prefix}", "dev", "eth0")
            if self.kind == "ipip":
                ip(c, "route", "add", "251.0.0.0/8", "via", HOSTS[i][4].rsplit(".", 1)[0] + ".1")
            self.containers.append(c)

    def front(self) -> int:
        return sum(counter(f) for f in self.fronts)

    def state(self, h: str) -> tuple:
        return (ip(h, "rule").stdout, ip(h, "route", "show", "table", "all").stdout,
                ip(h, "-d", "link", "show", "eth1").stdout,
                read_sysctl(h, "net.ipv4.udp_l3mdev_accept"),
                read_sysctl(h, "net.ipv4.tcp_l3mdev_accept"))


@pytest.fixture
def run():
    with Run("vrf") as r:
        yield r


@pytest.mark.parametrize("kind", ["vxlan", "ipip"])
def test_fan_over_an_underlay_in_a_vrf(run, tmp_path, kind):
    if kind == "ipip" and not ipip_available():
        pytest.skip("this kernel has no ipip")
    w = World(run, tmp_path, kind)
    w.kind = kind
    before = [w.state(h) for h, _ in w.hosts]
    assert all(b[3] == "0" and b[4] == "0" for b in before)
    for h, root in w.hosts:
        fangen(h, root, "up", "st")
    w.plug_containers(1450 if kind == "vxlan" else 1480)
    (c1, c2), (h1, h2) = w.containers, (h for h, _ in w.hosts)
    assert ping(c1, HOSTS[1][4], count=3), "host 1's container -> host 2's"
    assert ping(c2, HOSTS[0][4], count=3), "host 2's container -> host 1's"
    assert counter(w.router) >= 12 and w.front() == 0
    selector = "ipproto udp dport 8472" if kind == "vxlan" else "ipproto ipencap"
    assert f"32700:\tfrom all to 10.20.0.0/16 {selector} lookup {VRF_TABLE} proto 250" in \
        ip(h1, "rule").stdout
    # fangen added no route: the VRF's table is netplan's
    assert "proto 250" not in ip(h1, "route", "show", "table", "all").stdout
    want_udp = "1" if kind == "vxlan" else "0"
    assert [read_sysctl(h, "net.ipv4.udp_l3mdev_accept") for h in (h1, h2)] == [want_udp] * 2
    assert [read_sysctl(h, "net.ipv4.tcp_l3mdev_accept") for h in (h1, h2)] == ["0", "0"]

    if kind == "vxlan":
        # the sysctl is needed: without it host 2's VXLAN socket does not get the packets
        sysctl(h2, "net.ipv4.udp_l3mdev_accept", 0)
        assert not ping(c1, HOSTS[1][4], count=2, wait=1)
        sysctl(h2, "net.ipv4.udp_l3mdev_accept", 1)
        assert ping(c1, HOSTS[1][4], count=2)

    # the rule is needed: without it the outer packets take the main table to the front
    ip(h1, "rule", "del", "priority", "32700")
    assert not ping(c1, HOSTS[1][4], count=2, wait=1)
    assert w.front() > 0
    fangen(h1, w.hosts[0][1], "up", "st")            # puts it back
    assert ping(c1, HOSTS[1][4], count=2)

    for h, _ in w.hosts:
        ip(h, "link", "del", "c-st")
    for (h, root), was in zip(w.hosts, before):
        fangen(h, root, "down", "st")
        assert w.state(h) == was
