"""The frozen, typed model of a fan, built from data that passed validation."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from fangen.fanmap import (FanMap, FanMap6, Slice, Slice6, hostpart_of_slice,
                           slice6_for_hostpart)

DEFAULT_UNDERLAY_PREFIX = 16          # fanctl's default for 'default' and a bare interface
DEFAULT_VXLAN_PORT = 8472
IPIP_OVERHEAD = 20
VXLAN_OVERHEAD = 50
IFNAMSIZ = 15                         # usable bytes of a Linux interface name (16 with NUL)

# Every interface name fangen gives a device or looks up, in one rule that schema.json
# repeats verbatim (tests/unit/test_names.py holds them equal).  An allow-list: letters,
# digits, '_', '.', '-', starting with a letter, digit or '_', 1-15 bytes; not all digits
# (systemd refuses numeric names), not 'lo', 'all' or 'default' (the loopback device and
# the /proc/sys/net/*/conf/ directories).  So no whitespace, control characters, '/',
# ':', '%', no networkd or shell pattern characters ('*', '?', '[', ']', '!', '\\'), no
# ',' (a list in dnsmasq), no quotes (nft), no non-ASCII (systemd refuses it), and
# never '.' or '..'.  '$(?!\n)' instead of '$': Python's '$' also matches before a final
# newline, and the two validators must not disagree about 'eth0\n'.
IFNAME_PATTERN = (r"^(?!(?:lo|all|default|[0-9]+)$(?!\n))"
                  r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$(?!\n)")
_IFNAME = re.compile(IFNAME_PATTERN)
RESERVED_IFNAMES = ("lo", "all", "default")


def ifname_problem(name: str) -> str | None:
    """Why ``name`` cannot be an interface name fangen uses, or None when it can."""
    if not isinstance(name, str) or name == "":
        return "it is empty"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > IFNAMSIZ:
        return f"it is longer than {IFNAMSIZ} bytes"
    if name in RESERVED_IFNAMES:
        return f"'{name}' is reserved"
    if name.isascii() and name.isdigit():
        return "a name of digits only is refused by systemd"
    if _IFNAME.search(name):
        return None
    if name[0] in ".-":
        return "it must start with a letter, a digit or '_'"
    return "use only letters, digits, '_', '.' and '-'"


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
            if not re.fullmatch(r"[0-9]{1,2}", length) or not 0 <= int(length) <= 32:
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
        problem = ifname_problem(base)
        if problem is not None:
            raise UnderlayError(f"'{base}' is neither an IPv4 address nor a valid interface "
                                f"name ({problem})")
        return cls(spec, "interface", prefixlen, interface=base)

    def with_host(self, host: IPv4Address | str) -> Underlay:
        """The same underlay once the local address is known (at run time)."""
        host = IPv4Address(host)
        network = IPv4Network((host, self.prefixlen), strict=False)
        return Underlay(self.spec, "host", self.prefixlen, network=network, host=host,
                        interface=self.interface)


def _looks_like_ipv4(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+", text)) and "." in text      # ASCII digits only


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
    overlay6: IPv6Network | None = None   # dual-stack: the IPv6 overlay (VXLAN fans only)
    dhcp6: bool = False                   # DHCPv6 addresses besides SLAAC (overlay6 only)
    # multi-homed hosts (fangen.runtime.underlay_route): the router that reaches the rest
    # of the underlay (an address, or "dhcp": the underlay interface's DHCP gateway) and
    # the routing table fangen keeps for the fan's encapsulated traffic; both or neither
    underlay_gateway: IPv4Address | str | None = None
    underlay_table: int | None = None
    vrf: str | None = None             # or a VRF (netplan's or networkd's) holding the underlay

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

    def slice_for(self, host: IPv4Address | str,
                  underlay_network: IPv4Network | None = None) -> Slice:
        """This host's slice, given its underlay address (and the underlay network, when
        the stanza leaves it to be found at run time): FanMap computes it."""
        host = IPv4Address(host)
        network = underlay_network or IPv4Network((host, self.underlay.prefixlen), strict=False)
        return Slice(self.fanmap(network).slice_for_host(host), self.host_reserve)

    @property
    def static_slice(self) -> Slice | None:
        """The slice when the underlay host address is written in the stanza."""
        if self.underlay.kind != "host":
            return None
        return self.slice_for(self.underlay.host)

    def fanmap6(self, underlay_network: IPv4Network | None = None) -> FanMap6 | None:
        """The IPv6 map of a dual-stack fan (None without overlay6)."""
        if self.overlay6 is None:
            return None
        network = underlay_network or self.underlay.network
        if network is None:
            raise UnderlayError(f"{self.name}: the underlay network is not known yet")
        return FanMap6(self.overlay6, network)

    def slice6_for(self, host: IPv4Address | str,
                   underlay_network: IPv4Network | None = None) -> Slice6 | None:
        """This host's IPv6 slice (None without overlay6), as :meth:`slice_for`."""
        if self.overlay6 is None:
            return None
        host = IPv4Address(host)
        network = underlay_network or IPv4Network((host, self.underlay.prefixlen), strict=False)
        return Slice6(self.fanmap6(network).slice_for_host(host),
                      int(host) & int(network.hostmask))

    def slice6_of(self, slice_net: IPv4Network) -> Slice6 | None:
        """The IPv6 slice of the host that owns the IPv4 slice ``slice_net`` (None
        without overlay6): the renderers get the IPv4 slice and derive this one."""
        if self.overlay6 is None:
            return None
        hostpart = hostpart_of_slice(self.overlay, slice_net)
        return Slice6(slice6_for_hostpart(self.overlay6, hostpart), hostpart)

    @property
    def static_slice6(self) -> Slice6 | None:
        if self.underlay.kind != "host":
            return None
        return self.slice6_for(self.underlay.host)

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
        overlay6=ipaddress.IPv6Network(data["overlay6"]) if "overlay6" in data else None,
        dhcp6=data.get("dhcp6", False),
        underlay_gateway=parse_gateway(data.get("underlay-gateway")),
        underlay_table=data.get("underlay-table"),
        vrf=data.get("vrf"),
    )


GATEWAY_DHCP = "dhcp"


def parse_gateway(text: str | None) -> IPv4Address | str | None:
    """``underlay-gateway``: None, "dhcp", or an IPv4Address (the schema checked it)."""
    if text is None or text == GATEWAY_DHCP:
        return text
    return IPv4Address(text)
