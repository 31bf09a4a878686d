"""The frozen, typed model of a fan, built from data that passed validation."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from fangen.fanmap import FanMap, Slice

DEFAULT_UNDERLAY_PREFIX = 16          # fanctl's default for 'default' and a bare interface
DEFAULT_VXLAN_PORT = 8472
IPIP_OVERHEAD = 20
VXLAN_OVERHEAD = 50
IFNAMSIZ = 15                         # usable characters of a Linux interface name

_IFNAME = re.compile(r"^[^/:\s]{1,15}$")


class UnderlayError(ValueError):
    pass


@dataclass(frozen=True)
class Underlay:
    """How the underlay is found: a network, a static host, an interface, or the default route.

    ``network`` is known at validation time for the network and host kinds; for
    interface and default it is found at run time from the interface's address and
    ``prefixlen``.
    """

    spec: str
    kind: str                          # "network" | "host" | "interface" | "default"
    prefixlen: int
    network: IPv4Network | None = None
    host: IPv4Address | None = None
    interface: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Underlay:
        base, slash, length = spec.partition("/")
        if slash:
            if not length.isdigit() or not 0 <= int(length) <= 32:
                raise UnderlayError(f"invalid prefix length '/{length}' (expected 0-32)")
            prefixlen = int(length)
        else:
            prefixlen = DEFAULT_UNDERLAY_PREFIX
        if _looks_like_ipv4(base):
            try:
                addr = IPv4Address(base)
            except ValueError:
                raise UnderlayError(f"'{base}' is not a valid IPv4 address") from None
            if not slash:
                raise UnderlayError(f"'{spec}' needs a prefix length, e.g. {base}/16")
            network = IPv4Network((addr, prefixlen), strict=False)
            if addr == network.network_address and prefixlen < 32:
                return cls(spec, "network", prefixlen, network=network)
            return cls(spec, "host", prefixlen, network=network, host=addr)
        if base == "default":
            return cls(spec, "default", prefixlen)
        if not _IFNAME.match(base) or base in (".", ".."):
            raise UnderlayError(f"'{base}' is neither an IPv4 address nor a valid interface name")
        return cls(spec, "interface", prefixlen, interface=base)

    def with_host(self, host: IPv4Address | str) -> Underlay:
        """The same underlay once the local address is known (at run time)."""
        host = IPv4Address(host)
        network = IPv4Network((host, self.prefixlen), strict=False)
        return Underlay(self.spec, "host", self.prefixlen, network=network, host=host,
                        interface=self.interface)


def _looks_like_ipv4(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+", text)) and "." in text


@dataclass(frozen=True)
class Fan:
    name: str
    overlay: IPv4Network
    underlay: Underlay
    type: str = "ipip"
    dhcp: bool = True
    dns: bool = True
    host_reserve: int = 1
    lease_time: int = 3600
    bridge: str = ""
    tunnel: str = ""
    mtu: int | None = None
    nat: bool = True
    vni: int = 0
    port: int = DEFAULT_VXLAN_PORT
    datapath: str = "auto"
    enabled: bool = True

    @property
    def slice_prefix(self) -> int:
        return self.overlay.prefixlen + (32 - self.underlay.prefixlen)

    @property
    def overhead(self) -> int:
        return VXLAN_OVERHEAD if self.type == "vxlan" else IPIP_OVERHEAD

    def fanmap(self, underlay_network: IPv4Network | None = None) -> FanMap:
        network = underlay_network or self.underlay.network
        if network is None:
            raise UnderlayError(f"{self.name}: the underlay network is not known yet")
        return FanMap(self.overlay, network)

    def slice_for(self, host: IPv4Address | str) -> Slice:
        """This host's slice, given its underlay address."""
        host = IPv4Address(host)
        network = IPv4Network((host, self.underlay.prefixlen), strict=False)
        return Slice(FanMap(self.overlay, network).slice_for_host(host), self.host_reserve)

    @property
    def static_slice(self) -> Slice | None:
        """The slice when the underlay host address is written in the stanza."""
        if self.underlay.kind != "host":
            return None
        return self.slice_for(self.underlay.host)

    def mtu_for(self, underlay_mtu: int) -> int:
        return self.mtu if self.mtu is not None else underlay_mtu - self.overhead

    @property
    def bridge_prefix(self) -> int:
        """IPIP routes the overlay, so the bridge holds the slice; VXLAN bridges the overlay."""
        return self.overlay.prefixlen if self.type == "vxlan" else self.slice_prefix


def build(name: str, data: dict) -> Fan:
    """A Fan from one validated fan mapping (schema and semantic checks passed)."""
    overlay = ipaddress.IPv4Network(data["overlay"])
    vxlan = data.get("vxlan") or {}
    return Fan(
        name=name,
        overlay=overlay,
        underlay=Underlay.parse(data["underlay"]),
        type=data.get("type", "ipip"),
        dhcp=data.get("dhcp", True),
        dns=data.get("dns", True),
        host_reserve=data.get("host-reserve", 1),
        lease_time=data.get("lease-time", 3600),
        bridge=data.get("bridge", name),
        tunnel=data.get("tunnel", f"{name}-tun"),
        mtu=data.get("mtu"),
        nat=data.get("nat", True),
        vni=vxlan.get("vni", int(overlay.network_address) >> 8),
        port=vxlan.get("port", DEFAULT_VXLAN_PORT),
        datapath=data.get("datapath", "auto"),
        enabled=data.get("enabled", True),
    )
