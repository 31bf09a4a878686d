"""What only the kernel fan tests (tests/kernel) need: a kernel-fan network of hosts and
containers, a capture of outer IPIP headers, random overlays.  They run inside the qemu
guest booted by kernel/boot.sh (any kernel with the IPIP fan patch works too), so this
imports nothing but the standard library, pyroute2 and the repository.

Namespaces, processes, ping, veths and sockets come from tests/harness/ns.py, like
every other test's: everything lives in the namespaces of a
:class:`~tests.harness.ns.Run` and is removed by ``Run.close()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from fangen.datapath import kernelfan as kf
from fangen.datapath import rtnl
from fangen.fanmap import FanMap
from tests.harness.cli import REPO
from tests.harness.ns import Run, ip, ping, plug, sh, socket_in, switch_ns, sysctl

BUSYBOX = "/bin/busybox"
UDHCPC_SCRIPT = os.path.join(REPO, "tests/harness/udhcpc.sh")


def link_stats(ns: str, dev: str) -> dict:
    out = json.loads(ip(ns, "-s", "-j", "link", "show", "dev", dev).stdout)
    return out[0]["stats64"]


def maps_of(nl, dev) -> list[str]:
    return [str(m) for m in kf.get_maps(nl, dev)]


def lease(net: Run, host_ns: str, bridge: str, name: str, workdir: str) -> str:
    """A container namespace ``name`` on the host's fan bridge; returns the address the
    fan's dnsmasq gave it (busybox udhcpc, tests/harness/udhcpc.sh)."""
    c = net.netns(name)
    ip(host_ns, "link", "add", f"v{name}", "type", "veth", "peer", "name", "eth0", "netns", c)
    ip(host_ns, "link", "set", f"v{name}", "master", bridge, "up")
    ip(c, "link", "set", "eth0", "up")
    lease_file = os.path.join(workdir, f"{name}.lease")
    sh("ip", "netns", "exec", c, "env", f"LEASE_FILE={lease_file}", BUSYBOX, "udhcpc",
       "-i", "eth0", "-s", UDHCPC_SCRIPT, "-q", "-n", "-t", "10", "-T", "1", timeout=60)
    with open(lease_file) as fh:
        got = dict(line.strip().split("=", 1) for line in fh if "=" in line)
    return got["ip"]


SENDER = IPv4Address("192.0.2.1")


def sender(net: Run, short: str) -> str:
    """A namespace at 192.0.2.1 whose every packet leaves eth0 for a gateway with a fixed
    MAC (no ARP): what leaves there is what a tunnel sent."""
    name = net.netns(short)
    ip(name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    ip(name, "addr", "add", f"{SENDER}/24", "dev", "eth0")
    for dev in ("eth0", "eth1"):
        ip(name, "link", "set", dev, "up")
    ip(name, "neigh", "add", "192.0.2.254", "lladdr", "02:00:00:00:00:fe", "dev", "eth0",
       "nud", "permanent")
    ip(name, "route", "add", "default", "via", "192.0.2.254", "dev", "eth0")
    return name


@dataclass
class Host:
    ns: str
    addr: IPv4Address
    containers: list = field(default_factory=list)     # [(ns, addr)]


@dataclass
class Fan:
    net: Run
    fmap: FanMap
    underlay_ns: str
    hosts: list


def ping_across(fan: Fan) -> None:
    """Every host's container pings every other host's container."""
    for a in fan.hosts:
        for b in fan.hosts:
            if a is not b:
                (c_ns, _), (_, c_addr) = a.containers[0], b.containers[0]
                assert ping(c_ns, c_addr, count=2), f"{a.addr} -> {c_addr}"


def build_kernel_fan(net: Run, overlay: str, underlay: str, host_addrs: list[str],
                     tunnel: str = "fant") -> Fan:
    """Hosts on one underlay bridge, each with an IPIP fan tunnel (kernelfan),
    a fan bridge holding its slice's .1, the overlay routed via the tunnel, and
    one container namespace at slice .2."""
    fmap = FanMap.parse(overlay, underlay)
    u = switch_ns(net, "u")
    hosts = []
    for i, addr in enumerate(host_addrs):
        h = net.netns(f"h{i}")
        sysctl(h, "net.ipv4.ip_forward", 1)
        plug(u, f"p{i}", h, "eth0", f"{addr}/{fmap.underlay.prefixlen}")
        with rtnl.Rtnl(netns=h) as nl:
            kf.create_ipip_fan(nl, tunnel, addr, [fmap], up=True)
        sl = fmap.slice_for_host(addr)
        gw = sl.network_address + 1
        ip(h, "link", "add", "fanbr", "type", "bridge")
        ip(h, "addr", "add", f"{gw}/{sl.prefixlen}", "dev", "fanbr")
        ip(h, "link", "set", "fanbr", "up")
        ip(h, "route", "add", str(fmap.overlay), "dev", tunnel, "src", str(gw))
        c = net.netns(f"c{i}")
        ip(h, "link", "add", "c0", "type", "veth", "peer", "name", "eth0", "netns", c)
        ip(h, "link", "set", "c0", "master", "fanbr", "up")
        caddr = gw + 1
        ip(c, "addr", "add", f"{caddr}/{sl.prefixlen}", "dev", "eth0")
        ip(c, "link", "set", "eth0", "up")
        ip(c, "route", "add", "default", "via", str(gw))
        hosts.append(Host(h, IPv4Address(addr), [(c, caddr)]))
    return Fan(net, fmap, u, hosts)


class OuterCapture:
    """Outer IPIP destinations leaving ``dev`` in ``ns``, read from a packet socket."""

    ETH_P_ALL = 0x0003

    def __init__(self, ns: str, dev: str):
        self.sock = socket_in(ns, socket.AF_PACKET, socket.SOCK_RAW,
                              socket.htons(self.ETH_P_ALL))
        self.sock.bind((dev, 0))
        self.sock.settimeout(0.05)

    def drain(self) -> None:
        with contextlib.suppress(TimeoutError, socket.timeout):
            while True:
                self.sock.recv(65536)

    def outer(self, inner_dst: IPv4Address, tries: int = 40) -> tuple | None:
        """(outer src, outer dst) of the first IPIP frame carrying ``inner_dst``."""
        for _ in range(tries):
            try:
                frame, _addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            if len(frame) < 14 + 40 or frame[12:14] != b"\x08\x00":
                continue
            outer = frame[14:]
            ihl = (outer[0] & 0xF) * 4
            if outer[9] != 4:                      # IPPROTO_IPIP
                continue
            inner = outer[ihl:]
            if IPv4Address(inner[16:20]) == inner_dst:
                return IPv4Address(outer[12:16]), IPv4Address(outer[16:20])
        return None

    def close(self) -> None:
        self.sock.close()


def random_overlay(rng, prefix: int) -> IPv4Network:
    """A random unicast overlay network (not 0/8, 127/8, >= 224/4, 172.16/12 or 10/8)."""
    while True:
        net = IPv4Network((rng.getrandbits(32), prefix), strict=False)
        first, last = int(net.network_address) >> 24, int(net.broadcast_address) >> 24
        if first == 0 or last >= 224 or first <= 127 <= last or first <= 10 <= last:
            continue
        if net.overlaps(IPv4Network("172.16.0.0/12")) or net.overlaps(IPv4Network("192.0.2.0/24")):
            continue
        return net
