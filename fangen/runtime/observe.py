"""Read what the plan compares: links, routes, nft tables, tc filters, files, dnsmasq."""

from __future__ import annotations

import os

from fangen.engines import cni
from fangen.render import names
from fangen.runtime.view import FORWARD6_SYSCTL, FORWARD_SYSCTL, Observed
from fangen.runtime.state import State


def candidate_files(fan_name: str, bridge: str, tunnel: str, state: State | None) -> set:
    files = {names.dnsmasq_conf(fan_name), cni.path(fan_name),
             names.networkd_file(bridge, "netdev"),        # networkd makes the bridge from it
             f"{names.dropin_dir(bridge)}/50-slice.conf",
             f"{names.dropin_dir(tunnel)}/50-slice.conf"}
    if state is not None:
        files.update(state.files)
    return files


def read_files(root: str, rels) -> dict:
    out = {}
    for rel in sorted(rels):
        try:
            with open(os.path.join(root, rel), encoding="utf-8") as fh:
                out[rel] = fh.read()
        except OSError:
            continue
    return out


def observe(host, fan_name: str, bridge: str, tunnel: str, state: State | None) -> Observed:
    from fangen.runtime.netlink import Netlink

    nl = Netlink(host.ipr)
    links = nl.links()
    routes = nl.routes(links)
    tc, tc_users = {}, {}
    devs = {tunnel} | (set(state.tc) if state else set())
    if state is not None:           # a shared tunnel's users decide whether down deletes it
        devs |= {name for name, link in state.links.items() if link.get("shared")}
    for dev in devs:
        if dev in links:
            tc[dev], tc_users[dev] = _attached(host.ipr, links[dev].index, fan_name)
    dnsmasq_running = bool(state and state.dnsmasq and
                           host.dnsmasq(fan_name).running(state.dnsmasq))
    return Observed(
        links=links, routes=routes, nft_tables=host.nft.tables(), tc=tc, tc_users=tc_users,
        sysctls={key: host.read_sysctl(key) for key in (FORWARD_SYSCTL, FORWARD6_SYSCTL)},
        files=read_files(host.root, candidate_files(fan_name, bridge, tunnel, state)),
        dnsmasq_running=dnsmasq_running)


def _attached(ipr, ifindex: int, fan: str) -> tuple[dict, frozenset]:
    """(the fan's filters by direction, the fans with programs on the device)."""
    try:
        from fangen.datapath import upstream
        return upstream.attached(ipr, ifindex, fan), frozenset(upstream.users(ipr, ifindex))
    except Exception:            # noqa: BLE001 - no clsact support, odd device: nothing ours
        return {}, frozenset()
