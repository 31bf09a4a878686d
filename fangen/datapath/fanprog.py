"""The upstream datapath's tc programs, emitted per fan (pure: no kernel access).

On kernels without Ubuntu's fan patch, a fan is a tunnel device plus two tc programs
on it: a collect-metadata ("external") device, or for an IPv4 VXLAN fan a plain one
(``FanParams.plain``).  Several fans can share a collect-metadata device
(the IPIP fans of a namespace, :mod:`fangen.datapath.tunnels`): each fan's
programs decide only for packets of that fan's overlay and hand everything else
to the next filter on the hook (``TC_ACT_UNSPEC``); the last filter,
:func:`drop_program`, drops what no fan claimed.  Verdicts:

* egress: find the inner destination (VXLAN mode: the IPv4 destination, or the
  ARP target address; IPIP mode: the IPv4 destination).  Outside the overlay, or
  not IPv4/ARP at all (IPv6, VLAN tags, other ethertypes, short frames): not
  ours, next filter.  In the overlay: drop it if it lies in our own slice or maps
  to the underlay's network or broadcast address (slices no host can own), else
  compute the remote underlay host with the fan formula
  (:meth:`fangen.fanmap.FanMap.host_for_address`), set the tunnel key (VNI,
  remote, TTL; VXLAN without an outer UDP checksum, like a hand-built VXLAN
  device) and pass.  With :class:`~fangen.datapath.encap.Encap` parameters, IPv4
  is then encapsulated by the program itself and redirected to the underlay
  interface (:mod:`fangen.datapath.encap`; a VXLAN fan's ARP and IPv6 go on with
  the tunnel key).  On a plain VXLAN device (``plain``: the fan's VNI, no remote)
  there is no tunnel key to go on with: every frame the program lets through, ARP
  included, is encapsulated (:func:`fangen.datapath.encap.program_plain`).  The
  headers are read in place (direct packet access); only headers outside the skb's
  linear part are copied with ``bpf_skb_load_bytes``.
  Frames that are neither IPv4 nor ARP leave through one labelled place,
  :data:`NOT_IPV4`.
* ingress: a plain device takes in only its own VNI and shows no tunnel key: pass
  (the sender is checked by the fan's nft input rule).  A collect-metadata device
  accepts every VNI and every sender.  VXLAN:
  another VNI is not ours (next filter); ours must come from a sender inside the
  underlay network.  IPIP: an inner destination outside the overlay is not ours;
  ours must come from a sender inside the underlay and be addressed to our own
  slice (a fan host is no relay into other hosts' slices).

The fan's constants are inlined as immediates: no maps, nothing pinned, so any
number of fans and host namespaces coexist.

``trace_mark=True`` (tests only) also stores the chosen remote (egress) or the
sender (ingress) in skb->mark, so ``BPF_PROG_TEST_RUN`` shows what the program
decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from fangen.datapath.bpf import (
    ADD,
    AND,
    BPF_F_ZERO_CSUM_TX,
    DW,
    FN_SKB_GET_TUNNEL_KEY,
    FN_SKB_LOAD_BYTES,
    FN_SKB_SET_TUNNEL_KEY,
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
    SKB_DATA,
    SKB_DATA_END,
    SKB_MARK,
    SKB_VLAN_PRESENT,
    TC_ACT_OK,
    TC_ACT_SHOT,
    TC_ACT_UNSPEC,
    TK_REMOTE_IPV4,
    TK_SIZE_V4,
    TK_TTL,
    TK_TUNNEL_ID,
    B,
    H,
    Item,
    Label,
    flatten,
    W,
    alu32_imm,
    alu64_imm,
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
from fangen.datapath import encap as encap_code
from fangen.datapath import fanprog6
from fangen.datapath.encap import Encap
from fangen.fanmap import FanMap, FanMapError

MODES = ("vxlan", "ipip")
VXLAN_PORT = 8472
DEFAULT_TTL = 64

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_HLEN = 14

# stack layout (offsets from the frame pointer; every slot 8-byte aligned)
_KEY = -32        # struct bpf_tunnel_key, first TK_SIZE_V4 (28) bytes: -32 .. -4
_PKT = -64        # packet bytes copied by bpf_skb_load_bytes: -64 .. -32


@dataclass(frozen=True)
class FanParams:
    """Everything a fan's programs depend on."""

    overlay: IPv4Network
    underlay: IPv4Network
    own_slice: IPv4Network
    vni: int
    mode: str = "vxlan"
    ttl: int = DEFAULT_TTL
    overlay6: IPv6Network | None = None      # a dual-stack fan's (fanprog6)
    encap: Encap | None = None               # IPv4 encapsulated by the program itself
    plain: bool = False                      # on a plain VXLAN device: every frame
                                             # encapsulated (encap.program_plain)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        fmap = FanMap(self.overlay, self.underlay)          # checks the prefix pair
        if (self.own_slice.prefixlen != fmap.slice_prefix
                or not self.own_slice.subnet_of(self.overlay)):
            raise FanMapError(f"{self.own_slice} is not a slice of {self.overlay} "
                              f"with underlay {self.underlay} (/{fmap.slice_prefix})")
        if not 0 <= self.vni < 1 << 24:
            raise ValueError(f"VNI {self.vni} does not fit in 24 bits")
        if not 1 <= self.ttl <= 255:
            raise ValueError(f"TTL {self.ttl} is not in 1..255")
        if self.encap is not None and (self.mode == "vxlan") != bool(self.encap.port):
            raise ValueError("a VXLAN fan's encapsulation needs its UDP port, an IPIP "
                             "fan's has none")
        if self.plain and (self.mode != "vxlan" or self.encap is None
                           or self.overlay6 is not None):
            raise ValueError("a plain receiving device is for a VXLAN fan whose program "
                             "encapsulates (not IPIP, not dual-stack)")

    @classmethod
    def for_host(cls, fmap: FanMap, host: IPv4Address | str, mode: str = "vxlan",
                 vni: int | None = None, ttl: int = DEFAULT_TTL) -> FanParams:
        """Parameters for the underlay host ``host`` (its own slice is derived)."""
        return cls(fmap.overlay, fmap.underlay, fmap.slice_for_host(host),
                   default_vni(fmap.overlay) if vni is None else vni, mode, ttl)

    @property
    def fanmap(self) -> FanMap:
        return FanMap(self.overlay, self.underlay)


def default_vni(overlay: IPv4Network) -> int:
    """LXD's choice: the overlay network address shifted right by 8."""
    return int(overlay.network_address) >> 8


def egress_decision(params: FanParams, addr: IPv4Address | str) -> tuple[str, IPv4Address | None]:
    """What the egress program does with an inner destination: ("next", None) when it
    is not this fan's, ("drop", None), or ("pass", remote).

    The reference the tests hold the emitted code to; the arithmetic is fanmap's.
    """
    addr = IPv4Address(addr)
    if addr not in params.overlay:
        return "next", None
    if addr in params.own_slice:
        return "drop", None
    remote = params.fanmap.host_for_address(addr)
    if params.underlay.prefixlen <= 30 and remote in (params.underlay.network_address,
                                                      params.underlay.broadcast_address):
        return "drop", None
    return "pass", remote


def expected_remote(params: FanParams, addr: IPv4Address | str) -> IPv4Address | None:
    """The remote the egress program sends ``addr`` to, or None (not sent)."""
    return egress_decision(params, addr)[1]


# ---------------------------------------------------------------- code pieces


def _load_bytes(offset: int, length: int, fail: str) -> list[Item]:
    """bpf_skb_load_bytes(skb = r6, offset, fp + _PKT, length); jump to ``fail`` on error."""
    return [
        mov64_reg(R1, R6),
        mov64_imm(R2, offset),
        mov64_reg(R3, FP),
        alu64_imm(ADD, R3, _PKT),
        mov64_imm(R4, length),
        call(FN_SKB_LOAD_BYTES),
        jmp_imm(JNE, R0, 0, fail),
    ]


def _zero_key() -> list[Item]:
    return [st_mem(DW, FP, _KEY, 0), st_mem(DW, FP, _KEY + 8, 0),
            st_mem(DW, FP, _KEY + 16, 0), st_mem(W, FP, _KEY + 24, 0)]


def _key_call(helper: int, fail: str, flags: int = 0) -> list[Item]:
    return [
        mov64_reg(R1, R6),
        mov64_reg(R2, FP),
        alu64_imm(ADD, R2, _KEY),
        mov64_imm(R3, TK_SIZE_V4),
        mov64_imm(R4, flags),
        call(helper),
        jmp_imm(JNE, R0, 0, fail),
    ]


_VERDICTS = {"pass": TC_ACT_OK, "drop": TC_ACT_SHOT, "next": TC_ACT_UNSPEC}


def _verdicts(code: list[Item] | None = None) -> list[Item]:
    """The three verdicts, as labels; with ``code``, only those it jumps to (the
    verifier refuses unreachable instructions)."""
    used = None if code is None else {getattr(item, "target", None) for item in flatten(code)}
    out: list[Item] = []
    for name, verdict in _VERDICTS.items():
        if used is None or name in used:
            out += [Label(name), mov64_imm(R0, verdict), exit_()]
    return out


def _ipv4_dst(ip_offset: int) -> list[Item]:
    """r7 = IPv4 destination (host order) of the header at ip_offset; next filter if
    there is no IPv4 header."""
    return [*_load_bytes(ip_offset, 20, "next"), *_ipv4_fields(FP, _PKT)]


def _ipv4_fields(base: int, off: int) -> list[Item]:
    """The IPv4 header at ``base`` + ``off`` (the stack copy, or the packet in place):
    r7 = its destination (host order); next filter unless version 4."""
    return [
        ldx_mem(B, R1, base, off),
        alu32_imm(AND, R1, 0xF0),
        jmp_imm(JNE, R1, 0x40, "next"),
        ldx_mem(W, R7, base, off + 16),
        be(R7, 32),
    ]


def _arp_target() -> list[Item]:
    """r7 = ARP target protocol address (host order); next filter unless Ethernet/IPv4 ARP."""
    return [*_load_bytes(ETH_HLEN, 28, "next"), *_arp_fields(FP, _PKT)]


def _arp_fields(base: int, off: int) -> list[Item]:
    """The ARP header at ``base`` + ``off``: r7 = its target protocol address (host
    order); next filter unless Ethernet/IPv4 ARP."""
    return [
        ldx_mem(W, R1, base, off),           # htype, ptype
        be(R1, 32),
        jmp_imm(JNE, R1, 0x00010800, "next"),
        ldx_mem(H, R1, base, off + 4),       # hlen, plen
        be(R1, 16),
        jmp_imm(JNE, R1, 0x0604, "next"),
        ldx_mem(W, R7, base, off + 24),      # target protocol address
        be(R7, 32),
    ]


def _in_net(reg: int, net: IPv4Network, otherwise: str, *, inside: bool = True) -> list[Item]:
    """Jump to ``otherwise`` unless reg (host order) is in net (``inside=False``: unless
    it is outside)."""
    return [
        mov32_reg(R1, reg),
        alu32_imm(AND, R1, int(net.netmask)),
        *ld_imm64(R2, int(net.network_address)),
        jmp_reg(JNE if inside else JEQ, R1, R2, otherwise),
    ]


def _map_remote(params: FanParams) -> list[Item]:
    """r7 = inner destination -> r8 = remote underlay host; next filter outside the
    overlay, drop for our own slice and unusable remotes."""
    fmap = params.fanmap
    ov_hostmask = int(params.overlay.hostmask)
    ul_hostmask = int(params.underlay.hostmask)
    code: list[Item] = [
        *_in_net(R7, params.overlay, "next"),                      # this fan's at all?
        *_in_net(R7, params.own_slice, "drop", inside=False),      # stays home
        # remote = underlay | ((dst & ~overlay_mask) >> shift)
        mov32_reg(R8, R7),
        alu32_imm(AND, R8, ov_hostmask),
        alu32_imm(RSH, R8, fmap.shift),
        alu32_imm(OR, R8, int(params.underlay.network_address)),
    ]
    if params.underlay.prefixlen <= 30:
        # never the underlay's network or broadcast address
        code += [
            mov32_reg(R1, R8),
            alu32_imm(AND, R1, ul_hostmask),
            jmp_imm(JEQ, R1, 0, "drop"),
            *ld_imm64(R2, ul_hostmask),
            jmp_reg(JEQ, R1, R2, "drop"),
        ]
    return code


def _ipv4_dst_direct(ip_offset: int, slow: str) -> list[Item]:
    """r7 = IPv4 destination (host order) read in place (skb->data); with r2 = data and
    r3 = data_end loaded.  To ``slow`` when the header is not all in the linear part,
    next filter when it is no IPv4 header."""
    return [
        mov64_reg(R4, R2),
        alu64_imm(ADD, R4, ip_offset + 20),
        jmp_reg(JGT, R4, R3, slow),
        *_ipv4_fields(R2, ip_offset),
    ]


def _arp_target_direct(slow: str) -> list[Item]:
    """:func:`_arp_target`, read in place (r2 = data, r3 = data_end)."""
    return [
        mov64_reg(R4, R2),
        alu64_imm(ADD, R4, ETH_HLEN + 28),
        jmp_reg(JGT, R4, R3, slow),
        *_arp_fields(R2, ETH_HLEN),
    ]


def _packet_pointers() -> list[Item]:
    return [ldx_mem(W, R2, R6, SKB_DATA), ldx_mem(W, R3, R6, SKB_DATA_END)]


NOT_IPV4 = "not_ipv4"
"""The label of the one place where VXLAN egress decides a frame is neither IPv4 nor ARP.

There r6 = skb and r9 = the frame's ethertype (host order); what follows the label
is :func:`_not_ipv4`: not this fan's, next filter.  Another frame kind (IPv6) is
added by handling it there, and nowhere else."""


def _not_ipv4(params: FanParams, trace_mark: bool) -> list[Item]:
    """IPv6 for a dual-stack fan (:func:`fangen.datapath.fanprog6.egress_hook`, which
    takes the ethertype in r1), else next filter."""
    return [Label(NOT_IPV4), mov64_reg(R1, R9),
            *fanprog6.egress_hook(params, trace_mark=trace_mark)]


def egress(params: FanParams, *, trace_mark: bool = False, direct: bool = True) -> list[Item]:
    """The fan's egress program on the tunnel device.

    The headers are read in place (direct packet access, no helper call) when they
    are in the skb's linear part, which is where the stack puts them; otherwise,
    and always with ``direct=False`` (tests: the same decisions by the other
    path), they are copied with ``bpf_skb_load_bytes``.
    """
    code: list[Item] = [mov64_reg(R6, R1)]
    if params.mode == "vxlan":
        code += [ldx_mem(W, R1, R6, SKB_VLAN_PRESENT),     # the fan is untagged
                 jmp_imm(JNE, R1, 0, "next")]
        if direct:
            code += [
                *_packet_pointers(),
                mov64_reg(R4, R2),
                alu64_imm(ADD, R4, ETH_HLEN + 20),   # Ethernet + IPv4: also enough for
                jmp_reg(JGT, R4, R3, "slow"),        # the ethertype of an ARP frame
                ldx_mem(H, R9, R2, 12),
                be(R9, 16),
                jmp_imm(JEQ, R9, ETH_P_ARP, "arp_direct"),
                jmp_imm(JNE, R9, ETH_P_IP, NOT_IPV4),
                *_ipv4_dst_direct(ETH_HLEN, "slow"),
                ja("map"),
                Label("arp_direct"),
                *_arp_target_direct("slow"),
                ja("map"),
            ]
        code += [
            Label("slow"),
            *_load_bytes(12, 2, "next"),
            ldx_mem(H, R9, FP, _PKT),
            be(R9, 16),
            jmp_imm(JEQ, R9, ETH_P_ARP, "arp"),
            jmp_imm(JNE, R9, ETH_P_IP, NOT_IPV4),
            *_ipv4_dst(ETH_HLEN),
            ja("map"),
            Label("arp"),
            *_arp_target(),
            Label("map"),
        ]
    else:   # ipip: an L3 device, the IPv4 header comes first
        if direct:
            code += [*_packet_pointers(), *_ipv4_dst_direct(0, "slow"), ja("map")]
        code += [Label("slow"), *_ipv4_dst(0), Label("map")]
    code += _map_remote(params)
    if trace_mark:
        code.append(stx_mem(W, R6, R8, SKB_MARK))
    # VXLAN: no outer UDP checksum, like a VXLAN device built by hand (and the kernel
    # datapath's): without the flag the kernel would compute one for every packet
    flags = BPF_F_ZERO_CSUM_TX if params.mode == "vxlan" else 0
    code += [
        *_zero_key(),
        st_mem(W, FP, _KEY + TK_TUNNEL_ID, params.vni if params.mode == "vxlan" else 0),
        stx_mem(W, FP, R8, _KEY + TK_REMOTE_IPV4),
        st_mem(B, FP, _KEY + TK_TTL, params.ttl),
        *_key_call(FN_SKB_SET_TUNNEL_KEY, "drop", flags),
    ]
    if params.plain:                    # every frame encapsulated (encap.program_plain)
        code += encap_code.program_plain(params.encap, params.vni, params.ttl)
    elif params.encap is not None:      # fangen.datapath.encap: IPv4 to the segment
        # after the key, also for what is encapsulated: its metadata dst replaces the
        # overlay route's, which a packet queued for an unresolved underlay neighbour
        # would otherwise be re-sent by (encap.py says how that loses it)
        if params.mode == "vxlan":
            code.append(jmp_imm(JNE, R9, ETH_P_IP, "pass"))
        code += _in_net(R8, params.encap.connected, "pass")
        code += encap_code.program_for(params.mode, params.encap, params.vni, params.ttl,
                                       "pass")
    else:
        code.append(ja("pass"))
    if params.mode == "vxlan":
        code += _not_ipv4(params, trace_mark)
    code += _verdicts(code)
    return code


def ingress(params: FanParams, *, trace_mark: bool = False, direct: bool = True) -> list[Item]:
    """The fan's ingress program on the tunnel device.

    VXLAN: our VNI (else next filter), from a sender inside the underlay.  IPIP: an
    inner destination in the overlay (else next filter), from a sender inside the
    underlay, to our own slice.
    """
    if params.plain:
        # a plain device takes in only its own VNI and has no tunnel key to show; the
        # sender's address is checked by nftables on the outer packet
        return [mov64_imm(R0, TC_ACT_OK), exit_()]
    code: list[Item] = [
        mov64_reg(R6, R1),
        # no zeroing first: the helper's buffer is ARG_PTR_TO_UNINIT_MEM (it fills
        # every byte, and zeroes them on failure)
        *_key_call(FN_SKB_GET_TUNNEL_KEY, "next"),
        ldx_mem(W, R8, FP, _KEY + TK_REMOTE_IPV4),
    ]
    if params.mode == "vxlan":
        code += [
            ldx_mem(W, R1, FP, _KEY + TK_TUNNEL_ID),
            jmp_imm(JNE, R1, params.vni, "next"),
            *_in_net(R8, params.underlay, "drop"),
        ]
    else:   # ipip: the inner IPv4 header is the packet
        if direct:
            code += [*_packet_pointers(), *_ipv4_dst_direct(0, "slow"), ja("check")]
        code += [
            Label("slow"),
            *_ipv4_dst(0),
            Label("check"),
            *_in_net(R7, params.overlay, "next"),
            *_in_net(R8, params.underlay, "drop"),
            *_in_net(R7, params.own_slice, "drop"),
        ]
    if trace_mark:
        code.append(stx_mem(W, R6, R8, SKB_MARK))
    code += [ja("pass"), *_verdicts()]
    return code


def drop_program() -> list[Item]:
    """The last filter on each hook of a fan device: drop what no fan's program claimed."""
    return [mov64_imm(R0, TC_ACT_SHOT), exit_()]


DROP_PROGRAM_NAME = "fan_drop"


def program_name(params: FanParams, direction: str) -> str:
    """The name the kernel shows for a program (at most 15 characters)."""
    if params.plain and direction == "egress":
        return "fan_vx_plain"
    if params.encap is not None and direction == "egress":
        return f"fan_{params.mode[:2]}_encap"
    return f"fan_{params.mode[:2]}_{direction[:2]}"


def programs(params: FanParams, *, trace_mark: bool = False,
             direct: bool = True) -> dict[str, list[Item]]:
    """Both programs, by tc direction (``direct=False``: headers always copied with
    ``bpf_skb_load_bytes``, for tests of that path)."""
    return {"egress": egress(params, trace_mark=trace_mark, direct=direct),
            "ingress": ingress(params, trace_mark=trace_mark, direct=direct)}
