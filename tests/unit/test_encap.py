"""fangen.datapath.encap: the egress program's own VXLAN encapsulation, in the kernel.

Needs root: the fan's egress program is loaded with bpf(2) (the verifier checks it)
and run with BPF_PROG_TEST_RUN on synthetic frames, which returns the packet as the
program left it and the verdict (TC_ACT_REDIRECT: handed to the underlay interface;
a test run does not carry the redirect out).  tests/netns/test_upstream_datapath.py
sends real traffic through it.
"""

from __future__ import annotations

import errno
import os
import random
import struct
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from fangen.datapath import bpf, fanprog, upstream
from fangen.datapath.encap import Encap
from fangen.datapath.fanprog import FanParams, egress_decision
from fangen.fanmap import FanMap
from tests.harness import packets

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root: programs are loaded with bpf(2)")

TC_ACT_REDIRECT = bpf.TC_ACT_REDIRECT
NEXT = bpf.TC_ACT_UNSPEC & 0xFFFFFFFF
FMAP = FanMap.parse("250.0.0.0/8", "172.16.0.0/16")
HOST = IPv4Address("172.16.1.2")


def params(port: int = 8472, connected: str = "172.16.0.0/16", ttl: int = 64) -> FanParams:
    p = FanParams.for_host(FMAP, HOST, "vxlan", ttl=ttl)
    return replace(p, encap=Encap(HOST, 1, port, IPv4Network(connected)))


def frame(dst, tos: int = 0, sport: int = 40000) -> bytes:
    ip = bytearray(packets.ipv4("250.1.2.10", str(dst), packets.udp(sport, 53, b"fan")))
    ip[1] = tos
    ip[10:12] = b"\0\0"
    ip[10:12] = struct.pack("!H", packets.checksum(bytes(ip[:20])))
    return packets.ethernet(packets.ETH_P_IP, bytes(ip), dst="02:00:00:00:00:02")


@pytest.fixture
def load():
    fds = []

    def go(p: FanParams):
        fd = bpf.prog_load(bpf.assemble(fanprog.egress(p)), name=fanprog.program_name(p, "egress"))
        fds.append(fd)
        return lambda data: bpf.prog_test_run(fd, data)

    yield go
    for fd in fds:
        os.close(fd)


def outer(data: bytes) -> dict:
    ip, udp, vx = data[14:34], data[34:42], data[42:50]
    return {"ethertype": data[12:14], "ver_ihl": ip[0], "tos": ip[1],
            "tot_len": struct.unpack("!H", ip[2:4])[0], "id_frag": ip[4:8], "ttl": ip[8],
            "proto": ip[9], "csum_ok": packets.checksum(ip) == 0,
            "src": IPv4Address(ip[12:16]), "dst": IPv4Address(ip[16:20]),
            "sport": struct.unpack("!H", udp[0:2])[0], "dport": struct.unpack("!H", udp[2:4])[0],
            "udp_len": struct.unpack("!H", udp[4:6])[0], "udp_csum": udp[6:8],
            "vxlan": vx, "inner": data[50:]}


def test_ipv4_is_encapsulated_for_the_remote_the_formula_gives(load):
    run = load(params())
    rng = random.Random(7)
    sent = 0
    for _ in range(200):
        dst = FMAP.overlay.network_address + rng.randrange(FMAP.overlay.num_addresses)
        decision, remote = egress_decision(params(), dst)
        res = run(frame(dst))
        if decision != "pass":
            assert res.retval == (NEXT if decision == "next" else bpf.TC_ACT_SHOT)
            continue
        f = frame(dst)
        o = outer(res.data)
        assert res.retval == TC_ACT_REDIRECT, dst
        assert len(res.data) == len(f) + 50
        assert o["ethertype"] == b"\x08\x00" and o["ver_ihl"] == 0x45 and o["csum_ok"]
        assert o["tot_len"] == len(f) + 36 and o["udp_len"] == len(f) + 16
        assert (o["id_frag"], o["ttl"], o["proto"], o["tos"]) == (bytes(4), 64, 17, 0)
        assert (o["src"], o["dst"]) == (HOST, remote)
        assert 49152 <= o["sport"] <= 65535 and o["dport"] == 8472
        assert o["udp_csum"] == b"\0\0"                      # as a hand-built VXLAN device
        assert o["vxlan"] == struct.pack("!II", 0x08000000, params().vni << 8)
        assert o["inner"] == f                                 # the frame, untouched
        sent += 1
    assert sent > 150


def test_the_source_port_follows_the_flow(load):
    run = load(params())
    dst = IPv4Address("250.9.9.9")
    ports = {run(frame(dst, sport=40000 + n)).data[34:36] for n in range(32)}
    assert len(ports) > 8                           # entropy for the underlay's ECMP
    same = {run(frame(dst, sport=40000)).data[34:36] for _ in range(5)}
    assert len(same) == 1                           # one flow, one path


@pytest.mark.parametrize("tos, want", [(0, 0), (1, 1), (2, 2), (3, 2), (0xB8, 0), (0xBB, 2)])
def test_ecn_is_copied_and_ce_sent_as_ect0(load, tos, want):
    # what the kernel's tunnels do (INET_ECN_encapsulate); the DSCP is not copied
    res = load(params())(frame("250.9.9.9", tos=tos))
    o = outer(res.data)
    assert res.retval == TC_ACT_REDIRECT and o["tos"] == want and o["csum_ok"]


def test_port_ttl_and_a_remote_outside_the_connected_prefix(load):
    run = load(params(port=4789, connected="172.16.1.0/24", ttl=5))
    res = run(frame("250.1.9.9"))                   # 172.16.1.9: on the segment
    o = outer(res.data)
    assert res.retval == TC_ACT_REDIRECT
    assert (o["dport"], o["ttl"], o["dst"], o["csum_ok"]) == (4789, 5, IPv4Address("172.16.1.9"),
                                                             True)
    # 172.16.9.9 is behind a router: the tunnel key, and the kernel routes it
    res = run(frame("250.9.9.9"))
    assert (res.retval, res.data) == (bpf.TC_ACT_OK, frame("250.9.9.9"))


def test_arp_and_ipv6_keep_the_tunnel_key_and_the_rest_its_verdict(load):
    run = load(params())
    arp = packets.arp("250.1.2.10", "250.9.9.9")
    res = run(arp)
    assert (res.retval, res.data) == (bpf.TC_ACT_OK, arp)
    six = packets.ethernet(packets.ETH_P_IPV6, packets.ipv6("fd00::1", "fd00::2", bytes(8)))
    assert run(six).retval == NEXT                  # not a dual-stack fan: not ours
    assert run(frame("250.1.2.99")).retval == bpf.TC_ACT_SHOT     # our own slice
    assert run(frame("10.1.2.3")).retval == NEXT                  # not the overlay


def test_encap_parameters_are_checked():
    for bad in ({"ifindex": 0}, {"ifindex": 1 << 31}, {"port": -1}, {"port": 65536}):
        with pytest.raises(ValueError):
            Encap(**{"local": HOST, "ifindex": 1, "port": 8472, "connected": FMAP.underlay,
                     **bad})
    with pytest.raises(ValueError, match="UDP port"):          # VXLAN needs one, IPIP not
        replace(FanParams.for_host(FMAP, HOST, "vxlan"), encap=Encap(HOST, 1, 0, FMAP.underlay))
    replace(FanParams.for_host(FMAP, HOST, "ipip"), encap=Encap(HOST, 1, 0, FMAP.underlay))
    assert fanprog.program_name(params(), "egress") == "fan_vx_encap"
    assert fanprog.program_name(params(), "ingress") == "fan_vx_in"


def test_ipip_encapsulation_loads_and_leaves_other_remotes_the_key(load):
    # what it writes needs a real IPIP device (a test run hands the program an
    # Ethernet frame, an L3 tunnel does not): tests/netns/test_upstream_datapath.py
    p = replace(FanParams.for_host(FMAP, HOST, "ipip"),
                encap=Encap(HOST, 1, 0, IPv4Network("172.16.1.0/24")))
    assert fanprog.program_name(p, "egress") == "fan_ip_encap"
    run = load(p)
    inner = packets.ipv4("250.1.2.10", "250.9.9.9", packets.udp(1, 2, b"x"))
    assert (run(inner).retval, run(inner).data) == (bpf.TC_ACT_OK, inner)   # 172.16.9.9
    assert run(packets.ipv4("250.1.2.10", "250.1.2.99")).retval == bpf.TC_ACT_SHOT


def test_a_kernel_that_refuses_it_gets_the_tunnel_key(monkeypatch):
    # a stand-in for a kernel older than bpf_redirect_neigh's next hop (5.11), which
    # this machine is not: the verifier's refusal, for the encapsulating program only
    real = bpf.prog_load

    def old_kernel(code, *, name="", **kw):
        if name == "fan_vx_encap":
            raise bpf.BPFError(errno.EINVAL, "unknown func bpf_redirect_neigh#152")
        return real(code, name=name, **kw)

    monkeypatch.setattr(bpf, "prog_load", old_kernel)
    fd, loaded = upstream._load(params(), "egress")
    try:
        assert loaded.encap is None and loaded == replace(params(), encap=None)
        res = bpf.prog_test_run(fd, frame("250.9.9.9"))
        assert (res.retval, res.data) == (bpf.TC_ACT_OK, frame("250.9.9.9"))
    finally:
        os.close(fd)


# ---------------------------------------------------------------- a plain device


def plain(connected: str = "172.16.1.0/24") -> FanParams:
    return replace(params(connected=connected), plain=True)


def test_plain_arp_is_encapsulated_as_it_is_for_the_target_address(load):
    # a plain VXLAN device sends nothing by itself: ARP too leaves the program
    # encapsulated (bpf_skb_change_head, skb->protocol set by VLAN push/pop)
    run = load(plain())
    for target, remote in (("250.1.9.9", "172.16.1.9"), ("250.9.9.9", "172.16.9.9")):
        arp = packets.arp("250.1.2.10", target)
        res = run(arp)
        o = outer(res.data)
        assert res.retval == TC_ACT_REDIRECT, target       # on the segment, or routed
        assert (o["ethertype"], o["proto"], o["dport"], o["ttl"], o["tos"]) == \
            (b"\x08\x00", 17, 8472, 64, 0)
        assert (o["src"], o["dst"], o["csum_ok"]) == (HOST, IPv4Address(remote), True)
        assert o["tot_len"] == len(res.data) - 14 and o["udp_len"] == o["tot_len"] - 20
        assert o["id_frag"] == bytes(4) and o["udp_csum"] == bytes(2)
        assert o["vxlan"] == b"\x08\x00\x00\x00" + params().vni.to_bytes(3, "big") + b"\x00"
        assert o["inner"] == arp                          # the frame, Ethernet and all


def test_plain_ipv4_is_encapsulated_also_behind_a_router(load):
    run = load(plain())
    for dst, remote in (("250.1.9.9", "172.16.1.9"), ("250.9.9.9", "172.16.9.9")):
        res = run(frame(dst))
        o = outer(res.data)
        assert res.retval == TC_ACT_REDIRECT, dst
        assert (o["dst"], o["csum_ok"], o["inner"]) == (IPv4Address(remote), True, frame(dst))


def test_plain_keeps_the_decisions_and_drops_what_it_cannot_send(load):
    run = load(plain())
    assert run(frame("250.1.2.99")).retval == bpf.TC_ACT_SHOT     # our own slice
    assert run(frame("10.1.2.3")).retval == NEXT                  # not the overlay
    six = packets.ethernet(packets.ETH_P_IPV6, packets.ipv6("fd00::1", "fd00::2", bytes(8)))
    assert run(six).retval == NEXT                                 # (the final filter drops)
    assert run(packets.arp("250.1.2.10", "10.9.9.9")).retval == NEXT
    assert fanprog.program_name(plain(), "egress") == "fan_vx_plain"


def test_plain_ingress_passes_what_the_device_took_in():
    # the device takes in only the fan's VNI and shows no tunnel key; the sender is
    # checked by the fan's nft rule (fangen.render.nft any_address)
    fd = bpf.prog_load(bpf.assemble(fanprog.ingress(plain())), name="fan_vx_in")
    try:
        assert bpf.prog_test_run(fd, frame("250.1.2.10")).retval == bpf.TC_ACT_OK
    finally:
        os.close(fd)


def test_plain_needs_a_vxlan_fan_that_encapsulates_and_no_overlay6():
    from ipaddress import IPv6Network
    for bad in (FanParams.for_host(FMAP, HOST, "vxlan"),           # no encapsulation
                replace(FanParams.for_host(FMAP, HOST, "ipip"),
                        encap=Encap(HOST, 1, 0, FMAP.underlay))):
        with pytest.raises(ValueError, match="plain"):
            replace(bad, plain=True)
    with pytest.raises(ValueError, match="plain"):
        replace(plain(), overlay6=IPv6Network("fd5a::/48"))


def test_a_kernel_that_refuses_the_plain_programs_is_told_so(monkeypatch):
    # no silent fallback to the tunnel key: a plain device would send nothing
    def refuse(code, *, name="", **kw):
        raise bpf.BPFError(errno.EINVAL, "unknown func bpf_skb_vlan_push#18")

    monkeypatch.setattr(bpf, "prog_load", refuse)
    with pytest.raises(bpf.BPFError):
        upstream._load(plain(), "egress")
    monkeypatch.setattr(upstream, "_PLAIN", [])
    assert upstream.plain_supported() is False
    monkeypatch.setattr(upstream, "_PLAIN", [])
    monkeypatch.undo()
    assert upstream.plain_supported() is True                  # this machine's kernel


def test_without_permission_to_load_the_kernel_version_answers(monkeypatch):
    # up --dry-run as a user: bpf(2) says EPERM, so the plan shows what root would get
    def denied(code, *, name="", **kw):
        raise bpf.BPFError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(bpf, "prog_load", denied)
    monkeypatch.setattr(upstream, "_PLAIN", [])
    assert upstream.plain_supported() is (upstream._release_at_least(5, 11))
    assert upstream._release_at_least(5, 11, "6.1.0-28-amd64")
    assert upstream._release_at_least(5, 11, "5.11.0")
    assert not upstream._release_at_least(5, 11, "5.10.209-1")
    assert not upstream._release_at_least(5, 11, "odd")
