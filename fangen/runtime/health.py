"""Why a fan that is up does not carry traffic, from what the kernel shows now.  Pure.

Shared by ``fangen show`` (a fan with any problem is "broken", with the reasons) and
``fangen doctor`` (one line per check), so both say the same thing.  Input: the fan's
recorded state and the links and main-table routes read by
:class:`fangen.runtime.netlink.Netlink`.

Things that take a working fan apart behind fangen's back and are caught here: an
engine that replaces the bridge's address (Docker's ``--subnet SLICE`` on a VXLAN fan),
the overlay route deleted (it goes with that address, and stays gone after
``docker network rm``), a route of someone else's into the overlay, the bridge or
tunnel deleted or down.
"""

from __future__ import annotations

from ipaddress import IPv4Network

from fangen.runtime.state import State
from fangen.runtime.view import kernel_link_local


def bridge_address(st: State) -> str:
    """The address the bridge should hold: the slice's first address, with the overlay
    prefix on a VXLAN fan (one segment) and the slice prefix on an IPIP fan (routed)."""
    prefix = IPv4Network(st.overlay).prefixlen if st.type == "vxlan" else \
        IPv4Network(st.slice).prefixlen
    return f"{st.gateway}/{prefix}"


def overlay_route(st: State) -> tuple[str, str]:
    """(destination, device) of the overlay route: through the tunnel for IPIP, the
    bridge's own prefix route for VXLAN."""
    return st.overlay, (st.tunnel if st.type == "ipip" else st.bridge)


def foreign_routes(st: State, routes) -> list[str]:
    """Main-table routes on other devices into the overlay, equal to it or inside it
    ("DST dev DEV"): by longest prefix (or, equal, by coming first) they take that part
    of the overlay away from the fan.  A wider route (a default route) does not."""
    overlay = IPv4Network(st.overlay)
    ours = {st.bridge, st.tunnel}
    return sorted(f"{r.dst} dev {r.dev}" for r in routes
                  if r.dev not in ours and ":" not in r.dst
                  and IPv4Network(r.dst).subnet_of(overlay))


def problems(st: State, links: dict, routes) -> list[tuple[str, str]]:
    """[(check, reason)] with check one of "bridge", "route", "tunnel"; [] when healthy."""
    found: list[tuple[str, str]] = []
    if not st.slice or not st.gateway:
        return [("bridge", "no slice recorded (the fan is still coming up)")]
    bridge = links.get(st.bridge)
    want = bridge_address(st)
    if bridge is None:
        found.append(("bridge", f"bridge {st.bridge} is missing"))
    else:
        if not bridge.up:
            found.append(("bridge", f"bridge {st.bridge} is down"))
        if want not in bridge.addresses:
            has = ", ".join(sorted(a for a in bridge.addresses
                                   if not kernel_link_local(a))) or "no address"
            found.append(("bridge", f"bridge {st.bridge} lost its address {want} "
                                    f"(it has {has})"))
    dst, dev = overlay_route(st)
    if not any(r.dst == dst and r.dev == dev for r in routes):
        found.append(("route", f"the overlay route {dst} dev {dev} is missing"))
    foreign = foreign_routes(st, routes)
    if foreign:
        found.append(("route", f"route {', '.join(foreign)} takes part of the overlay "
                               "away from the fan"))
    tunnel = links.get(st.tunnel)
    if tunnel is None:
        found.append(("tunnel", f"tunnel {st.tunnel} is missing"))
    else:
        if not tunnel.up:
            found.append(("tunnel", f"tunnel {st.tunnel} is down"))
        if st.type == "vxlan" and tunnel.master != st.bridge:
            found.append(("tunnel", f"tunnel {st.tunnel} is not a port of {st.bridge}"))
    return found
