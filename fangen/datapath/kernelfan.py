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

The first half of this module is pure (bytes in, bytes out); the second half
sends its messages through :mod:`fangen.datapath.rtnl`, the small generic
rtnetlink client, in the namespace of the handle it is given.
"""

from __future__ import annotations

import errno as _errno
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from fangen.datapath import rtnl
from fangen.datapath.rtnl import Link, NetlinkError, nla, nla_nested

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

# struct ifla_fan_map: addresses in network order, prefixes in host order.
FAN_MAP_STRUCT = struct.Struct("=4s4sHH")
assert FAN_MAP_STRUCT.size == 12


class NotFanKernel(NetlinkError):
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


def encode_fan_map(maps: Iterable, attr_type: int = IFLA_IPTUN_FAN_MAP) -> bytes:
    """The nested IFLA_IPTUN_FAN_MAP (or IFLA_VXLAN_FAN_MAP) attribute."""
    return nla_nested(attr_type, (nla(IFLA_FAN_MAPPING, pack_fan_map(m)) for m in maps))


def encode_vxlan_fan_map(maps: Iterable) -> bytes:
    return encode_fan_map(maps, IFLA_VXLAN_FAN_MAP)


def decode_fan_map(payload: bytes) -> list[FanMapping]:
    """Maps from the payload of a fan map nest (children of other types skipped)."""
    return [unpack_fan_map(p) for t, p in rtnl.parse_nlas(payload) if t == IFLA_FAN_MAPPING]


def decode_fan_map_strict(payload: bytes) -> list[FanMapping]:
    """Maps from an attribute that must be a fan map nest and nothing else: every byte
    belongs to an IFLA_FAN_MAPPING child of exactly 12 bytes with prefixes <= 32.
    ValueError otherwise (e.g. the 8 bytes of IFLA_VXLAN_RESERVED_BITS)."""
    hdr = rtnl.RTATTR
    maps = []
    off = 0
    while off < len(payload):
        if off + hdr.size > len(payload):
            raise ValueError(f"{len(payload) - off} stray bytes at offset {off}")
        length, attr_type = hdr.unpack_from(payload, off)
        if attr_type & rtnl.NLA_TYPE_MASK != IFLA_FAN_MAPPING or \
                length != hdr.size + FAN_MAP_STRUCT.size:
            raise ValueError(f"child type {attr_type & rtnl.NLA_TYPE_MASK} length {length} at "
                             f"offset {off} is not an IFLA_FAN_MAPPING")
        m = unpack_fan_map(bytes(payload[off + hdr.size:off + length]))
        if m.overlay_prefix > 32 or m.underlay_prefix > 32:
            raise ValueError(f"prefix length out of range in {m}")
        maps.append(m)
        off += rtnl.align(length)
    return maps


def ipip_fan_info_data(local, maps: Iterable = (), *, link: int | None = None,
                       ttl: int | None = None) -> list[bytes]:
    """IFLA_INFO_DATA children of a new IPIP fan tunnel (no remote)."""
    out = [nla(IFLA_IPTUN_LOCAL, rtnl.addr(local))]
    if link:
        out.append(nla(IFLA_IPTUN_LINK, rtnl.u32(link)))
    if ttl is not None:
        out.append(nla(IFLA_IPTUN_TTL, rtnl.u8(ttl)))
    maps = list(maps)
    if maps:
        out.append(encode_fan_map(maps))
    return out


def newlink_ipip_fan(name: str, local, maps: Iterable = (), *, seq: int = 1,
                     link: int | None = None, ttl: int | None = None,
                     mtu: int | None = None, up: bool = False) -> bytes:
    """RTM_NEWLINK creating ``ip link add NAME type ipip local LOCAL`` + maps."""
    return rtnl.newlink(name, "ipip", ipip_fan_info_data(local, maps, link=link, ttl=ttl),
                        seq=seq, mtu=mtu, up=up)


def vxlan_fan_info_data(vni: int, local, maps: Iterable = (), *, dev: int | None = None,
                        dstport: int = 0, ttl: int | None = None,
                        learning: bool = False) -> list[bytes]:
    """IFLA_INFO_DATA children of ``ip link add type vxlan id VNI dev DEV
    dstport PORT local LOCAL fan-map ...`` (dstport 0: the kernel default)."""
    out = [nla(IFLA_VXLAN_ID, rtnl.u32(vni)), nla(IFLA_VXLAN_LOCAL, rtnl.addr(local))]
    if dev:
        out.append(nla(IFLA_VXLAN_LINK, rtnl.u32(dev)))
    out.append(nla(IFLA_VXLAN_PORT, struct.pack("!H", dstport)))
    if ttl is not None:
        out.append(nla(IFLA_VXLAN_TTL, rtnl.u8(ttl)))
    out.append(nla(IFLA_VXLAN_LEARNING, rtnl.u8(1 if learning else 0)))
    maps = list(maps)
    if maps:
        out.append(encode_vxlan_fan_map(maps))
    return out


def newlink_vxlan_fan(name: str, vni: int, local, maps: Iterable = (), *, seq: int = 1,
                      dev: int | None = None, dstport: int = 0, mtu: int | None = None,
                      up: bool = False) -> bytes:
    return rtnl.newlink(name, "vxlan", vxlan_fan_info_data(vni, local, maps, dev=dev,
                                                           dstport=dstport),
                        seq=seq, mtu=mtu, up=up)


def changelink_fan(index: int, kind: str, maps: Iterable, *, seq: int = 1,
                   keep: Sequence[tuple[int, bytes]] = (), mtu: int | None = None) -> bytes:
    """RTM_NEWLINK changing the maps of an existing link.

    ``keep`` are the link's current IFLA_INFO_DATA attributes (from a dump),
    sent back unchanged, as iproute2 does: a changelink replaces the tunnel
    parameters, and the Ubuntu kernel may not treat a maps-only request the
    way ours does.  ``mtu`` keeps the MTU (an IPIP changelink without
    IFLA_MTU recomputes it).
    """
    fan_attr_type = IFLA_VXLAN_FAN_MAP if kind == "vxlan" else IFLA_IPTUN_FAN_MAP
    data = [nla(t, p) for t, p in keep if t != fan_attr_type]
    data.append(encode_fan_map(maps, fan_attr_type))
    return rtnl.changelink(index, kind, data, seq=seq, mtu=mtu)


def fan_attr(link: Link) -> bytes | None:
    """The payload of attribute 33 (IFLA_IPTUN_FAN_MAP / IFLA_VXLAN_FAN_MAP) of an IPIP
    or VXLAN link; None for other kinds or when it is absent."""
    if link.kind not in ("ipip", "vxlan"):
        return None
    return link.data_attr(IFLA_VXLAN_FAN_MAP if link.kind == "vxlan" else IFLA_IPTUN_FAN_MAP)


def fan_maps(link: Link) -> list[FanMapping]:
    """The maps, or [] when attribute 33 is absent or is not a fan map nest."""
    payload = fan_attr(link)
    try:
        return decode_fan_map_strict(payload) if payload is not None else []
    except ValueError:
        return []


def fan_attr_meaning(link: Link) -> str:
    """What attribute 33 of ``link`` is: "absent", "fan" (decodes strictly as fan
    maps) or "foreign" (something else, e.g. IFLA_VXLAN_RESERVED_BITS on 6.14+)."""
    payload = fan_attr(link)
    if payload is None:
        return "absent"
    try:
        decode_fan_map_strict(payload)
    except ValueError:
        return "foreign"
    return "fan"


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


# --- the kernel ---------------------------------------------------------------

def get_maps(handle, dev) -> list[FanMapping]:
    """The maps the kernel reports for an IPIP or VXLAN fan device."""
    return fan_maps(rtnl.get_link(handle, dev))


def _check_kept(link: Link, maps: Sequence[FanMapping], what: str) -> None:
    """The kernel took the maps as fan maps: attribute 33 reads back as a fan map nest
    holding them.  A kernel without the fan patch ignores the attribute; one where 33
    means something else reports that instead.  Either: NotFanKernel.  Nothing to
    check when no map was asked for (a plain device)."""
    maps = [m for m in maps if int(m.overlay) and int(m.underlay)]
    if not maps:
        return
    if fan_attr_meaning(link) == "foreign":
        raise NotFanKernel(_errno.EOPNOTSUPP,
                           f"attribute 33 of a {link.kind} link reads back as something "
                           "other than fan maps (upstream Linux 6.14 and later: "
                           "IFLA_VXLAN_RESERVED_BITS); this kernel has no fan", what)
    kept = {(m.overlay, m.overlay_prefix) for m in fan_maps(link)}
    for m in maps:
        if (m.overlay, m.overlay_prefix) not in kept:
            raise NotFanKernel(_errno.EOPNOTSUPP,
                               f"the kernel ignored the fan map {m} (no fan support?)", what)


def create_ipip_fan(handle, name: str, local, maps: Iterable = (), *,
                    link: int | None = None, ttl: int | None = None,
                    mtu: int | None = None, up: bool = False) -> int:
    """``ip link add NAME type ipip local LOCAL`` with fan maps; the ifindex.

    Raises NotFanKernel (EOPNOTSUPP) and removes the link again when the
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
        devidx = rtnl.index_of(nl, dev) if dev is not None else None
        return newlink_vxlan_fan(name, vni, local, maps, seq=nl.next_seq(), dev=devidx,
                                 dstport=dstport, mtu=mtu, up=up)
    return _create(handle, f"create vxlan fan {name}", name, maps, message)


def _create(handle, what: str, name: str, maps: Iterable, message) -> int:
    """Send ``message(nl, maps)`` (an RTM_NEWLINK), check the kernel kept the maps (a
    kernel without the fan patch ignores the attribute: then remove the new link and
    raise), return the new link's index."""
    with rtnl.using(handle) as nl:
        maps = [_as_mapping(m) for m in maps]
        nl.request(message(nl, maps), what)
        link = rtnl.get_link(nl, name)
        try:
            _check_kept(link, maps, what)
        except NetlinkError:
            rtnl.delete_link(nl, link.index)
            raise
        return link.index


def _changelink_keep(link: Link) -> dict:
    """What a maps changelink of ``link`` sends besides the maps.

    IPIP: the current IFLA_INFO_DATA and the MTU, as iproute2 does (an IPIP
    changelink resets what it does not carry).  VXLAN: nothing, as iproute2
    does: a VXLAN changelink starts from the device's configuration, and it
    refuses IFLA_MTU and attributes that cannot change (port, port range,
    checksum flags, ...) even when they carry the current value.
    """
    if link.kind == "vxlan":
        return {"keep": (), "mtu": None}
    return {"keep": link.info_data, "mtu": link.mtu}


def change_maps(handle, dev, maps: Iterable) -> None:
    """Send raw map requests (add, delete, flush entries) to an existing link."""
    with rtnl.using(handle) as nl:
        link = rtnl.get_link(nl, dev)
        if link.kind not in ("ipip", "vxlan"):
            raise NetlinkError(_errno.EOPNOTSUPP, f"{link.name} is a {link.kind} link",
                               "change fan maps")
        maps = [_as_mapping(m) for m in maps]
        what = f"change fan maps of {link.name}"
        msg = changelink_fan(link.index, link.kind, maps, seq=nl.next_seq(),
                             **_changelink_keep(link))
        nl.request(msg, what)
        # what a later flush or delete in the same request removed is not expected
        last_flush = max((i for i, m in enumerate(maps) if not int(m.overlay)), default=-1)
        deleted = {(m.overlay, m.overlay_prefix) for m in maps if not int(m.underlay)}
        _check_kept(rtnl.get_link(nl, link.index),
                    [m for m in maps[last_flush + 1:]
                     if (m.overlay, m.overlay_prefix) not in deleted], what)


def add_map(handle, dev, overlay, underlay) -> None:
    change_maps(handle, dev, [FanMapping.of(overlay, underlay)])


def delete_map(handle, dev, overlay) -> None:
    change_maps(handle, dev, [FanMapping.of(overlay)])


def flush_maps(handle, dev) -> None:
    change_maps(handle, dev, [FLUSH])
