"""The kernel fan datapath: Ubuntu's fan uAPI over rtnetlink.

A kernel with the fan patch (Ubuntu's, or ours in kernel/patches/) maps an
overlay network onto an underlay network inside an IPIP tunnel (or a VXLAN
device): the tunnel has a local address and no remote, and every packet is
sent to the underlay host computed from its inner destination.

uAPI (numbers as in the Ubuntu kernel)::

    IFLA_IPTUN_FAN_MAP  = 33   nested, in IFLA_INFO_DATA of an "ipip" link
    IFLA_VXLAN_FAN_MAP  = 33   nested, in IFLA_INFO_DATA of a "vxlan" link
      IFLA_FAN_MAPPING  = 1    one per map: struct ifla_fan_map (12 bytes)

    struct ifla_fan_map {
            __be32 underlay;        network order
            __be32 overlay;         network order
            __u16  underlay_prefix; host order
            __u16  overlay_prefix;  host order
    };

In a request a mapping with overlay and underlay adds a map, overlay with
underlay 0 deletes that overlay's map, and overlay 0 with underlay 0 deletes
all maps.  ``/proc/sys/net/fan/version`` reads 3 when the IPIP fan is there,
``/proc/sys/net/fan/vxlan`` reads 4 for the VXLAN fan.

Attribute 33 is the fan map only where the kernel says so: upstream Linux 6.14
gave VXLAN's attribute 33 to IFLA_VXLAN_RESERVED_BITS (8 bytes, always in a
dump).  So the runtime sends it only when ``/proc/sys/net/fan`` announces the
fan (:func:`present`), and after every creation or change the attribute is read
back and must decode, strictly, as fan maps holding what was asked for
(:func:`fan_attr_meaning`); otherwise the link just made is deleted again and
:class:`NotFanKernel` is raised, which the runtime answers by falling back to
the upstream datapath.

The first half of this module is pure (bytes in, bytes out).  The second half
talks to the kernel through a small rtnetlink socket of its own, opened in the
network namespace of a pyroute2 handle, of a named namespace, or of the
caller.  It builds its messages itself so that it does not depend on how a
given pyroute2 release models IPIP and VXLAN attributes.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import os
import socket
import struct
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

# --- uAPI numbers ---------------------------------------------------------

IFLA_IPTUN_FAN_MAP = 33
IFLA_VXLAN_FAN_MAP = 33
IFLA_FAN_UNSPEC = 0
IFLA_FAN_MAPPING = 1

FAN_VERSION_IPIP = 3
FAN_VERSION_VXLAN = 4

# <linux/if_tunnel.h>
IFLA_IPTUN_LINK = 1
IFLA_IPTUN_LOCAL = 2
IFLA_IPTUN_REMOTE = 3
IFLA_IPTUN_TTL = 4
IFLA_IPTUN_TOS = 5
IFLA_IPTUN_PROTO = 9
IFLA_IPTUN_PMTUDISC = 10
IFLA_IPTUN_COLLECT_METADATA = 19
IFLA_IPTUN_FWMARK = 20

# <linux/if_link.h>
IFLA_VXLAN_ID = 1
IFLA_VXLAN_LINK = 3
IFLA_VXLAN_LOCAL = 4
IFLA_VXLAN_TTL = 5
IFLA_VXLAN_LEARNING = 7
IFLA_VXLAN_PORT = 15

IFLA_MTU = 4
IFLA_IFNAME = 3
IFLA_LINK = 5
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2

# <linux/rtnetlink.h>, <linux/netlink.h>
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF
IFF_UP = 0x1
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NLMSGERR_ATTR_MSG = 1
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200

SIOCGSKNS = 0x894C
CLONE_NEWNET = 0x40000000

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_RTATTR = struct.Struct("=HH")
# struct ifla_fan_map: addresses in network order, prefixes in host order.
FAN_MAP_STRUCT = struct.Struct("=4s4sHH")
assert FAN_MAP_STRUCT.size == 12


class KernelFanError(OSError):
    """A netlink request failed: errno, strerror and the kernel's extack text."""

    def __init__(self, err: int, message: str = "", request: str = ""):
        text = os.strerror(err)
        if message:
            text += f" ({message})"
        if request:
            text = f"{request}: {text}"
        super().__init__(err, text)
        self.extack = message


class NotFanKernel(KernelFanError):
    """The kernel does not take attribute 33 as fan maps (ignored, or it means
    something else there): no kernel fan datapath on this kernel."""


# --- pure encoding ----------------------------------------------------------

@dataclass(frozen=True)
class FanMapping:
    """One struct ifla_fan_map, as plain values (no validity checks)."""

    overlay: IPv4Address
    overlay_prefix: int
    underlay: IPv4Address
    underlay_prefix: int

    @classmethod
    def of(cls, overlay, underlay=None) -> FanMapping:
        """From networks or strings (``"250.0.0.0/8"``) or a FanMap-like object.

        ``underlay=None`` or ``"0.0.0.0/0"`` makes a delete request for the
        overlay; ``of("0.0.0.0/0")`` is the flush request.
        """
        if underlay is None and hasattr(overlay, "underlay"):
            overlay, underlay = overlay.overlay, overlay.underlay
        ov = IPv4Network(overlay)
        un = IPv4Network(underlay if underlay is not None else "0.0.0.0/0")
        return cls(ov.network_address, ov.prefixlen, un.network_address, un.prefixlen)

    @property
    def overlay_net(self) -> IPv4Network:
        return IPv4Network((self.overlay, self.overlay_prefix), strict=False)

    @property
    def underlay_net(self) -> IPv4Network:
        return IPv4Network((self.underlay, self.underlay_prefix), strict=False)

    def __str__(self) -> str:
        return (f"{self.overlay}/{self.overlay_prefix}:"
                f"{self.underlay}/{self.underlay_prefix}")


FLUSH = FanMapping(IPv4Address(0), 0, IPv4Address(0), 0)


def _as_mapping(item) -> FanMapping:
    if isinstance(item, FanMapping):
        return item
    if isinstance(item, (tuple, list)):
        return FanMapping.of(*item)
    if isinstance(item, str) and ":" in item:
        return FanMapping.of(*item.split(":", 1))
    return FanMapping.of(item)


def pack_fan_map(item) -> bytes:
    """The 12 bytes of struct ifla_fan_map."""
    m = _as_mapping(item)
    return FAN_MAP_STRUCT.pack(m.underlay.packed, m.overlay.packed,
                               m.underlay_prefix, m.overlay_prefix)


def unpack_fan_map(data: bytes) -> FanMapping:
    if len(data) != FAN_MAP_STRUCT.size:
        raise ValueError(f"struct ifla_fan_map is {FAN_MAP_STRUCT.size} bytes, got {len(data)}")
    underlay, overlay, uplen, oplen = FAN_MAP_STRUCT.unpack(data)
    return FanMapping(IPv4Address(overlay), oplen, IPv4Address(underlay), uplen)


def _align(n: int) -> int:
    return (n + 3) & ~3


def nla(attr_type: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, attr_type) + payload + b"\0" * (_align(length) - length)


def nla_nested(attr_type: int, children: Iterable[bytes]) -> bytes:
    return nla(attr_type | NLA_F_NESTED, b"".join(children))


def parse_nlas(data: bytes) -> list[tuple[int, bytes]]:
    """[(type without flags, payload)] of a run of attributes."""
    out = []
    off = 0
    while off + _RTATTR.size <= len(data):
        length, attr_type = _RTATTR.unpack_from(data, off)
        if length < _RTATTR.size or off + length > len(data):
            raise ValueError(f"bad attribute length {length} at offset {off}")
        out.append((attr_type & NLA_TYPE_MASK, bytes(data[off + _RTATTR.size:off + length])))
        off += _align(length)
    return out


def encode_fan_map(maps: Iterable, attr_type: int = IFLA_IPTUN_FAN_MAP) -> bytes:
    """The nested IFLA_IPTUN_FAN_MAP (or IFLA_VXLAN_FAN_MAP) attribute."""
    return nla_nested(attr_type, (nla(IFLA_FAN_MAPPING, pack_fan_map(m)) for m in maps))


def encode_vxlan_fan_map(maps: Iterable) -> bytes:
    return encode_fan_map(maps, IFLA_VXLAN_FAN_MAP)


def decode_fan_map(payload: bytes) -> list[FanMapping]:
    """Maps from the payload of a fan map nest (children of other types skipped)."""
    return [unpack_fan_map(p) for t, p in parse_nlas(payload) if t == IFLA_FAN_MAPPING]


def decode_fan_map_strict(payload: bytes) -> list[FanMapping]:
    """Maps from an attribute that must be a fan map nest and nothing else: every byte
    belongs to an IFLA_FAN_MAPPING child of exactly 12 bytes with prefixes <= 32.
    ValueError otherwise (e.g. the 8 bytes of IFLA_VXLAN_RESERVED_BITS)."""
    maps = []
    off = 0
    while off < len(payload):
        if off + _RTATTR.size > len(payload):
            raise ValueError(f"{len(payload) - off} stray bytes at offset {off}")
        length, attr_type = _RTATTR.unpack_from(payload, off)
        if attr_type & NLA_TYPE_MASK != IFLA_FAN_MAPPING or \
                length != _RTATTR.size + FAN_MAP_STRUCT.size:
            raise ValueError(f"child type {attr_type & NLA_TYPE_MASK} length {length} at "
                             f"offset {off} is not an IFLA_FAN_MAPPING")
        m = unpack_fan_map(bytes(payload[off + _RTATTR.size:off + length]))
        if m.overlay_prefix > 32 or m.underlay_prefix > 32:
            raise ValueError(f"prefix length out of range in {m}")
        maps.append(m)
        off += _align(length)
    return maps


def _u8(v: int) -> bytes:
    return struct.pack("=B", v)


def _u16(v: int) -> bytes:
    return struct.pack("=H", v)


def _u32(v: int) -> bytes:
    return struct.pack("=I", v)


def _addr(a) -> bytes:
    return IPv4Address(a).packed


def nlmsg(msg_type: int, flags: int, seq: int, payload: bytes) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), msg_type, flags, seq, 0) + payload


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)


def linkinfo(kind: str, info_data: Sequence[bytes]) -> bytes:
    return nla_nested(IFLA_LINKINFO, [nla(IFLA_INFO_KIND, kind.encode()),
                                      nla_nested(IFLA_INFO_DATA, info_data)])


def ipip_fan_info_data(local, maps: Iterable = (), *, link: int | None = None,
                       ttl: int | None = None) -> list[bytes]:
    """IFLA_INFO_DATA children of a new IPIP fan tunnel (no remote)."""
    out = [nla(IFLA_IPTUN_LOCAL, _addr(local))]
    if link:
        out.append(nla(IFLA_IPTUN_LINK, _u32(link)))
    if ttl is not None:
        out.append(nla(IFLA_IPTUN_TTL, _u8(ttl)))
    maps = list(maps)
    if maps:
        out.append(encode_fan_map(maps))
    return out


def newlink_ipip_fan(name: str, local, maps: Iterable = (), *, seq: int = 1,
                     link: int | None = None, ttl: int | None = None,
                     mtu: int | None = None, up: bool = False) -> bytes:
    """RTM_NEWLINK creating ``ip link add NAME type ipip local LOCAL`` + maps."""
    attrs = [nla(IFLA_IFNAME, name.encode() + b"\0")]
    if mtu:
        attrs.append(nla(IFLA_MTU, _u32(mtu)))
    attrs.append(linkinfo("ipip", ipip_fan_info_data(local, maps, link=link, ttl=ttl)))
    flags = IFF_UP if up else 0
    return nlmsg(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq,
                 ifinfomsg(0, flags, flags) + b"".join(attrs))


def vxlan_fan_info_data(vni: int, local, maps: Iterable = (), *, dev: int | None = None,
                        dstport: int = 0, ttl: int | None = None,
                        learning: bool = False) -> list[bytes]:
    """IFLA_INFO_DATA children of ``ip link add type vxlan id VNI dev DEV
    dstport PORT local LOCAL fan-map ...`` (dstport 0: the kernel default)."""
    out = [nla(IFLA_VXLAN_ID, _u32(vni)), nla(IFLA_VXLAN_LOCAL, _addr(local))]
    if dev:
        out.append(nla(IFLA_VXLAN_LINK, _u32(dev)))
    out.append(nla(IFLA_VXLAN_PORT, struct.pack("!H", dstport)))
    if ttl is not None:
        out.append(nla(IFLA_VXLAN_TTL, _u8(ttl)))
    out.append(nla(IFLA_VXLAN_LEARNING, _u8(1 if learning else 0)))
    maps = list(maps)
    if maps:
        out.append(encode_vxlan_fan_map(maps))
    return out


def newlink_vxlan_fan(name: str, vni: int, local, maps: Iterable = (), *, seq: int = 1,
                      dev: int | None = None, dstport: int = 0, mtu: int | None = None,
                      up: bool = False) -> bytes:
    attrs = [nla(IFLA_IFNAME, name.encode() + b"\0")]
    if mtu:
        attrs.append(nla(IFLA_MTU, _u32(mtu)))
    attrs.append(linkinfo("vxlan", vxlan_fan_info_data(vni, local, maps, dev=dev,
                                                        dstport=dstport)))
    flags = IFF_UP if up else 0
    return nlmsg(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq,
                 ifinfomsg(0, flags, flags) + b"".join(attrs))


def changelink_fan(index: int, kind: str, maps: Iterable, *, seq: int = 1,
                   keep: Sequence[tuple[int, bytes]] = (), mtu: int | None = None) -> bytes:
    """RTM_NEWLINK changing the maps of an existing link.

    ``keep`` are the link's current IFLA_INFO_DATA attributes (from a dump),
    sent back unchanged, as iproute2 does: a changelink replaces the tunnel
    parameters, and the Ubuntu kernel may not treat a maps-only request the
    way ours does.  ``mtu`` keeps the MTU (an IPIP changelink without
    IFLA_MTU recomputes it).
    """
    fan_attr = IFLA_VXLAN_FAN_MAP if kind == "vxlan" else IFLA_IPTUN_FAN_MAP
    data = [nla(t, p) for t, p in keep if t != fan_attr]
    data.append(encode_fan_map(maps, fan_attr))
    attrs = []
    if mtu:
        attrs.append(nla(IFLA_MTU, _u32(mtu)))
    attrs.append(linkinfo(kind, data))
    return nlmsg(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, ifinfomsg(index) + b"".join(attrs))


def getlink(index: int = 0, name: str | None = None, *, seq: int = 1) -> bytes:
    attrs = nla(IFLA_IFNAME, name.encode() + b"\0") if name else b""
    return nlmsg(RTM_GETLINK, NLM_F_REQUEST, seq, ifinfomsg(index) + attrs)


@dataclass
class LinkInfo:
    index: int
    name: str
    flags: int
    mtu: int
    kind: str | None
    info_data: list[tuple[int, bytes]]

    @property
    def fan_attr(self) -> bytes | None:
        """The payload of attribute 33 (IFLA_IPTUN_FAN_MAP / IFLA_VXLAN_FAN_MAP)."""
        if self.kind not in ("ipip", "vxlan"):
            return None
        return self.data_attr(IFLA_VXLAN_FAN_MAP if self.kind == "vxlan"
                              else IFLA_IPTUN_FAN_MAP)

    @property
    def fan_maps(self) -> list[FanMapping]:
        """The maps, or [] when attribute 33 is absent or is not a fan map nest."""
        payload = self.fan_attr
        try:
            return decode_fan_map_strict(payload) if payload is not None else []
        except ValueError:
            return []

    def data_attr(self, attr_type: int) -> bytes | None:
        for t, p in self.info_data:
            if t == attr_type:
                return p
        return None


def parse_link(payload: bytes) -> LinkInfo:
    """An RTM_NEWLINK payload (ifinfomsg + attributes) from a dump."""
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    name, mtu, kind, data = "", 0, None, []
    for t, p in parse_nlas(payload[_IFINFOMSG.size:]):
        if t == IFLA_IFNAME:
            name = p.rstrip(b"\0").decode()
        elif t == IFLA_MTU:
            mtu = struct.unpack("=I", p[:4])[0]
        elif t == IFLA_LINKINFO:
            for it, ip in parse_nlas(p):
                if it == IFLA_INFO_KIND:
                    kind = ip.rstrip(b"\0").decode()
                elif it == IFLA_INFO_DATA:
                    data = parse_nlas(ip)
    return LinkInfo(index, name, flags, mtu, kind, data)


def parse_error(payload: bytes, flags: int) -> tuple[int, str]:
    """(errno, extack message) from an NLMSG_ERROR payload (0 = ACK)."""
    err = -struct.unpack_from("=i", payload)[0]
    msg = ""
    if flags & NLM_F_ACK_TLVS:
        if flags & NLM_F_CAPPED:
            off = 4 + _NLMSGHDR.size
        else:
            off = 4 + _NLMSGHDR.unpack_from(payload, 4)[0]
        try:
            for t, p in parse_nlas(payload[_align(off):]):
                if t == NLMSGERR_ATTR_MSG:
                    msg = p.rstrip(b"\0").decode(errors="replace")
        except ValueError:
            pass
    return err, msg


# --- /proc ------------------------------------------------------------------

def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def present(proc_root: str = "/proc") -> dict:
    """Which fan modes the running kernel has: {'ipip': bool, 'vxlan': bool}."""
    base = os.path.join(proc_root, "sys", "net", "fan")
    return {"ipip": _read_int(os.path.join(base, "version")) == FAN_VERSION_IPIP,
            "vxlan": _read_int(os.path.join(base, "vxlan")) == FAN_VERSION_VXLAN}


# --- transport ----------------------------------------------------------------

_libc = None


def _setns(fd: int, nstype: int) -> None:
    global _libc
    if sys.version_info >= (3, 12):
        os.setns(fd, nstype)
        return
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _socket_in_netns(ns_fd: int) -> socket.socket:
    """A NETLINK_ROUTE socket created in the network namespace ns_fd.

    setns() changes the calling thread only, so a short-lived thread does it.
    """
    box: dict = {}

    def run() -> None:
        try:
            _setns(ns_fd, CLONE_NEWNET)
            box["sock"] = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                        socket.NETLINK_ROUTE)
        except OSError as exc:
            box["exc"] = exc

    t = threading.Thread(target=run, name="kernelfan-setns")
    t.start()
    t.join()
    if "exc" in box:
        raise box["exc"]
    return box["sock"]


class Rtnl:
    """A minimal rtnetlink request/response socket.

    ``Rtnl()`` works in the caller's namespace, ``Rtnl(netns="NAME")`` in
    /run/netns/NAME, ``Rtnl(netns_fd=FD)`` in the namespace of an open
    namespace file, ``Rtnl.of(handle)`` in the namespace of a pyroute2
    IPRoute (or any socket-like object with fileno()).
    """

    def __init__(self, netns: str | None = None, netns_fd: int | None = None):
        if netns is not None:
            path = netns if "/" in netns else os.path.join("/run/netns", netns)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                self.sock = _socket_in_netns(fd)
            finally:
                os.close(fd)
        elif netns_fd is not None:
            self.sock = _socket_in_netns(netns_fd)
        else:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            try:
                self.sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:
                pass
        self.sock.bind((0, 0))
        self.seq = 0

    @classmethod
    def of(cls, handle) -> Rtnl:
        if isinstance(handle, Rtnl):
            return handle
        if handle is None:
            return cls()
        try:
            fd = handle.fileno()
        except (AttributeError, OSError) as exc:
            raise TypeError(f"cannot find the network namespace of {handle!r}") from exc
        ns_fd = fcntl.ioctl(fd, SIOCGSKNS)
        try:
            return cls(netns_fd=ns_fd)
        finally:
            os.close(ns_fd)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def request(self, msg: bytes, what: str = "") -> list[tuple[int, int, bytes]]:
        """Send one message (its seq field is used as is), collect the answer.

        Returns [(type, flags, payload)] of the data messages; raises
        KernelFanError on an error answer.
        """
        seq = _NLMSGHDR.unpack_from(msg)[3]
        self.sock.send(msg)
        out = []
        while True:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                length, mtype, flags, mseq, _pid = _NLMSGHDR.unpack_from(data, off)
                if length < _NLMSGHDR.size:
                    raise KernelFanError(_errno.EPROTO, "bad netlink message", what)
                payload = data[off + _NLMSGHDR.size:off + length]
                off += _align(length)
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    err, text = parse_error(payload, flags)
                    if err:
                        raise KernelFanError(err, text, what)
                    return out
                if mtype == NLMSG_DONE:
                    return out
                out.append((mtype, flags, payload))
                if not flags & NLM_F_MULTI:
                    return out


def _index(nl: Rtnl, dev) -> int:
    if isinstance(dev, int):
        return dev
    return get_link(nl, dev).index


def get_link(handle, dev) -> LinkInfo:
    """The link ``dev`` (name or index), with its kind and IFLA_INFO_DATA."""
    nl = Rtnl.of(handle)
    try:
        if isinstance(dev, int):
            msg = getlink(dev, seq=nl.next_seq())
        else:
            msg = getlink(0, dev, seq=nl.next_seq())
        answer = nl.request(msg, f"get link {dev}")
        if not answer:
            raise KernelFanError(_errno.ENODEV, "", f"get link {dev}")
        return parse_link(answer[0][2])
    finally:
        if nl is not handle:
            nl.close()


def get_maps(handle, dev) -> list[FanMapping]:
    """The maps the kernel reports for an IPIP or VXLAN fan device."""
    return get_link(handle, dev).fan_maps


def fan_attr_meaning(info: LinkInfo) -> str:
    """What attribute 33 of ``info`` is: "absent", "fan" (decodes strictly as fan
    maps) or "foreign" (something else, e.g. IFLA_VXLAN_RESERVED_BITS on 6.14+)."""
    payload = info.fan_attr
    if payload is None:
        return "absent"
    try:
        decode_fan_map_strict(payload)
    except ValueError:
        return "foreign"
    return "fan"


def _check_kept(info: LinkInfo, maps: Sequence[FanMapping], what: str) -> None:
    """The kernel took the maps as fan maps: attribute 33 reads back as a fan map nest
    holding them.  A kernel without the fan patch ignores the attribute; one where 33
    means something else reports that instead.  Either: NotFanKernel.  Nothing to
    check when no map was asked for (a plain device)."""
    maps = [m for m in maps if int(m.overlay) and int(m.underlay)]
    if not maps:
        return
    if fan_attr_meaning(info) == "foreign":
        raise NotFanKernel(_errno.EOPNOTSUPP,
                           f"attribute 33 of a {info.kind} link reads back as something "
                           "other than fan maps (upstream Linux 6.14 and later: "
                           "IFLA_VXLAN_RESERVED_BITS); this kernel has no fan", what)
    kept = {(m.overlay, m.overlay_prefix) for m in info.fan_maps}
    for m in maps:
        if (m.overlay, m.overlay_prefix) not in kept:
            raise NotFanKernel(_errno.EOPNOTSUPP,
                               f"the kernel ignored the fan map {m} (no fan support?)", what)


def create_ipip_fan(handle, name: str, local, maps: Iterable = (), *,
                    link: int | None = None, ttl: int | None = None,
                    mtu: int | None = None, up: bool = False) -> int:
    """``ip link add NAME type ipip local LOCAL`` with fan maps; the ifindex.

    Raises KernelFanError (EOPNOTSUPP) and removes the link again when the
    kernel accepted the link but not the maps (a kernel without the fan).
    """
    return _create(handle, f"create ipip fan {name}", name, maps,
                   lambda nl, maps: newlink_ipip_fan(name, local, maps, seq=nl.next_seq(),
                                                     link=link, ttl=ttl, mtu=mtu, up=up))


def create_vxlan_fan(handle, name: str, vni: int, local, maps: Iterable = (), *,
                     dev=None, dstport: int = 0, mtu: int | None = None,
                     up: bool = False) -> int:
    """``ip link add NAME type vxlan id VNI dev DEV dstport 0 local LOCAL fan-map ...``."""
    def message(nl, maps):
        devidx = _index(nl, dev) if dev is not None else None
        return newlink_vxlan_fan(name, vni, local, maps, seq=nl.next_seq(), dev=devidx,
                                 dstport=dstport, mtu=mtu, up=up)
    return _create(handle, f"create vxlan fan {name}", name, maps, message)


def _create(handle, what: str, name: str, maps: Iterable, message) -> int:
    """Send ``message(nl, maps)`` (an RTM_NEWLINK), check the kernel kept the maps (a
    kernel without the fan patch ignores the attribute: then remove the new link and
    raise), return the new link's index."""
    nl = Rtnl.of(handle)
    try:
        maps = [_as_mapping(m) for m in maps]
        nl.request(message(nl, maps), what)
        info = get_link(nl, name)
        try:
            _check_kept(info, maps, what)
        except KernelFanError:
            delete_link(nl, info.index)
            raise
        return info.index
    finally:
        if nl is not handle:
            nl.close()


def _changelink_keep(info: LinkInfo) -> dict:
    """What a maps changelink of ``info`` sends besides the maps.

    IPIP: the current IFLA_INFO_DATA and the MTU, as iproute2 does (an IPIP
    changelink resets what it does not carry).  VXLAN: nothing, as iproute2
    does: a VXLAN changelink starts from the device's configuration, and it
    refuses IFLA_MTU and attributes that cannot change (port, port range,
    checksum flags, ...) even when they carry the current value.
    """
    if info.kind == "vxlan":
        return {"keep": (), "mtu": None}
    return {"keep": info.info_data, "mtu": info.mtu}


def change_maps(handle, dev, maps: Iterable) -> None:
    """Send raw map requests (add, delete, flush entries) to an existing link."""
    nl = Rtnl.of(handle)
    try:
        info = get_link(nl, dev)
        if info.kind not in ("ipip", "vxlan"):
            raise KernelFanError(_errno.EOPNOTSUPP, f"{info.name} is a {info.kind} link",
                                 "change fan maps")
        maps = [_as_mapping(m) for m in maps]
        what = f"change fan maps of {info.name}"
        msg = changelink_fan(info.index, info.kind, maps, seq=nl.next_seq(),
                             **_changelink_keep(info))
        nl.request(msg, what)
        # what a later flush or delete in the same request removed is not expected
        last_flush = max((i for i, m in enumerate(maps) if not int(m.overlay)), default=-1)
        deleted = {(m.overlay, m.overlay_prefix) for m in maps if not int(m.underlay)}
        _check_kept(get_link(nl, info.index),
                    [m for m in maps[last_flush + 1:]
                     if (m.overlay, m.overlay_prefix) not in deleted], what)
    finally:
        if nl is not handle:
            nl.close()


def add_map(handle, dev, overlay, underlay) -> None:
    change_maps(handle, dev, [FanMapping.of(overlay, underlay)])


def delete_map(handle, dev, overlay) -> None:
    change_maps(handle, dev, [FanMapping.of(overlay)])


def flush_maps(handle, dev) -> None:
    change_maps(handle, dev, [FLUSH])


def delete_link(handle, dev) -> None:
    nl = Rtnl.of(handle)
    try:
        idx = _index(nl, dev)
        nl.request(nlmsg(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, nl.next_seq(),
                         ifinfomsg(idx)), f"delete link {dev}")
    finally:
        if nl is not handle:
            nl.close()

