"""Hand-built VXLAN tunnels between two host namespaces: the fan's baselines.

Both sit in the same host namespaces as the fan (same underlay link, same nft
table and conntrack) and give one container-like namespace per host, MTU 1450
like the fan, so the three paths differ only in how the tunnel is built:

* ``l2_static``: what a person builds by hand for two hosts.  Per host a VXLAN
  device with a static remote (``ip link add l2vx type vxlan id 4242 remote PEER
  local SELF dstport 4789 dev up0``) as a port of a plain bridge; the containers
  hold the whole prefix 10.99.0.0/16 and the remote container is on-link, like the
  fan's L2 path (the fan's containers hold the whole overlay).
* ``routed``: what a per-peer-state system such as flannel's vxlan backend
  builds.  Per host a VXLAN device without learning (``ip link add rtvx type vxlan
  id 1 local SELF dstport 8473 dev up0 nolearning``) holding 10.98.N.0/32, a
  bridge holding 10.98.N.1/24 with the container behind it (10.98.N.2/24, default
  route via .1), and per peer exactly one route, one neighbour and one FDB entry:
  ``ip route add 10.98.P.0/24 via 10.98.P.0 dev rtvx onlink``,
  ``ip neigh add 10.98.P.0 lladdr MAC_P dev rtvx nud permanent``,
  ``bridge fdb append MAC_P dev rtvx dst UNDERLAY_P``.  Traffic is routed on both
  hosts (container -> bridge -> IP forward -> VXLAN), one hop more than the fan.

Two more take the static tunnel apart step by step towards the fan, so the gap
between ``l2_static`` and the fan can be split by cause (bench/throughput.py
``--steps``):

* ``l2_nocache``: ``l2_static`` with a tc egress program that sets skb->mark on
  every packet.  A marked packet may not use the device's cached route to the
  remote (``ip_tunnel_dst_cache_usable`` in include/net/ip_tunnels.h), so this is
  the static tunnel paying one route lookup per packet, as a collect-metadata
  device must (``bpf_skb_set_tunnel_key`` sets ``TUNNEL_NOCACHE``).
* ``l2_external``: the same on a collect-metadata device with one fixed key:
  adds the metadata dst (per-CPU on transmit, allocated per packet on receive).

And one that goes the other way, a prototype of what fangen could do itself
(``--encap``): the tunnel device's transmit path skipped.

* ``l2_encap``: a VXLAN device with no remote (receive only, plain VXLAN receive:
  no metadata dst) whose tc egress program writes the outer Ethernet, IPv4, UDP and
  VXLAN headers itself (``bpf_skb_adjust_room`` with the encapsulation flags, so GSO
  and checksum offload see a UDP tunnel) and hands the packet to the underlay device
  with ``bpf_redirect_neigh`` and the remote as next hop (on-link: no route lookup).
  No metadata dst, no route lookup, no tunnel transmit, and no netfilter on the outer
  packet either (it leaves without passing the host's OUTPUT and POSTROUTING hooks).
  A prototype: IPv4 only (``bpf_skb_adjust_room`` refuses ARP, so the containers get
  static neighbours here; a fan would have to carry ARP another way), one fixed remote.
"""

from __future__ import annotations

from tests.harness import HarnessError
from tests.harness.ns import Run, ip, nsexec, sh

MTU = 1450
UPLINK = "up0"


def _container(run: Run, host_ns: str, name: str, bridge: str, host_end: str) -> str:
    ns = run.netns(name)
    ip(ns, "link", "add", "eth0", "mtu", str(MTU), "type", "veth", "peer", "name", host_end,
       "netns", host_ns)
    ip(host_ns, "link", "set", host_end, "mtu", str(MTU), "master", bridge, "up")
    ip(ns, "link", "set", "eth0", "up")
    return ns


def _bridge(host_ns: str, name: str) -> None:
    ip(host_ns, "link", "add", name, "mtu", str(MTU), "type", "bridge", "forward_delay", "0",
       "stp_state", "0")
    ip(host_ns, "link", "set", name, "up")


def l2_static(run: Run, hosts: list[tuple[str, str]], tag: str = "l2", vni: int = 4242,
              port: int = 4789, prefix: str = "10.99", program=None,
              external: bool = False) -> tuple[str, str, str]:
    """hosts = [(ns, underlay address)] x2 -> (container ns 1, container ns 2, address of 2).

    ``program(peer)``: a tc egress program for the VXLAN device (:func:`l2_nocache`);
    ``external``: a collect-metadata device instead of one with a static remote
    (:func:`l2_external`, whose program sets the remote)."""
    ends = []
    for n, ((ns, addr), (_, peer)) in enumerate(zip(hosts, reversed(hosts)), 1):
        kind = (["external", "nolearning"] if external else
                ["id", str(vni), "remote", peer, "local", addr, "dev", UPLINK])
        ip(ns, "link", "add", f"{tag}vx", "mtu", str(MTU), "type", "vxlan", *kind,
           "dstport", str(port))
        _bridge(ns, f"{tag}br")
        ip(ns, "link", "set", f"{tag}vx", "master", f"{tag}br", "up")
        if program is not None:
            egress_program(ns, f"{tag}vx", program(peer), f"{tag}_egress")
        c = _container(run, ns, f"{tag}c{n}", f"{tag}br", f"v{tag}")
        ip(c, "addr", "add", f"{prefix}.{n}.2/16", "dev", "eth0")
        ends.append(c)
    return ends[0], ends[1], f"{prefix}.2.2"


def mark_program() -> list:
    """A tc egress program that sets skb->mark = 1 and passes the packet."""
    from fangen.datapath import bpf as b
    return [
        b.mov64_imm(b.R2, 1),                   # 6.1 refuses BPF_ST into the context
        b.stx_mem(b.W, b.R1, b.R2, b.SKB_MARK),
        b.mov64_imm(b.R0, b.TC_ACT_OK),
        b.exit_(),
    ]


def l2_nocache(run: Run, hosts: list[tuple[str, str]]) -> tuple[str, str, str]:
    """:func:`l2_static` with every packet marked, so the device's route cache is not used
    and each packet pays a route lookup to the remote.  Same signature."""
    return l2_static(run, hosts, tag="nc", vni=4244, port=4791, prefix="10.95",
                     program=lambda peer: mark_program())


def egress_program(ns: str, dev: str, insns: list, name: str) -> None:
    """Load ``insns`` and attach it to ``dev``'s tc egress hook in namespace ``ns``."""
    import contextlib
    import os

    from fangen.datapath import bpf, upstream
    from tests.harness.ns import iproute_in
    with contextlib.closing(iproute_in(ns)) as ipr:
        index = ipr.link_lookup(ifname=dev)[0]
        ipr.tc("add", "clsact", index)
        try:
            fd = bpf.prog_load(bpf.assemble(insns), name=name)
        except bpf.BPFError as exc:
            raise HarnessError(f"{ns}: {exc}") from None
        try:
            ipr.tc("add-filter", "bpf", index, 0, fd=fd, name=name,
                   parent=upstream.PARENT["egress"], prio=1, protocol=upstream.ETH_P_ALL,
                   direct_action=True)
        finally:
            os.close(fd)


def _mac(n: int) -> str:
    return f"02:f1:00:00:00:{n:02x}"


def routed(run: Run, hosts: list[tuple[str, str]]) -> tuple[str, str, str]:
    """Flannel-style routed VXLAN; same signature as :func:`l2_static`."""
    ends = []
    for n, (ns, addr) in enumerate(hosts, 1):
        nsexec(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        ip(ns, "link", "add", "rtvx", "address", _mac(n), "mtu", str(MTU), "type", "vxlan",
           "id", "1", "local", addr, "dstport", "8473", "dev", UPLINK, "nolearning")
        ip(ns, "addr", "add", f"10.98.{n}.0/32", "dev", "rtvx")
        ip(ns, "link", "set", "rtvx", "up")
        _bridge(ns, "rtbr")
        ip(ns, "addr", "add", f"10.98.{n}.1/24", "dev", "rtbr")
        c = _container(run, ns, f"rtc{n}", "rtbr", "vrt")
        ip(c, "addr", "add", f"10.98.{n}.2/24", "dev", "eth0")
        ip(c, "route", "add", "default", "via", f"10.98.{n}.1")
        ends.append(c)
    for n, (ns, _) in enumerate(hosts, 1):          # one route + neighbour + fdb per peer
        for p, (_, peer_addr) in enumerate(hosts, 1):
            if p == n:
                continue
            ip(ns, "route", "add", f"10.98.{p}.0/24", "via", f"10.98.{p}.0", "dev", "rtvx",
               "onlink")
            ip(ns, "neigh", "add", f"10.98.{p}.0", "lladdr", _mac(p), "dev", "rtvx", "nud",
               "permanent")
            sh("bridge", "-n", ns, "fdb", "append", _mac(p), "dev", "rtvx", "dst", peer_addr)
    return ends[0], ends[1], "10.98.2.2"


def static_key_program(vni: int, remote: str) -> list:
    """A tc egress program that sets one fixed tunnel key (VNI, remote, TTL 64, no UDP
    checksum) on every packet: the least a collect-metadata device can be driven with."""
    from ipaddress import IPv4Address

    from fangen.datapath import bpf as b
    return [
        b.mov64_reg(b.R6, b.R1),
        b.st_mem(b.DW, b.FP, -32, 0), b.st_mem(b.DW, b.FP, -24, 0),
        b.st_mem(b.DW, b.FP, -16, 0), b.st_mem(b.W, b.FP, -8, 0),
        b.st_mem(b.W, b.FP, -32 + b.TK_TUNNEL_ID, vni),
        b.st_mem(b.W, b.FP, -32 + b.TK_REMOTE_IPV4, int(IPv4Address(remote))),
        b.st_mem(b.B, b.FP, -32 + b.TK_TTL, 64),
        b.mov64_reg(b.R1, b.R6), b.mov64_reg(b.R2, b.FP), b.alu64_imm(b.ADD, b.R2, -32),
        b.mov64_imm(b.R3, b.TK_SIZE_V4), b.mov64_imm(b.R4, b.BPF_F_ZERO_CSUM_TX),
        b.call(b.FN_SKB_SET_TUNNEL_KEY),
        b.mov64_imm(b.R0, b.TC_ACT_OK),
        b.exit_(),
    ]


def l2_external(run: Run, hosts: list[tuple[str, str]]) -> tuple[str, str, str]:
    """:func:`l2_static` on a collect-metadata VXLAN device (``external``) whose remote is
    set by :func:`static_key_program`: the kernel's collect-metadata path with no fan
    logic (no per-packet decision, no ingress program).  Same signature."""
    return l2_static(run, hosts, tag="md", port=4790, prefix="10.97", external=True,
                     program=lambda peer: static_key_program(4243, peer))


FN_SKB_ADJUST_ROOM = 50
FN_GET_HASH_RECALC = 34
FN_REDIRECT_NEIGH = 152
ADJ_ROOM_MAC = 1
# BPF_F_ADJ_ROOM_FIXED_GSO | _ENCAP_L3_IPV4 | _ENCAP_L4_UDP | _ENCAP_L2_ETH, inner L2 14 bytes
ADJ_ROOM_VXLAN = 1 | 2 | 16 | 64 | (14 << 56)
VXLAN_ENCAP = 14 + 20 + 8 + 8       # what goes in front of the inner Ethernet header


def _words(data: bytes) -> int:
    """Four packet bytes as the immediate of a 32-bit store (the assembler is host order)."""
    import sys
    return int.from_bytes(data, sys.byteorder)


def encap_program(vni: int, port: int, local: str, remote: str, ifindex: int) -> list:
    """A tc egress program that encapsulates every IPv4 frame in VXLAN to ``remote`` and
    redirects it to the underlay device ``ifindex`` (:func:`l2_encap`); drops the rest."""
    from ipaddress import IPv4Address

    from fangen.datapath import bpf as b
    src, dst = IPv4Address(local).packed, IPv4Address(remote).packed
    # the outer IPv4 header's checksum, all but the total length summed in advance
    fixed = 0x4500 + 0x4011 + sum(int.from_bytes(a[i:i + 2], "big")
                                   for a in (src, dst) for i in (0, 2))
    ip, udp, vx = 14, 34, 42
    return [
        b.mov64_reg(b.R6, b.R1),
        b.ldx_mem(b.W, b.R0, b.R6, b.SKB_PROTOCOL),
        b.jmp_imm(b.JNE, b.R0, _words(b"\x08\x00\x00\x00") & 0xFFFF, "drop"),
        b.ldx_mem(b.W, b.R7, b.R6, b.SKB_LEN),               # the inner frame's length
        b.mov64_reg(b.R1, b.R6), b.mov64_imm(b.R2, VXLAN_ENCAP), b.mov64_imm(b.R3, ADJ_ROOM_MAC),
        b.ld_imm64(b.R4, ADJ_ROOM_VXLAN),
        b.call(FN_SKB_ADJUST_ROOM),
        b.jmp_imm(b.JNE, b.R0, 0, "drop"),
        b.mov64_reg(b.R1, b.R6),
        b.call(FN_GET_HASH_RECALC),
        b.mov64_reg(b.R8, b.R0),
        b.ldx_mem(b.W, b.R2, b.R6, b.SKB_DATA),
        b.ldx_mem(b.W, b.R3, b.R6, b.SKB_DATA_END),
        b.mov64_reg(b.R4, b.R2), b.alu64_imm(b.ADD, b.R4, VXLAN_ENCAP + 14),
        b.jmp_reg(b.JGT, b.R4, b.R3, "drop"),
        # the inner Ethernet header: a copy of the one in front
        b.ldx_mem(b.W, b.R5, b.R2, 0), b.stx_mem(b.W, b.R2, b.R5, VXLAN_ENCAP),
        b.ldx_mem(b.W, b.R5, b.R2, 4), b.stx_mem(b.W, b.R2, b.R5, VXLAN_ENCAP + 4),
        b.ldx_mem(b.W, b.R5, b.R2, 8), b.stx_mem(b.W, b.R2, b.R5, VXLAN_ENCAP + 8),
        b.ldx_mem(b.H, b.R5, b.R2, 12), b.stx_mem(b.H, b.R2, b.R5, VXLAN_ENCAP + 12),
        # outer IPv4: total length = inner frame + 36, checksum over the fixed sum
        b.mov64_reg(b.R9, b.R7), b.alu64_imm(b.ADD, b.R9, 20 + 8 + 8),
        b.mov64_reg(b.R5, b.R9), b.be(b.R5, 16),
        b.st_mem(b.H, b.R2, ip, _words(b"\x45\x00\x00\x00") & 0xFFFF),
        b.stx_mem(b.H, b.R2, b.R5, ip + 2),
        b.st_mem(b.W, b.R2, ip + 4, 0),                       # id 0, no DF
        b.st_mem(b.H, b.R2, ip + 8, _words(b"\x40\x11\x00\x00") & 0xFFFF),
        b.st_mem(b.W, b.R2, ip + 12, _words(src)),
        b.st_mem(b.W, b.R2, ip + 16, _words(dst)),
        b.mov64_reg(b.R5, b.R9), b.alu64_imm(b.ADD, b.R5, fixed),
        b.mov64_reg(b.R0, b.R5), b.alu64_imm(b.RSH, b.R0, 16),
        b.alu64_imm(b.AND, b.R5, 0xFFFF), b.alu64_reg(b.ADD, b.R5, b.R0),
        b.mov64_reg(b.R0, b.R5), b.alu64_imm(b.RSH, b.R0, 16),
        b.alu64_reg(b.ADD, b.R5, b.R0),
        b.alu64_imm(b.XOR, b.R5, 0xFFFF), b.alu64_imm(b.AND, b.R5, 0xFFFF),
        b.be(b.R5, 16),
        b.stx_mem(b.H, b.R2, b.R5, ip + 10),
        # UDP: a source port from the flow hash, the length, no checksum
        b.alu64_imm(b.AND, b.R8, 0x3FFF), b.alu64_imm(b.ADD, b.R8, 49152), b.be(b.R8, 16),
        b.stx_mem(b.H, b.R2, b.R8, udp),
        b.st_mem(b.H, b.R2, udp + 2, _words(port.to_bytes(2, "big") + b"\0\0") & 0xFFFF),
        b.alu64_imm(b.ADD, b.R7, 8 + 8), b.be(b.R7, 16),
        b.stx_mem(b.H, b.R2, b.R7, udp + 4),
        b.st_mem(b.H, b.R2, udp + 6, 0),
        b.st_mem(b.W, b.R2, vx, _words(b"\x08\x00\x00\x00")),
        b.st_mem(b.W, b.R2, vx + 4, _words(vni.to_bytes(3, "big") + b"\0")),
        # the outer Ethernet type; redirect_neigh writes the addresses
        b.st_mem(b.H, b.R2, 12, _words(b"\x08\x00\x00\x00") & 0xFFFF),
        # struct bpf_redir_neigh {nh_family = AF_INET, ipv4_nh = remote}
        b.st_mem(b.W, b.FP, -24, 2), b.st_mem(b.W, b.FP, -20, _words(dst)),
        b.st_mem(b.DW, b.FP, -16, 0), b.st_mem(b.W, b.FP, -8, 0),
        b.mov64_imm(b.R1, ifindex), b.mov64_reg(b.R2, b.FP), b.alu64_imm(b.ADD, b.R2, -24),
        b.mov64_imm(b.R3, 20), b.mov64_imm(b.R4, 0),
        b.call(FN_REDIRECT_NEIGH),
        b.exit_(),
        b.Label("drop"),
        b.mov64_imm(b.R0, b.TC_ACT_SHOT),
        b.exit_(),
    ]


def l2_encap(run: Run, hosts: list[tuple[str, str]]) -> tuple[str, str, str]:
    """The prototype of the module's docstring; same signature as :func:`l2_static`."""
    import json
    vni, port, prefix = 4245, 4793, "10.94"
    ends = []
    for n, ((ns, addr), (_, peer)) in enumerate(zip(hosts, reversed(hosts)), 1):
        ip(ns, "link", "add", "bpvx", "mtu", str(MTU), "type", "vxlan", "id", str(vni),
           "local", addr, "dev", UPLINK, "dstport", str(port), "nolearning")
        _bridge(ns, "bpbr")
        ip(ns, "link", "set", "bpvx", "master", "bpbr", "up")
        up = json.loads(ip(ns, "-j", "link", "show", "dev", UPLINK).stdout)[0]["ifindex"]
        egress_program(ns, "bpvx", encap_program(vni, port, addr, peer, up), "bp_egress")
        c = _container(run, ns, f"bpc{n}", "bpbr", "vbp")
        ip(c, "addr", "add", f"{prefix}.{n}.2/16", "dev", "eth0")
        ends.append(c)
    macs = [json.loads(ip(c, "-j", "link", "show", "dev", "eth0").stdout)[0]["address"]
            for c in ends]
    for n, c in enumerate(ends):          # no ARP through the prototype
        other = 1 - n
        ip(c, "neigh", "add", f"{prefix}.{other + 1}.2", "lladdr", macs[other], "dev", "eth0",
           "nud", "permanent")
    return ends[0], ends[1], f"{prefix}.2.2"
