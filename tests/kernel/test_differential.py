"""Kernel fan datapath (our patch) against the upstream datapath (a collect-metadata
IPIP device with fangen's tc BPF programs, fangen.datapath.upstream).

Both must send a packet for an overlay address to the same underlay host (seen as
the outer destination), and hosts using one can talk to hosts using the other.
Runs in the guest of ``make kernel-check`` (it needs the fan patch, and BPF/clsact).
"""

from __future__ import annotations

import random
import socket
from dataclasses import replace

import kutil
import pytest
from test_ipip_fan import _remote_pairs

from fangen.datapath import fanprog, rtnl, upstream
from fangen.datapath import kernelfan as kf
from fangen.datapath.encap import Encap
from fangen.fanmap import FanMap
from tests.harness.ns import ip, iproute_in, socket_in

pytestmark = [
    pytest.mark.skipif(not kf.present()["ipip"], reason="kernel without the IPIP fan"),
    pytest.mark.root,
]


LOCAL = kutil.SENDER                  # the address of kutil.sender()


def test_same_underlay_host_for_random_pairs(net):
    kns, uns = kutil.sender(net, "k"), kutil.sender(net, "u")
    knl = rtnl.Rtnl(netns=kns)
    kf.create_ipip_fan(knl, "fant", LOCAL, up=True)
    ip(uns, "link", "add", "fanu", "type", "ipip", "external")
    ip(uns, "link", "set", "fanu", "up")
    ipr = iproute_in(uns)
    uidx = ipr.link_lookup(ifname="fanu")[0]
    caps = {kns: kutil.OuterCapture(kns, "eth0"), uns: kutil.OuterCapture(uns, "eth0")}
    udp = {ns: socket_in(ns, socket.AF_INET, socket.SOCK_DGRAM) for ns in (kns, uns)}
    rng = random.Random(11)
    compared = 0
    try:
        for fmap in _remote_pairs(23, 12):
            hosts = list(fmap.underlay.hosts()) if fmap.underlay.prefixlen < 31 else []
            own = rng.choice(hosts[:64] + hosts[-64:])
            params = fanprog.FanParams.for_host(fmap, own, "ipip")
            kf.change_maps(knl, "fant", [kf.FLUSH, fmap])
            upstream.attach(ipr, uidx, params)
            ip(kns, "route", "replace", str(fmap.overlay), "dev", "fant")
            ip(uns, "route", "replace", str(fmap.overlay), "dev", "fanu")
            for _ in range(4):
                addr = fmap.overlay.network_address + rng.randrange(fmap.overlay.num_addresses)
                want = fanprog.expected_remote(params, addr)
                if want is None or want == LOCAL or addr == fmap.overlay.network_address:
                    continue
                got = {}
                for ns in (kns, uns):
                    caps[ns].drain()
                    udp[ns].sendto(b"diff", (str(addr), 9))
                    got[ns] = caps[ns].outer(addr)
                assert got[kns] is not None, f"kernel sent nothing for {addr} ({fmap})"
                assert got[uns] is not None, f"upstream sent nothing for {addr} ({fmap})"
                assert got[kns][1] == got[uns][1] == want == fmap.host_for_address(addr), (
                    str(fmap.overlay), str(fmap.underlay), str(addr), got)
                compared += 1
            ip(kns, "route", "del", str(fmap.overlay), "dev", "fant")
            ip(uns, "route", "del", str(fmap.overlay), "dev", "fanu")
    finally:
        for c in caps.values():
            c.close()
        for s in udp.values():
            s.close()
        ipr.close()
        knl.close()
    assert compared >= 24


def test_kernel_fan_host_and_upstream_host_talk(net):
    """Host 0 and 2 use the kernel fan, host 1 the upstream datapath with its programs
    encapsulating IPv4 themselves (as fangen attaches them); containers ping."""
    pair = ("250.0.0.0/8", "172.16.0.0/16")
    fmap = FanMap.parse(*pair)
    fan = kutil.build_kernel_fan(net, *pair, ["172.16.1.2", "172.16.2.3", "172.16.3.4"])
    # turn host 1 into an upstream-datapath host: replace its fan tunnel
    h1 = fan.hosts[1]
    ip(h1.ns, "link", "del", "fant")
    ip(h1.ns, "link", "add", "fanu", "type", "ipip", "external")
    ip(h1.ns, "link", "set", "fanu", "up")
    params = fanprog.FanParams.for_host(fmap, h1.addr, "ipip")
    ipr = iproute_in(h1.ns)
    try:
        params = replace(params, encap=Encap(h1.addr, ipr.link_lookup(ifname="eth0")[0], 0,
                                             fmap.underlay))
        upstream.attach(ipr, ipr.link_lookup(ifname="fanu")[0], params)
    finally:
        ipr.close()
    gw = params.own_slice.network_address + 1
    ip(h1.ns, "route", "add", str(fmap.overlay), "dev", "fanu", "src", str(gw))
    kutil.ping_across(fan)
