"""Fan address arithmetic: pure functions, no I/O.

A fan maps an overlay network (say 250.0.0.0/8) onto an underlay network
(say 172.16.0.0/16).  Every underlay host owns one slice of the overlay whose
prefix length is ``overlay_prefix + (32 - underlay_prefix)``; the slice is the
overlay network with the host part of the underlay address shifted in below
the overlay prefix.  The reverse direction (overlay address -> underlay host)
is the formula of the Ubuntu kernel's fan v3 mode::

    remote = underlay_net | ((addr & ~mask(overlay_prefix)) >> (32 - slice_prefix))

Everything here works on ``ipaddress`` objects and plain integers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

MAX_SLICE_PREFIX = 30
SLICE6_PREFIX = 64          # the one IPv6 slice length: SLAAC needs 64 interface bits


class FanMapError(ValueError):
    """An address or prefix pair that the fan cannot map; ``hint``: what to do about it."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


class _OverUnderlay:
    """What a fan map shares whatever its overlay's family (``OVERLAY``): the overlay
    is cut into one slice per underlay host, the underlay's host bits after the
    overlay's prefix."""

    OVERLAY: type = IPv4Network

    @classmethod
    def parse(cls, overlay: str, underlay: str):
        try:
            return cls(cls.OVERLAY(overlay), ipaddress.IPv4Network(underlay))
        except ValueError as exc:
            raise FanMapError(str(exc)) from None

    @property
    def slice_prefix(self) -> int:
        return self.overlay.prefixlen + (32 - self.underlay.prefixlen)

    @property
    def shift(self) -> int:
        """Bits between the end of a slice and the end of an address (64 for IPv6)."""
        return self.overlay.max_prefixlen - self.slice_prefix


@dataclass(frozen=True)
class FanMap(_OverUnderlay):
    """One overlay/underlay pair, checked on construction."""

    overlay: IPv4Network
    underlay: IPv4Network

    def __post_init__(self) -> None:
        self.check_prefixes(self.overlay.prefixlen, self.underlay.prefixlen)

    @staticmethod
    def check_prefixes(overlay_prefix: int, underlay_prefix: int) -> int:
        """The slice prefix of the pair, or FanMapError when the overlay cannot be cut
        into one slice per underlay host (validation asks this before it has networks)."""
        slice_prefix = overlay_prefix + (32 - underlay_prefix)
        if slice_prefix > MAX_SLICE_PREFIX:
            raise FanMapError(
                f"slice prefix /{slice_prefix} (overlay /{overlay_prefix} + 32 - underlay "
                f"/{underlay_prefix}) is longer than /{MAX_SLICE_PREFIX}",
                "use a larger overlay or a smaller underlay")
        if slice_prefix <= overlay_prefix:
            raise FanMapError(f"underlay /{underlay_prefix} leaves no host bits: the overlay "
                              "cannot be divided into slices")
        return slice_prefix


    @property
    def slice_count(self) -> int:
        return 1 << (32 - self.underlay.prefixlen)

    def slice_for_host(self, host: IPv4Address | str) -> IPv4Network:
        """The overlay slice owned by an underlay host address."""
        host = IPv4Address(host)
        if host not in self.underlay:
            raise FanMapError(f"{host} is not in the underlay {self.underlay}")
        hostpart = int(host) & int(self.underlay.hostmask)
        net = int(self.overlay.network_address) | (hostpart << self.shift)
        return IPv4Network((net, self.slice_prefix))

    def host_for_address(self, addr: IPv4Address | str) -> IPv4Address:
        """The underlay host that owns an overlay address (the kernel's formula)."""
        addr = IPv4Address(addr)
        if addr not in self.overlay:
            raise FanMapError(f"{addr} is not in the overlay {self.overlay}")
        low = int(addr) & int(self.overlay.hostmask)
        return IPv4Address(int(self.underlay.network_address) | (low >> self.shift))

    def slice_for_address(self, addr: IPv4Address | str) -> IPv4Network:
        """The slice an overlay address falls in."""
        addr = IPv4Address(addr)
        if addr not in self.overlay:
            raise FanMapError(f"{addr} is not in the overlay {self.overlay}")
        return IPv4Network((addr, self.slice_prefix), strict=False)


@dataclass(frozen=True)
class Slice:
    """A host's slice and the addresses carved out of it."""

    network: IPv4Network
    host_reserve: int = 1

    @property
    def gateway(self) -> IPv4Address:
        """The bridge address: the slice's first address."""
        return self.network.network_address + 1

    @property
    def dhcp_range(self) -> tuple[IPv4Address, IPv4Address] | None:
        """First and last address handed out by DHCP, or None when nothing is left."""
        first = self.network.network_address + 1 + self.host_reserve
        last = self.network.broadcast_address - 1
        if int(first) > int(last):
            return None
        return first, last


# -- IPv6: the dual-stack fan ---------------------------------------------------------
#
# An IPv6 overlay (say fd5a:fa00::/48) is cut like the IPv4 one: a host's IPv6 slice is
# the IPv6 overlay followed by the host bits of its underlay address, so a /48 over a
# /16 underlay gives every host a /64.  The slice is always a /64 (SLICE6_PREFIX): the
# host bits sit in the upper 64 bits of the address, the lower 64 are the interface
# identifier containers pick themselves (SLAAC).  The reverse direction reads the host
# bits back:  remote = underlay_net | ((addr >> 64) & hostmask(underlay)).


@dataclass(frozen=True)
class FanMap6(_OverUnderlay):
    """An IPv6 overlay over an (IPv4) underlay, checked on construction."""

    overlay: IPv6Network
    underlay: IPv4Network

    OVERLAY = IPv6Network

    def __post_init__(self) -> None:
        if self.slice_prefix != SLICE6_PREFIX:
            raise FanMapError(
                f"IPv6 slice prefix /{self.slice_prefix} (overlay6 /{self.overlay.prefixlen} + "
                f"32 - underlay /{self.underlay.prefixlen}) is not /{SLICE6_PREFIX}: use "
                f"overlay6 /{SLICE6_PREFIX - (32 - self.underlay.prefixlen)}")


    def slice_for_host(self, host: IPv4Address | str) -> IPv6Network:
        """The IPv6 slice owned by an underlay host address."""
        host = IPv4Address(host)
        if host not in self.underlay:
            raise FanMapError(f"{host} is not in the underlay {self.underlay}")
        return slice6_for_hostpart(self.overlay, int(host) & int(self.underlay.hostmask))

    def host_for_address(self, addr: IPv6Address | str) -> IPv4Address:
        """The underlay host that owns an IPv6 overlay address."""
        addr = IPv6Address(addr)
        if addr not in self.overlay:
            raise FanMapError(f"{addr} is not in the overlay6 {self.overlay}")
        low = (int(addr) & int(self.overlay.hostmask)) >> self.shift
        return IPv4Address(int(self.underlay.network_address) | low)

    def slice_for_address(self, addr: IPv6Address | str) -> IPv6Network:
        addr = IPv6Address(addr)
        if addr not in self.overlay:
            raise FanMapError(f"{addr} is not in the overlay6 {self.overlay}")
        return IPv6Network((addr, self.slice_prefix), strict=False)


def slice6_for_hostpart(overlay6: IPv6Network, hostpart: int) -> IPv6Network:
    """The /64 of the host whose underlay host bits are ``hostpart``."""
    net = int(overlay6.network_address) | (hostpart << (128 - SLICE6_PREFIX))
    return IPv6Network((net, SLICE6_PREFIX))


def hostpart_of_slice(fmap_overlay: IPv4Network, slice_net: IPv4Network) -> int:
    """The underlay host bits of the host that owns an IPv4 slice (its IPv6 slice
    follows from them, whatever the underlay network is)."""
    return (int(slice_net.network_address) & int(fmap_overlay.hostmask)) >> \
        (32 - slice_net.prefixlen)


# The fan bridge's IPv6 link-local address carries the host bits too: fe80::fa:0:H:H
# (interface identifier 00fa:0000 followed by the 32-bit host part).  A host forwarding
# into another host's slice sends its neighbour solicitations from its link-local
# address (the kernel's choice for a packet that is not its own), and the answer is
# addressed to it: from this address alone the datapath knows where to send it.
LINK_LOCAL_MARK = 0xFE80_0000_0000_0000_00FA_0000_0000_0000
LINK_LOCAL_MASK = ~0xFFFF_FFFF & ((1 << 128) - 1)


def host_link_local(hostpart: int) -> IPv6Address:
    """The fan bridge's link-local address of the host with these underlay host bits."""
    return IPv6Address(LINK_LOCAL_MARK | hostpart)


def hostpart_of_link_local(addr: IPv6Address | str) -> int | None:
    """The host bits a fan bridge's link-local address carries, or None when ``addr``
    is not one."""
    value = int(IPv6Address(addr))
    return value & 0xFFFF_FFFF if value & LINK_LOCAL_MASK == LINK_LOCAL_MARK else None


@dataclass(frozen=True)
class Slice6:
    """A host's IPv6 slice; the bridge holds its first address and ``link_local``,
    containers autoconfigure and take ``link_local`` as their router."""

    network: IPv6Network
    hostpart: int = 0

    @property
    def gateway(self) -> IPv6Address:
        return self.network.network_address + 1

    @property
    def link_local(self) -> IPv6Address:
        return host_link_local(self.hostpart)


def resolve(fmap: FanMap, address: IPv4Address | IPv6Address | str,
            fmap6: FanMap6 | None = None) -> dict:
    """What ``fangen map`` prints for one address, as plain data.  With ``fmap6`` (a
    dual-stack fan) the answer also carries the host's IPv6 slice (``slice6``), and
    ``address`` may be an IPv6 overlay address."""
    address = ipaddress.ip_address(address)
    if address.version == 6:
        if fmap6 is None:
            raise FanMapError(f"{address} is an IPv6 address, but the fan has no overlay6")
        if address not in fmap6.overlay:
            raise FanMapError(f"{address} is not in the overlay6 {fmap6.overlay}")
        host = fmap6.host_for_address(address)
        answer = {"address": str(address), "underlay_host": str(host),
                  "slice": str(fmap.slice_for_host(host))}
    elif address in fmap.overlay:
        answer = {"address": str(address), "underlay_host": str(fmap.host_for_address(address)),
                  "slice": str(fmap.slice_for_address(address))}
    elif address in fmap.underlay:
        answer = {"address": str(address), "underlay_host": str(address),
                  "slice": str(fmap.slice_for_host(address))}
    else:
        raise FanMapError(f"{address} is in neither the overlay {fmap.overlay} "
                          f"nor the underlay {fmap.underlay}")
    if fmap6 is not None:
        answer["slice6"] = str(fmap6.slice_for_host(answer["underlay_host"]))
    return answer
