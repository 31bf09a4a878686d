"""The VXLAN fan kernel patch (kernel/patches/0002-*), driven by fangen.datapath.kernelfan.

These tests run inside the qemu guest that ``make kernel-check`` boots (see
kernel/README.md); elsewhere they are skipped unless the running kernel has the
VXLAN fan (``/proc/sys/net/fan/vxlan`` reads 4) and we are root.

The hosts are set up as LXD does it: a fan bridge holding the overlay prefix
(bridge address .1 of the host's slice, with the *overlay* prefix length, so
the whole overlay is one L2 network), the VXLAN fan device (VNI = overlay >> 8,
dstport 0 = the kernel default 8472, local = the underlay address) a port of
it, and containers on the bridge.
"""

from __future__ import annotations

import errno
import json
import random
import socket
import struct
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network

import kutil
import pytest
from kutil import maps_of
from test_ipip_fan import BAD_MAPS, _remote_pairs

from fangen.datapath import kernelfan as kf
from fangen.datapath.encap import Encap
from fangen.datapath import rtnl
from fangen.fanmap import FanMap
from tests.harness.ns import ip, iproute_in, nsexec, ping, plug, sh, socket_in, switch_ns

pytestmark = [
    pytest.mark.skipif(not kf.present()["vxlan"], reason="kernel without the VXLAN fan"),
    pytest.mark.root,
]

FAN_A = ("250.0.0.0/8", "172.16.0.0/16")
FAN_B = ("100.64.0.0/10", "10.224.220.0/24")      # the kernel comment's non-/8 example
VXLAN_PORT = 8472
DEV = "fanvx"


def vni_of(overlay: str) -> int:
    """LXD's VNI: the overlay network address >> 8."""
    return int(IPv4Network(overlay).network_address) >> 8


def create(nl, maps=(FAN_A,), name=DEV, local="172.16.3.4", vni=0xFA0000, **kw) -> int:
    return kf.create_vxlan_fan(nl, name, vni, local, list(maps), dev="eth0", **kw)


def newlink_msg(nl, name: str, data: list[bytes]) -> bytes:
    return rtnl.newlink(name, "vxlan", data, seq=nl.next_seq())


IFLA_VXLAN_GROUP = 2
IFLA_VXLAN_COLLECT_METADATA = 25


# --- /proc -------------------------------------------------------------------

def test_proc_vxlan_in_every_namespace(net):
    assert kf.present() == {"ipip": True, "vxlan": True}
    with open("/proc/sys/net/fan/vxlan") as f:
        assert f.read().strip() == "4"
    with open("/proc/sys/net/fan/version") as f:        # the IPIP entry is still there
        assert f.read().strip() == "3"
    name = net.netns("p")
    assert nsexec(name, "cat", "/proc/sys/net/fan/vxlan").stdout.strip() == "4"
    with pytest.raises(PermissionError):
        with open("/proc/sys/net/fan/vxlan", "w") as f:
            f.write("5\n")


# --- netlink rules -------------------------------------------------------------

def test_create_and_read_back(ns):
    name, nl = ns
    idx = create(nl)
    link = rtnl.get_link(nl, DEV)
    assert link.index == idx and link.kind == "vxlan"
    assert link.data_attr(kf.IFLA_VXLAN_ID) == struct.pack("=I", 0xFA0000)
    assert link.data_attr(kf.IFLA_VXLAN_LOCAL) == IPv4Address("172.16.3.4").packed
    assert link.data_attr(IFLA_VXLAN_GROUP) is None
    # dstport 0 asks for the default: 8472
    assert link.data_attr(kf.IFLA_VXLAN_PORT) == struct.pack("!H", VXLAN_PORT)
    assert maps_of(nl, DEV) == ["250.0.0.0/8:172.16.0.0/16"]
    details = json.loads(ip(name, "-d", "-j", "link", "show", "dev", DEV).stdout)[0]
    assert details["linkinfo"]["info_kind"] == "vxlan"
    assert details["linkinfo"]["info_data"]["id"] == 0xFA0000
    # pyroute2 handles work too (the namespace of their socket is used)
    ipr = iproute_in(name)
    try:
        assert maps_of(ipr, DEV) == ["250.0.0.0/8:172.16.0.0/16"]
    finally:
        ipr.close()


def test_no_maps_no_attribute(ns):
    _, nl = ns
    create(nl, maps=(), name="plain")
    link = rtnl.get_link(nl, "plain")
    assert link.data_attr(kf.IFLA_VXLAN_FAN_MAP) is None
    assert kf.fan_maps(link) == []


def test_add_several_delete_flush(ns):
    _, nl = ns
    create(nl)
    kf.add_map(nl, DEV, *FAN_B)
    kf.add_map(nl, DEV, "10.128.0.0/9", "192.168.0.0/24")
    assert maps_of(nl, DEV) == ["250.0.0.0/8:172.16.0.0/16",
                                "100.64.0.0/10:10.224.220.0/24",
                                "10.128.0.0/9:192.168.0.0/24"]
    kf.delete_map(nl, DEV, "100.64.0.0/10")
    assert maps_of(nl, DEV) == ["250.0.0.0/8:172.16.0.0/16", "10.128.0.0/9:192.168.0.0/24"]
    with pytest.raises(rtnl.NetlinkError) as exc:
        kf.delete_map(nl, DEV, "100.64.0.0/10")
    assert exc.value.errno == errno.ENOENT
    kf.flush_maps(nl, DEV)
    assert maps_of(nl, DEV) == []
    assert rtnl.get_link(nl, DEV).data_attr(kf.IFLA_VXLAN_FAN_MAP) is None
    # several requests in one nest are applied in order: flush, then add two
    kf.change_maps(nl, DEV, [kf.FLUSH, FAN_B, FAN_A])
    assert maps_of(nl, DEV) == ["100.64.0.0/10:10.224.220.0/24", "250.0.0.0/8:172.16.0.0/16"]
    # a device created without maps takes them later
    create(nl, maps=(), name="later", local="172.16.3.5", vni=0xFA0001)
    kf.add_map(nl, "later", *FAN_A)
    assert maps_of(nl, "later") == ["250.0.0.0/8:172.16.0.0/16"]


def test_changes_keep_device_parameters(ns):
    _, nl = ns
    create(nl, mtu=1400)
    before = rtnl.get_link(nl, DEV)
    kf.add_map(nl, DEV, *FAN_B)
    kf.delete_map(nl, DEV, FAN_B[0])
    after = rtnl.get_link(nl, DEV)
    assert after.mtu == 1400
    assert {t: p for t, p in after.info_data if t != kf.IFLA_VXLAN_FAN_MAP} == \
        {t: p for t, p in before.info_data if t != kf.IFLA_VXLAN_FAN_MAP}
    assert maps_of(nl, DEV) == ["250.0.0.0/8:172.16.0.0/16"]


def test_eexist(ns):
    _, nl = ns
    create(nl)
    for overlay, underlay in (FAN_A, ("250.0.0.0/8", "10.0.0.0/16"),
                              ("250.1.0.0/16", "10.0.0.0/24"), ("248.0.0.0/5", "10.0.0.0/8")):
        with pytest.raises(rtnl.NetlinkError) as exc:
            kf.add_map(nl, DEV, overlay, underlay)
        assert exc.value.errno == errno.EEXIST, (overlay, underlay)
        assert "already mapped" in exc.value.extack
    assert maps_of(nl, DEV) == ["250.0.0.0/8:172.16.0.0/16"]


@pytest.mark.parametrize("bad", BAD_MAPS, ids=[str(m) for m in BAD_MAPS])
def test_einval_maps(ns, bad):
    name, nl = ns
    create(nl)
    with pytest.raises(rtnl.NetlinkError) as exc:
        kf.change_maps(nl, DEV, [bad])
    assert exc.value.errno == errno.EINVAL
    assert maps_of(nl, DEV) == ["250.0.0.0/8:172.16.0.0/16"]
    with pytest.raises(rtnl.NetlinkError) as exc:
        create(nl, maps=[bad], name="fanvx2", local="172.16.3.5", vni=0xFA0001)
    assert exc.value.errno == errno.EINVAL
    assert "fanvx2" not in ip(name, "-br", "link").stdout


def test_einval_malformed_child(ns):
    _, nl = ns
    idx = create(nl, maps=())
    for payload in (rtnl.nla(kf.IFLA_FAN_MAPPING, bytes(11)),
                    rtnl.nla(kf.IFLA_FAN_MAPPING, kf.pack_fan_map(FAN_A) + bytes(4)),
                    rtnl.nla(2, kf.pack_fan_map(FAN_A))):
        data = rtnl.nla(kf.IFLA_VXLAN_FAN_MAP | rtnl.NLA_F_NESTED, payload)
        msg = rtnl.changelink(idx, "vxlan", [data], seq=nl.next_seq())
        with pytest.raises(rtnl.NetlinkError) as exc:
            nl.request(msg)
        assert exc.value.errno == errno.EINVAL
    assert maps_of(nl, DEV) == []


def test_einval_device_with_remote_or_group(ns):
    name, nl = ns
    for remote in ("172.16.9.9", "239.1.1.1"):
        data = kf.vxlan_fan_info_data(0xFA0000, "172.16.3.4", [FAN_A])
        data.append(rtnl.nla(IFLA_VXLAN_GROUP, IPv4Address(remote).packed))
        with pytest.raises(rtnl.NetlinkError) as exc:
            nl.request(newlink_msg(nl, "p2p", data))
        assert exc.value.errno == errno.EINVAL, remote
    assert "p2p" not in ip(name, "-br", "link").stdout
    # an existing device with a remote takes no maps
    ip(name, "link", "add", "p2p", "type", "vxlan", "id", "7", "local", "172.16.3.4",
       "remote", "172.16.9.9", "dstport", "0")
    with pytest.raises(rtnl.NetlinkError) as exc:
        kf.add_map(nl, "p2p", *FAN_A)
    assert exc.value.errno == errno.EINVAL
    assert kf.get_maps(nl, "p2p") == []
    # and a fan device does not get a remote
    create(nl)
    idx = rtnl.get_link(nl, DEV).index
    msg = rtnl.changelink(idx, "vxlan", [rtnl.nla(IFLA_VXLAN_GROUP,
                                                 IPv4Address("172.16.9.9").packed)],
                          seq=nl.next_seq())
    with pytest.raises(rtnl.NetlinkError) as exc:
        nl.request(msg)
    assert exc.value.errno == errno.EINVAL
    assert rtnl.get_link(nl, DEV).data_attr(IFLA_VXLAN_GROUP) is None


def test_einval_without_local_or_external(ns):
    name, nl = ns
    data = [rtnl.nla(kf.IFLA_VXLAN_ID, struct.pack("=I", 0xFA0000)),
            kf.encode_vxlan_fan_map([FAN_A])]
    with pytest.raises(rtnl.NetlinkError) as exc:
        nl.request(newlink_msg(nl, "nolocal", data))
    assert exc.value.errno == errno.EINVAL
    assert "local" in exc.value.extack
    data = [rtnl.nla(IFLA_VXLAN_COLLECT_METADATA, b"\x01"), kf.encode_vxlan_fan_map([FAN_A])]
    with pytest.raises(rtnl.NetlinkError) as exc:
        nl.request(newlink_msg(nl, "md", data))
    assert exc.value.errno == errno.EINVAL
    ip(name, "link", "add", "md", "type", "vxlan", "external", "dstport", "4790")
    with pytest.raises(rtnl.NetlinkError) as exc:
        kf.add_map(nl, "md", *FAN_A)
    assert exc.value.errno == errno.EINVAL
    assert "nolocal" not in ip(name, "-br", "link").stdout


def test_many_maps_fit_in_a_dump(ns):
    name, nl = ns
    want = [f"{o}.0.0.0/8:10.{o}.0.0/16" for o in range(1, 201) if o not in (10, 127)]
    create(nl, maps=want[:100])
    kf.change_maps(nl, DEV, want[100:])
    assert maps_of(nl, DEV) == want
    out = ip(name, "-d", "link", "show", "dev", DEV).stdout
    assert "vxlan" in out
    rtnl.delete_link(nl, DEV)
    assert DEV not in ip(name, "-br", "link").stdout


def test_delete_namespace_with_fan_devices(net):
    name = net.netns("d")
    ip(name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    ip(name, "addr", "add", "172.16.3.4/16", "dev", "eth0")
    with rtnl.Rtnl(netns=name) as nl:
        for i in range(4):
            kf.create_vxlan_fan(nl, f"fan{i}", 100 + i, f"172.16.3.{i + 4}", [FAN_A, FAN_B],
                                up=True)
    sh("ip", "netns", "del", name)
    net.namespaces.remove(name)


# --- datapath ------------------------------------------------------------------

@dataclass
class VxHost:
    ns: str
    addr: IPv4Address
    gw: IPv4Address
    containers: list = field(default_factory=list)     # [(ns, addr, mac)]


def _mac(ns: str, dev: str) -> str:
    return json.loads(ip(ns, "-j", "link", "show", "dev", dev).stdout)[0]["address"]


def build_vxlan_fan(net, overlay: str, underlay: str, host_addrs: list[str],
                    upstream_hosts: tuple = (),
                    plain: bool = True) -> tuple[FanMap, str, list[VxHost]]:
    """LXD-style VXLAN fan hosts on one underlay bridge, one container each.

    Hosts whose index is in ``upstream_hosts`` use fangen's upstream datapath instead of
    the kernel fan: a plain VXLAN device (the fan's VNI, no remote) whose tc programs
    encapsulate every frame, or with ``plain=False`` a collect-metadata device (what
    dual-stack and multi-homed fans get).
    """
    fmap = FanMap.parse(overlay, underlay)
    vni = vni_of(overlay)
    u = switch_ns(net, "u")
    hosts = []
    for i, addr in enumerate(host_addrs):
        h = net.netns(f"h{i}")
        plug(u, f"p{i}", h, "eth0", f"{addr}/{fmap.underlay.prefixlen}")
        sl = fmap.slice_for_host(addr)
        gw = sl.network_address + 1
        ip(h, "link", "add", "fanbr", "type", "bridge")
        ip(h, "addr", "add", f"{gw}/{fmap.overlay.prefixlen}", "dev", "fanbr")
        if i in upstream_hosts:
            from fangen.datapath import fanprog, upstream
            kind = ["id", str(vni)] if plain else ["external"]
            ip(h, "link", "add", DEV, "mtu", "1450", "type", "vxlan", *kind,
               "dstport", str(VXLAN_PORT), "nolearning")
            params = fanprog.FanParams.for_host(fmap, addr, "vxlan")
            assert params.vni == vni
            # as fangen attaches them: IPv4 encapsulated by the program itself
            eth0 = json.loads(ip(h, "-j", "link", "show", "eth0").stdout)[0]["ifindex"]
            params = replace(params, encap=Encap(IPv4Address(addr), eth0, VXLAN_PORT,
                                                 fmap.underlay), plain=plain)
            ipr = iproute_in(h)
            try:
                upstream.attach(ipr, ipr.link_lookup(ifname=DEV)[0], params)
            finally:
                ipr.close()
        else:
            with rtnl.Rtnl(netns=h) as nl:
                kf.create_vxlan_fan(nl, DEV, vni, addr, [fmap], dev="eth0")
        ip(h, "link", "set", DEV, "master", "fanbr")
        ip(h, "link", "set", DEV, "up")
        ip(h, "link", "set", "fanbr", "up")
        c = net.netns(f"c{i}")
        ip(h, "link", "add", "c0", "type", "veth", "peer", "name", "eth0", "netns", c)
        ip(h, "link", "set", "c0", "master", "fanbr", "up")
        caddr = gw + 1
        ip(c, "addr", "add", f"{caddr}/{fmap.overlay.prefixlen}", "dev", "eth0")
        ip(c, "link", "set", "eth0", "mtu", "1450", "up")
        ip(c, "route", "add", "default", "via", str(gw))
        hosts.append(VxHost(h, IPv4Address(addr), gw, [(c, caddr, _mac(c, "eth0"))]))
    return fmap, u, hosts


def _neigh(ns: str, addr) -> dict | None:
    for n in json.loads(ip(ns, "-j", "neigh", "show", "dev", "eth0").stdout):
        if n.get("dst") == str(addr):
            return n
    return None


def _ping_all(hosts):
    for a in hosts:
        for b in hosts:
            if a is b:
                continue
            (c_ns, _, _), (_, c_addr, c_mac) = a.containers[0], b.containers[0]
            assert ping(c_ns, c_addr, count=2), f"{a.addr} -> {c_addr}"
            # ARP resolved across the fan: the peer container's own MAC
            n = _neigh(c_ns, c_addr)
            assert n is not None and n.get("lladdr") == c_mac, (str(c_addr), n)


@pytest.mark.parametrize("pair", [FAN_A, FAN_B], ids=["250/8-172.16/16", "100.64/10-10.224.220/24"])
def test_containers_ping_across_hosts(net, pair):
    fmap = FanMap.parse(*pair)
    addrs = [str(fmap.underlay.network_address + n) for n in (
        (0x0102, 0x0203, 0x0a0b) if fmap.underlay.prefixlen == 16 else (11, 12, 200))]
    _, _, hosts = build_vxlan_fan(net, *pair, addrs)
    _ping_all(hosts)
    # a host reaches another host's bridge (.1) and container over the fan too
    assert ping(hosts[0].ns, hosts[1].gw, count=1)
    assert ping(hosts[0].ns, hosts[2].containers[0][1], count=1)
    for h in hosts:
        with rtnl.Rtnl(netns=h.ns) as nl:
            assert maps_of(nl, DEV) == [f"{fmap.overlay}:{fmap.underlay}"]


def test_two_hosts_ping(net):
    _, _, hosts = build_vxlan_fan(net, *FAN_A, ["172.16.1.2", "172.16.200.3"])
    _ping_all(hosts)


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "metadata"])
def test_kernel_fan_hosts_and_upstream_host_talk(net, plain):
    """Differential / wire compatibility: hosts 0 and 2 use the kernel VXLAN fan,
    host 1 fangen's upstream datapath (a plain VXLAN device whose programs encapsulate
    every frame, ARP included; or a collect-metadata device, IPv4 encapsulated by the
    program and ARP by the device), same VNI and port."""
    _, _, hosts = build_vxlan_fan(net, *FAN_A, ["172.16.1.2", "172.16.2.3", "172.16.3.4"],
                                  upstream_hosts=(1,), plain=plain)
    _ping_all(hosts)


class VxlanCapture(kutil.OuterCapture):
    """VXLAN datagrams leaving ``dev`` in ``ns``, read from a packet socket."""

    def frames(self, tries: int = 30):
        """(outer dst, udp dport, vni, inner ethertype, inner target) per datagram."""
        for _ in range(tries):
            try:
                frame, (_dev, _proto, pkttype, *_rest) = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            if pkttype != socket.PACKET_OUTGOING or frame[12:14] != b"\x08\x00":
                continue
            outer = frame[14:]
            ihl = (outer[0] & 0xF) * 4
            if outer[9] != 17:
                continue
            udp = outer[ihl:]
            dport = struct.unpack("!H", udp[2:4])[0]
            vxh = udp[8:16]
            vni = int.from_bytes(vxh[4:7], "big")
            inner = udp[16:]
            etype = inner[12:14]
            if etype == b"\x08\x00":
                target = IPv4Address(inner[14 + 16:14 + 20])
            elif etype == b"\x08\x06":
                target = IPv4Address(inner[14 + 24:14 + 28])
            else:
                target = None
            yield IPv4Address(outer[16:20]), dport, vni, etype, target

    def first_for(self, target: IPv4Address, etype: bytes):
        for got in self.frames():
            if got[3] == etype and got[4] == target:
                return got
        return None


def test_outer_header_matches_the_formula(net):
    """Random prefix pairs: the outer destination of IPv4 frames and of ARP requests is
    fanmap's host_for_address, the port 8472, the VNI the device's."""
    name = kutil.sender(net, "f")
    nl = rtnl.Rtnl(netns=name)
    vni = 0x123456
    kf.create_vxlan_fan(nl, DEV, vni, "192.0.2.1", [], up=True)
    cap = VxlanCapture(name, "eth0")
    udp = socket_in(name, socket.AF_INET, socket.SOCK_DGRAM)
    rng = random.Random(5)
    checked = {b"\x08\x00": 0, b"\x08\x06": 0}
    try:
        for fmap in _remote_pairs(9, 16):
            kf.change_maps(nl, DEV, [kf.FLUSH, fmap])
            ip(name, "route", "replace", str(fmap.overlay), "dev", DEV)
            for k in range(4):
                addr = fmap.overlay.network_address + rng.randrange(fmap.overlay.num_addresses)
                want = fmap.host_for_address(addr)
                if (want == IPv4Address("192.0.2.1") or addr in (
                        fmap.overlay.network_address, fmap.overlay.broadcast_address)):
                    continue
                arp = k % 2 == 0          # no neighbour: an ARP request goes out first
                if not arp:
                    ip(name, "neigh", "replace", str(addr), "lladdr", "02:00:00:00:00:01",
                       "dev", DEV, "nud", "permanent")
                etype = b"\x08\x06" if arp else b"\x08\x00"
                cap.drain()
                udp.sendto(b"fan", (str(addr), 9))
                got = cap.first_for(addr, etype)
                assert got is not None, f"{fmap}: nothing sent for {addr} ({etype.hex()})"
                assert got[:3] == (want, VXLAN_PORT, vni), (str(fmap), str(addr), got)
                checked[etype] += 1
            ip(name, "route", "del", str(fmap.overlay), "dev", DEV)
            ip(name, "neigh", "flush", "dev", DEV)
    finally:
        cap.close()
        udp.close()
        nl.close()
    assert checked[b"\x08\x00"] >= 12 and checked[b"\x08\x06"] >= 12, checked


def test_unmapped_and_self_destinations_are_dropped(net):
    _, _, hosts = build_vxlan_fan(net, *FAN_A, ["172.16.1.2", "172.16.2.3"])
    h0 = hosts[0]
    cap = VxlanCapture(h0.ns, "eth0")
    try:
        ip(h0.ns, "route", "add", "198.51.100.0/24", "dev", "fanbr")
        before = kutil.link_stats(h0.ns, DEV)["tx"]["errors"]
        cap.drain()
        # no map: the ARP request for 198.51.100.7 is dropped by the fan device
        assert not ping(h0.ns, "198.51.100.7", count=1, wait=1)
        # our own slice: an absent local container is not looked for elsewhere
        assert not ping(h0.ns, "250.1.2.200", count=1, wait=1)
        after = kutil.link_stats(h0.ns, DEV)["tx"]["errors"]
        assert after >= before + 2
        sent = [g for g in cap.frames(tries=10)
                if g[4] in (IPv4Address("198.51.100.7"), IPv4Address("250.1.2.200"))]
        assert sent == []
    finally:
        cap.close()


def _next_hops(cap: VxlanCapture, tries: int = 30):
    """(outer dst, Ethernet destination) of the VXLAN datagrams leaving."""
    for _ in range(tries):
        try:
            frame, (_dev, _proto, pkttype, *_rest) = cap.sock.recvfrom(65536)
        except TimeoutError:
            continue
        if (pkttype == socket.PACKET_OUTGOING and frame[12:14] == b"\x08\x00"
                and frame[14 + 9] == 17):
            yield IPv4Address(frame[14 + 16:14 + 20]), frame[0:6].hex(":")


def test_cached_routes_follow_the_routing_table(net):
    """The fan device caches its routes to remotes in 16 slots shared by hash: with 40
    remotes, each behind its own gateway, every datagram still leaves for its remote's
    gateway in any order of sending (a slot held by another remote is never used), and a
    changed route is followed at the next datagram (no stale cached route)."""
    name = kutil.sender(net, "f")
    fmap = FanMap.parse("250.0.0.0/8", "192.0.0.0/16")
    remotes = [IPv4Address(f"192.0.{10 + i}.7") for i in range(40)]
    overlay = [IPv4Address(f"250.{10 + i}.7.9") for i in range(40)]
    gw_mac = [f"02:00:00:00:01:{i:02x}" for i in range(41)]
    with rtnl.Rtnl(netns=name) as nl:
        kf.create_vxlan_fan(nl, DEV, 0xFA0000, "192.0.2.1", [fmap], up=True)
    ip(name, "route", "add", str(fmap.overlay), "dev", DEV)
    for i, (remote, addr) in enumerate(zip(remotes, overlay)):
        assert fmap.host_for_address(addr) == remote
        ip(name, "neigh", "add", f"192.0.2.{100 + i}", "lladdr", gw_mac[i], "dev", "eth0",
           "nud", "permanent")
        ip(name, "route", "add", f"{remote}/32", "via", f"192.0.2.{100 + i}", "dev", "eth0")
        ip(name, "neigh", "add", str(addr), "lladdr", "02:00:00:00:00:01", "dev", DEV,
           "nud", "permanent")
    ip(name, "neigh", "add", "192.0.2.140", "lladdr", gw_mac[40], "dev", "eth0",
       "nud", "permanent")
    cap = VxlanCapture(name, "eth0")
    udp = socket_in(name, socket.AF_INET, socket.SOCK_DGRAM)

    def sent_to(i: int) -> tuple:
        cap.drain()
        udp.sendto(b"fan", (str(overlay[i]), 9))
        return next(_next_hops(cap), None)

    try:
        order = list(range(40)) * 2 + list(reversed(range(40)))
        random.Random(13).shuffle(order)
        for i in list(range(40)) + order:
            assert sent_to(i) == (remotes[i], gw_mac[i]), (i, str(remotes[i]))
        # a route that changes under a cached one
        for i in (0, 17, 39):
            assert sent_to(i) == (remotes[i], gw_mac[i])
            ip(name, "route", "replace", f"{remotes[i]}/32", "via", "192.0.2.140", "dev", "eth0")
            assert sent_to(i) == (remotes[i], gw_mac[40]), i
        # and one that goes away: the default route's gateway takes it
        ip(name, "route", "del", f"{remotes[5]}/32")
        assert sent_to(5) == (remotes[5], "02:00:00:00:00:fe")
        assert sent_to(6) == (remotes[6], gw_mac[6])
    finally:
        cap.close()
        udp.close()
