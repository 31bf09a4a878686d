"""dnsmasq configuration for one fan's slice: DHCP (and DNS) on the bridge only, and
for a dual-stack fan router advertisements (and DHCPv6) for its IPv6 slice.

``bind-dynamic`` (the mode dnsmasq recommends; with ``bind-interfaces`` it warns
that it "may accept requests via interfaces other than" the bridge): sockets
bound to the bridge's addresses only.  A bound address still receives packets
that arrive on another interface, so the fan's nft table drops packets for the
bridge address unless they come in on the bridge, the tunnel or ``lo``.
"""

from __future__ import annotations

from ipaddress import IPv4Network

from fangen.config.model import Fan
from fangen.fanmap import Slice
from fangen.render import names


def render(fan: Fan, sl: Slice, mtu: int, root: str = "/") -> str | None:
    """The config text, or None when the fan has no DHCP."""
    if not fan.dhcp:
        return None
    first, last = sl.dhcp_range
    netmask = IPv4Network((0, fan.bridge_prefix)).netmask
    state = f"{root.rstrip('/')}/{names.STATE_DIR}/{fan.name}"
    lines = [
        names.HEADER.format(sources=f"fan {fan.name}").rstrip("\n"),
        f"interface={fan.bridge}",
        "except-interface=lo",
        "bind-dynamic",
        f"listen-address={sl.gateway}",
        "strict-order",
        "dhcp-authoritative",
        "dhcp-no-override",
        # the slice is ours and host-reserve keeps hand-set addresses out of the range:
        # skip the ICMP probe dnsmasq makes before each offer (seconds per new container)
        "no-ping",
        f"dhcp-range={first},{last},{netmask},{fan.lease_time}s",
        f"dhcp-option=option:router,{sl.gateway}",
        f"dhcp-option-force=option:mtu,{mtu}",
        f"dhcp-leasefile={names.lease_file(fan.name, root)}",
        f"pid-file={state}/dnsmasq.pid",
    ]
    if fan.dns:
        lines.append(f"dhcp-option=option:dns-server,{sl.gateway}")
    else:
        lines.append("port=0")
    lines += _ipv6_lines(fan, sl, mtu)
    return "\n".join(lines) + "\n"


RA_INTERVAL = 60            # seconds between unsolicited router advertisements
RA_ROUTER_LIFETIME = 1800   # how long containers keep the bridge as default router


def _ipv6_lines(fan: Fan, sl: Slice, mtu: int) -> list[str]:
    """A dual-stack fan: router advertisements for the host's IPv6 /64 (SLAAC, the
    fan's MTU, the bridge as default router; RDNSS with ``dns``), and with ``dhcp6``
    DHCPv6 addresses from the slice after the first 1 + host-reserve."""
    sl6 = fan.slice6_of(sl.network)
    if sl6 is None:
        return []
    net = sl6.network.network_address
    lines = [f"listen-address={sl6.gateway}",
             "enable-ra",
             f"ra-param={fan.bridge},mtu:{mtu},{RA_INTERVAL},{RA_ROUTER_LIFETIME}"]
    if fan.dhcp6:
        first = sl6.gateway + fan.host_reserve
        last = net + 0xFFFFFFFF
        lines.append(f"dhcp-range={first},{last},slaac,64,{fan.lease_time}s")
    else:
        lines.append(f"dhcp-range={net},ra-only,64,{fan.lease_time}s")
    if fan.dns:
        lines.append(f"dhcp-option=option6:dns-server,[{sl6.gateway}]")
    return lines
