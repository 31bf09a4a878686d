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
* outside the overlay6 (link-local, every multicast that is not a solicitation:
  router advertisements, MLD, DAD for link-local addresses): not ours, next filter,
  so it stays on this host's bridge;
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
    AND,
    B,
    DW,
    FP,
    JEQ,
    JNE,
    OR,
    R1,
    R2,
    R6,
    R7,
    R8,
    SKB_MARK,
    TK_REMOTE_IPV4,
    TK_TTL,
    TK_TUNNEL_ID,
    W,
    Item,
    Label,
    alu32_imm,
    alu64_reg,
    be,
    ja,
    jmp_imm,
    jmp_reg,
    ld_imm64,
    ldx_mem,
    mov64_reg,
    st_mem,
    stx_mem,
)
from fangen.fanmap import (
    SLICE6_PREFIX,
    FanMap6,
    FanMapError,
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


def egress_decision6(p6: Params6, addr: IPv6Address | str) -> tuple[str, IPv4Address | None]:
    """The reference for the emitted code: ("next", None), ("drop", None) or
    ("pass", remote) for the address that decides (destination or NS target)."""
    addr = IPv6Address(addr)
    if addr not in p6.overlay6:
        return "next", None
    if addr in p6.own_slice6:
        return "drop", None
    remote = p6.fanmap6.host_for_address(addr)
    if p6.underlay.prefixlen <= 30 and remote in (p6.underlay.network_address,
                                                  p6.underlay.broadcast_address):
        return "drop", None
    return "pass", remote


def _upper64(net: IPv6Network) -> tuple[int, int]:
    """(mask, value) of a network of at most /64 over the upper 64 bits of an address."""
    bits = net.prefixlen
    mask = ((1 << bits) - 1) << (64 - bits) if bits else 0
    return mask, int(net.network_address) >> 64


def egress_hook(params, *, trace_mark: bool = False) -> list[Item]:
    """Code for fanprog's egress program where a frame is neither IPv4 nor ARP (r1:
    the ethertype in host order, r6: the skb).  Ends in fanprog's verdict labels."""
    p6 = Params6.of(params)
    if p6 is None:
        return [ja("next")]
    from fangen.datapath import fanprog as v4

    ov_mask, ov_net = _upper64(p6.overlay6)
    _, own = _upper64(p6.own_slice6)
    host_bits = SLICE6_PREFIX - p6.overlay6.prefixlen          # = 32 - underlay prefix
    host_mask = (1 << host_bits) - 1
    code: list[Item] = [
        jmp_imm(JNE, R1, ETH_P_IPV6, "next"),
        *v4._load_bytes(ETH_HLEN, 8, "next"),
        ldx_mem(B, R1, FP, v4._PKT),                       # version
        alu32_imm(AND, R1, 0xF0),
        jmp_imm(JNE, R1, 0x60, "next"),
        ldx_mem(B, R1, FP, v4._PKT + _NEXT_HEADER),
        jmp_imm(JNE, R1, IPPROTO_ICMPV6, "v6_dst"),
        *v4._load_bytes(ETH_HLEN + IPV6_HLEN, 1, "v6_dst"),
        ldx_mem(B, R1, FP, v4._PKT),                       # ICMPv6 type
        jmp_imm(JNE, R1, ND_NEIGHBOR_SOLICIT, "v6_dst"),
        *v4._load_bytes(ETH_HLEN + _NS_TARGET, 8, "next"),   # the target's upper half
        ja("v6_map"),
        Label("v6_dst"),
        *v4._load_bytes(ETH_HLEN + _DST, 8, "next"),         # the destination's
        Label("v6_map"),
        ldx_mem(DW, R7, FP, v4._PKT),
        be(R7, 64),                                         # r7: upper 64 bits, host order
        mov64_reg(R1, R7),
        *ld_imm64(R2, ov_mask),
        alu64_reg(AND, R1, R2),
        *ld_imm64(R2, ov_net),
        jmp_reg(JNE, R1, R2, "next"),                       # not in the overlay6
        *ld_imm64(R2, own),
        jmp_reg(JEQ, R7, R2, "drop"),                       # our own slice stays home
        mov64_reg(R8, R7),
        *ld_imm64(R2, host_mask),
        alu64_reg(AND, R8, R2),                             # r8: the host bits
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
        *v4._key_call(v4.FN_SKB_SET_TUNNEL_KEY, "drop"),
        ja("pass"),
    ]
    return code
