"""fangen.datapath.fanprog6: IPv6 in the VXLAN egress program, checked in the kernel.

Root: loaded with bpf(2) and run with BPF_PROG_TEST_RUN on synthetic frames, with
``trace_mark`` (the chosen remote lands in skb->mark).  Neighbour solicitations are
mapped by their target, other multicast stays local (next filter), the own slice
never leaves, and random addresses agree with fangen.fanmap.FanMap6.
"""

from __future__ import annotations

import random
import struct
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from fangen.datapath import bpf
from fangen.datapath.fanprog import FanParams
from fangen.datapath.fanprog6 import Params6, egress_decision6
from fangen.fanmap import FanMap, FanMapError
from tests.harness import packets
from tests.unit.test_fanprog import NEXT, SENTINEL, eth, ipv4, loaded  # noqa: F401

OVERLAY6 = IPv6Network("fd5a:fa00::/48")
FMAP = FanMap(IPv4Network("250.0.0.0/8"), IPv4Network("172.16.0.0/16"))
HOST = IPv4Address("172.16.3.4")


def params(fmap=FMAP, host=HOST, overlay6=OVERLAY6, vni=4242) -> FanParams:
    return FanParams(fmap.overlay, fmap.underlay, fmap.slice_for_host(host), vni,
                     "vxlan", overlay6=overlay6)


def icmp6(src, dst, icmp_type, body=b"") -> bytes:
    return packets.ethernet(packets.ETH_P_IPV6, packets.ipv6(
        src, dst, struct.pack("!BBHI", icmp_type, 0, 0, 0) + body, next_header=58,
        hop_limit=255))


def ns(target, src="fd5a:fa00:0:304::1") -> bytes:
    """A neighbour solicitation for ``target``, to its solicited-node address."""
    low = IPv6Address(target).packed[-3:]
    dst = IPv6Address(b"\xff\x02" + bytes(9) + b"\x01\xff" + low)
    return icmp6(src, dst, 135, IPv6Address(target).packed + b"\x01\x01" + bytes(6))


def udp6(dst, src="fd5a:fa00:0:304::99") -> bytes:
    return packets.ethernet(packets.ETH_P_IPV6, packets.ipv6(src, dst, bytes(8)))


def test_params_derive_the_own_ipv6_slice():
    assert Params6.of(params()).own_slice6 == IPv6Network("fd5a:fa00:0:304::/64")
    assert Params6.of(FanParams(FMAP.overlay, FMAP.underlay, FMAP.slice_for_host(HOST), 1)) \
        is None
    with pytest.raises(FanMapError, match="is not /64"):
        Params6.of(params(overlay6=IPv6Network("fd5a::/40")))


def test_reference_decisions():
    p6 = Params6.of(params())
    assert egress_decision6(p6, "fd5a:fa00:0:607::8") == ("pass", IPv4Address("172.16.6.7"))
    assert egress_decision6(p6, "fd5a:fa00:0:304::8") == ("drop", None)
    assert egress_decision6(p6, "fd5a:fa00:0:0::8") == ("drop", None)          # 172.16.0.0
    assert egress_decision6(p6, "fd5a:fa00:0:ffff::8") == ("drop", None)       # broadcast
    assert egress_decision6(p6, "ff02::1") == ("next", None)
    assert egress_decision6(p6, "fe80::fa:0:0:607") == ("pass", IPv4Address("172.16.6.7"))
    assert egress_decision6(p6, "fe80::fa:0:0:304") == ("drop", None)
    assert egress_decision6(p6, "fe80::fa:0:1:304") == ("next", None)
    assert egress_decision6(p6, "fe80::1") == ("next", None)


def test_unicast_and_solicitations_go_to_the_owner(loaded):
    prog = loaded(params())
    remote = int(IPv4Address("172.16.6.7"))
    assert prog.run(udp6("fd5a:fa00:0:607::8")) == (bpf.TC_ACT_OK, remote)
    assert prog.run(ns("fd5a:fa00:0:607::8")) == (bpf.TC_ACT_OK, remote)
    # an NS sent unicast (reachability probe) still goes by its target
    assert prog.run(icmp6("fd5a:fa00:0:304::1", "fd5a:fa00:0:607::8", 135,
                          IPv6Address("fd5a:fa00:0:607::8").packed)) == (bpf.TC_ACT_OK, remote)
    # a neighbour advertisement and an echo reply go by the destination
    assert prog.run(icmp6("fd5a:fa00:0:304::1", "fd5a:fa00:0:909::5", 136)) == \
        (bpf.TC_ACT_OK, int(IPv4Address("172.16.9.9")))
    assert prog.run(icmp6("fd5a:fa00:0:304::1", "fd5a:fa00:0:909::5", 129)) == \
        (bpf.TC_ACT_OK, int(IPv4Address("172.16.9.9")))


def test_fan_bridge_link_local_addresses_go_to_their_host(loaded):
    """fe80::fa:0:H:H carries the host bits: the answer to a solicitation a host sent
    from its bridge (forwarding into another slice) goes back to that host."""
    prog = loaded(params())
    remote = int(IPv4Address("172.16.6.7"))
    na = icmp6("fd5a:fa00:0:909::5", "fe80::fa:0:0:607", 136,
               IPv6Address("fd5a:fa00:0:909::5").packed)
    assert prog.run(na) == (bpf.TC_ACT_OK, remote)
    assert prog.run(ns("fe80::fa:0:0:607")) == (bpf.TC_ACT_OK, remote)     # NUD of it
    for own in (udp6("fe80::fa:0:0:304"), ns("fe80::fa:0:0:304", src="::")):
        assert prog.run(own) == (bpf.TC_ACT_SHOT, SENTINEL)
    for other in ("fe80::fa:0:1:0",            # host bits beyond a /16 underlay's
                  "fe80::fb:0:0:607", "fe81::fa:0:0:607"):
        assert prog.run(udp6(other)) == (NEXT, SENTINEL), other
    assert prog.run(udp6("fe80::fa:0:0:0")) == (bpf.TC_ACT_SHOT, SENTINEL)   # network


def test_multicast_link_local_and_outside_stay_local(loaded):
    prog = loaded(params())
    for frame in (icmp6("fe80::1", "ff02::1", 134),                  # router advertisement
                  icmp6("fe80::1", "ff02::2", 133),                  # router solicitation
                  icmp6("fe80::1", "ff02::16", 143),                 # MLDv2 report
                  ns("fe80::99", src="::"),                         # DAD of a link-local
                  udp6("fe80::2"), udp6("2001:db8::1"), udp6("fd5b::1"),
                  eth(0x86DD, b"\x45" + bytes(47))):                 # version is not 6
        assert prog.run(frame) == (NEXT, SENTINEL), frame.hex()


def test_own_slice_and_unusable_remotes_are_dropped(loaded):
    prog = loaded(params())
    for frame in (ns("fd5a:fa00:0:304::77", src="::"),              # DAD of a local address
                  ns("fd5a:fa00:0:304::5"), udp6("fd5a:fa00:0:304::5"),
                  udp6("fd5a:fa00:0:0::1"), udp6("fd5a:fa00:0:ffff::1")):
        assert prog.run(frame) == (bpf.TC_ACT_SHOT, SENTINEL), frame.hex()


def test_truncated_solicitation_is_not_tunnelled(loaded):
    """(A frame shorter than the IPv6 header the test run refuses itself: EINVAL.)"""
    prog = loaded(params())
    frame = ns("fd5a:fa00:0:607::8")
    assert prog.run(frame[:14 + 40 + 12]) == (NEXT, SENTINEL)


def test_ipv4_and_arp_unchanged_beside_ipv6(loaded):
    prog = loaded(params())
    remote = int(IPv4Address("172.16.6.7"))
    assert prog.run(eth(0x0800, ipv4("250.3.4.9", "250.6.7.8"))) == (bpf.TC_ACT_OK, remote)
    assert prog.run(packets.arp("250.3.4.9", "250.6.7.8")) == (bpf.TC_ACT_OK, remote)


def test_ipv4_only_fan_leaves_ipv6_to_the_next_filter(loaded):
    prog = loaded(FanParams(FMAP.overlay, FMAP.underlay, FMAP.slice_for_host(HOST), 1))
    assert prog.run(udp6("fd5a:fa00:0:607::8")) == (NEXT, SENTINEL)
    assert prog.run(ns("fd5a:fa00:0:607::8")) == (NEXT, SENTINEL)


@pytest.mark.parametrize("seed", range(6))
def test_random_fans_agree_with_fanmap6(loaded, seed):
    rng = random.Random(20261214 + seed)
    u = rng.randint(8, 30)
    underlay = IPv4Network((rng.getrandbits(32), u), strict=False)
    overlay = IPv4Network((rng.getrandbits(32), max(1, u - 20)), strict=False)
    overlay6 = IPv6Network(((0xFD << 120) | rng.getrandbits(120), 64 - (32 - u)),
                           strict=False)
    fmap = FanMap(overlay, underlay)
    host = underlay.network_address + rng.randint(1, underlay.num_addresses - 2)
    p = params(fmap, host, overlay6)
    p6 = Params6.of(p)
    prog = loaded(p)
    seen = set()
    for i in range(150):
        if i % 5 == 0:      # the own slice, now and then
            addr = p6.own_slice6.network_address + rng.getrandbits(64)
        elif i % 5 == 1:    # a fan bridge's link-local address (or one past the host bits)
            addr = IPv6Address(0xFE80_0000_0000_0000_00FA_0000_0000_0000 |
                               rng.randrange(min(2 * p6.host_mask + 2, 1 << 32)))
        else:
            addr = overlay6.network_address + rng.randrange(overlay6.num_addresses)
        decision, remote = egress_decision6(p6, addr)
        seen.add(decision)
        for frame in (udp6(addr), ns(addr)):
            got = prog.run(frame)
            if decision == "next":
                assert got == (NEXT, SENTINEL), (p, addr)
            elif decision == "pass":
                assert got == (bpf.TC_ACT_OK, int(remote)), (p, addr)
            else:
                assert got == (bpf.TC_ACT_SHOT, SENTINEL), (p, addr)
    assert "pass" in seen and "drop" in seen
