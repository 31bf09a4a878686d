"""Attach and detach the upstream datapath's tc programs with pyroute2.

The device is a collect-metadata tunnel (``vxlan external`` or ``ipip
external``); fangen puts a clsact qdisc on it and one direct-action bpf filter
on each hook (ingress, egress), loaded from :mod:`fangen.datapath.fanprog`.
Nothing else is created: no maps, no pinned objects, no per-peer routes,
neighbours or FDB entries.

Every call takes a pyroute2 ``IPRoute`` handle (bound to the right network
namespace by the caller) and an interface index, and works with pyroute2 0.7.2
(Debian 12) and later.  Note that the program's file descriptor is passed in the
netlink message, so the handle's socket must live in this process (an
``IPRoute`` created after ``setns``, not a ``NetNS`` proxy whose socket lives in a
child process).

Our filters are recognised by their name (``fangen:...``) and sit at a fixed
priority and handle, so attaching again atomically replaces the programs and
leaves exactly one filter per hook.  ``detach`` removes our filters and, when
nothing else is left on it, the clsact qdisc.
"""

from __future__ import annotations

import os
import socket

from fangen.datapath import bpf, fanprog
from fangen.datapath.fanprog import FanParams

TC_H_CLSACT = 0xFFFFFFF1
PARENT = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}
PRIO = 0xFA00
HANDLE = 1
ETH_P_ALL = 0x0003
NAME_PREFIX = "fangen:"


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


def attached(ipr, ifindex: int) -> dict[str, str]:
    """{direction: filter name} for fangen's filters on the device."""
    if not _has_clsact(ipr, ifindex):
        return {}
    found: dict[str, str] = {}
    for direction in PARENT:
        for msg in _filters(ipr, ifindex, direction):
            if _ours(msg):
                found[direction] = _name(msg)
    return found


def attach(ipr, ifindex: int, params: FanParams) -> dict[str, str]:
    """Load the fan's programs and attach them to the device's clsact hooks.

    Idempotent: a second call replaces the programs in place.  Returns what
    :func:`attached` reports afterwards.
    """
    if not _has_clsact(ipr, ifindex):
        ipr.tc("add", "clsact", ifindex)
    progs = fanprog.programs(params)
    for direction in ("ingress", "egress"):   # the receive filter first
        name = fanprog.program_name(params, direction)
        fd = bpf.prog_load(bpf.assemble(progs[direction]), name=name)
        try:
            ipr.tc("replace-filter", "bpf", ifindex, HANDLE, fd=fd,
                   name=f"{NAME_PREFIX}{name}", parent=PARENT[direction], prio=PRIO,
                   protocol=ETH_P_ALL, direct_action=True)
        finally:
            os.close(fd)
        # a stray fangen filter elsewhere on this hook (older priority) must not linger
        for msg in _filters(ipr, ifindex, direction):
            if _ours(msg) and (msg["info"] >> 16) != PRIO:
                _delete(ipr, ifindex, direction, msg)
    return attached(ipr, ifindex)


def _delete(ipr, ifindex: int, direction: str, msg) -> None:
    info = msg["info"]
    ipr.tc("del-filter", "bpf", ifindex, msg["handle"], parent=PARENT[direction],
           prio=info >> 16, protocol=socket.ntohs(info & 0xFFFF))


def detach(ipr, ifindex: int) -> None:
    """Remove fangen's filters; remove the clsact qdisc if nothing else uses it."""
    if not _has_clsact(ipr, ifindex):
        return
    left = 0
    for direction in PARENT:
        for msg in _filters(ipr, ifindex, direction):
            if _ours(msg):
                _delete(ipr, ifindex, direction, msg)
            else:
                left += 1
    if not left:
        ipr.tc("del", "clsact", ifindex)
