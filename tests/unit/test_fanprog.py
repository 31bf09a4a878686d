"""fangen.datapath.fanprog: the emitted programs, checked in the kernel.

Needs root: every program is loaded with bpf(2) (so the verifier checks it) and
run with BPF_PROG_TEST_RUN on synthetic frames.  Skipped, with that reason, when
not run as root; CI runs these as root.

The programs are emitted with ``trace_mark=True``, which stores the chosen remote
underlay address in skb->mark; property-style checks (random prefix pairs and
addresses, fixed seed) compare verdict and mark with fangen.fanmap.  Verdicts: pass
(TC_ACT_OK), drop (TC_ACT_SHOT), and next (TC_ACT_UNSPEC, -1 as the u32 the test run
returns): not this fan's packet, for the next filter on the hook (another fan's on a
shared device, else the final drop filter).
"""

from __future__ import annotations

import ipaddress
import os
import random
import struct
from ipaddress import IPv4Address, IPv4Network

import pytest

from fangen.datapath import bpf, fanprog
from fangen.datapath.fanprog import FanParams, egress_decision, expected_remote
from fangen.fanmap import FanMap, FanMapError
from tests.harness import packets
from tests.harness.packets import arp

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root: programs are loaded with bpf(2)")

SEED = 20240611
SENTINEL = 0xFEEDF00D       # skb->mark going in; a drop must leave it alone
NEXT = bpf.TC_ACT_UNSPEC & 0xFFFFFFFF     # the test run reports the verdict as a u32


# ---------------------------------------------------------------- frames


def ipv4(src, dst, payload=b"\0" * 8, **kw) -> bytes:
    """An IPv4 packet with room for a UDP header (what a datapath program may read)."""
    return packets.ipv4(src, dst, payload, **kw)


def eth(ethertype: int, payload: bytes) -> bytes:
    return packets.ethernet(ethertype, payload)


def ipv6_frame() -> bytes:
    return packets.ethernet(packets.ETH_P_IPV6, packets.ipv6("fd00::1", "fd00::2", bytes(8)))


class Loaded:
    """A fan's programs loaded into the kernel (trace_mark on)."""

    def __init__(self, params: FanParams, direct: bool = True) -> None:
        self.params = params
        self.fds = {}
        self.sizes = {}
        for direction, items in fanprog.programs(params, trace_mark=True,
                                                 direct=direct).items():
            code = bpf.assemble(items)
            self.sizes[direction] = len(code) // 8
            self.fds[direction] = bpf.prog_load(
                code, name=fanprog.program_name(params, direction))

    def run(self, frame: bytes, direction: str = "egress") -> tuple[int, int]:
        res = bpf.prog_test_run(self.fds[direction], frame, mark=SENTINEL)
        return res.retval, res.mark

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}


@pytest.fixture
def loaded():
    if os.geteuid() != 0:
        pytest.skip("needs root: programs are loaded with bpf(2)")
    opened = []

    def load(params: FanParams, direct: bool = True) -> Loaded:
        prog = Loaded(params, direct)
        opened.append(prog)
        return prog

    yield load
    for prog in opened:
        prog.close()


def random_fan(rng: random.Random) -> tuple[FanMap, IPv4Address]:
    """A random overlay/underlay pair with slice prefix <= 30, and a host in the underlay."""
    o = rng.randint(1, 28)
    u = rng.randint(o + 2, 31)                  # slice = o + 32 - u, in o+1 .. 30
    overlay = IPv4Network((rng.getrandbits(32), o), strict=False)
    underlay = IPv4Network((rng.getrandbits(32), u), strict=False)
    fmap = FanMap(overlay, underlay)
    assert fmap.slice_prefix <= 30
    if u <= 30:
        host = underlay.network_address + rng.randint(1, underlay.num_addresses - 2)
    else:
        host = underlay.network_address + rng.randint(0, 1)
    return fmap, host


def random_in(rng: random.Random, net: IPv4Network) -> IPv4Address:
    return net.network_address + rng.randrange(net.num_addresses)


def frame_for(mode: str, addr: IPv4Address, use_arp: bool, src="198.51.100.7") -> bytes:
    if mode == "ipip":
        return ipv4(src, addr)
    return arp(src, addr) if use_arp else eth(0x0800, ipv4(src, addr))


def check(prog: Loaded, addr: IPv4Address, use_arp: bool = False) -> str:
    """Run one frame to addr; assert the verdict and mark; return what happened."""
    params = prog.params
    verdict, mark = prog.run(frame_for(params.mode, addr, use_arp))
    decision, want = egress_decision(params, addr)
    if decision != "pass":
        code = NEXT if decision == "next" else bpf.TC_ACT_SHOT
        assert (verdict, mark) == (code, SENTINEL), (params, addr, use_arp, decision)
        return decision
    # the reference is fanmap's own formula
    assert want == params.fanmap.host_for_address(addr)
    assert verdict == bpf.TC_ACT_OK, (params, addr, use_arp)
    assert IPv4Address(mark) == want, (params, addr, use_arp, IPv4Address(mark))
    return "pass"


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("mode", ["vxlan", "ipip"])
@pytest.mark.parametrize("direct", [True, False], ids=["direct", "load_bytes"])
def test_random_fans_match_fanmap(loaded, mode, direct):
    # direct: headers read in place (what runs); load_bytes: the path taken when they
    # are not in the skb's linear part (a test run's frame always is)
    rng = random.Random(SEED if mode == "vxlan" else SEED + 1)
    outcomes = {"pass": 0, "drop": 0, "next": 0}
    for _ in range(60):
        fmap, host = random_fan(rng)
        params = FanParams.for_host(fmap, host, mode)
        prog = loaded(params, direct)
        for _ in range(12):
            outcomes[check(prog, random_in(rng, fmap.overlay), rng.random() < 0.5)] += 1
        for _ in range(3):    # own slice: always dropped
            addr = random_in(rng, params.own_slice)
            assert check(prog, addr, rng.random() < 0.5) == "drop"
        for _ in range(3):    # outside the overlay: never this fan's
            addr = IPv4Address(rng.getrandbits(32))
            if addr in fmap.overlay:
                continue
            assert check(prog, addr, rng.random() < 0.5) == "next"
        prog.close()
    assert outcomes["pass"] > 500


def test_the_kernel_comment_examples(loaded):
    # host 10.88.3.4/16, overlay 99.0.0.0/8: 99.6.7.8 goes to 10.88.6.7
    prog = loaded(FanParams.for_host(FanMap.parse("99.0.0.0/8", "10.88.0.0/16"), "10.88.3.4"))
    assert prog.run(eth(0x0800, ipv4("99.3.4.5", "99.6.7.8")))[1] == int(IPv4Address("10.88.6.7"))
    # overlay 100.64.0.0/10 with underlay 10.224.220.0/24: 100.66.200.5 -> 10.224.220.11
    fmap = FanMap.parse("100.64.0.0/10", "10.224.220.0/24")
    prog = loaded(FanParams.for_host(fmap, "10.224.220.1"))
    verdict, mark = prog.run(eth(0x0800, ipv4("100.64.64.2", "100.66.200.5")))
    assert (verdict, IPv4Address(mark)) == (0, IPv4Address("10.224.220.11"))


# ---------------------------------------------------------------- the fixed fan

FMAP = FanMap.parse("250.0.0.0/8", "172.16.0.0/16")


@pytest.fixture(params=[True, False], ids=["direct", "load_bytes"])
def vx(loaded, request):
    return loaded(FanParams.for_host(FMAP, "172.16.1.2", "vxlan"), request.param)


def test_ipv4_to_a_remote_slice(vx):
    assert vx.run(eth(0x0800, ipv4("250.1.2.10", "250.3.4.5"))) == (
        0, int(IPv4Address("172.16.3.4")))


def test_own_slice_is_dropped_and_non_overlay_left_to_the_next_filter(vx):
    for dst in ("250.1.2.1", "250.1.2.77"):
        assert vx.run(eth(0x0800, ipv4("250.1.2.10", dst))) == (2, SENTINEL), dst
    for dst in ("10.0.0.1", "172.16.3.4", "255.255.255.255", "224.0.0.251", "251.3.4.5"):
        assert vx.run(eth(0x0800, ipv4("250.1.2.10", dst))) == (NEXT, SENTINEL), dst


def test_dhcp_broadcast_is_not_the_fans(vx):
    discover = eth(0x0800, ipv4("0.0.0.0", "255.255.255.255", bytes(300)))
    assert vx.run(discover) == (NEXT, SENTINEL)


def test_the_final_filter_drops_everything(loaded):
    if os.geteuid() != 0:
        pytest.skip("needs root: programs are loaded with bpf(2)")
    fd = bpf.prog_load(bpf.assemble(fanprog.drop_program()), name=fanprog.DROP_PROGRAM_NAME)
    try:
        for frame in (eth(0x0800, ipv4("250.1.2.10", "250.3.4.5")), ipv6_frame(),
                      arp("250.1.2.10", "250.7.8.9")):
            res = bpf.prog_test_run(fd, frame, mark=SENTINEL)
            assert (res.retval, res.mark) == (2, SENTINEL)
    finally:
        os.close(fd)


def test_remote_that_is_the_underlay_network_or_broadcast_address_is_dropped(vx):
    # 250.0.0.x maps to 172.16.0.0 and 250.255.255.x to 172.16.255.255
    assert vx.run(eth(0x0800, ipv4("250.1.2.10", "250.0.0.9")))[0] == 2
    assert vx.run(eth(0x0800, ipv4("250.1.2.10", "250.255.255.9")))[0] == 2
    assert vx.run(eth(0x0800, ipv4("250.1.2.10", "250.0.1.9")))[0] == 0


def test_arp_uses_the_target_address(vx):
    # sender in our slice, target remote: remote of the target
    assert vx.run(arp("250.1.2.10", "250.7.8.9")) == (0, int(IPv4Address("172.16.7.8")))
    # a reply goes by its target too
    assert vx.run(arp("250.1.2.10", "250.7.8.9", op=2))[1] == int(IPv4Address("172.16.7.8"))
    # sender remote, target in our slice (e.g. the gateway): stays home
    assert vx.run(arp("250.7.8.9", "250.1.2.1")) == (2, SENTINEL)
    # gratuitous ARP for our own address
    assert vx.run(arp("250.1.2.10", "250.1.2.10")) == (2, SENTINEL)


def test_odd_arp_is_not_the_fans(vx):
    assert vx.run(arp("250.1.2.10", "250.7.8.9", ptype=0x86DD)) == (NEXT, SENTINEL)
    assert vx.run(arp("250.1.2.10", "250.7.8.9", htype=6)) == (NEXT, SENTINEL)
    assert vx.run(arp("250.1.2.10", "250.7.8.9", hlen=8)) == (NEXT, SENTINEL)
    assert vx.run(arp("250.1.2.10", "250.7.8.9")[:14 + 20]) == (NEXT, SENTINEL)  # truncated


def test_other_frames_are_not_the_fans(vx):
    assert vx.run(ipv6_frame()) == (NEXT, SENTINEL)
    vlan = eth(0x8100, struct.pack("!HH", 5, 0x0800) + ipv4("250.1.2.10", "250.3.4.5"))
    assert vx.run(vlan) == (NEXT, SENTINEL)
    assert vx.run(eth(0x88CC, bytes(46))) == (NEXT, SENTINEL)                 # LLDP
    assert vx.run(eth(0x0800, ipv4("250.1.2.10", "250.3.4.5", version=6))) == (NEXT, SENTINEL)
    # (truncated IPv4/IPv6 frames cannot be test-run: the kernel's test harness itself
    # refuses them with EINVAL before the program runs; truncated ARP is checked above)


def test_ingress_without_tunnel_metadata_is_not_the_fans(vx):
    # BPF_PROG_TEST_RUN has no tunnel info: bpf_skb_get_tunnel_key fails -> next filter
    # (on a real device: the final drop).  The VNI, sender and slice checks run on real
    # devices: tests/netns, tests/kernel.
    assert vx.run(eth(0x0800, ipv4("250.3.4.5", "250.1.2.10")), "ingress") == (NEXT, SENTINEL)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "load_bytes"])
def test_ipip_egress(loaded, direct):
    prog = loaded(FanParams.for_host(FMAP, "172.16.1.2", "ipip"), direct)
    assert prog.run(ipv4("250.1.2.1", "250.3.4.5")) == (0, int(IPv4Address("172.16.3.4")))
    assert prog.run(ipv4("250.1.2.1", "250.1.2.9")) == (2, SENTINEL)
    assert prog.run(ipv4("250.1.2.1", "192.0.2.1")) == (NEXT, SENTINEL)
    assert prog.run(ipv4("250.1.2.1", "251.3.4.5")) == (NEXT, SENTINEL)     # another fan's
    assert prog.run(ipv4("250.1.2.1", "250.3.4.5", version=6)) == (NEXT, SENTINEL)
    assert prog.run(ipv4("250.1.2.1", "250.3.4.5")[:19] + bytes(0)) == (NEXT, SENTINEL)
    assert prog.run(ipv4("250.1.2.1", "250.3.4.5"), "ingress") == (NEXT, SENTINEL)


# ---------------------------------------------------------------- the verifier


@needs_root
@pytest.mark.parametrize("mode", ["vxlan", "ipip"])
@pytest.mark.parametrize("trace", [False, True])
@pytest.mark.parametrize("direct", [True, False], ids=["direct", "load_bytes"])
def test_verifier_accepts_production_programs(mode, trace, direct):
    rng = random.Random(SEED + 7)
    sizes = set()
    for _ in range(20):
        fmap, host = random_fan(rng)
        params = FanParams.for_host(fmap, host, mode)
        for direction, items in fanprog.programs(params, trace_mark=trace,
                                                 direct=direct).items():
            code = bpf.assemble(items)
            fd = bpf.prog_load(code, name=fanprog.program_name(params, direction))
            os.close(fd)
            sizes.add((direction, len(code) // 8))
    assert all(n < 128 for _, n in sizes)


# ---------------------------------------------------------------- parameters (pure)


def test_params_checks():
    assert fanprog.default_vni(IPv4Network("250.0.0.0/8")) == 0xFA0000
    p = FanParams.for_host(FMAP, "172.16.1.2")
    assert p.own_slice == IPv4Network("250.1.2.0/24") and p.vni == 0xFA0000
    with pytest.raises(FanMapError):
        FanParams(FMAP.overlay, FMAP.underlay, IPv4Network("250.1.0.0/16"), 1)
    with pytest.raises(ValueError):
        FanParams.for_host(FMAP, "172.16.1.2", "gre")
    with pytest.raises(ValueError):
        FanParams.for_host(FMAP, "172.16.1.2", vni=1 << 24)
    assert fanprog.program_name(p, "egress") == "fan_vx_eg"
    assert len(fanprog.program_name(FanParams.for_host(FMAP, "172.16.1.2", "ipip"),
                                    "ingress")) < bpf.BPF_OBJ_NAME_LEN
    assert ipaddress.IPv4Address(expected_remote(p, "250.9.9.9")) == IPv4Address("172.16.9.9")
    assert egress_decision(p, "250.1.2.3") == ("drop", None)
    assert egress_decision(p, "251.9.9.9") == ("next", None)
    assert egress_decision(p, "250.9.9.9") == ("pass", IPv4Address("172.16.9.9"))
