"""Carry out a plan's actions through the host's handles, recording each in the state.

For every action: say it, do its I/O (one function per action type, :data:`_DO`),
then let the action record itself (``action.record(state, outcome)``, pure, see
fangen.runtime.actions).  The state is saved after every action, so a failure
half-way leaves a state file that ``down`` can clean up from.
"""

from __future__ import annotations

import errno
import os

from fangen import writer
from fangen.errors import FangenError
from fangen.runtime import actions as A
from fangen.runtime import state as state_mod
from fangen.runtime.netlink import Netlink, NetlinkFailed
from fangen.runtime.state import State


def execute(actions: list, host, state: State, save: bool = True) -> State:
    nl = Netlink(host.ipr)
    for action in actions:
        host.say(str(action))
        do = _DO.get(type(action))
        if do is None:                      # pragma: no cover - a plan bug
            raise FangenError(f"unknown action {action!r}")
        try:
            outcome = do(action, host, nl, state)
        except OSError as exc:          # a file step on a full or read-only filesystem
            where = exc.filename or str(action)
            raise FangenError(f"{where}: {exc.strerror or exc}") from None
        action.record(state, outcome)
        if isinstance(action, A.Forget) and action.keep:
            state = state_mod.shrink(host.root, state, action.keep)
            save = False
        elif isinstance(action, A.Forget):
            state_mod.remove(host.root, state.name)
            save = False
        elif save:
            state_mod.save(host.root, state)
    return state


# -- the I/O of each action; what one returns is the outcome its record step gets ------------

def _create_bridge(a: A.CreateBridge, host, nl: Netlink, st: State) -> bool:
    existed = nl.index(a.name) is not None
    nl.create_bridge(a.name, a.mtu)
    if a.own_link_local and not existed:
        # before it goes up: the kernel would give it a link-local address from its
        # MAC, which no host can map (fangen adds fe80::fa:0:H:H, fangen.fanmap)
        _no_kernel_link_local(host, a.name)
    if not existed:
        nl.set_alias(a.name, state_mod.mark(st.name))
    return existed


def _create_tunnel(a: A.CreateTunnel, host, nl: Netlink, st: State) -> bool:
    existed = nl.index(a.name) is not None
    _make_tunnel(a, host, nl)
    if not a.shared and not existed:
        nl.set_alias(a.name, state_mod.mark(st.name))
    return existed


def _delete_link(a: A.DeleteLink, host, nl: Netlink, st: State) -> None:
    nl.delete_link(a.name)


def _set_link(a: A.SetLink, host, nl: Netlink, st: State) -> None:
    try:
        nl.set_link(a.name, a.mtu, a.master, a.up)
    except NetlinkFailed as exc:
        if a.up and exc.code == errno.EADDRINUSE:   # a VXLAN device binds its port on up
            raise NetlinkFailed(f"{exc}: another socket holds {a.name}'s UDP port "
                                "('ss -ulnp' names it)", exc.code) from None
        raise


def _add_address(a: A.AddAddress, host, nl: Netlink, st: State) -> None:
    nl.add_address(a.dev, a.address)


def _del_address(a: A.DelAddress, host, nl: Netlink, st: State) -> None:
    nl.del_address(a.dev, a.address)


def _add_route(a: A.AddRoute, host, nl: Netlink, st: State) -> None:
    nl.add_route(a.dst, a.dev, a.src)


def _del_route(a: A.DelRoute, host, nl: Netlink, st: State) -> None:
    nl.del_route(a.dst, a.dev, a.src)


def _restore_route(a: A.RestoreRoute, host, nl: Netlink, st: State) -> None:
    nl.add_route(a.dst, a.dev, a.src, kernel=True)


def _detach(a: A.DetachPrograms, host, nl: Netlink, st: State) -> None:
    from fangen.datapath import upstream
    idx = nl.index(a.dev)
    if idx is not None:
        try:
            upstream.detach(host.ipr, idx, a.fan or None)
        except OSError as exc:
            raise FangenError(f"detach the fan programs from {a.dev}: "
                              f"{exc.strerror or exc}") from None


def _release(a: A.ReleaseTunnel, host, nl: Netlink, st: State) -> None:
    from fangen.datapath import upstream
    idx = nl.index(a.name)
    # the users are read again now: a fan that came up since the plan keeps the device
    if idx is not None and not upstream.users(host.ipr, idx) - {st.name}:
        host.say(f"  (no other fan uses {a.name}: deleting it)")
        nl.delete_link(a.name)


def _nft_replace(a: A.NftReplace, host, nl: Netlink, st: State) -> None:
    host.nft.apply(a.script, f"nft table {a.table}")


def _nft_delete(a: A.NftDelete, host, nl: Netlink, st: State) -> None:
    from fangen.render import nft as render_nft
    host.nft.apply(render_nft.delete_script(a.table, a.ip6), f"delete nft table {a.table}")


def _set_sysctl(a: A.SetSysctl, host, nl: Netlink, st: State) -> str | None:
    before = host.read_sysctl(a.key)
    host.write_sysctl(a.key, a.value)
    return before


def _write_file(a: A.WriteFile, host, nl: Netlink, st: State) -> None:
    mode, gid = writer.mode_for(a.path)
    writer.write_file(os.path.join(host.root, a.path), a.text, mode, gid)


def _remove_file(a: A.RemoveFile, host, nl: Netlink, st: State) -> None:
    writer.remove_file(os.path.join(host.root, a.path))


def _reload_networkd(a: A.ReloadNetworkd, host, nl: Netlink, st: State) -> None:
    networkd = host.networkd()
    if networkd is not None:
        networkd.reload()


def _start_dnsmasq(a: A.StartDnsmasq, host, nl: Netlink, st: State) -> dict:
    return host.dnsmasq(st.name).start(st.dnsmasq)


def _stop_dnsmasq(a: A.StopDnsmasq, host, nl: Netlink, st: State) -> None:
    if not st.dnsmasq:
        return
    runner = host.dnsmasq(st.name)
    if st.dnsmasq.get("mode") == "process" or host.systemd:
        runner.stop(st.dnsmasq)
    else:
        from fangen.runtime.dbus import Systemd
        from fangen.runtime.dnsmasq import UnitDnsmasq
        if host.bus is not None:
            UnitDnsmasq(Systemd(host.bus), st.name).stop(st.dnsmasq)


def _record(a: A.Record, host, nl: Netlink, st: State) -> None:
    bridge = a.adopts()
    if bridge is not None:
        nl.set_alias(bridge, state_mod.mark(st.name))      # adopted: ours too


def _nothing(a, host, nl: Netlink, st: State) -> None:
    pass


def _make_tunnel(a: A.CreateTunnel, host, nl: Netlink) -> None:
    if a.plain:
        nl.create_plain_vxlan(a.name, a.vni, a.mtu, a.port)
        return
    if a.datapath == "upstream":
        nl.create_external_tunnel(a.name, a.type, a.mtu, a.port)
        if nl.index(a.name) is None:        # EEXIST for another device's collect-md slot
            where = f"UDP port {a.port}" if a.type == "vxlan" else "this namespace"
            raise FangenError(f"create {a.type} {a.name}: the kernel refused it (another "
                              f"collect-metadata {a.type} device already serves {where})")
        return
    from fangen.datapath import kernelfan

    maps = [(a.overlay, a.underlay)]
    try:
        if a.type == "ipip":
            kernelfan.create_ipip_fan(host.ipr, a.name, a.local, maps, mtu=a.mtu)
        else:
            kernelfan.create_vxlan_fan(host.ipr, a.name, a.vni, a.local, maps,
                                       dev=a.underlay_dev, dstport=a.port, mtu=a.mtu)
    except kernelfan.NotFanKernel as exc:        # deleted again: fall back (control.up)
        from fangen.runtime.host import KernelFanRefused
        raise KernelFanRefused(a.type, exc.strerror or str(exc)) from None
    except OSError as exc:
        raise FangenError(f"create {a.type} fan tunnel {a.name}: "
                          f"{exc.strerror or exc}") from None


def _no_kernel_link_local(host, dev: str) -> None:
    key = f"net/ipv6/conf/{dev}/addr_gen_mode"
    if host.read_sysctl(key) is not None:         # no IPv6 here: nothing to generate
        host.write_sysctl(key, "1")


def _attach(a: A.AttachPrograms, host, nl: Netlink, st: State) -> None:
    from ipaddress import IPv4Address, IPv4Network, IPv6Network

    from fangen.datapath import upstream
    from fangen.datapath.encap import Encap
    from fangen.datapath.fanprog import FanParams

    idx = nl.index(a.dev)
    if idx is None:
        raise FangenError(f"cannot attach the fan programs: {a.dev} does not exist")
    encap = None
    out = nl.index(a.underlay_dev) if a.underlay_dev and a.connected else None
    if out is not None:          # (gone since the plan: the tunnel key, until replanned)
        encap = Encap(IPv4Address(a.local), out, a.port, IPv4Network(a.connected))
    elif a.plain:                # a plain device has no tunnel key to fall back on
        raise FangenError(f"cannot attach the fan programs to {a.dev}: the underlay "
                          f"interface {a.underlay_dev or '(none)'} is gone")
    params = FanParams(IPv4Network(a.overlay), IPv4Network(a.underlay), IPv4Network(a.slice),
                       a.vni, a.mode, overlay6=IPv6Network(a.overlay6) if a.overlay6 else None,
                       encap=encap, plain=a.plain)
    try:
        found = upstream.attach(host.ipr, idx, params, a.fan or None)
    except OSError as exc:
        raise FangenError(f"attach the fan programs to {a.dev}: {exc.strerror or exc}") \
            from None
    if set(found) != {"ingress", "egress"}:
        raise FangenError(f"attach the fan programs to {a.dev}: only {sorted(found)} attached")


_DO = {
    A.CreateBridge: _create_bridge, A.CreateTunnel: _create_tunnel,
    A.DeleteLink: _delete_link, A.SetLink: _set_link, A.ReleaseTunnel: _release,
    A.AddAddress: _add_address, A.DelAddress: _del_address,
    A.AddRoute: _add_route, A.DelRoute: _del_route, A.RestoreRoute: _restore_route,
    A.AttachPrograms: _attach, A.DetachPrograms: _detach,
    A.SetSysctl: _set_sysctl, A.NftReplace: _nft_replace, A.NftDelete: _nft_delete,
    A.WriteFile: _write_file, A.RemoveFile: _remove_file,
    A.ReloadNetworkd: _reload_networkd, A.StartDnsmasq: _start_dnsmasq,
    A.StopDnsmasq: _stop_dnsmasq, A.Record: _record,
    A.KeepBridge: _nothing, A.Forget: _nothing,
}
