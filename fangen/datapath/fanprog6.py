"""IPv6 in the VXLAN fan's egress program: a dual-stack fan's overlay6 (pure).

:mod:`fangen.datapath.fanprog` emits the fan's programs; where its egress program
finds a frame that is neither IPv4 nor ARP, it asks :func:`egress_hook` for the
code that follows.  Without an overlay6 that is "not ours: next filter", as before.
With one, an IPv6 frame (untagged; the VLAN check came first) is mapped like an
IPv4 one:

* the address that decides is the IPv6 destination, or for a neighbour
  solicitation (ICMPv6 type 135 right after the fixed header) the target address
  in its payload: solicitations go to a solicited-node multicast address, and the
  target says which host owns the neighbour, as the ARP target does for IPv4;
* a fan bridge's link-local address (fe80::fa:0:H:H, :func:`fangen.fanmap.host_link_local`)
  carries the host bits H: a host forwarding into another host's slice solicits from
  it, and the answer goes back to that host (its own: drop);
* outside the overlay6 (other link-local addresses, every multicast that is not a
  solicitation: router advertisements, MLD, DAD for link-local addresses): not ours,
  next filter, so it stays on this host's bridge;
* in this host's own IPv6 slice (DAD for the host's own addresses, a solicitation
  for a local container): drop, it never leaves the host;
* else the remote underlay host is the underlay network with the host bits read
  back from the address (:meth:`fangen.fanmap.FanMap6.host_for_address`): the
  IPv6 slice is a /64, so the host bits sit at the low end of the upper 64 bits,
  and one 64-bit load, mask and compare decide.  The underlay's network and
  broadcast addresses are dropped, as for IPv4.  The tunnel key is set as for
  IPv4 (the underlay is IPv4).

Ingress needs nothing new: a VXLAN fan's ingress program checks the VNI and the
sender, whatever the inner frame carries.  The code reuses fanprog's stack layout
and key helpers (imported when the hook is called, after fanprog has loaded).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from fangen.datapath.bpf import (
    ADD,
    AND,
    B,
    DW,
    FN_SKB_LOAD_BYTES,
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
    R6,
    R7,
    R8,
    R9,
    RSH,
    SKB_MARK,
    TK_REMOTE_IPV4,
    TK_TTL,
    TK_TUNNEL_ID,
    W,
    Item,
    Label,
    alu32_imm,
    alu64_imm,
    alu64_reg,
    be,
    call,
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
from fangen.fanmap import (
    LINK_LOCAL_MARK,
    FanMap6,
    FanMapError,
    hostpart_of_link_local,
    hostpart_of_slice,
    slice6_for_hostpart,
)

ETH_P_IPV6 = 0x86DD
ETH_HLEN = 14
IPV6_HLEN = 40
IPPROTO_ICMPV6 = 58
ND_NEIGHBOR_SOLICIT = 135
_NEXT_HEADER = 6            # offsets inside the IPv6 header
_DST = 24
_NS_TARGET = IPV6_HLEN + 8  # type, code, checksum, reserved, then the target


@dataclass(frozen=True)
class Params6:
    """What the IPv6 part of a fan's egress program depends on."""

    overlay6: IPv6Network
    underlay: IPv4Network
    own_slice6: IPv6Network

    def __post_init__(self) -> None:
        fmap = FanMap6(self.overlay6, self.underlay)            # checks for /64 slices
        if self.own_slice6.prefixlen != fmap.slice_prefix or \
                not self.own_slice6.subnet_of(self.overlay6):
            raise FanMapError(f"{self.own_slice6} is not an IPv6 slice of {self.overlay6}")

    @classmethod
    def of(cls, params) -> Params6 | None:
        """From a :class:`fangen.datapath.fanprog.FanParams` (None without overlay6):
        the own IPv6 slice follows from the own IPv4 slice's host bits."""
        overlay6 = getattr(params, "overlay6", None)
        if overlay6 is None:
            return None
        own = slice6_for_hostpart(overlay6, hostpart_of_slice(params.overlay, params.own_slice))
        return cls(overlay6, params.underlay, own)

    @property
    def fanmap6(self) -> FanMap6:
        return FanMap6(self.overlay6, self.underlay)

    @property
    def host_mask(self) -> int:
        return int(self.underlay.hostmask)

    @property
    def own_hostpart(self) -> int:
        return (int(self.own_slice6.network_address) >> 64) & self.host_mask


def egress_decision6(p6: Params6, addr: IPv6Address | str) -> tuple[str, IPv4Address | None]:
    """The reference for the emitted code: ("next", None), ("drop", None) or
    ("pass", remote) for the address that decides (destination or NS target)."""
    addr = IPv6Address(addr)
    if addr in p6.overlay6:
        if addr in p6.own_slice6:
            return "drop", None
        hostpart = (int(addr) >> 64) & p6.host_mask
    else:
        hostpart = hostpart_of_link_local(addr)
        if hostpart is None or hostpart > p6.host_mask:
            return "next", None
        if hostpart == p6.own_hostpart:
            return "drop", None
    if p6.underlay.prefixlen <= 30 and hostpart in (0, p6.host_mask):
        return "drop", None
    return "pass", IPv4Address(int(p6.underlay.network_address) | hostpart)


def _upper64(net: IPv6Network) -> tuple[int, int]:
    """(mask, value) of a network of at most /64 over the upper 64 bits of an address."""
    bits = net.prefixlen
    mask = ((1 << bits) - 1) << (64 - bits) if bits else 0
    return mask, int(net.network_address) >> 64


def _load_at_r9(length: int, fail: str) -> list[Item]:
    """bpf_skb_load_bytes(skb, r9, scratch, length), the offset in r9."""
    from fangen.datapath import fanprog as v4

    return [
        mov64_reg(R1, R6),
        mov64_reg(R2, R9),
        mov64_reg(R3, FP),
        alu64_imm(ADD, R3, v4._PKT),
        mov64_imm(R4, length),
        call(FN_SKB_LOAD_BYTES),
        jmp_imm(JNE, R0, 0, fail),
    ]


def egress_hook(params, *, trace_mark: bool = False) -> list[Item]:
    """Code for fanprog's egress program where a frame is neither IPv4 nor ARP (r1:
    the ethertype in host order, r6: the skb).  Ends in fanprog's verdict labels."""
    p6 = Params6.of(params)
    if p6 is None:
        return [ja("next")]
    from fangen.datapath import fanprog as v4

    ov_mask, ov_net = _upper64(p6.overlay6)
    _, own = _upper64(p6.own_slice6)
    code: list[Item] = [
        jmp_imm(JNE, R1, ETH_P_IPV6, "next"),
        *v4._load_bytes(ETH_HLEN, 8, "next"),
        ldx_mem(B, R1, FP, v4._PKT),                       # version
        alu32_imm(AND, R1, 0xF0),
        jmp_imm(JNE, R1, 0x60, "next"),
        mov64_imm(R9, ETH_HLEN + _DST),                    # r9: where the address is
        ldx_mem(B, R1, FP, v4._PKT + _NEXT_HEADER),
        jmp_imm(JNE, R1, IPPROTO_ICMPV6, "v6_load"),
        *v4._load_bytes(ETH_HLEN + IPV6_HLEN, 1, "v6_load"),
        ldx_mem(B, R1, FP, v4._PKT),                       # ICMPv6 type
        jmp_imm(JNE, R1, ND_NEIGHBOR_SOLICIT, "v6_load"),
        mov64_imm(R9, ETH_HLEN + _NS_TARGET),              # a solicitation: its target
        Label("v6_load"),
        *_load_at_r9(16, "next"),
        ldx_mem(DW, R7, FP, v4._PKT),
        be(R7, 64),                                         # r7: upper 64 bits, host order
        *ld_imm64(R2, LINK_LOCAL_MARK >> 64),
        jmp_reg(JNE, R7, R2, "v6_overlay"),
        # a link-local address: a fan bridge's (fe80::fa:0:H:H) carries the host bits
        ldx_mem(DW, R8, FP, v4._PKT + 8),
        be(R8, 64),
        mov64_reg(R1, R8),
        alu64_imm(RSH, R1, 32),
        jmp_imm(JNE, R1, (LINK_LOCAL_MARK >> 32) & 0xFFFF_FFFF, "next"),
        mov32_reg(R8, R8),                                  # the low 32 bits: host bits
        *ld_imm64(R2, p6.host_mask),
        jmp_reg(JGT, R8, R2, "next"),
        *ld_imm64(R1, p6.own_hostpart),
        jmp_reg(JEQ, R8, R1, "drop"),                       # our own bridge
        ja("v6_host"),
        Label("v6_overlay"),
        mov64_reg(R1, R7),
        *ld_imm64(R2, ov_mask),
        alu64_reg(AND, R1, R2),
        *ld_imm64(R2, ov_net),
        jmp_reg(JNE, R1, R2, "next"),                       # not in the overlay6
        *ld_imm64(R2, own),
        jmp_reg(JEQ, R7, R2, "drop"),                       # our own slice stays home
        mov64_reg(R8, R7),
        *ld_imm64(R2, p6.host_mask),
        alu64_reg(AND, R8, R2),                             # r8: the host bits
        Label("v6_host"),                                   # r2: the host mask
    ]
    if p6.underlay.prefixlen <= 30:
        code += [
            jmp_imm(JEQ, R8, 0, "drop"),
            jmp_reg(JEQ, R8, R2, "drop"),
        ]
    code.append(alu32_imm(OR, R8, int(p6.underlay.network_address)))
    if trace_mark:
        code.append(stx_mem(W, R6, R8, SKB_MARK))
    code += [
        *v4._zero_key(),
        st_mem(W, FP, v4._KEY + TK_TUNNEL_ID, params.vni),
        stx_mem(W, FP, R8, v4._KEY + TK_REMOTE_IPV4),
        st_mem(B, FP, v4._KEY + TK_TTL, params.ttl),
        *v4._key_call(v4.FN_SKB_SET_TUNNEL_KEY, "drop", v4.BPF_F_ZERO_CSUM_TX),  # as IPv4
        ja("pass"),
    ]
    return code
