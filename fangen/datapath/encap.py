"""Encapsulation in the fan's egress program: the upstream datapath's IPv4 path.

Given a tunnel key by ``bpf_skb_set_tunnel_key``, a collect-metadata tunnel device
looks the route to the remote up for every packet (the helper marks the key "no
cache"), takes a metadata dst, and sends the packet through the tunnel's transmit
path and the host's netfilter output hooks: together 5-10 % of what a hand-built
tunnel costs (docs/SPEED.md).  For IPv4 the egress program
(:func:`fangen.datapath.fanprog.egress`) does the encapsulation itself instead,
with the remote it computed.  VXLAN (:func:`program`):

* ``bpf_skb_adjust_room(skb, 50, BPF_ADJ_ROOM_MAC, ...)`` makes room for the outer
  IPv4, UDP and VXLAN headers and the inner Ethernet header behind the frame's
  Ethernet header, and marks the packet as a UDP tunnel (``ENCAP_L3_IPV4 |
  ENCAP_L4_UDP | ENCAP_L2_ETH``, so GSO and checksum offload work on the inner
  packet as they do for the device's own packets); ``FIXED_GSO``: the fan's MTU
  already leaves room for the headers, the segment size stays;
* the program writes the headers: outer IPv4 from the fan's underlay address (TOS:
  the inner ECN bits as the kernel's tunnels copy them, the fan's TTL, no DF, the
  checksum), UDP (source port from the flow hash in 49152..65535, the fan's port, no
  checksum, as a VXLAN device built by hand sends), VXLAN (flag I, the fan's VNI),
  and the inner Ethernet header, a copy of the frame's own;
* ``bpf_redirect_neigh`` hands it to the underlay interface, addressed straight to
  the remote (no route lookup; the neighbour table resolves it).  Only remotes in the
  prefix the underlay address is connected to are sent this way; a remote behind a
  router keeps the tunnel key, so the kernel routes it as before (with the outer UDP
  port in the flow, which a multi-homed fan's policy rule matches on).

IPIP (:func:`program_ipip`) is the same with an outer IPv4 header only (protocol 4,
marked ``ENCAP_L3_IPV4`` for GSO) and an Ethernet header put in front of it
(``bpf_skb_change_head``: the tunnel is an L3 device, bpf_redirect_neigh wants one).

The egress program sets the tunnel key first, also for the packets it then
encapsulates: the key's metadata dst replaces the overlay route's dst that a routed
packet (every IPIP packet, a host's own on VXLAN) carries.  When the underlay
neighbour is unresolved, the kernel queues the packet and, once resolved, re-sends
it by the neighbour its dst names (``neigh_update`` and ``dst_neigh_lookup_skb``):
with the overlay route's dst that is a neighbour on the overlay's device, and the
packet is lost; a metadata dst names none, so the queued packet leaves by the
underlay neighbour it waited for (tests/netns/test_upstream_datapath.py flushes
the neighbours and sends the first packet).

The bytes on the wire are what the device would have sent (a kernel-fan host or an
older fangen receives them alike).  What stays on the tunnel-key path of a
collect-metadata device: a VXLAN fan's ARP (``bpf_skb_adjust_room`` takes only IPv4
and IPv6 skbs) and IPv6 (a dual-stack fan's), remotes outside the connected prefix,
packets whose IPv4 header is not in the skb's linear part, and any packet the helper
refuses (one already marked as encapsulated).

A VXLAN fan on a *plain* device (:func:`program_plain`: the fan's VNI, no remote, no
forwarding entries, so nothing is allocated per received packet, which a
collect-metadata device does) has no tunnel-key path: the program encapsulates every
frame.  ARP with :func:`program_frame` (room made with ``bpf_skb_change_head``, and
skb->protocol turned into IPv4, which ``bpf_redirect_neigh`` requires, by pushing and
popping VLAN tags), remotes outside the connected prefix through the kernel's route
lookup from the underlay interface (``bpf_redirect_neigh`` without a next hop), and
what cannot be encapsulated is dropped.

The differences from the device, which the docs state: the outer packets leave
without passing the host's netfilter output and postrouting hooks, and a more
specific route or policy rule for a remote inside the connected prefix is not
consulted.

Hand-written like the rest of the programs (:mod:`fangen.datapath.bpf` says why).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from fangen.datapath.bpf import (
    ADD,
    FN_GET_HASH_RECALC,
    FN_REDIRECT_NEIGH,
    FN_SKB_ADJUST_ROOM,
    FN_SKB_CHANGE_HEAD,
    FN_SKB_PULL_DATA,
    FN_SKB_VLAN_POP,
    FN_SKB_VLAN_PUSH,
    AND,
    DW,
    FP,
    JEQ,
    JGT,
    JNE,
    OR,
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    RSH,
    SKB_DATA,
    SKB_DATA_END,
    SKB_LEN,
    SKB_PROTOCOL,
    XOR,
    B,
    H,
    Item,
    Label,
    W,
    alu32_imm,
    alu64_imm,
    alu64_reg,
    be,
    call,
    exit_,
    ja,
    jmp_imm,
    jmp_reg,
    ld_imm64,
    ldx_mem,
    mov32_reg,
    mov64_imm,
    mov64_reg,
    st_mem,
    stx_mem,
)

ADJ_ROOM_MAC = 1
ADJ_ROOM_FIXED_GSO = 1 << 0
ADJ_ROOM_ENCAP_L3_IPV4 = 1 << 1
ADJ_ROOM_ENCAP_L4_UDP = 1 << 4
ADJ_ROOM_ENCAP_L2_ETH = 1 << 6
ADJ_ROOM_ENCAP_L2_SHIFT = 56

ETH_HLEN = 14
OUTER_IP = ETH_HLEN                 # offsets in the encapsulated packet
OUTER_UDP = OUTER_IP + 20
VXLAN_HDR = OUTER_UDP + 8
INNER = VXLAN_HDR + 8               # the inner Ethernet header
ROOM = INNER                         # what adjust_room inserts: 50 bytes
ADJ_FLAGS = (ADJ_ROOM_FIXED_GSO | ADJ_ROOM_ENCAP_L3_IPV4 | ADJ_ROOM_ENCAP_L4_UDP
             | ADJ_ROOM_ENCAP_L2_ETH | ETH_HLEN << ADJ_ROOM_ENCAP_L2_SHIFT)
IPPROTO_IPIP = 4
IPPROTO_UDP = 17
SPORT_MIN = 49152                   # source ports 49152..65535 (RFC 7348 suggests them)
AF_INET = 2
ETH_P_8021Q_NET = int.from_bytes(b"\x81\x00", sys.byteorder)   # htons(0x8100)
ETH_P_IP_NET = int.from_bytes(b"\x08\x00", sys.byteorder)      # htons(0x0800)
_NH = -24                           # struct bpf_redir_neigh on the stack: -24 .. -4


@dataclass(frozen=True)
class Encap:
    """Where the encapsulated packets leave: the fan's underlay address, the index of
    the interface holding it, a VXLAN fan's UDP port (0 for IPIP), and the prefix
    that address is connected to there: remotes inside it are encapsulated and sent
    to directly, the others keep the tunnel key (their route may depend on the outer
    UDP port, as a multi-homed fan's policy rule does, which a lookup from the
    program cannot see)."""

    local: IPv4Address
    ifindex: int
    port: int                      # VXLAN's; 0 for IPIP
    connected: IPv4Network

    def __post_init__(self) -> None:
        if not 0 < self.ifindex < 1 << 31:
            raise ValueError(f"interface index {self.ifindex} is out of range")
        if not 0 <= self.port < 1 << 16:
            raise ValueError(f"UDP port {self.port} is not in 1..65535 (0: IPIP)")


def _imm(data: bytes) -> int:
    """Packet bytes as the immediate of a store (the assembler stores in host order)."""
    return int.from_bytes(data, sys.byteorder)


def _linear(end: int, otherwise: str) -> list[Item]:
    """r2 = data, r3 = data_end; to ``otherwise`` unless the first ``end`` bytes are in
    the skb's linear part."""
    return [
        ldx_mem(W, R2, R6, SKB_DATA),
        ldx_mem(W, R3, R6, SKB_DATA_END),
        mov64_reg(R4, R2),
        alu64_imm(ADD, R4, end),
        jmp_reg(JGT, R4, R3, otherwise),
    ]


def _adjust_room(room: int, flags: int, fallback: str) -> list[Item]:
    """bpf_skb_adjust_room(skb = r6, room, BPF_ADJ_ROOM_MAC, flags); to ``fallback``
    when refused (the packet is unchanged then)."""
    return [
        mov64_reg(R1, R6),
        mov64_imm(R2, room),
        mov64_imm(R3, ADJ_ROOM_MAC),
        *ld_imm64(R4, flags),
        call(FN_SKB_ADJUST_ROOM),
        jmp_imm(JNE, R0, 0, fallback),
    ]


def _change_head(room: int) -> list[Item]:
    """bpf_skb_change_head(skb = r6, room, 0): ``room`` bytes in front of the frame;
    a failure is a drop (label ``drop``)."""
    return [
        mov64_reg(R1, R6),
        mov64_imm(R2, room),
        mov64_imm(R3, 0),
        call(FN_SKB_CHANGE_HEAD),
        jmp_imm(JNE, R0, 0, "drop"),
    ]


def _outer_ipv4(enc: Encap, ttl: int, proto: int, inner_ip: int | None,
                extra: int) -> list[Item]:
    """The outer IPv4 header at OUTER_IP (r2 = data), for the frame length in r7 plus
    ``extra`` bytes; the inner IPv4 header at ``inner_ip`` gives the ECN bits (CE is
    sent as ECT(0)); ``inner_ip=None`` (no inner IPv4 header: ARP): no ECN bits.
    Leaves r0 = the outer total length."""
    src = enc.local.packed
    # its checksum: all but ECN, total length and remote summed in advance
    fixed = (0x4500 + (ttl << 8 | proto) + int.from_bytes(src[:2], "big")
             + int.from_bytes(src[2:], "big"))
    if inner_ip is None:
        ecn: list[Item] = [mov64_imm(R5, 0)]
    else:
        ecn = [
            ldx_mem(B, R5, R2, inner_ip + 1),
            alu32_imm(AND, R5, 3),
            jmp_imm(JNE, R5, 3, "encap_ecn"),
            mov64_imm(R5, 2),
            Label("encap_ecn"),
        ]
    return [
        *ecn,
        st_mem(B, R2, OUTER_IP, 0x45),
        stx_mem(B, R2, R5, OUTER_IP + 1),
        mov64_reg(R0, R7),
        alu64_imm(ADD, R0, extra),
        mov64_reg(R1, R0),
        be(R1, 16),
        stx_mem(H, R2, R1, OUTER_IP + 2),
        st_mem(W, R2, OUTER_IP + 4, 0),               # id 0, no DF, no fragment
        st_mem(B, R2, OUTER_IP + 8, ttl),
        st_mem(B, R2, OUTER_IP + 9, proto),
        st_mem(W, R2, OUTER_IP + 12, _imm(src)),
        mov32_reg(R1, R8),
        be(R1, 32),
        stx_mem(W, R2, R1, OUTER_IP + 16),
        alu64_reg(ADD, R5, R0),
        alu64_imm(ADD, R5, fixed),
        mov64_reg(R1, R8),
        alu64_imm(RSH, R1, 16),
        alu64_reg(ADD, R5, R1),
        mov64_reg(R1, R8),
        alu64_imm(AND, R1, 0xFFFF),
        alu64_reg(ADD, R5, R1),
        mov64_reg(R1, R5),                            # fold the carries, twice
        alu64_imm(RSH, R1, 16),
        alu64_imm(AND, R5, 0xFFFF),
        alu64_reg(ADD, R5, R1),
        mov64_reg(R1, R5),
        alu64_imm(RSH, R1, 16),
        alu64_reg(ADD, R5, R1),
        alu64_imm(XOR, R5, 0xFFFF),
        alu64_imm(AND, R5, 0xFFFF),
        be(R5, 16),
        stx_mem(H, R2, R5, OUTER_IP + 10),
        # the outer Ethernet type (bpf_redirect_neigh writes the addresses)
        st_mem(H, R2, 12, _imm(b"\x08\x00")),
    ]


def _redirect(enc: Encap, fib: str = "") -> list[Item]:
    """bpf_redirect_neigh(underlay interface, next hop = the remote in r8); exit.

    ``fib`` (a label prefix, unique in the program): a remote outside
    ``enc.connected`` is handed over without a next hop instead, so the kernel looks
    the route to it up (the outer destination, from the underlay interface)."""
    code: list[Item] = []
    if fib:
        code += [
            mov32_reg(R1, R8),
            alu32_imm(AND, R1, int(enc.connected.netmask)),
            *ld_imm64(R2, int(enc.connected.network_address)),
            jmp_reg(JEQ, R1, R2, f"{fib}_onlink"),
            mov64_imm(R1, enc.ifindex),
            mov64_imm(R2, 0),
            mov64_imm(R3, 0),
            mov64_imm(R4, 0),
            call(FN_REDIRECT_NEIGH),
            exit_(),
            Label(f"{fib}_onlink"),
        ]
    return code + [
        st_mem(W, FP, _NH, AF_INET),                  # struct bpf_redir_neigh
        mov32_reg(R1, R8),
        be(R1, 32),
        stx_mem(W, FP, R1, _NH + 4),
        st_mem(DW, FP, _NH + 8, 0),
        st_mem(W, FP, _NH + 16, 0),
        mov64_imm(R1, enc.ifindex),
        mov64_reg(R2, FP),
        alu64_imm(ADD, R2, _NH),
        mov64_imm(R3, 20),
        mov64_imm(R4, 0),
        call(FN_REDIRECT_NEIGH),
        exit_(),
    ]


def program(enc: Encap, vni: int, ttl: int, fallback: str, fib: bool = False) -> list[Item]:
    """VXLAN: encapsulate and redirect; r6 = skb (an IPv4 frame), r8 = remote (host
    order), a remote the caller found in ``enc.connected`` (``fib=True``: any remote,
    see :func:`_redirect`).

    Jumps to ``fallback`` (the tunnel-key path) when the headers are not linear or
    adjust_room refuses the packet; after that the packet is changed, so a failure is
    a drop (label ``drop``)."""
    return [
        *_linear(ETH_HLEN + 20, fallback),          # (then the inner headers are too)
        mov64_reg(R1, R6),                           # the flow's hash, of the inner headers
        call(FN_GET_HASH_RECALC),
        mov64_reg(R9, R0),
        ldx_mem(W, R7, R6, SKB_LEN),                 # the frame's length
        *_adjust_room(ROOM, ADJ_FLAGS, fallback),
        *_linear(INNER + ETH_HLEN + 2, "drop"),      # up to the inner IPv4 TOS
        # the inner Ethernet header: a copy of the one in front
        ldx_mem(W, R1, R2, 0), stx_mem(W, R2, R1, INNER),
        ldx_mem(W, R1, R2, 4), stx_mem(W, R2, R1, INNER + 4),
        ldx_mem(W, R1, R2, 8), stx_mem(W, R2, R1, INNER + 8),
        ldx_mem(H, R1, R2, 12), stx_mem(H, R2, R1, INNER + 12),
        *_outer_ipv4(enc, ttl, IPPROTO_UDP, INNER + ETH_HLEN, ROOM - ETH_HLEN),
        *_udp_vxlan(enc, vni),
        *_redirect(enc, "encap_fib" if fib else ""),
    ]


def _udp_vxlan(enc: Encap, vni: int) -> list[Item]:
    """UDP (a source port from the flow hash in r9, the fan's port, the length in r0 =
    the outer total length, no checksum) and VXLAN (flag I, the VNI); r2 = data."""
    return [
        alu64_imm(AND, R9, 0xFFFF - SPORT_MIN),
        alu64_imm(OR, R9, SPORT_MIN),
        be(R9, 16),
        stx_mem(H, R2, R9, OUTER_UDP),
        st_mem(H, R2, OUTER_UDP + 2, _imm(enc.port.to_bytes(2, "big"))),
        alu64_imm(ADD, R0, -20),
        be(R0, 16),
        stx_mem(H, R2, R0, OUTER_UDP + 4),
        st_mem(H, R2, OUTER_UDP + 6, 0),
        st_mem(W, R2, VXLAN_HDR, _imm(b"\x08\x00\x00\x00")),
        st_mem(W, R2, VXLAN_HDR + 4, _imm(vni.to_bytes(3, "big") + b"\x00")),
    ]


def _vlan(helper: int, tci: int = 0) -> list[Item]:
    code: list[Item] = [mov64_reg(R1, R6)]
    if helper == FN_SKB_VLAN_PUSH:
        code += [mov64_imm(R2, ETH_P_8021Q_NET), mov64_imm(R3, tci)]
    return code + [call(helper), jmp_imm(JNE, R0, 0, "drop")]


def program_frame(enc: Encap, vni: int, ttl: int) -> list[Item]:
    """VXLAN: encapsulate a frame that is not IPv4 (ARP) and redirect it; r6 = skb,
    r8 = remote (any: a remote outside ``enc.connected`` is routed by the kernel).

    ``bpf_skb_adjust_room`` takes only IPv4 and IPv6 skbs, so the room is made in
    front with ``bpf_skb_change_head`` (the frame, Ethernet header and all, becomes
    the inner frame as it is; such a frame is never GSO).  ``bpf_redirect_neigh`` in
    turn sends only skbs whose protocol is IPv4, and a program cannot set
    skb->protocol; but popping a VLAN tag out of the packet sets it to the Ethernet
    type behind the tag.  So: two tags pushed (the second push moves the first into
    the packet, in front of the outer Ethernet type just written, IPv4) and two
    popped (the first pop moves that tag back out and sets skb->protocol to IPv4, the
    second drops it): the bytes are as written, the protocol IPv4.  Any failure is a
    drop (label ``drop``)."""
    return [
        mov64_reg(R1, R6),
        call(FN_GET_HASH_RECALC),
        mov64_reg(R9, R0),
        ldx_mem(W, R7, R6, SKB_LEN),                 # the frame's length
        *_change_head(ROOM),
        *_linear(INNER + ETH_HLEN, "drop"),
        *_outer_ipv4(enc, ttl, IPPROTO_UDP, None, ROOM - ETH_HLEN),
        *_udp_vxlan(enc, vni),
        *_vlan(FN_SKB_VLAN_PUSH, 1),
        *_vlan(FN_SKB_VLAN_PUSH, 2),
        *_vlan(FN_SKB_VLAN_POP),
        *_vlan(FN_SKB_VLAN_POP),
        ldx_mem(W, R1, R6, SKB_PROTOCOL),
        jmp_imm(JNE, R1, ETH_P_IP_NET, "drop"),
        *_redirect(enc, "frame_fib"),
    ]


def program_plain(enc: Encap, vni: int, ttl: int) -> list[Item]:
    """VXLAN on a plain device (the fan's VNI, no remote, no forwarding entries), which
    sends nothing by itself: the program encapsulates every frame it lets through.
    IPv4 with :func:`program` (its headers pulled into the linear part first when they
    are not), anything else (ARP: the egress program lets nothing else through) with
    :func:`program_frame`; a remote outside ``enc.connected`` is routed by the kernel
    from the underlay interface.  Whatever cannot be encapsulated is dropped (label
    ``drop``).  r6 = skb, r8 = remote (host order), r9 = the frame's ethertype."""
    return [
        jmp_imm(JNE, R9, 0x0800, "plain_frame"),
        *_linear(ETH_HLEN + 20, "plain_pull"),
        ja("plain_ipv4"),
        Label("plain_pull"),
        mov64_reg(R1, R6),
        mov64_imm(R2, ETH_HLEN + 20),
        call(FN_SKB_PULL_DATA),
        jmp_imm(JNE, R0, 0, "drop"),
        Label("plain_ipv4"),
        *program(enc, vni, ttl, "drop", fib=True),
        Label("plain_frame"),
        *program_frame(enc, vni, ttl),
    ]


def program_ipip(enc: Encap, ttl: int, fallback: str) -> list[Item]:
    """IPIP: encapsulate and redirect; r6 = skb (an IPv4 packet, no link-layer header:
    the tunnel is an L3 device), r8 = remote as in :func:`program`.  Room for the
    outer IPv4 header first (marked IPIP for GSO), then for an Ethernet header in
    front (``bpf_skb_change_head``), which bpf_redirect_neigh fills.  ``fallback``
    and ``drop`` as in :func:`program`."""
    return [
        *_linear(20, fallback),
        ldx_mem(W, R7, R6, SKB_LEN),                 # the packet's length
        *_adjust_room(20, ADJ_ROOM_FIXED_GSO | ADJ_ROOM_ENCAP_L3_IPV4, fallback),
        *_change_head(ETH_HLEN),
        *_linear(OUTER_IP + 20 + 2, "drop"),         # up to the inner IPv4 TOS
        *_outer_ipv4(enc, ttl, IPPROTO_IPIP, OUTER_IP + 20, 20),
        *_redirect(enc),
    ]


def program_for(mode: str, enc: Encap, vni: int, ttl: int, fallback: str) -> list[Item]:
    """The encapsulation of a fan of ``mode`` ("vxlan": :func:`program`, "ipip":
    :func:`program_ipip`, which takes no VNI)."""
    if mode == "vxlan":
        return program(enc, vni, ttl, fallback)
    return program_ipip(enc, ttl, fallback)
