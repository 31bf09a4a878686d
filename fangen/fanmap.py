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
from ipaddress import IPv4Address, IPv4Network

MAX_SLICE_PREFIX = 30


class FanMapError(ValueError):
    """An address or prefix pair that the fan cannot map; ``hint``: what to do about it."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class FanMap:
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

    @classmethod
    def parse(cls, overlay: str, underlay: str) -> FanMap:
        try:
            return cls(ipaddress.IPv4Network(overlay), ipaddress.IPv4Network(underlay))
        except ValueError as exc:
            raise FanMapError(str(exc)) from None

    @property
    def slice_prefix(self) -> int:
        return self.overlay.prefixlen + (32 - self.underlay.prefixlen)

    @property
    def shift(self) -> int:
        """Bits between the end of a slice and the end of an address."""
        return 32 - self.slice_prefix

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


def resolve(fmap: FanMap, address: IPv4Address | str) -> dict:
    """What ``fangen map`` prints for one address, as plain data."""
    address = IPv4Address(address)
    if address in fmap.overlay:
        return {"address": str(address), "underlay_host": str(fmap.host_for_address(address)),
                "slice": str(fmap.slice_for_address(address))}
    if address in fmap.underlay:
        return {"address": str(address), "underlay_host": str(address),
                "slice": str(fmap.slice_for_host(address))}
    raise FanMapError(f"{address} is in neither the overlay {fmap.overlay} "
                      f"nor the underlay {fmap.underlay}")
