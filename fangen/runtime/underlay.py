"""Find the underlay: which local interface and address the fan runs over.

Resolution is a pure function over a small view of the kernel's links, IPv4
addresses and default routes (:class:`NetView`), read through an injected
pyroute2 ``IPRoute``.  Waiting and following use netlink events
(RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE), never polling:
:class:`Events` wakes up on any change and the caller resolves again.

Kinds (``fangen.config.model.Underlay``):

* network ``NET/LEN``: the interface holding an address inside NET/LEN;
* host ``ADDR/LEN``: that address must be local;
* interface ``IFACE[/LEN]``: the interface's first (primary) IPv4 address;
* default ``default[/LEN]``: the interface of the default route, its address.

The underlay network is NET/LEN for the first two kinds and the address's own
``/LEN`` network (LEN from the stanza, default 16) for the others.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from fangen.config.model import Underlay
from fangen.errors import FangenError

IFF_UP = 0x1
IFA_F_SECONDARY = 0x01
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV4_RULE = 0x80        # fangen.runtime.underlay_route puts back a removed rule
GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV4_RULE
MAIN_TABLE = 254


class UnderlayTimeout(FangenError):
    """The underlay did not appear in time."""


@dataclass(frozen=True)
class Resolved:
    ifname: str
    ifindex: int
    address: IPv4Address
    network: IPv4Network
    mtu: int

    def as_dict(self) -> dict:
        return {"ifname": self.ifname, "ifindex": self.ifindex, "address": str(self.address),
                "network": str(self.network), "mtu": self.mtu}


@dataclass(frozen=True)
class LinkRow:
    index: int
    name: str
    mtu: int
    up: bool


@dataclass(frozen=True)
class AddrRow:
    index: int
    address: IPv4Address
    prefixlen: int
    secondary: bool = False


@dataclass(frozen=True)
class NetView:
    links: tuple            # LinkRow
    addresses: tuple        # AddrRow, in kernel order
    defaults: tuple         # (oif, metric) of IPv4 default routes in the main table


def read_view(ipr) -> NetView:
    """Links, IPv4 addresses and default routes, as the kernel reports them now."""
    links = []
    for msg in ipr.get_links():
        links.append(LinkRow(msg["index"], msg.get_attr("IFLA_IFNAME"),
                             msg.get_attr("IFLA_MTU") or 1500, bool(msg["flags"] & IFF_UP)))
    addrs = []
    for msg in ipr.get_addr(family=socket.AF_INET):
        local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        if local is None:
            continue
        flags = msg.get_attr("IFA_FLAGS")
        flags = msg["flags"] if flags is None else flags
        addrs.append(AddrRow(msg["index"], IPv4Address(local), msg["prefixlen"],
                             bool(flags & IFA_F_SECONDARY)))
    defaults = []
    for msg in ipr.get_routes(family=socket.AF_INET):
        table = msg.get_attr("RTA_TABLE") or msg["table"]
        if msg["dst_len"] != 0 or table != MAIN_TABLE or msg["type"] != 1:
            continue
        oif = msg.get_attr("RTA_OIF")
        if oif is None:
            multipath = msg.get_attr("RTA_MULTIPATH")
            if multipath:
                oif = multipath[0]["oif"]
        if oif is not None:
            defaults.append((oif, msg.get_attr("RTA_PRIORITY") or 0))
    return NetView(tuple(links), tuple(addrs), tuple(defaults))


def resolve_view(underlay: Underlay, view: NetView) -> Resolved | None:
    """The underlay in this view, or None when it is not there (yet)."""
    links = {link.index: link for link in view.links}

    def usable(row: AddrRow) -> bool:
        link = links.get(row.index)
        return link is not None and link.up and not row.address.is_loopback

    def result(row: AddrRow, network: IPv4Network) -> Resolved:
        link = links[row.index]
        return Resolved(link.name, link.index, row.address, network, link.mtu)

    if underlay.kind in ("network", "host"):
        for row in view.addresses:
            if not usable(row):
                continue
            if underlay.kind == "host" and row.address != underlay.host:
                continue
            if underlay.kind == "network" and (row.address not in underlay.network or
                                               row.address == underlay.network.network_address):
                continue
            return result(row, underlay.network)
        return None
    if underlay.kind == "interface":
        index = next((link.index for link in view.links if link.name == underlay.interface),
                     None)
    else:
        ranked = sorted(view.defaults, key=lambda d: d[1])
        index = ranked[0][0] if ranked else None
    if index is None:
        return None
    rows = [r for r in view.addresses if r.index == index and usable(r)]
    rows.sort(key=lambda r: r.secondary)          # primary first, kernel order otherwise
    if not rows:
        return None
    row = rows[0]
    return result(row, IPv4Network((row.address, underlay.prefixlen), strict=False))


def resolve(ipr, underlay: Underlay) -> Resolved | None:
    return resolve_view(underlay, read_view(ipr))


class Events:
    """A netlink socket subscribed to link, IPv4 address and IPv4 route changes.

    ``wait(timeout)`` returns True when something changed (all queued messages are
    drained, so one burst of changes is one wake-up), False on timeout.  Open it
    *before* reading the state it guards, so no change falls in between.
    """

    def __init__(self, factory):
        self.ipr = factory()
        self.ipr.bind(groups=GROUPS)

    def fileno(self) -> int:
        return self.ipr.fileno()

    def drain(self) -> None:
        while True:
            ready, _, _ = select.select([self.ipr.fileno()], [], [], 0)
            if not ready:
                return
            self.ipr.get()

    def wait(self, timeout: float | None) -> bool:
        ready, _, _ = select.select([self.ipr.fileno()], [], [], timeout)
        if not ready:
            return False
        self.drain()
        return True

    def close(self) -> None:
        self.ipr.close()


def wait_for(ipr, events: Events | None, underlay: Underlay, timeout: float | None,
             what: str = "") -> Resolved:
    """Resolve the underlay, waiting for netlink events up to ``timeout`` seconds."""
    found = resolve(ipr, underlay)
    if found is not None or timeout == 0:
        if found is None:
            raise UnderlayTimeout(_missing(underlay, what))
        return found
    # --timeout inf (fangen@.service): wait for ever, as None does
    deadline = None if timeout is None or timeout == float("inf") else \
        time.monotonic() + timeout
    while True:
        left = None if deadline is None else max(deadline - time.monotonic(), 0)
        if left == 0:
            raise UnderlayTimeout(_missing(underlay, what) + f" after {timeout:g} s")
        if events is not None:
            events.wait(left)
        else:
            time.sleep(min(left if left is not None else 1.0, 1.0))
        found = resolve(ipr, underlay)
        if found is not None:
            return found


def _missing(underlay: Underlay, what: str) -> str:
    prefix = f"{what}: " if what else ""
    detail = {
        "network": f"no interface that is up holds an address in {underlay.network}",
        "host": f"{underlay.host} is not an address of any interface that is up",
        "interface": f"interface {underlay.interface} is missing, down or has no IPv4 address",
        "default": "no default route via an interface that is up with an IPv4 address",
    }[underlay.kind]
    return f"{prefix}underlay {underlay.spec} not found: {detail}"
