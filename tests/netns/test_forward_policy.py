"""The host is not an open router into the overlay (fangen's nft forward policy).

Needs root.  One harness lab per module (~10-20 s): two hosts on a DHCP underlay
running real networkd and ``fangen run`` (VXLAN fan 250.0.0.0/8, upstream datapath),
one container per host, and the outside namespace (the underlay's router,
172.16.0.254 and 203.0.113.1) given a route of the whole overlay via host 1 -- a
neighbour that routes the overlay to a fan host.  Its plain packets to containers
and to host 1's DNS must be dropped; containers still reach the outside (NAT) and
each other across hosts, and a port published by DNAT (a separate nft table playing
the container engine) works.  The last test takes fangen's table away and shows the
same probes getting through, so the drops above are the policy's doing.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess

import pytest

from tests.harness import DOC_ADDR, Lab
from tests.harness.ns import in_netns, ip, nsexec
from tests.harness.ns import ping as ns_ping
from tests.harness.outside import WHOAMI_PORT
from tests.harness.packets import Whoami, whoami

pytestmark = [
    pytest.mark.root, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, networkd, tc, nft"),
]

SERVICE_PORT = 8000
PUBLISHED_PORT = 8080


@pytest.fixture(scope="module")
def lab(request):
    lab = Lab(hosts=2, containers=1, tag="fw")
    failed_before = request.session.testsfailed
    try:
        lab.start_hosts()
        lab.start_fans()
        lab.wait_fans()
        lab.add_containers()
        ip(lab.outside.ns, "route", "add", "250.0.0.0/8", "via", lab.hosts[0].address())
        lab.servers = [Whoami(c.ns, "0.0.0.0", SERVICE_PORT) for c in lab.containers]
        yield lab
    finally:
        for server in getattr(lab, "servers", []):
            server.close()
        if request.session.testsfailed != failed_before:
            lab.run.keep_workdir = True
            print(f"\nharness logs kept in {lab.run.workdir}")
        lab.close()


def tcp_hello(ns: str, addr: str, port: int, timeout: float = 2) -> bool:
    """Does a TCP connection from ``ns`` get the container's Whoami server to answer?"""
    try:
        return bool(whoami(ns, addr, port, timeout))
    except OSError:
        return False


def dns_answers(ns: str, server: str, name: str = "localhost", timeout: float = 2) -> bool:
    """An A query for ``name``; True when an answer with at least one record comes back."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + labels + \
        struct.pack("!HH", 1, 1)
    with in_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.settimeout(timeout)
        s.sendto(query, (server, 53))
        try:
            reply = s.recv(512)
        except OSError:
            return False
    return reply[:2] == b"\x42\x42" and struct.unpack("!H", reply[6:8])[0] >= 1


def ping(ns: str, addr: str, count: int = 2) -> bool:
    return ns_ping(ns, addr, count, wait=1)


def _gateway(host) -> str:
    return str(host.slice_for().network_address + 1)


def test_the_outside_route_leads_to_host_1(lab):
    """The neighbour's route is real: it reaches host 1's underlay address directly."""
    route = nsexec(lab.outside.ns, "ip", "route", "get", lab.containers[0].address).stdout
    assert f"via {lab.hosts[0].address()}" in route
    assert ping(lab.outside.ns, lab.hosts[0].address())


def test_plain_packets_from_the_outside_are_dropped(lab):
    out = lab.outside.ns
    h1 = lab.hosts[0]
    for c in lab.containers:                 # host 1's own container and host 2's via host 1
        assert not ping(out, c.address), c.name
        assert not tcp_hello(out, c.address, SERVICE_PORT), c.name
    assert not ping(out, _gateway(h1))
    assert not dns_answers(out, _gateway(h1))


def test_containers_reach_the_outside_each_other_and_their_dns(lab):
    lab.outside.whoami()
    c1, c2 = lab.containers
    for c in lab.containers:
        assert whoami(c.ns, DOC_ADDR, WHOAMI_PORT) == c.host.address()     # NAT
        assert dns_answers(c.ns, _gateway(c.host))
    assert ping(c1.ns, c2.address) and ping(c2.ns, c1.address)
    assert tcp_hello(c1.ns, c2.address, SERVICE_PORT)
    assert tcp_hello(c2.ns, c1.address, SERVICE_PORT)


def test_a_published_port_works(lab):
    """A DNAT the host makes on purpose (a container engine's published port) gets in."""
    h1, c1 = lab.hosts[0], lab.containers[0]
    nsexec(h1.ns, "nft", "add table ip engine; "
           "add chain ip engine pre { type nat hook prerouting priority dstnat; }; "
           f"add rule ip engine pre tcp dport {PUBLISHED_PORT} dnat to "
           f"{c1.address}:{SERVICE_PORT}")
    try:
        assert tcp_hello(lab.outside.ns, h1.address(), PUBLISHED_PORT)
        assert not tcp_hello(lab.outside.ns, c1.address, SERVICE_PORT)   # still not direct
    finally:
        nsexec(h1.ns, "nft", "delete table ip engine")


def test_without_the_policy_the_same_probes_get_in(lab):
    """The control: with fangen's forward chain and input rule gone, the outside reaches
    the container and host 1's DNS answers it, so the drops above are the policy."""
    h1, c1 = lab.hosts[0], lab.containers[0]
    table = nsexec(h1.ns, "nft", "list", "table", "ip", "fangen-fan250").stdout
    handles = nsexec(h1.ns, "nft", "-a", "list", "chain", "ip", "fangen-fan250",
                     "input").stdout
    [gateway_rule] = [line for line in handles.splitlines()
                      if f"ip daddr {_gateway(h1)} iifname" in line]
    nsexec(h1.ns, "nft", "delete", "chain", "ip", "fangen-fan250", "forward")
    nsexec(h1.ns, "nft", "delete", "rule", "ip", "fangen-fan250", "input", "handle",
           gateway_rule.rsplit("handle", 1)[1].strip())
    try:
        assert tcp_hello(lab.outside.ns, c1.address, SERVICE_PORT)
        assert ping(lab.outside.ns, c1.address)
        assert dns_answers(lab.outside.ns, _gateway(h1))
    finally:                                  # put fangen's table back as it was
        nsexec(h1.ns, "nft", "delete", "table", "ip", "fangen-fan250")
        subprocess.run(["ip", "netns", "exec", h1.ns, "nft", "-f", "-"], input=table,
                       text=True, check=True, capture_output=True, timeout=30)
    assert not ping(lab.outside.ns, c1.address)
