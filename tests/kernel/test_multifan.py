"""examples/two-fans.yaml, as shipped (two IPIP fans), on the upstream datapath: two
hosts, each with a front NIC (10.10.0.0/16) and a storage NIC (10.20.0.0/16).

Runs inside the qemu guest on Debian's stock kernel (make kernel-check-stock; this
project's machines have no ipip).  The kernel allows one collect-metadata IPIP device per
namespace, so both fans share fangen-ipip, each with its own tc programs on it:

* both fans come up on both hosts at once and carry traffic (DHCP leases from each fan's
  dnsmasq, pings across hosts), each over its own underlay;
* the shared device does not let one fan's underlay into the other's overlay: IPIP sent
  from the front network to a storage address is dropped (a front address is received);
* down of one fan leaves the other working; down of both leaves each host as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile

import pytest
from kutil import lease
from test_runtime import snapshot

from fangen.datapath import kernelfan as kf
from tests.harness import cli
from tests.harness.cli import REPO, fangen
from tests.harness.ns import (
    Run,
    ip,
    ipip_available,
    nsexec,
    ping,
    plug,
    sh,
    socket_in,
    switch_ns,
)
from tests.harness.packets import ipv4_udp

EXAMPLE = os.path.join(REPO, "examples", "two-fans.yaml")
HOSTS = [("10.10.5.6", "10.20.5.6"), ("10.10.7.8", "10.20.7.8")]
FANS = {"front": ("br-front", "250"), "storage": ("br-storage", "251")}


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(kf.present()["ipip"], reason="the example's fans take the kernel "
                       "datapath on a kernel with the IPIP fan (one tunnel each): this is "
                       "the upstream datapath's test, make kernel-check-stock runs it"),
    pytest.mark.skipif(os.geteuid() == 0 and not ipip_available(),
                       reason="this kernel has no ipip: make kernel-check-stock runs this"),
]


def ipip_counters(switch: str) -> None:
    script = ("add table bridge t\n"
              "add chain bridge t fw { type filter hook forward priority 0; policy accept; }\n"
              "add counter bridge t ipip\n"
              "add rule bridge t fw ip protocol 4 counter name ipip\n")
    path = os.path.join(tempfile.gettempdir(), f"{switch}.nft")
    with open(path, "w") as fh:
        fh.write(script)
    try:
        nsexec(switch, "nft", "-f", path)
    finally:
        os.unlink(path)


def ipip_seen(switch: str) -> int:
    out = json.loads(nsexec(switch, "nft", "-j", "list", "counter", "bridge", "t",
                            "ipip").stdout)
    return next(o["counter"]["packets"] for o in out["nftables"] if "counter" in o)


def received(sock: socket.socket) -> set[str]:
    got = set()
    sock.settimeout(2.0)
    try:
        while True:
            got.add(sock.recv(2048).decode())
            sock.settimeout(0.5)
    except TimeoutError:
        return got


def test_two_ipip_fans_share_one_device(net):
    workdir = tempfile.mkdtemp(prefix="fangen-mf-")
    try:
        _two_fans(net, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _two_fans(net: Run, workdir: str) -> None:
    switches = {}
    for lan in ("front", "storage"):
        sw = switch_ns(net, f"s{lan[0]}")
        ipip_counters(sw)
        switches[lan] = sw
    hosts = []
    for i, addrs in enumerate(HOSTS):
        h = net.netns(f"h{i}")
        for nic, (lan, addr) in enumerate(zip(("front", "storage"), addrs, strict=True)):
            plug(switches[lan], f"p{i}", h, f"eth{nic}", f"{addr}/16")
        root = os.path.join(workdir, f"h{i}")
        with open(EXAMPLE) as fh:
            cli.install(root, fh.read(), "two-fans.yaml")
        hosts.append((h, root, snapshot(h)))

    # both fans up on both hosts, sharing one collect-metadata IPIP device per host
    for h, root, _ in hosts:
        fangen(h, root, "up", "front", "--no-systemd", "--timeout", "10")
        fangen(h, root, "up", "storage", "--no-systemd", "--timeout", "10")
        shown = {row["name"]: row for row in json.loads(fangen(h, root, "show", "--json").stdout)}
        assert {n: (r["state"], r["datapath"]) for n, r in shown.items()} == \
            {"front": ("up", "upstream"), "storage": ("up", "upstream")}
        assert "external" in ip(h, "-d", "link", "show", "dev", "fangen-ipip").stdout
        for dev in ("front-tun", "storage-tun"):
            assert ip(h, "link", "show", "dev", dev, check=False).returncode != 0
        egress = sh("tc", "-n", h, "filter", "show", "dev", "fangen-ipip",
                          "egress").stdout
        for name in ("fangen:fan:front", "fangen:fan:storage", "fangen:drop"):
            assert name in egress, egress
        routes = ip(h, "route", "show", "dev", "fangen-ipip").stdout
        assert "250.0.0.0/8" in routes and "251.0.0.0/8" in routes, routes

    # one container per host and fan, addressed by that fan's dnsmasq from its slice
    containers = {}
    for i, (h, _, _) in enumerate(hosts):
        third, fourth = HOSTS[i][0].split(".")[2:]
        for fan, (bridge, first) in FANS.items():
            addr = lease(net, h, bridge, f"c{i}{fan[0]}", workdir)
            assert addr.startswith(f"{first}.{third}.{fourth}."), addr
            assert int(addr.rsplit(".", 1)[1]) > 10            # host-reserve: 10
            containers[i, fan] = (f"{net.prefix}-c{i}{fan[0]}", addr)

    # each fan carries traffic, over its own underlay only
    for fan, other in (("front", "storage"), ("storage", "front")):
        seen = {lan: ipip_seen(sw) for lan, sw in switches.items()}
        (a_ns, a_addr), (b_ns, b_addr) = containers[0, fan], containers[1, fan]
        assert ping(a_ns, b_addr, count=2), f"{fan}: {a_addr} -> {b_addr}"
        assert ping(b_ns, a_addr, count=2), f"{fan}: {b_addr} -> {a_addr}"
        assert ipip_seen(switches[fan]) >= seen[fan] + 8
        assert ipip_seen(switches[other]) == seen[other], f"{fan} traffic on the {other} LAN"

    # the shared device keeps the fans apart: IPIP from the front network is received
    # for a front address and dropped for a storage address (the storage fan's program
    # wants a sender on the storage network; nft passes both, they come from the front)
    (h0, _, _), (h1, _, _) = hosts
    rx = {fan: socket_in(containers[0, fan][0], socket.AF_INET, socket.SOCK_DGRAM)
          for fan in FANS}
    tx = socket_in(h1, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IPIP)
    try:
        for fan, sock in rx.items():
            sock.bind((containers[0, fan][1], 5555))
        for fan in FANS:
            tx.sendto(ipv4_udp(containers[1, "front"][1], containers[0, fan][1], 40000, 5555,
                               fan.encode()), (HOSTS[0][0], 0))
        assert received(rx["front"]) == {"front"}
        assert received(rx["storage"]) == set()
    finally:
        tx.close()
        for sock in rx.values():
            sock.close()

    # down of one fan leaves the other working; down of the last removes the device
    (h, root, before) = hosts[0]
    ip(h, "link", "del", "vc0f")                # the container's veth is the test's
    fangen(h, root, "down", "front")
    egress = sh("tc", "-n", h, "filter", "show", "dev", "fangen-ipip", "egress").stdout
    assert "fangen:fan:front" not in egress and "fangen:fan:storage" in egress
    assert "250.0.0.0/8" not in ip(h, "route", "show", "dev", "fangen-ipip").stdout
    (a_ns, a_addr), (b_ns, b_addr) = containers[0, "storage"], containers[1, "storage"]
    assert ping(a_ns, b_addr, count=2)
    assert ping(b_ns, a_addr, count=2)
    ip(h, "link", "del", "vc0s")
    fangen(h, root, "down", "storage")
    assert ip(h, "link", "show", "dev", "fangen-ipip", check=False).returncode != 0
    assert snapshot(h) == before
    # the other host: both down in the other order
    (h, root, before) = hosts[1]
    for fan in ("storage", "front"):
        ip(h, "link", "del", f"vc1{fan[0]}")
        fangen(h, root, "down", fan)
    assert snapshot(h) == before
