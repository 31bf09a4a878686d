"""Apply a plan's actions through the host's handles, recording each in the state.

The state is saved after every action, so a failure half-way leaves a state file
that ``down`` can clean up from.
"""

from __future__ import annotations

import os

from fangen import writer
from fangen.errors import FangenError
from fangen.runtime import plan as P
from fangen.runtime import state as state_mod
from fangen.runtime.netlink import Netlink
from fangen.runtime.state import State


def execute(actions: list, host, state: State, save: bool = True) -> State:
    nl = Netlink(host.ipr)
    for action in actions:
        host.say(str(action))
        _apply(action, host, nl, state)
        if isinstance(action, P.Forget) and action.keep:
            state = state_mod.shrink(host.root, state, action.keep)
            save = False
        elif isinstance(action, P.Forget):
            state_mod.remove(host.root, state.name)
            save = False
        elif save:
            state_mod.save(host.root, state)
    return state


def _apply(a, host, nl: Netlink, st: State) -> None:
    if isinstance(a, P.CreateBridge):
        existed = nl.index(a.name) is not None
        nl.create_bridge(a.name, a.mtu)
        if a.own_link_local and not existed:
            # before it goes up: the kernel would give it a link-local address from its
            # MAC, which no host can map (fangen adds fe80::fa:0:H:H, fangen.fanmap)
            _no_kernel_link_local(host, a.name)
        if not existed:
            nl.set_alias(a.name, state_mod.mark(st.name))
            st.links[a.name] = {"kind": "bridge", "created": True,
                                "mark": state_mod.mark(st.name)}
    elif isinstance(a, P.CreateTunnel):
        existed = nl.index(a.name) is not None
        _create_tunnel(a, host, nl)
        if a.shared:            # every user's; the last one to go deletes it (no one fan's mark)
            st.links[a.name] = {"kind": a.type, "created": False, "shared": True}
        elif not existed:
            nl.set_alias(a.name, state_mod.mark(st.name))
            st.links[a.name] = {"kind": a.type, "created": True, "spec": P._spec_key(a),
                                "mark": state_mod.mark(st.name)}
    elif isinstance(a, P.DeleteLink):
        nl.delete_link(a.name)
        st.links.pop(a.name, None)
        st.tc.pop(a.name, None)
        st.addresses = [x for x in st.addresses if x["dev"] != a.name]
        st.routes = [r for r in st.routes if r["dev"] != a.name]
    elif isinstance(a, P.SetLink):
        nl.set_link(a.name, a.mtu, a.master, a.up)
        link = st.links.setdefault(a.name, {"created": False})
        if a.mtu_before is not None and not link.get("created"):
            link.setdefault("mtu_before", a.mtu_before)     # the first value is the original
    elif isinstance(a, P.AddAddress):
        nl.add_address(a.dev, a.address)
        st.add_address(a.dev, a.address)
    elif isinstance(a, P.DelAddress):
        nl.del_address(a.dev, a.address)
        st.drop_address(a.dev, a.address)
    elif isinstance(a, P.AddRoute):
        nl.add_route(a.dst, a.dev, a.src)
        st.add_route(a.dst, a.dev, a.src)
    elif isinstance(a, P.DelRoute):
        nl.del_route(a.dst, a.dev, a.src)
        st.drop_route(a.dst, a.dev, a.src)
    elif isinstance(a, P.RestoreRoute):
        nl.add_route(a.dst, a.dev, a.src, kernel=True)
    elif isinstance(a, P.AttachPrograms):
        if a.shared:
            st.links.setdefault(a.dev, {"kind": a.mode, "created": False})["shared"] = True
        _attach(a, host, nl)
        st.tc[a.dev] = {"params": a.params()}
    elif isinstance(a, P.DetachPrograms):
        from fangen.datapath import upstream
        idx = nl.index(a.dev)
        if idx is not None:
            try:
                upstream.detach(host.ipr, idx, a.fan or None)
            except OSError as exc:
                raise FangenError(f"detach the fan programs from {a.dev}: "
                                  f"{exc.strerror or exc}") from None
        st.tc.pop(a.dev, None)
    elif isinstance(a, P.ReleaseTunnel):
        from fangen.datapath import upstream
        idx = nl.index(a.name)
        # the users are read again now: a fan that came up since the plan keeps the device
        if idx is not None and not upstream.users(host.ipr, idx) - {st.name}:
            host.say(f"  (no other fan uses {a.name}: deleting it)")
            nl.delete_link(a.name)
        st.links.pop(a.name, None)
        st.tc.pop(a.name, None)
        st.routes = [r for r in st.routes if r["dev"] != a.name]
    elif isinstance(a, P.NftReplace):
        host.nft.apply(a.script, f"nft table {a.table}")
        st.nft_tables[a.table] = a.text
    elif isinstance(a, P.NftDelete):
        from fangen.render import nft as render_nft
        host.nft.apply(render_nft.delete_script(a.table, a.ip6), f"delete nft table {a.table}")
        st.nft_tables.pop(a.table, None)
    elif isinstance(a, P.SetSysctl):
        before = host.read_sysctl(a.key)
        host.write_sysctl(a.key, a.value)
        if a.restore:
            st.sysctls.pop(a.key, None)
        elif before is not None and before != a.value:
            st.sysctls.setdefault(a.key, before)
    elif isinstance(a, P.WriteFile):
        mode, gid = writer.mode_for(a.path)
        writer.write_file(os.path.join(host.root, a.path), a.text, mode, gid)
        st.files[a.path] = a.text
    elif isinstance(a, P.RemoveFile):
        path = os.path.join(host.root, a.path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        try:
            os.rmdir(os.path.dirname(path))        # an emptied *.network.d
        except OSError:
            pass
        st.files.pop(a.path, None)
    elif isinstance(a, P.ReloadNetworkd):
        networkd = host.networkd()
        if networkd is not None:
            networkd.reload()
    elif isinstance(a, P.StartDnsmasq):
        st.dnsmasq = host.dnsmasq(st.name).start(st.dnsmasq)
    elif isinstance(a, P.StopDnsmasq):
        if st.dnsmasq:
            runner = host.dnsmasq(st.name)
            if st.dnsmasq.get("mode") == "process" or host.systemd:
                runner.stop(st.dnsmasq)
            else:
                from fangen.runtime.dbus import Systemd
                from fangen.runtime.dnsmasq import UnitDnsmasq
                if host.bus is not None:
                    UnitDnsmasq(Systemd(host.bus), st.name).stop(st.dnsmasq)
        st.dnsmasq = {}
    elif isinstance(a, P.Record):
        info = dict(a.info)
        st.datapath, st.type, st.overlay = info["datapath"], info["type"], info["overlay"]
        st.bridge, st.tunnel = info["bridge"], info["tunnel"]
        if info.get("shared_tunnel"):
            st.links.setdefault(st.tunnel, {"kind": st.type, "created": False})["shared"] = True
        st.underlay = dict(info["underlay"])
        st.slice, st.gateway, st.mtu = info["slice"], info["gateway"], info["mtu"]
        st.kept = []                        # a bridge down kept is the fan's again
        if st.links.get(st.tunnel, {}).get("created"):
            st.links[st.tunnel]["spec"] = list(info["tunnel_spec"])
        if info.get("networkd_bridge"):
            link = st.links.setdefault(st.bridge, {"created": False})
            link["networkd"] = True
            nl.set_alias(st.bridge, state_mod.mark(st.name))      # adopted: ours too
            link["mark"] = state_mod.mark(st.name)
        for dev, address in info["own_addresses"]:
            st.add_address(dev, address)
        for dst, dev, src in info["own_routes"]:
            st.add_route(dst, dev, src)
    elif isinstance(a, (P.Forget, P.KeepBridge)):
        pass
    else:                                   # pragma: no cover - a plan bug
        raise FangenError(f"unknown action {a!r}")


def _create_tunnel(a: P.CreateTunnel, host, nl: Netlink) -> None:
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


def _attach(a: P.AttachPrograms, host, nl: Netlink) -> None:
    from ipaddress import IPv4Network, IPv6Network

    from fangen.datapath import upstream
    from fangen.datapath.fanprog import FanParams

    idx = nl.index(a.dev)
    if idx is None:
        raise FangenError(f"cannot attach the fan programs: {a.dev} does not exist")
    params = FanParams(IPv4Network(a.overlay), IPv4Network(a.underlay), IPv4Network(a.slice),
                       a.vni, a.mode, overlay6=IPv6Network(a.overlay6) if a.overlay6 else None)
    try:
        found = upstream.attach(host.ipr, idx, params, a.fan or None)
    except OSError as exc:
        raise FangenError(f"attach the fan programs to {a.dev}: {exc.strerror or exc}") \
            from None
    if set(found) != {"ingress", "egress"}:
        raise FangenError(f"attach the fan programs to {a.dev}: only {sorted(found)} attached")
