"""systemd-networkd files for what networkd can express.

networkd creates the fan bridge.  The tunnel is created by the runtime, because
networkd cannot express either datapath (systemd 252's VXLAN has no collect-metadata
mode, and no networkd knows fan maps); networkd still matches it, so it keeps its
hands off link-local addressing and, in VXLAN mode, makes it a bridge port.  When
the underlay host address is static the slice is known now and the bridge address
(and, for IPIP, the overlay route) are rendered here; otherwise the runtime writes
them as a drop-in once the address is known (``slice_dropins``).
"""

from __future__ import annotations

from fangen.config.model import Fan
from fangen.fanmap import Slice
from fangen.render import names


def render(fan: Fan, sources: str) -> dict[str, str]:
    header = names.HEADER.format(sources=sources)
    files = {
        names.networkd_file(fan.bridge, "netdev"): header + _bridge_netdev(fan),
        names.networkd_file(fan.bridge, "network"): header + _bridge_network(fan),
        names.networkd_file(fan.tunnel, "network"): header + _tunnel_network(fan),
    }
    return files


def _bridge_netdev(fan: Fan) -> str:
    # No MTUBytes=: the runtime sets the MTU as a change, which the kernel keeps; an MTU
    # given at creation would follow the bridge's ports (containers' 1500-byte veths).
    lines = ["[NetDev]", f"Name={fan.bridge}", "Kind=bridge", "", "[Bridge]", "STP=no", ""]
    return "\n".join(lines)


def _common_network(name: str, kind: str) -> list[str]:
    # Kind= as well as Name=: a 10-fangen-*.network sorts before the host's own files, so
    # it must never match a device fangen did not make, even one that appears later
    # under the same name (Kind= is in [Match] since systemd 251)
    return ["[Match]", f"Name={name}", f"Kind={kind}", "",
            "[Link]", "RequiredForOnline=no", "",
            "[Network]", "LinkLocalAddressing=no", "IPv6AcceptRA=no",
            "ConfigureWithoutCarrier=yes", "IgnoreCarrierLoss=yes",
            "KeepConfiguration=yes"]


def tunnel_kind(fan: Fan) -> str:
    """The kernel's link kind of the fan's tunnel (IFLA_INFO_KIND)."""
    return "vxlan" if fan.type == "vxlan" else "ipip"


def _bridge_network(fan: Fan) -> str:
    lines = _common_network(fan.bridge, "bridge")
    static = fan.static_slice
    if static is not None:
        lines += _slice_bridge_lines(fan, static)
    return "\n".join(lines) + "\n"


def _tunnel_network(fan: Fan) -> str:
    lines = _common_network(fan.tunnel, tunnel_kind(fan))
    if fan.type == "vxlan":
        lines.append(f"Bridge={fan.bridge}")
    static = fan.static_slice
    if static is not None and fan.type == "ipip":
        lines += _slice_tunnel_lines(fan, static)
    return "\n".join(lines) + "\n"


def _slice_bridge_lines(fan: Fan, sl: Slice) -> list[str]:
    lines = [f"Address={sl.gateway}/{fan.bridge_prefix}"]
    sl6 = fan.slice6_of(sl.network)
    if sl6 is not None:
        # the IPv6 slice's first address with the overlay6 prefix: the whole IPv6
        # overlay is on the bridge, as the IPv4 one is on a VXLAN fan's bridge; and a
        # link-local address that carries the host bits (fangen.fanmap.host_link_local)
        # instead of the kernel's: router advertisements come from it, and answers
        # to the host's neighbour solicitations find their way back by it
        lines.append(f"Address={sl6.gateway}/{fan.overlay6.prefixlen}")
        lines.append(f"Address={sl6.link_local}/64")
    return lines


def _slice_tunnel_lines(fan: Fan, sl: Slice) -> list[str]:
    return ["", "[Route]", f"Destination={fan.overlay}", f"PreferredSource={sl.gateway}",
            "Scope=link"]


def slice_dropins(fan: Fan, sl: Slice) -> dict[str, str]:
    """Drop-ins the runtime writes once a dynamic underlay gives the slice."""
    header = names.HEADER.format(sources=f"the underlay address of fan {fan.name}")
    files = {f"{names.dropin_dir(fan.bridge)}/50-slice.conf":
             header + "[Network]\n" + "\n".join(_slice_bridge_lines(fan, sl)) + "\n"}
    if fan.type == "ipip":
        files[f"{names.dropin_dir(fan.tunnel)}/50-slice.conf"] = \
            header + "\n".join(_slice_tunnel_lines(fan, sl)[1:]) + "\n"
    return files
