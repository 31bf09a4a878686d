"""Plan: (what is there now, the fan, the underlay) -> ordered actions.  Pure.

``Observed`` (fangen.runtime.view) is a snapshot of what the plan looks at, read by
``fangen.runtime.observe``; ``State`` is what fangen made earlier; ``Target`` is
what the fan should look like.  ``plan_up`` and ``plan_down`` return lists of the
actions of ``fangen.runtime.actions``; ``str(action)`` is the line ``--dry-run``
prints; ``fangen.runtime.execute`` carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Interface

from fangen.config.model import Fan
from fangen.datapath import tunnels
from fangen.engines import cni
from fangen.errors import FangenError
from fangen.fanmap import Slice
from fangen.render import dnsmasq as render_dnsmasq
from fangen.render import names, networkd
from fangen.render import nft as render_nft
from fangen.runtime.actions import (AddAddress, AddRoute, AttachPrograms, CreateBridge,
                                    CreateTunnel, DelAddress, DeleteLink, DelRoute,
                                    DetachPrograms, Forget, KeepBridge, NftDelete,
                                    NftReplace, Record, ReleaseTunnel, ReloadNetworkd,
                                    RemoveFile, RestoreRoute, SetLink, SetSysctl,
                                    StartDnsmasq, StopDnsmasq, WriteFile)
from fangen.runtime.state import State, mark
from fangen.runtime.underlay import Resolved
from fangen.runtime.view import FORWARD6_SYSCTL, FORWARD_SYSCTL, LinkView, Observed, RouteView


class PlanError(FangenError):
    """The current state conflicts with the fan (a foreign device in the way, ...)."""


@dataclass(frozen=True)
class Target:
    """Everything the fan should look like on this host."""

    fan: Fan
    underlay: Resolved
    datapath: str                  # "kernel" | "upstream"
    root: str = "/"
    systemd: bool = False
    plain: bool = False            # upstream VXLAN on a plain device (choose_plain)

    @property
    def slice(self) -> Slice:
        return self.fan.slice_for(self.underlay.address, self.underlay.network)

    @property
    def mtu(self) -> int:
        return self.fan.mtu_for(self.underlay.mtu)

    @property
    def bridge_address(self) -> str:
        return f"{self.slice.gateway}/{self.fan.bridge_prefix}"

    @property
    def bridge_addresses6(self) -> list[str]:
        """A dual-stack fan's IPv6 bridge addresses (the IPv6 slice's ::1 with the overlay6
        prefix, and the link-local address that carries the host bits), or []."""
        sl6 = self.fan.slice6_of(self.slice.network)
        if sl6 is None:
            return []
        return [f"{sl6.gateway}/{self.fan.overlay6.prefixlen}", f"{sl6.link_local}/64"]

    @property
    def programs(self) -> bool:
        """The fan's tc programs carry it (the upstream datapath: on a collect-metadata
        device, or a plain VXLAN one)."""
        return self.datapath == "upstream"

    @property
    def tunnel(self) -> str:
        """The device that carries the fan: its own, or the shared upstream IPIP one."""
        return tunnels.device_for(self.fan.type, self.datapath, self.fan.tunnel)

    @property
    def shared_tunnel(self) -> bool:
        return tunnels.is_shared(self.fan.type, self.datapath)


# -- up ------------------------------------------------------------------------------------

def choose_plain(fan: Fan, datapath: str, supported: bool) -> bool:
    """Does the fan's tunnel become a plain VXLAN device (fangen.datapath.fanprog
    ``plain``: the programs encapsulate every frame, receive allocates nothing per
    packet) rather than a collect-metadata one?  For an upstream VXLAN fan where the
    kernel takes the programs (``supported``: fangen.datapath.upstream.plain_supported),
    unless it is dual-stack (IPv6 keeps the tunnel key) or multi-homed (its policy
    rule and VRF select by the outer UDP port, which the program's route lookup does
    not carry)."""
    return (supported and datapath == "upstream" and fan.type == "vxlan"
            and fan.overlay6 is None and fan.underlay_gateway is None and fan.vrf is None)


def tunnel_spec(t: Target) -> CreateTunnel:
    fan = t.fan
    if t.plain:
        return CreateTunnel(t.tunnel, "vxlan", "upstream", t.mtu, port=fan.port, vni=fan.vni,
                            plain=True)
    if t.datapath == "upstream":
        return CreateTunnel(t.tunnel, fan.type, "upstream", t.mtu,
                            port=fan.port if fan.type == "vxlan" else 0,
                            shared=t.shared_tunnel)
    return CreateTunnel(fan.tunnel, fan.type, "kernel", t.mtu,
                        port=fan.port if fan.type == "vxlan" else 0,
                        vni=fan.vni if fan.type == "vxlan" else 0,
                        local=str(t.underlay.address),
                        underlay_dev=t.underlay.ifname if fan.type == "vxlan" else "",
                        overlay=str(fan.overlay), underlay=str(t.underlay.network))


def _tunnel_matches(spec: CreateTunnel, link: LinkView, previous: dict) -> bool:
    if link.kind != spec.type:
        return False
    if spec.plain:      # (a kernel fan's VXLAN device always has a local address)
        return not link.get("external") and not link.get("local") and \
            link.get("port") == spec.port and link.get("vni") == spec.vni
    if spec.datapath == "upstream":
        if not link.get("external"):
            return False
        return spec.type != "vxlan" or link.get("port") == spec.port
    if link.get("external"):
        return False
    # a kernel fan tunnel is made for one local address and one fan map: compare with
    # what we recorded when we made it
    return previous.get("spec") == spec.spec_key()


def _shared_in_use(state: State, obs: Observed) -> list:
    return [name for name, link in sorted(state.links.items())
            if link.get("shared") and name in obs.links]


def _release(name: str, fan_name: str, obs: Observed) -> ReleaseTunnel:
    return ReleaseTunnel(name, tuple(sorted(set(obs.tc_users.get(name, ())) - {fan_name})))


def _tunnel_conflict(spec: CreateTunnel, obs: Observed, going: set) -> str | None:
    """Why the kernel would refuse the tunnel: another device holds its collect-metadata
    slot (one IPIP device per namespace, one VXLAN device per UDP port)."""
    for name, link in sorted(obs.links.items()):
        if name == spec.name or name in going or link.kind != spec.type:
            continue
        if spec.type == "ipip" and spec.datapath == "upstream" and link.get("external"):
            return (f"{name} is already this namespace's collect-metadata IPIP device "
                    f"(the kernel allows one), and fangen's IPIP fans share {spec.name}: "
                    f"delete {name}, or use 'datapath: kernel'")
        if spec.type == "vxlan" and link.get("port") == spec.port and \
                (spec.datapath == "upstream" or link.get("external")):
            return (f"UDP port {spec.port} is already used by the VXLAN device {name}: "
                    "set 'vxlan: {port: N}' to a free port")
    return None


def _encap(fan, underlay, obs, plain: bool = False) -> dict:
    """Where a fan's egress program sends what it encapsulates: the underlay address
    and interface, the prefix that address is connected to there, VXLAN's port.  A
    plain device's programs always encapsulate: without the address on the interface
    (yet), every remote is routed by the kernel (a /32 "prefix")."""
    link = obs.links.get(underlay.ifname)
    connected = ""
    for addr in link.addresses if link is not None else ():
        if ":" in addr:                     # the IPv6 ones
            continue
        iface = IPv4Interface(addr)
        if iface.ip == underlay.address:
            connected = str(iface.network)
    if plain and not connected:
        connected = f"{underlay.address}/32"
    return {"local": str(underlay.address), "underlay_dev": underlay.ifname,
            "underlay_index": underlay.ifindex,
            "connected": connected, "port": fan.port if fan.type == "vxlan" else 0}


def plan_up(t: Target, obs: Observed, state: State | None) -> list:
    fan = t.fan
    state = state or State(fan.name)
    actions: list = []
    sl = t.slice
    gateway = str(sl.gateway)

    # bridge
    bridge = obs.links.get(fan.bridge)
    if bridge is None:
        actions.append(CreateBridge(fan.bridge, t.mtu, fan.overlay6 is not None))
        actions.append(SetLink(fan.bridge, up=True))
    else:
        if bridge.kind != "bridge":
            raise PlanError(f"{fan.name}: {fan.bridge} exists and is a "
                            f"{bridge.kind or 'plain'} device, not a bridge")
        if not (state.created(fan.bridge) or state.links.get(fan.bridge, {}).get("networkd")
                or names.networkd_file(fan.bridge, "netdev") in obs.files):
            _refuse_foreign(fan.name, bridge, "bridge")
        if bridge.mtu != t.mtu or not bridge.up:
            changed = bridge.mtu != t.mtu
            actions.append(SetLink(fan.bridge, mtu=t.mtu if changed else None,
                                   mtu_before=bridge.mtu if changed else None))

    # tunnel (upstream IPIP: the namespace's shared device, see fangen.datapath.tunnels)
    spec = tunnel_spec(t)
    dev = spec.name
    # a tunnel this fan made under another name (its datapath changed, or an older
    # release made it) goes first: it may hold the kernel's one collect-metadata slot
    stale = {name for name, link in state.links.items()
             if link.get("created") and link.get("kind") in ("ipip", "vxlan")
             and name != dev and name in obs.links}
    for name in sorted(stale):
        actions.append(DeleteLink(name))
    # a shared device this fan used and no longer does (its datapath changed); its route
    # there goes below (the device may stay, for other fans)
    left = [name for name in _shared_in_use(state, obs) if name != dev]
    for name in left:
        actions += [DetachPrograms(name, fan.name), _release(name, fan.name, obs)]
    conflict = _tunnel_conflict(spec, obs, stale | set(left))
    if conflict:
        raise PlanError(f"{fan.name}: {conflict}")
    tunnel = obs.links.get(dev)
    if tunnel is not None and not spec.shared and not state.created(dev):
        _refuse_foreign(fan.name, tunnel, "tunnel")
    recreate = False
    if tunnel is not None and not _tunnel_matches(spec, tunnel, state.links.get(dev, {})):
        if spec.shared:
            raise PlanError(f"{fan.name}: {dev} exists and is not the collect-metadata IPIP "
                            "device fangen's IPIP fans share: rename or delete it")
        if not state.created(dev):
            raise PlanError(f"{fan.name}: {dev} exists and was not made by fangen "
                            f"(want {spec})")
        actions.append(DeleteLink(dev))
        recreate = True
    master = fan.bridge if fan.type == "vxlan" else None
    if tunnel is None or recreate:
        actions.append(spec)
        actions.append(SetLink(dev, master=master, up=True))
    elif spec.shared:
        # other fans use it too: its MTU only grows (each bridge has its fan's own MTU)
        if tunnel.mtu < t.mtu or not tunnel.up:
            actions.append(SetLink(dev, mtu=t.mtu if tunnel.mtu < t.mtu else None))
    elif (tunnel.mtu != t.mtu or not tunnel.up or
          (master is not None and tunnel.master != master)):
        changed = tunnel.mtu != t.mtu
        actions.append(SetLink(dev, mtu=t.mtu if changed else None,
                               master=master if tunnel.master != master else None,
                               mtu_before=tunnel.mtu if changed else None))

    # bridge address: ours from before that is no longer right goes first
    want_addr = t.bridge_address
    want6 = t.bridge_addresses6
    wanted = [(fan.bridge, want_addr)] + [(fan.bridge, addr) for addr in want6]
    have = bridge.addresses if bridge is not None else frozenset()
    for entry in state.addresses:
        if (entry["dev"], entry["address"]) not in wanted and \
                entry["dev"] in obs.links and \
                entry["address"] in obs.links[entry["dev"]].addresses:
            actions.append(DelAddress(entry["dev"], entry["address"]))
    if want_addr not in have:
        actions.append(AddAddress(fan.bridge, want_addr))
    else:
        # the kernel's route of that address (the overlay for VXLAN, the slice for IPIP)
        # was deleted by someone else: the plan puts it back (`show` calls it broken)
        prefix = str(IPv4Interface(want_addr).network)
        if not any(r.dst == prefix and r.dev == fan.bridge for r in obs.routes):
            actions.append(RestoreRoute(prefix, fan.bridge, gateway))
    for addr in want6:
        if addr not in have:
            actions.append(AddAddress(fan.bridge, addr))

    # routes (IPIP routes the whole overlay via the tunnel; VXLAN bridges it)
    want_routes = []
    if fan.type == "ipip":
        want_routes.append(RouteView(str(fan.overlay), dev, gateway))
    for entry in state.routes:
        route = RouteView(entry["dst"], entry["dev"], entry["src"])
        if route not in want_routes and route in obs.routes and not recreate and \
                route.dev not in stale:
            actions.append(DelRoute(route.dst, route.dev, route.src))
    for route in want_routes:
        if route not in obs.routes or recreate or tunnel is None:
            actions.append(AddRoute(route.dst, route.dev, route.src))

    # upstream datapath programs
    if t.programs:
        attach = AttachPrograms(dev, fan.type, str(fan.overlay),
                                str(t.underlay.network), str(sl.network),
                                fan.vni if fan.type == "vxlan" else 0, fan.name, spec.shared,
                                str(fan.overlay6) if fan.overlay6 is not None else "",
                                **_encap(fan, t.underlay, obs, t.plain), plain=t.plain)
        recorded = state.tc.get(dev, {}).get("params")
        attached = obs.tc.get(dev, {})
        if tunnel is None or recreate or recorded != attach.params() or \
                set(attached) != {"ingress", "egress"}:
            actions.append(attach)

    # nftables
    table = render_nft.table_name(fan.name)
    # the device the fan's traffic arrives on: the shared one for upstream IPIP
    nft_args = (fan, sl.network, t.underlay.network, t.underlay.address, t.tunnel)
    text = render_nft.ruleset(*nft_args, any_address=t.plain)
    if table not in obs.nft_tables or state.nft_tables.get(table) != text:
        had6 = _has_ip6(state.nft_tables.get(table))
        actions.append(NftReplace(table, render_nft.replace_script(*nft_args, ip6=had6,
                                                                 any_address=t.plain), text))

    # forwarding in this namespace
    if obs.sysctls.get(FORWARD_SYSCTL) != "1":
        actions.append(SetSysctl(FORWARD_SYSCTL, "1"))
    if fan.overlay6 is not None and obs.sysctls.get(FORWARD6_SYSCTL) != "1":
        actions.append(SetSysctl(FORWARD6_SYSCTL, "1"))

    # networkd drop-ins, so networkd agrees (and a networkd restart keeps the fan)
    files: dict[str, str] = {}
    if fan.underlay.kind != "host":
        files.update(networkd.slice_dropins(fan, sl))
        if spec.shared:     # the drop-in names the kernel datapath's own tunnel
            files.pop(f"{names.dropin_dir(fan.tunnel)}/50-slice.conf", None)
    conf = None
    if fan.dhcp:
        conf = names.dnsmasq_conf(fan.name)
        files[conf] = render_dnsmasq.render(fan, sl, t.mtu, t.root)
    podman = cni.render(fan, sl, t.mtu)           # CNI network for podman & co (engines/cni.py)
    if podman is not None:
        files[cni.path(fan.name)] = podman
    networkd_changed = False
    for rel in sorted(files):
        if obs.files.get(rel) != files[rel]:
            actions.append(WriteFile(rel, files[rel]))
            networkd_changed |= rel.startswith(names.NETWORKD_DIR + "/")
    for rel in sorted(state.files):
        if rel not in files and rel in obs.files:
            actions.append(RemoveFile(rel))
            networkd_changed |= rel.startswith(names.NETWORKD_DIR + "/")
    if networkd_changed:
        actions.append(ReloadNetworkd())

    # dnsmasq: (re)start when its config changed or it is not running
    if conf is not None:
        if obs.files.get(conf) != files[conf] or not obs.dnsmasq_running:
            actions.append(StartDnsmasq(conf, t.systemd))
    elif state.dnsmasq:
        actions.append(StopDnsmasq())

    info = (("datapath", t.datapath), ("type", fan.type), ("overlay", str(fan.overlay)),
            ("bridge", fan.bridge), ("tunnel", dev),
            ("shared_tunnel", dev if spec.shared else ""),
            ("underlay", tuple(sorted(t.underlay.as_dict().items()))),
            ("slice", str(sl.network)), ("gateway", gateway), ("mtu", t.mtu),
            ("tunnel_spec", tuple(spec.spec_key())),
            # the bridge address and routes are ours even when networkd put them there
            # first (from our drop-in): down removes them with the drop-in
            ("own_addresses", tuple(wanted)),
            ("own_routes", tuple((r.dst, r.dev, r.src) for r in want_routes)),
            # a bridge networkd made from our .netdev: down deletes it once that file is
            # gone (the fan left the configuration), as networkd never removes a netdev
            ("networkd_bridge", bridge is not None and not state.created(fan.bridge) and
             names.networkd_file(fan.bridge, "netdev") in obs.files))
    owned = {(a["dev"], a["address"]) for a in state.addresses}
    owned_routes = {(r["dst"], r["dev"], r["src"]) for r in state.routes}
    if actions or state.slice != str(sl.network) or state.datapath != t.datapath or \
            any(pair not in owned for pair in wanted) or \
            dict(info)["networkd_bridge"] != bool(state.links.get(fan.bridge, {}).get(
                "networkd")) or \
            any((r.dst, r.dev, r.src) not in owned_routes for r in want_routes):
        actions.append(Record(info))
    return actions


def _refuse_foreign(fan: str, link: LinkView, key: str) -> None:
    """A device under a name the fan needs that fangen did not make (no state says so
    and it lacks the mark) is someone else's: never used, changed or deleted."""
    if link.alias == mark(fan):
        return                              # ours, from a state file that was lost
    raise PlanError(f"{fan}: {link.name} exists and was not made by fangen (it lacks "
                    f"the alias {mark(fan)}): delete it, or give the fan another {key}: name")


# -- down ----------------------------------------------------------------------------------

def plan_down(state: State, obs: Observed, last_fan: bool = True,
              purge: bool = False) -> list:
    """Remove what ``state`` says fangen made, and only that; ``last_fan``: no other fan
    in this root is up, so sysctls go back to what they were.  A bridge fangen would
    delete that has ports fangen did not make (containers) is kept, without its
    address, unless ``purge`` (see :class:`KeepBridge`)."""
    actions: list = []
    created = [name for name, link in state.links.items() if link.get("created")]
    # a bridge networkd made from our .netdev, which is gone now (the fan left the
    # configuration): networkd never removes a netdev, so it is ours to delete
    orphans = {name for name, link in state.links.items()
               if link.get("networkd") and not link.get("created") and name in obs.links
               and names.networkd_file(name, "netdev") not in obs.files}
    bridges = orphans | {n for n in created if state.links[n].get("kind") == "bridge"}
    kept = {} if purge else {
        name: ports for name in sorted(bridges) if (ports := foreign_ports(name, state, obs))}
    gone = set(created) - set(kept)          # their addresses and routes go with them
    if state.dnsmasq:
        actions.append(StopDnsmasq())
    for table in sorted(state.nft_tables):
        if table in obs.nft_tables:
            actions.append(NftDelete(table, _has_ip6(state.nft_tables.get(table))))
    for dev in sorted(state.tc):
        if dev in obs.links and not state.created(dev) and \
                (obs.tc.get(dev) or state.name in obs.tc_users.get(dev, ())):
            actions.append(DetachPrograms(dev, state.name))
    for entry in state.routes:
        route = RouteView(entry["dst"], entry["dev"], entry["src"])
        if route in obs.routes and route.dev not in gone:
            actions.append(DelRoute(route.dst, route.dev, route.src))
    for entry in state.addresses:
        link = obs.links.get(entry["dev"])
        if link is not None and entry["dev"] not in gone and \
                entry["address"] in link.addresses:
            actions.append(DelAddress(entry["dev"], entry["address"]))
    # links fangen only used (a bridge networkd made) get their MTU back
    for name, link in sorted(state.links.items()):
        before = link.get("mtu_before")
        if not link.get("created") and name not in orphans and before is not None and \
                name in obs.links and obs.links[name].mtu != before:
            actions.append(SetLink(name, mtu=before))
    # a shared tunnel goes with its last user
    for name in _shared_in_use(state, obs):
        actions.append(_release(name, state.name, obs))
    # tunnels before bridges: a port goes before its master
    for name in sorted(set(created) | orphans, key=lambda n: (n in bridges, n)):
        if name in kept:
            actions.append(KeepBridge(name, kept[name]))
        elif name in obs.links:
            actions.append(DeleteLink(name))
    networkd_changed = False
    for rel in sorted(state.files):
        if rel in obs.files:
            actions.append(RemoveFile(rel))
            networkd_changed |= rel.startswith(names.NETWORKD_DIR + "/")
    if networkd_changed:
        actions.append(ReloadNetworkd())
    if last_fan:
        for key, value in sorted(state.sysctls.items()):
            if obs.sysctls.get(key) != value:
                actions.append(SetSysctl(key, value, restore=True))
    actions.append(Forget(tuple(sorted(kept))))
    return actions


def _has_ip6(text) -> bool:
    """Did the recorded ruleset of a table hold a dual-stack fan's ip6 table?"""
    return isinstance(text, str) and "table ip6 " in text


def foreign_ports(bridge: str, state: State, obs: Observed) -> tuple:
    """The ports of ``bridge`` that fangen did not make: containers' veths, mostly."""
    return tuple(sorted(name for name, link in obs.links.items()
                        if link.master == bridge and name not in state.links))

