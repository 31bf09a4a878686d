"""The runtime plan is pure: (observed, fan, underlay, state) -> exact actions."""

from ipaddress import IPv4Address, IPv4Network

import pytest

from fangen.config.model import build
from fangen.engines import cni
from fangen.render import dnsmasq, names, networkd, nft
from fangen.runtime import plan as P
from fangen.runtime.state import State
from fangen.runtime.underlay import Resolved

ROOT = "/r"
UL = Resolved("ul0", 2, IPv4Address("172.16.3.4"), IPv4Network("172.16.0.0/16"), 1500)
UL_MOVED = Resolved("ul0", 2, IPv4Address("172.16.5.6"), IPv4Network("172.16.0.0/16"), 1500)


def fan(**extra):
    data = {"overlay": "250.0.0.0/8", "underlay": "172.16.0.0/16"}
    data.update(extra)
    return build("f", data)


def target(f, ul=UL, datapath="upstream"):
    return P.Target(f, ul, datapath, ROOT, False)


def converge(t, state=None):
    """Observed after applying the plan on an empty host (what the kernel would hold)."""
    f = t.fan
    links = {
        f.bridge: P.LinkView(f.bridge, 10, "bridge", t.mtu, True, None,
                             frozenset({t.bridge_address})),
        f.tunnel: P.LinkView(f.tunnel, 11, f.type, t.mtu, True,
                             f.bridge if f.type == "vxlan" else None, frozenset(),
                             (("external", True), ("port", f.port))),
    }
    routes = frozenset({P.RouteView(str(f.overlay), f.tunnel, str(t.slice.gateway))}) \
        if f.type == "ipip" else frozenset()
    files = dict(networkd.slice_dropins(f, t.slice))
    files[names.dnsmasq_conf(f.name)] = dnsmasq.render(f, t.slice, t.mtu, ROOT)
    files[cni.path(f.name)] = cni.render(f, t.slice, t.mtu)
    return P.Observed(links=links, routes=routes, nft_tables=frozenset({"fangen-f"}),
                      tc={f.tunnel: {"ingress": "fangen:i", "egress": "fangen:e"}},
                      sysctls={P.FORWARD_SYSCTL: "1"}, files=files, dnsmasq_running=True)


def record_state(t, actions):
    """What the executor would record (enough for the plan's comparisons)."""
    s = State("f")
    for a in actions:
        if isinstance(a, P.CreateBridge):
            s.links[a.name] = {"kind": "bridge", "created": True}
        elif isinstance(a, P.CreateTunnel):
            s.links[a.name] = {"kind": a.type, "created": True, "spec": P._spec_key(a)}
        elif isinstance(a, P.AddAddress):
            s.add_address(a.dev, a.address)
        elif isinstance(a, P.AddRoute):
            s.add_route(a.dst, a.dev, a.src)
        elif isinstance(a, P.AttachPrograms):
            s.tc[a.dev] = {"params": a.params()}
        elif isinstance(a, P.NftReplace):
            s.nft_tables[a.table] = a.text
        elif isinstance(a, P.WriteFile):
            s.files[a.path] = a.text
        elif isinstance(a, P.StartDnsmasq):
            s.dnsmasq = {"mode": "process", "pid": 1, "cmdline": []}
        elif isinstance(a, P.Record):
            info = dict(a.info)
            s.slice, s.datapath = info["slice"], info["datapath"]
            for dev, addr in info["own_addresses"]:
                s.add_address(dev, addr)
            for dst, dev, src in info["own_routes"]:
                s.add_route(dst, dev, src)
    return s


def lines(actions):
    return [str(a).split("\n")[0] for a in actions]


def test_vxlan_upstream_on_an_empty_host():
    t = target(fan(type="vxlan"))
    actions = P.plan_up(t, P.Observed(sysctls={P.FORWARD_SYSCTL: "0"}), None)
    assert lines(actions) == [
        "create bridge f mtu 1450",
        "set link f up",
        "create vxlan f-tun external dstport 8472 mtu 1450",
        "set link f-tun master f up",
        "add address 250.3.4.1/8 dev f",
        "attach tc programs to f-tun (vxlan, overlay 250.0.0.0/8, underlay 172.16.0.0/16, "
        "own slice 250.3.4.0/24, vni 16384000)",
        "replace nft table ip fangen-f:",
        "set sysctl net.ipv4.ip_forward=1",
        "write run/fangen/f/cni/f.conflist",
        "write run/fangen/f/dnsmasq.conf",
        "write run/systemd/network/10-fangen-f.network.d/50-slice.conf",
        "reload systemd-networkd (if running)",
        "(re)start dnsmasq (process) with run/fangen/f/dnsmasq.conf",
        "record state: datapath upstream, slice 250.3.4.0/24, mtu 1450",
    ]
    nft_action = actions[6]
    assert nft_action.text == nft.ruleset(t.fan, t.slice.network, UL.network, UL.address)


def test_ipip_kernel_routes_the_overlay_via_the_tunnel():
    t = target(fan(dhcp=False), datapath="kernel")
    actions = P.plan_up(t, P.Observed(sysctls={P.FORWARD_SYSCTL: "1"}), None)
    assert lines(actions) == [
        "create bridge f mtu 1480",
        "set link f up",
        "create ipip f-tun local 172.16.3.4 fan-map 250.0.0.0/8:172.16.0.0/16 mtu 1480",
        "set link f-tun up",
        "add address 250.3.4.1/24 dev f",
        "add route 250.0.0.0/8 dev f-tun src 250.3.4.1",
        "replace nft table ip fangen-f:",
        "write run/fangen/f/cni/f.conflist",
        "write run/systemd/network/10-fangen-f-tun.network.d/50-slice.conf",
        "write run/systemd/network/10-fangen-f.network.d/50-slice.conf",
        "reload systemd-networkd (if running)",
        "record state: datapath kernel, slice 250.3.4.0/24, mtu 1480",
    ]


@pytest.mark.parametrize("kind", ["ipip", "vxlan"])
def test_second_up_does_nothing(kind):
    t = target(fan(type=kind))
    first = P.plan_up(t, P.Observed(), None)
    assert P.plan_up(t, converge(t), record_state(t, first)) == []


def test_networkd_made_bridge_is_used_not_recreated():
    t = target(fan(type="vxlan", mtu=1400))
    obs = P.Observed(links={"f": P.LinkView("f", 5, "bridge", 1400, True)})
    actions = lines(P.plan_up(t, obs, None))
    assert not any(a.startswith("create bridge") for a in actions)
    assert "add address 250.3.4.1/8 dev f" in actions


def test_foreign_device_in_the_way_is_an_error():
    t = target(fan())
    obs = P.Observed(links={"f": P.LinkView("f", 5, "dummy", 1500, True)})
    with pytest.raises(P.PlanError, match="f exists and is a dummy device, not a bridge"):
        P.plan_up(t, obs, None)
    obs = P.Observed(links={"f-tun": P.LinkView("f-tun", 6, "vxlan", 1500, True)})
    with pytest.raises(P.PlanError, match="f-tun exists and was not made by fangen"):
        P.plan_up(t, obs, None)


def test_underlay_move_replaces_the_slice_everywhere():
    f = fan(type="ipip")
    old = target(f)
    state = record_state(old, P.plan_up(old, P.Observed(), None))
    new = target(f, UL_MOVED)
    actions = P.plan_up(new, converge(old), state)
    assert lines(actions) == [
        "delete address 250.3.4.1/24 dev f",
        "add address 250.5.6.1/24 dev f",
        "delete route 250.0.0.0/8 dev f-tun src 250.3.4.1",
        "add route 250.0.0.0/8 dev f-tun src 250.5.6.1",
        "attach tc programs to f-tun (ipip, overlay 250.0.0.0/8, underlay 172.16.0.0/16, "
        "own slice 250.5.6.0/24, vni 0)",
        "replace nft table ip fangen-f:",
        "write run/fangen/f/dnsmasq.conf",
        "write run/systemd/network/10-fangen-f-tun.network.d/50-slice.conf",
        "write run/systemd/network/10-fangen-f.network.d/50-slice.conf",
        "reload systemd-networkd (if running)",
        "(re)start dnsmasq (process) with run/fangen/f/dnsmasq.conf",
        "record state: datapath upstream, slice 250.5.6.0/24, mtu 1480",
    ]


def test_kernel_tunnel_is_recreated_for_a_new_local_address():
    f = fan(type="ipip", dhcp=False)
    old = target(f, datapath="kernel")
    state = record_state(old, P.plan_up(old, P.Observed(), None))
    obs = converge(old)
    links = dict(obs.links)
    links["f-tun"] = P.LinkView("f-tun", 11, "ipip", 1480, True)
    obs = P.Observed(links=links, routes=obs.routes, nft_tables=obs.nft_tables,
                     sysctls=obs.sysctls, files=obs.files)
    actions = lines(P.plan_up(target(f, UL_MOVED, "kernel"), obs, state))
    assert actions[:6] == [
        "delete link f-tun",
        "create ipip f-tun local 172.16.5.6 fan-map 250.0.0.0/8:172.16.0.0/16 mtu 1480",
        "set link f-tun up",
        "delete address 250.3.4.1/24 dev f",
        "add address 250.5.6.1/24 dev f",
        "add route 250.0.0.0/8 dev f-tun src 250.5.6.1",
    ]


def test_down_removes_only_what_state_lists():
    t = target(fan(type="vxlan"))
    state = record_state(t, P.plan_up(t, P.Observed(), None))
    state.sysctls = {P.FORWARD_SYSCTL: "0"}
    obs = converge(t)
    links = dict(obs.links)
    links["other0"] = P.LinkView("other0", 20, "dummy", 1500, True, None,
                                 frozenset({"10.9.9.9/24"}))
    obs = P.Observed(links=links, nft_tables=obs.nft_tables | {"someone-else"},
                     tc=obs.tc, sysctls=obs.sysctls, files=obs.files, dnsmasq_running=True)
    assert lines(P.plan_down(state, obs)) == [
        "stop dnsmasq",
        "delete nft table ip fangen-f",
        "delete link f-tun",
        "delete link f",
        "remove run/fangen/f/cni/f.conflist",
        "remove run/fangen/f/dnsmasq.conf",
        "remove run/systemd/network/10-fangen-f.network.d/50-slice.conf",
        "reload systemd-networkd (if running)",
        "set sysctl net.ipv4.ip_forward=0",
        "remove state",
    ]
    # another fan still up: forwarding stays on
    assert "set sysctl net.ipv4.ip_forward=0" not in lines(P.plan_down(state, obs, False))


def test_down_keeps_a_networkd_bridge_but_removes_our_address():
    t = target(fan(type="vxlan"))
    state = record_state(t, P.plan_up(t, P.Observed(), None))
    state.links["f"]["created"] = False
    assert lines(P.plan_down(state, converge(t)))[:4] == [
        "stop dnsmasq",
        "delete nft table ip fangen-f",
        "delete address 250.3.4.1/8 dev f",
        "delete link f-tun",
    ]
    # everything already gone: only the state file goes
    assert lines(P.plan_down(State("f"), P.Observed())) == ["remove state"]


def test_a_networkd_bridge_gets_its_mtu_back_on_down():
    """up sets the MTU of a bridge networkd made; down puts the original back."""
    t = target(fan(type="vxlan"))
    obs = P.Observed(links={"f": P.LinkView("f", 5, "bridge", 1500, True)})
    up = P.plan_up(t, obs, None)
    [set_bridge] = [a for a in up if isinstance(a, P.SetLink) and a.name == "f"]
    assert (set_bridge.mtu, set_bridge.mtu_before) == (t.mtu, 1500)
    state = record_state(t, up)
    state.links["f"] = {"created": False, "mtu_before": 1500}
    assert "set link f mtu 1500 up" in lines(P.plan_down(state, converge(t)))
    # a bridge fangen made is deleted, not re-sized
    state.links["f"] = {"kind": "bridge", "created": True}
    assert not any(a.startswith("set link f mtu") for a in lines(P.plan_down(state, converge(t))))


def test_networkd_bridge_is_deleted_once_its_netdev_is_gone():
    """The fan left the configuration: generate removed our .netdev, networkd never
    removes a netdev, so down deletes the bridge networkd made from it."""
    t = target(fan(type="vxlan"))
    netdev = names.networkd_file("f", "netdev")
    obs = converge(t)
    obs_with_netdev = P.Observed(**{**obs.__dict__, "files": {**obs.files, netdev: "x"}})
    up = P.plan_up(t, P.Observed(links={"f": P.LinkView("f", 5, "bridge", t.mtu, True)},
                                 files={netdev: "x"}), None)
    [record] = [a for a in up if isinstance(a, P.Record)]
    assert dict(record.info)["networkd_bridge"] is True
    state = record_state(t, up)
    state.links["f"] = {"created": False, "networkd": True}
    # still configured: the bridge stays (networkd's), only our address goes
    assert "delete link f" not in lines(P.plan_down(state, obs_with_netdev))
    # removed from the configuration: the bridge goes too, after its port
    down = lines(P.plan_down(state, obs))
    assert down.index("delete link f-tun") < down.index("delete link f")
    # a bridge someone else made (no record of our .netdev) is never deleted
    state.links["f"] = {"created": False}
    assert "delete link f" not in lines(P.plan_down(state, obs))
