"""The IPIP fan kernel patch (kernel/patches/0001-*), driven by fangen.datapath.kernelfan.

These tests run inside the qemu guest that ``make kernel-check`` boots (see
kernel/README.md); elsewhere they are skipped unless the running kernel has the
IPIP fan (``/proc/sys/net/fan/version`` reads 3) and we are root.
"""

from __future__ import annotations

import errno
import random
import socket
import time
from ipaddress import IPv4Address, IPv4Network

import kutil
import pytest
from kutil import maps_of

from fangen.datapath import kernelfan as kf
from fangen.datapath import rtnl
from fangen.fanmap import FanMap
from tests.harness.ns import ip, iproute_in, nsexec, ping, plug, sh, socket_in
from tests.harness.packets import ipv4_udp

pytestmark = [
    pytest.mark.skipif(not kf.present()["ipip"], reason="kernel without the IPIP fan"),
    pytest.mark.root,
]

FAN_A = ("250.0.0.0/8", "172.16.0.0/16")
FAN_B = ("100.64.0.0/10", "10.224.220.0/24")      # the kernel comment's non-/8 example


# --- /proc -------------------------------------------------------------------

def test_proc_version_in_every_namespace(net):
    assert kf.present() == {"ipip": True, "vxlan": kf.present()["vxlan"]}
    with open("/proc/sys/net/fan/version") as f:
        assert f.read().strip() == "3"
    name = net.netns("p")
    assert nsexec(name, "cat", "/proc/sys/net/fan/version").stdout.strip() == "3"
    with pytest.raises(PermissionError):
        with open("/proc/sys/net/fan/version", "w") as f:
            f.write("4\n")


# --- netlink rules -------------------------------------------------------------

def test_create_and_read_back(ns):
    name, nl = ns
    idx = kf.create_ipip_fan(nl, "fant", "172.16.3.4", [FAN_A])
    link = rtnl.get_link(nl, "fant")
    assert link.index == idx and link.kind == "ipip"
    assert link.data_attr(kf.IFLA_IPTUN_LOCAL) == IPv4Address("172.16.3.4").packed
    assert link.data_attr(kf.IFLA_IPTUN_REMOTE) == bytes(4)
    assert maps_of(nl, "fant") == ["250.0.0.0/8:172.16.0.0/16"]
    # pyroute2 handles work too (the namespace of their socket is used)
    ipr = iproute_in(name)
    try:
        assert maps_of(ipr, "fant") == ["250.0.0.0/8:172.16.0.0/16"]
    finally:
        ipr.close()


def test_no_maps_no_attribute(ns):
    _, nl = ns
    kf.create_ipip_fan(nl, "plain", "172.16.3.4")
    link = rtnl.get_link(nl, "plain")
    assert link.data_attr(kf.IFLA_IPTUN_FAN_MAP) is None
    assert kf.fan_maps(link) == []


def test_add_several_delete_flush(ns):
    _, nl = ns
    kf.create_ipip_fan(nl, "fant", "172.16.3.4", [FAN_A])
    kf.add_map(nl, "fant", *FAN_B)
    kf.add_map(nl, "fant", "10.128.0.0/9", "192.168.0.0/24")
    assert maps_of(nl, "fant") == ["250.0.0.0/8:172.16.0.0/16",
                                   "100.64.0.0/10:10.224.220.0/24",
                                   "10.128.0.0/9:192.168.0.0/24"]
    kf.delete_map(nl, "fant", "100.64.0.0/10")
    assert maps_of(nl, "fant") == ["250.0.0.0/8:172.16.0.0/16", "10.128.0.0/9:192.168.0.0/24"]
    with pytest.raises(rtnl.NetlinkError) as exc:
        kf.delete_map(nl, "fant", "100.64.0.0/10")
    assert exc.value.errno == errno.ENOENT
    kf.flush_maps(nl, "fant")
    assert maps_of(nl, "fant") == []
    assert rtnl.get_link(nl, "fant").data_attr(kf.IFLA_IPTUN_FAN_MAP) is None
    # several requests in one nest are applied in order: flush, then add two
    kf.change_maps(nl, "fant", [kf.FLUSH, FAN_B, FAN_A])
    assert maps_of(nl, "fant") == ["100.64.0.0/10:10.224.220.0/24",
                                   "250.0.0.0/8:172.16.0.0/16"]


def test_changes_keep_tunnel_parameters(ns):
    _, nl = ns
    kf.create_ipip_fan(nl, "fant", "172.16.3.4", [FAN_A], ttl=64, mtu=1400)
    kf.add_map(nl, "fant", *FAN_B)
    link = rtnl.get_link(nl, "fant")
    assert link.data_attr(kf.IFLA_IPTUN_LOCAL) == IPv4Address("172.16.3.4").packed
    assert link.data_attr(kf.IFLA_IPTUN_TTL) == b"\x40"
    assert link.mtu == 1400
    # a request carrying only IFLA_IPTUN_FAN_MAP changes only the maps
    nl.request(kf.changelink_fan(link.index, "ipip", [kf.FLUSH], seq=nl.next_seq()))
    link = rtnl.get_link(nl, "fant")
    assert kf.fan_maps(link) == []
    assert link.data_attr(kf.IFLA_IPTUN_LOCAL) == IPv4Address("172.16.3.4").packed
    assert link.data_attr(kf.IFLA_IPTUN_TTL) == b"\x40"
    assert link.mtu == 1400


def test_eexist(ns):
    _, nl = ns
    kf.create_ipip_fan(nl, "fant", "172.16.3.4", [FAN_A])
    for overlay, underlay in (FAN_A, ("250.0.0.0/8", "10.0.0.0/16"),
                              ("250.1.0.0/16", "10.0.0.0/24"), ("248.0.0.0/5", "10.0.0.0/8")):
        with pytest.raises(rtnl.NetlinkError) as exc:
            kf.add_map(nl, "fant", overlay, underlay)
        assert exc.value.errno == errno.EEXIST, (overlay, underlay)
        assert "already mapped" in exc.value.extack
    assert maps_of(nl, "fant") == ["250.0.0.0/8:172.16.0.0/16"]


BAD_MAPS = [
    kf.FanMapping(IPv4Address("250.0.0.1"), 8, IPv4Address("172.16.0.0"), 16),   # host bits
    kf.FanMapping(IPv4Address("250.0.0.0"), 8, IPv4Address("172.16.0.1"), 16),   # host bits
    kf.FanMapping(IPv4Address("0.0.0.0"), 0, IPv4Address("172.16.0.0"), 16),     # no overlay
    kf.FanMapping(IPv4Address("0.0.0.0"), 8, IPv4Address("172.16.0.0"), 16),     # no overlay
    kf.FanMapping(IPv4Address("250.0.0.0"), 8, IPv4Address("16.0.0.0"), 4),      # slice /36
    kf.FanMapping(IPv4Address("250.0.0.0"), 33, IPv4Address("172.16.0.0"), 16),  # prefix > 32
    kf.FanMapping(IPv4Address("250.0.0.0"), 8, IPv4Address("172.16.0.0"), 40),   # prefix > 32
    kf.FanMapping(IPv4Address("250.0.0.0"), 0, IPv4Address("172.16.0.0"), 16),   # /0 overlay
]


@pytest.mark.parametrize("bad", BAD_MAPS, ids=[str(m) for m in BAD_MAPS])
def test_einval_maps(ns, bad):
    name, nl = ns
    kf.create_ipip_fan(nl, "fant", "172.16.3.4", [FAN_A])
    with pytest.raises(rtnl.NetlinkError) as exc:
        kf.change_maps(nl, "fant", [bad])
    assert exc.value.errno == errno.EINVAL
    assert maps_of(nl, "fant") == ["250.0.0.0/8:172.16.0.0/16"]
    with pytest.raises(rtnl.NetlinkError) as exc:
        kf.create_ipip_fan(nl, "fant2", "172.16.3.4", [bad])
    assert exc.value.errno == errno.EINVAL
    assert "fant2" not in ip(name, "-br", "link").stdout


def test_einval_malformed_child(ns):
    _, nl = ns
    idx = kf.create_ipip_fan(nl, "fant", "172.16.3.4")
    for payload in (rtnl.nla(kf.IFLA_FAN_MAPPING, bytes(11)),
                    rtnl.nla(kf.IFLA_FAN_MAPPING, kf.pack_fan_map(FAN_A) + bytes(4)),
                    rtnl.nla(2, kf.pack_fan_map(FAN_A))):
        data = rtnl.nla(kf.IFLA_IPTUN_FAN_MAP | rtnl.NLA_F_NESTED, payload)
        msg = rtnl.changelink(idx, "ipip", [data], seq=nl.next_seq())
        with pytest.raises(rtnl.NetlinkError) as exc:
            nl.request(msg)
        assert exc.value.errno == errno.EINVAL


def test_einval_tunnel_with_remote(ns):
    name, nl = ns
    # at creation
    data = kf.ipip_fan_info_data("172.16.3.4", [FAN_A])
    data.append(rtnl.nla(kf.IFLA_IPTUN_REMOTE, IPv4Address("172.16.9.9").packed))
    msg = rtnl.newlink("p2p", "ipip", data, seq=nl.next_seq())
    with pytest.raises(rtnl.NetlinkError) as exc:
        nl.request(msg)
    assert exc.value.errno == errno.EINVAL
    # on an existing point-to-point tunnel, with or without its parameters
    ip(name, "link", "add", "p2p", "type", "ipip", "local", "172.16.3.4",
       "remote", "172.16.9.9")
    with pytest.raises(rtnl.NetlinkError) as exc:
        kf.add_map(nl, "p2p", *FAN_A)
    assert exc.value.errno == errno.EINVAL
    idx = rtnl.get_link(nl, "p2p").index
    with pytest.raises(rtnl.NetlinkError) as exc:
        nl.request(kf.changelink_fan(idx, "ipip", [FAN_A], seq=nl.next_seq()))
    assert exc.value.errno == errno.EINVAL
    assert kf.get_maps(nl, "p2p") == []


def test_einval_collect_md(ns):
    name, nl = ns
    ip(name, "link", "add", "md", "type", "ipip", "external")
    with pytest.raises(rtnl.NetlinkError) as exc:
        kf.add_map(nl, "md", *FAN_A)
    assert exc.value.errno == errno.EINVAL


def test_fallback_device_tunl0(ns):
    _, nl = ns
    kf.add_map(nl, "tunl0", *FAN_A)
    assert maps_of(nl, "tunl0") == ["250.0.0.0/8:172.16.0.0/16"]
    kf.flush_maps(nl, "tunl0")
    assert maps_of(nl, "tunl0") == []


def test_many_maps_fit_in_a_dump(ns):
    name, nl = ns
    want = [f"{o}.0.0.0/8:10.{o}.0.0/16" for o in range(1, 201) if o not in (10, 127)]
    kf.create_ipip_fan(nl, "fant", "172.16.3.4", want[:100])
    kf.change_maps(nl, "fant", want[100:])
    assert maps_of(nl, "fant") == want
    # a full dump (get_size must account for every map) and iproute2 still work
    out = ip(name, "-d", "link", "show", "dev", "fant").stdout
    assert "ipip" in out
    rtnl.delete_link(nl, "fant")
    assert "fant" not in ip(name, "-br", "link").stdout


def test_delete_namespace_with_fan_tunnels(net):
    name = net.netns("d")
    ip(name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    ip(name, "addr", "add", "172.16.3.4/16", "dev", "eth0")
    with rtnl.Rtnl(netns=name) as nl:
        for i in range(5):
            kf.create_ipip_fan(nl, f"fan{i}", "172.16.3.4" if i == 0 else f"172.16.3.{i + 10}",
                               [FAN_A, FAN_B], up=True)
    sh("ip", "netns", "del", name)
    net.namespaces.remove(name)


# --- datapath ------------------------------------------------------------------

@pytest.mark.parametrize("pair", [FAN_A, FAN_B], ids=["250/8-172.16/16", "100.64/10-10.224.220/24"])
def test_containers_ping_across_hosts(net, pair):
    fmap = FanMap.parse(*pair)
    hosts = [str(fmap.underlay.network_address + n) for n in (
        (0x0102, 0x0203, 0x0a0b) if fmap.underlay.prefixlen == 16 else (11, 12, 200))]
    fan = kutil.build_kernel_fan(net, *pair, hosts)
    kutil.ping_across(fan)
    # hosts reach other hosts' bridges (.1) over the fan too
    h0, h1 = fan.hosts[0], fan.hosts[1]
    gw1 = fmap.slice_for_host(h1.addr).network_address + 1
    assert ping(h0.ns, gw1, count=1)
    for h in fan.hosts:
        assert [str(m) for m in kf.get_maps(rtnl.Rtnl(netns=h.ns), "fant")] == [
            f"{fmap.overlay}:{fmap.underlay}"]


def test_unmapped_and_self_destinations_are_dropped(net):
    fan = kutil.build_kernel_fan(net, *FAN_A, ["172.16.1.2", "172.16.2.3"])
    h0 = fan.hosts[0]
    ip(h0.ns, "route", "add", "198.51.100.0/24", "dev", "fant")
    before = kutil.link_stats(h0.ns, "fant")["tx"]["errors"]
    assert not ping(h0.ns, "198.51.100.7", count=1, wait=1)   # no map
    ip(h0.ns, "route", "add", "250.1.2.128/25", "dev", "fant")
    assert not ping(h0.ns, "250.1.2.200", count=1, wait=1)    # maps to self
    after = kutil.link_stats(h0.ns, "fant")["tx"]["errors"]
    assert after >= before + 2


def _remote_pairs(seed: int, count: int):
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        uplen = rng.randint(8, 30)
        oplen = rng.randint(max(5, uplen - 24), uplen - 2)     # slice prefix <= 30
        overlay = kutil.random_overlay(rng, oplen)
        underlay = IPv4Network((rng.getrandbits(32), uplen), strict=False)
        first = int(underlay.network_address) >> 24
        if (underlay.overlaps(overlay) or underlay.overlaps(IPv4Network("192.0.2.0/24"))
                or first in (0, 127) or first >= 224):
            continue
        out.append(FanMap(overlay, underlay))
    return out


def test_outer_destination_matches_the_formula(net):
    """Random prefix pairs and addresses: the outer destination the kernel picks
    is fangen.fanmap's host_for_address (the formula)."""
    name = kutil.sender(net, "f")
    nl = rtnl.Rtnl(netns=name)
    kf.create_ipip_fan(nl, "fant", "192.0.2.1", up=True)
    cap = kutil.OuterCapture(name, "eth0")
    udp = socket_in(name, socket.AF_INET, socket.SOCK_DGRAM)
    rng = random.Random(4)
    checked = 0
    try:
        for fmap in _remote_pairs(7, 25):
            kf.change_maps(nl, "fant", [kf.FLUSH, fmap])
            ip(name, "route", "replace", str(fmap.overlay), "dev", "fant")
            for _ in range(4):
                addr = fmap.overlay.network_address + rng.randrange(fmap.overlay.num_addresses)
                want = fmap.host_for_address(addr)
                if want == IPv4Address("192.0.2.1") or addr == fmap.overlay.network_address:
                    continue
                cap.drain()
                udp.sendto(b"fan", (str(addr), 9))
                got = cap.outer(addr)
                assert got is not None, f"{fmap}: nothing sent for {addr}"
                assert got == (IPv4Address("192.0.2.1"), want), (str(fmap.overlay),
                                                                 str(fmap.underlay), str(addr))
                checked += 1
            ip(name, "route", "del", str(fmap.overlay), "dev", "fant")
    finally:
        cap.close()
        udp.close()
        nl.close()
    assert checked >= 60


def test_receive_from_any_underlay_host(net):
    """A fan tunnel (local, no remote) accepts IPIP from any sender, mapped or not."""
    fan = kutil.build_kernel_fan(net, *FAN_A, ["172.16.1.2", "172.16.2.3"])
    h0, h1 = fan.hosts
    # a third underlay host without a fan tunnel sends a hand-made IPIP packet
    u = fan.underlay_ns
    x = net.netns("x")
    plug(u, "px", x, "eth0", "172.16.77.77/16")
    raw = socket_in(x, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IPIP)
    c0_ns, c0_addr = h0.containers[0]
    rx = socket_in(c0_ns, socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("0.0.0.0", 4242))
    rx.settimeout(3)
    try:
        payload = b"hello-fan"
        inner = ipv4_udp("250.77.77.9", str(c0_addr), 5555, 4242, payload)
        for _ in range(3):
            raw.sendto(inner, (str(h0.addr), 0))
            try:
                data, src = rx.recvfrom(100)
                break
            except TimeoutError:
                time.sleep(0.2)
        else:
            pytest.fail("nothing received through the fan tunnel")
        assert data == payload and src[0] == "250.77.77.9"
    finally:
        raw.close()
        rx.close()
