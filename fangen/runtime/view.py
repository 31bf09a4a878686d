"""What the plan looks at: the observed state of the host, as plain frozen data.

``fangen.runtime.observe`` and ``fangen.runtime.netlink`` (the I/O adapters) fill
these in; ``fangen.runtime.plan`` compares them with the fan and the state.  Nothing
here does I/O or imports the planner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FORWARD_SYSCTL = "net/ipv4/ip_forward"
FORWARD6_SYSCTL = "net/ipv6/conf/all/forwarding"     # a dual-stack fan's (overlay6)
UDP_L3MDEV_ACCEPT = "net/ipv4/udp_l3mdev_accept"       # a fan over an underlay in a VRF
# every sysctl fangen changes (a state file records its value before)
SYSCTLS = (FORWARD_SYSCTL, FORWARD6_SYSCTL, UDP_L3MDEV_ACCEPT)


@dataclass(frozen=True)
class LinkView:
    name: str
    index: int
    kind: str | None
    mtu: int
    up: bool
    master: str | None = None
    addresses: frozenset = frozenset()      # "A.B.C.D/LEN"
    info: tuple = ()                        # sorted (key, value): external, port, local, ...
    alias: str | None = None                # IFLA_IFALIAS: fangen marks what it makes

    def get(self, key: str, default=None):
        return dict(self.info).get(key, default)


def kernel_link_local(address: str) -> bool:
    """``address`` ("ADDR/LEN") is an IPv6 link-local address the kernel gave a link of
    its own accord (every link has one where IPv6 is on), not the fan link-local
    address fangen sets on a dual-stack fan's bridge (fe80::fa:0:H:H, fangen.fanmap)."""
    if ":" not in address:
        return False
    from ipaddress import IPv6Interface

    from fangen.fanmap import hostpart_of_link_local

    ip = IPv6Interface(address).ip
    return ip.is_link_local and hostpart_of_link_local(ip) is None


@dataclass(frozen=True)
class RouteView:
    dst: str          # "NET/LEN"
    dev: str
    src: str | None


@dataclass(frozen=True)
class Observed:
    links: dict = field(default_factory=dict)          # name -> LinkView
    routes: frozenset = frozenset()                    # RouteView (main table)
    nft_tables: frozenset = frozenset()                # table names in family ip
    tc: dict = field(default_factory=dict)             # dev -> {direction: filter name}
    tc_users: dict = field(default_factory=dict)       # dev -> fans with programs on it
    sysctls: dict = field(default_factory=dict)        # key -> value
    files: dict = field(default_factory=dict)          # relpath -> text (files we may write)
    dnsmasq_running: bool = False
