"""Attach and detach the upstream datapath's tc programs with pyroute2.

The device is a collect-metadata tunnel (``vxlan external`` or ``ipip
external``), which several fans may share (the IPIP fans of a namespace:
:mod:`fangen.datapath.tunnels`), or an IPv4 VXLAN fan's plain VXLAN device (its
VNI, no remote; ``FanParams.plain``, where :func:`plain_supported`).  fangen puts a clsact qdisc on it and, on each
hook (ingress, egress), a chain of direct-action bpf filters:

* at priority :data:`PRIO`, one filter per fan, named ``fangen:fan:NAME``
  (:func:`filter_name`), loaded from :mod:`fangen.datapath.fanprog`: it decides
  for the packets of its own overlay and hands the rest on (``TC_ACT_UNSPEC``);
  the kernel numbers the filters (handles) as they are added;
* at priority :data:`PRIO_LAST`, one filter named ``fangen:drop``, which drops
  what no fan claimed (without it, an unclaimed packet would pass untouched).

Nothing else is created: no maps, no pinned objects, no per-peer routes,
neighbours or FDB entries.  The fans whose filters are on a device are its users
(:func:`users`); ``detach`` of the last one also removes the drop filters.

Every call takes a pyroute2 ``IPRoute`` handle (bound to the right network
namespace by the caller) and an interface index, and works with pyroute2 0.7.2
(Debian 12) and later.  Note that the program's file descriptor is passed in the
netlink message, so the handle's socket must live in this process (an
``IPRoute`` created after ``setns``, not a ``NetNS`` proxy whose socket lives in a
child process).

Attaching again for the same fan replaces its programs in place (same handle).
Filters named ``fangen:`` otherwise are a previous release's (one fan per
device, at :data:`PRIO`); ``attach`` replaces them and ``detach`` removes them.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import replace

from fangen.datapath import bpf, fanprog
from fangen.datapath.fanprog import FanParams

TC_H_CLSACT = 0xFFFFFFF1
PARENT = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}
PRIO = 0xFA00
PRIO_LAST = 0xFAFF
ETH_P_ALL = 0x0003
NAME_PREFIX = "fangen:"
FAN_PREFIX = "fangen:fan:"
DROP_NAME = "fangen:drop"


def filter_name(fan: str) -> str:
    """The tc filter name of a fan's programs (fan names hold no ':')."""
    return f"{FAN_PREFIX}{fan}"


def default_label(params: FanParams) -> str:
    """The owner recorded when the caller names no fan: the overlay (no fan is named so)."""
    return str(params.overlay)


def _kernel_error():
    from pyroute2.netlink.exceptions import NetlinkError
    return NetlinkError


def _has_clsact(ipr, ifindex: int) -> bool:
    return any(q.get_attr("TCA_KIND") == "clsact" for q in ipr.get_qdiscs(ifindex))


def _filters(ipr, ifindex: int, direction: str) -> list:
    """Filter entries (not the per-priority headers) on one clsact hook."""
    out = []
    for msg in ipr.get_filters(index=ifindex, parent=PARENT[direction]):
        if msg["index"] != ifindex or msg["parent"] != PARENT[direction]:
            continue
        if msg["handle"] == 0:
            continue
        out.append(msg)
    return out


def _name(msg) -> str | None:
    if msg.get_attr("TCA_KIND") != "bpf":
        return None
    opts = msg.get_attr("TCA_OPTIONS")
    return opts.get_attr("TCA_BPF_NAME") if opts is not None else None


def _ours(msg) -> bool:
    name = _name(msg)
    return bool(name) and name.startswith(NAME_PREFIX)


def _owner(msg) -> str | None:
    """The fan a filter belongs to, or None (the drop filter, a legacy or foreign one)."""
    name = _name(msg) or ""
    return name[len(FAN_PREFIX):] if name.startswith(FAN_PREFIX) else None


def _legacy(msg) -> bool:
    return _ours(msg) and _owner(msg) is None and _name(msg) != DROP_NAME


def _prio(msg) -> int:
    return msg["info"] >> 16


def users(ipr, ifindex: int) -> set[str]:
    """The fans whose programs are on the device (either hook)."""
    if not _has_clsact(ipr, ifindex):
        return set()
    return {owner for direction in PARENT for msg in _filters(ipr, ifindex, direction)
            if (owner := _owner(msg)) is not None}


def attached(ipr, ifindex: int, fan: str | None = None) -> dict[str, str]:
    """{direction: filter name} where the fan's filter and the final drop filter are both
    in place (``fan=None``: any fan's, a previous release's included)."""
    if not _has_clsact(ipr, ifindex):
        return {}
    found: dict[str, str] = {}
    for direction in PARENT:
        msgs = _filters(ipr, ifindex, direction)
        if not any(_name(m) == DROP_NAME and _prio(m) == PRIO_LAST for m in msgs):
            continue
        for msg in msgs:
            if _prio(msg) != PRIO or not _ours(msg) or _name(msg) == DROP_NAME:
                continue
            if fan is None or _owner(msg) == fan:
                found[direction] = _name(msg)
    return found


def attach(ipr, ifindex: int, params: FanParams, fan: str | None = None) -> dict[str, str]:
    """Load the fan's programs and put them on the device's clsact hooks, in front of
    the final drop filter (added if missing).

    Idempotent: a second call for the same fan replaces its programs in place; other
    fans' filters stay.  Returns what :func:`attached` reports for the fan afterwards.
    """
    label = fan or default_label(params)
    name = filter_name(label)
    if not _has_clsact(ipr, ifindex):
        _tc(ipr, "add", "clsact", ifindex, tolerate=(errno.EEXIST,))
    for direction in ("ingress", "egress"):   # the receive side first
        _ensure_drop(ipr, ifindex, direction)
        mine = [m for m in _filters(ipr, ifindex, direction)
                if _name(m) == name and _prio(m) == PRIO]
        fd, params = _load(params, direction)
        try:
            if mine:
                _tc(ipr, "replace-filter", "bpf", ifindex, mine[0]["handle"], fd=fd, name=name,
                    parent=PARENT[direction], prio=PRIO, protocol=ETH_P_ALL,
                    direct_action=True)
            else:   # handle 0: the kernel picks a free one, so concurrent adds cannot clash
                _tc(ipr, "add-filter", "bpf", ifindex, 0, fd=fd, name=name,
                    parent=PARENT[direction], prio=PRIO, protocol=ETH_P_ALL,
                    direct_action=True)
        finally:
            os.close(fd)
        for msg in mine[1:]:                       # duplicates of ours must not linger
            _delete(ipr, ifindex, direction, msg)
        for msg in _filters(ipr, ifindex, direction):
            if _legacy(msg) or (_name(msg) == name and _prio(msg) != PRIO):
                _delete(ipr, ifindex, direction, msg)
    return attached(ipr, ifindex, label)


def _load(params: FanParams, direction: str) -> tuple[int, FanParams]:
    """Load one of the fan's programs.  A kernel that refuses the encapsulating egress
    program (one older than bpf_redirect_neigh with a next hop, 5.11) gets the one
    that sets the tunnel key; the parameters actually loaded are returned."""
    prog = (fanprog.ingress if direction == "ingress" else fanprog.egress)(params)
    try:
        return bpf.prog_load(bpf.assemble(prog),
                             name=fanprog.program_name(params, direction)), params
    except bpf.BPFError as exc:
        if params.encap is None or params.plain or exc.errno in (errno.EPERM, errno.ENOSYS):
            raise
    return _load(replace(params, encap=None), direction)


_PLAIN: list = []


def _release_at_least(major: int, minor: int, release: str | None = None) -> bool:
    """Is the running kernel (``release``: a uname release string) major.minor or newer?"""
    import re
    found = re.match(r"(\d+)\.(\d+)", release if release is not None else os.uname().release)
    return bool(found) and (int(found[1]), int(found[2])) >= (major, minor)


def plain_supported() -> bool:
    """Does this kernel take the programs of a fan on a plain VXLAN device (``plain``:
    bpf_redirect_neigh with a next hop, 5.11, and the helpers of
    :func:`fangen.datapath.encap.program_frame`)?  Probed once per process by loading
    them for a made-up fan, not attached anywhere.  Where this process may not load
    programs (``up --dry-run`` as a user), the kernel's version answers instead: what
    ``up`` as root would find on a kernel whose BPF is not cut down."""
    if not _PLAIN:
        from ipaddress import IPv4Address, IPv4Network

        from fangen.datapath.encap import Encap
        from fangen.fanmap import FanMap
        probe = replace(FanParams.for_host(FanMap.parse("250.0.0.0/8", "10.0.0.0/16"),
                                           "10.0.0.1"),
                        encap=Encap(IPv4Address("10.0.0.1"), 1, 8472,
                                    IPv4Network("10.0.0.0/24")), plain=True)
        try:
            fd = bpf.prog_load(bpf.assemble(fanprog.egress(probe)), name="fan_probe")
        except OSError as exc:
            _PLAIN.append(exc.errno == errno.EPERM and _release_at_least(5, 11))
        else:
            os.close(fd)
            _PLAIN.append(True)
    return _PLAIN[0]


def _ensure_drop(ipr, ifindex: int, direction: str) -> None:
    if any(_name(m) == DROP_NAME and _prio(m) == PRIO_LAST
           for m in _filters(ipr, ifindex, direction)):
        return
    fd = bpf.prog_load(bpf.assemble(fanprog.drop_program()), name=fanprog.DROP_PROGRAM_NAME)
    try:
        _tc(ipr, "add-filter", "bpf", ifindex, 1, fd=fd, name=DROP_NAME,
            parent=PARENT[direction], prio=PRIO_LAST, protocol=ETH_P_ALL, direct_action=True,
            tolerate=(errno.EEXIST,))      # another fan added it just now
    finally:
        os.close(fd)


def _tc(ipr, *args, tolerate=(), **kwargs) -> None:
    try:
        ipr.tc(*args, **kwargs)
    except _kernel_error() as exc:
        if exc.code not in tolerate:
            raise OSError(exc.code, os.strerror(exc.code)) from None


def _delete(ipr, ifindex: int, direction: str, msg) -> None:
    info = msg["info"]
    _tc(ipr, "del-filter", "bpf", ifindex, msg["handle"], parent=PARENT[direction],
        prio=info >> 16, protocol=socket.ntohs(info & 0xFFFF),
        tolerate=(errno.ENOENT, errno.EINVAL))     # gone already (a concurrent detach)


def detach(ipr, ifindex: int, fan: str | None = None) -> set[str]:
    """Remove the fan's filters (``fan=None``: every fangen filter); once no fan's are
    left, the drop filters too, and the clsact qdisc if nothing else uses it.

    Returns the fans still using the device.
    """
    if not _has_clsact(ipr, ifindex):
        return set()
    for direction in PARENT:
        for msg in _filters(ipr, ifindex, direction):
            if _ours(msg) and (fan is None or _owner(msg) == fan or _legacy(msg)):
                _delete(ipr, ifindex, direction, msg)
    left = users(ipr, ifindex)
    if left:
        return left
    others = 0
    for direction in PARENT:
        for msg in _filters(ipr, ifindex, direction):
            if _ours(msg):
                _delete(ipr, ifindex, direction, msg)
            else:
                others += 1
    if not others:
        _tc(ipr, "del", "clsact", ifindex, tolerate=(errno.ENOENT, errno.EINVAL))
    return set()
