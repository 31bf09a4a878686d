"""The runtime plan is pure: (observed, fan, underlay, state) -> exact actions."""

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from fangen.config.model import build
from fangen.engines import cni
from fangen.render import dnsmasq, names, networkd, nft
from fangen.runtime import actions as A
from fangen.runtime import plan as P
from fangen.runtime import view as V
from fangen.runtime.state import State
from fangen.runtime.underlay import Resolved

ROOT = "/r"
UL = Resolved("ul0", 2, IPv4Address("172.16.3.4"), IPv4Network("172.16.0.0/16"), 1500)
UL_MOVED = Resolved("ul0", 2, IPv4Address("172.16.5.6"), IPv4Network("172.16.0.0/16"), 1500)


def fan(name="f", **extra):
    data = {"overlay": "250.0.0.0/8", "underlay": "172.16.0.0/16"}
    data.update(extra)
    return build(name, data)


def target(f, ul=UL, datapath="upstream", plain=False):
    return P.Target(f, ul, datapath, ROOT, False, plain)


def converge(t, state=None):
    """Observed after applying the plan on an empty host (what the kernel would hold)."""
    f = t.fan
    info = (("external", True),) + ((("port", f.port),) if f.type == "vxlan" else ())
    if t.plain:
        info = (("external", False), ("port", f.port), ("vni", f.vni))
    links = {
        f.bridge: V.LinkView(f.bridge, 10, "bridge", t.mtu, True, None,
                             frozenset({t.bridge_address}), alias=f"fangen:{f.name}"),
        t.tunnel: V.LinkView(t.tunnel, 11, f.type, t.mtu, True,
                             f.bridge if f.type == "vxlan" else None, frozenset(), info,
                             None if t.shared_tunnel else f"fangen:{f.name}"),
    }
    routes = frozenset({V.RouteView(str(f.overlay), t.tunnel, str(t.slice.gateway))}) \
        if f.type == "ipip" else frozenset()
    # the route the kernel makes with the bridge address
    routes |= {V.RouteView(str(IPv4Network(t.bridge_address, strict=False)), f.bridge,
                           str(t.slice.gateway))}
    files = dict(networkd.slice_dropins(f, t.slice))
    if t.shared_tunnel:
        files.pop(f"{names.dropin_dir(f.tunnel)}/50-slice.conf")
    files[names.dnsmasq_conf(f.name)] = dnsmasq.render(f, t.slice, t.mtu, ROOT)
    files[cni.path(f.name)] = cni.render(f, t.slice, t.mtu)
    return V.Observed(links=links, routes=routes, nft_tables=frozenset({f"fangen-{f.name}"}),
                      tc={t.tunnel: {"ingress": "fangen:fan:f", "egress": "fangen:fan:f"}},
                      tc_users={t.tunnel: frozenset({f.name})},
                      sysctls={V.FORWARD_SYSCTL: "1"}, files=files, dnsmasq_running=True)


# what the executor hands each action's record step on a clean host (fangen.runtime.actions)
OUTCOMES = {A.StartDnsmasq: {"mode": "process", "pid": 1, "cmdline": []}}


def recorded(t, actions):
    """The state after ``actions`` ran on a clean host: each action records itself."""
    s = State(t.fan.name)
    for a in actions:
        a.record(s, OUTCOMES.get(type(a)))
    return s


def lines(actions):
    return [str(a).split("\n")[0] for a in actions]


def test_vxlan_upstream_on_an_empty_host():
    t = target(fan(type="vxlan"))
    actions = P.plan_up(t, V.Observed(sysctls={V.FORWARD_SYSCTL: "0"}), None)
    assert lines(actions) == [
        "create bridge f mtu 1450",
        "set link f up",
        "create vxlan f-tun external dstport 8472 mtu 1450",
        "set link f-tun master f up",
        "add address 250.3.4.1/8 dev f",
        "attach tc programs to f-tun (vxlan, overlay 250.0.0.0/8, underlay 172.16.0.0/16, "
        "own slice 250.3.4.0/24, vni 16384000, encapsulating to ul0)",
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
    actions = P.plan_up(t, V.Observed(sysctls={V.FORWARD_SYSCTL: "1"}), None)
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
    first = P.plan_up(t, V.Observed(), None)
    assert P.plan_up(t, converge(t), recorded(t, first)) == []


def _with_underlay(obs, index=2, addresses=("172.16.3.4/24", "fd00::4/64")):
    ul = V.LinkView("ul0", index, None, 1500, True, None, frozenset(addresses))
    return V.Observed(**{**obs.__dict__, "links": {**obs.links, "ul0": ul}})


def test_vxlan_programs_encapsulate_to_the_underlay_interface():
    t = target(fan(type="vxlan"))
    obs = _with_underlay(V.Observed())
    attach = next(a for a in P.plan_up(t, obs, None) if isinstance(a, A.AttachPrograms))
    assert (attach.local, attach.underlay_dev, attach.underlay_index, attach.connected,
            attach.port) == ("172.16.3.4", "ul0", 2, "172.16.3.0/24", 8472)
    # the interface comes back under another index (or the prefix changes): again
    first = P.plan_up(t, obs, None)
    state = recorded(t, first)
    done = _with_underlay(converge(t))
    assert P.plan_up(t, done, state) == []
    back = target(t.fan, Resolved("ul0", 9, UL.address, UL.network, UL.mtu))
    again = P.plan_up(back, _with_underlay(converge(back), index=9), state)
    assert [type(a) for a in again] == [A.AttachPrograms, A.Record]
    assert again[0].underlay_index == 9
    again = P.plan_up(t, _with_underlay(converge(t), addresses=("172.16.3.4/16",)), state)
    assert [a.connected for a in again if isinstance(a, A.AttachPrograms)] == ["172.16.0.0/16"]
    # IPIP programs encapsulate too, with no port
    ipip = target(fan(type="ipip"))
    attach = next(a for a in P.plan_up(ipip, obs, None) if isinstance(a, A.AttachPrograms))
    assert (attach.underlay_dev, attach.connected, attach.port) == ("ul0", "172.16.3.0/24", 0)


def test_networkd_made_bridge_is_used_not_recreated():
    t = target(fan(type="vxlan", mtu=1400))
    obs = V.Observed(links={"f": V.LinkView("f", 5, "bridge", 1400, True)},
                     files={names.networkd_file("f", "netdev"): "x"})
    actions = lines(P.plan_up(t, obs, None))
    assert not any(a.startswith("create bridge") for a in actions)
    assert "add address 250.3.4.1/8 dev f" in actions


def test_a_device_fangen_did_not_make_is_never_taken_over():
    """A bridge or tunnel under the fan's name, of the right kind and attributes, that
    no state, .netdev or mark says is fangen's: up refuses, in one line, before any
    change.  With fangen's mark (a lost state file) the same device is the fan's."""
    t = target(fan(type="vxlan"))
    done = converge(t)
    for dev in ("f", "f-tun"):
        view = done.links[dev]
        links = {dev: V.LinkView(view.name, view.index, view.kind, view.mtu, view.up,
                                 view.master, frozenset(), view.info)}
        with pytest.raises(P.PlanError) as exc:
            P.plan_up(t, V.Observed(links=links), None)
        key = "bridge" if dev == "f" else "tunnel"
        assert str(exc.value) == (f"f: {dev} exists and was not made by fangen (it lacks "
                                  f"the alias fangen:f): delete it, or give the fan another "
                                  f"{key}: name")
        # someone else's mark is no better
        links = {dev: replace(links[dev], alias="fangen:g")}
        with pytest.raises(P.PlanError):
            P.plan_up(t, V.Observed(links=links), None)
        links = {dev: replace(links[dev], alias="fangen:f")}
        actions = lines(P.plan_up(t, V.Observed(links=links), None))
        assert not any(a.startswith(("create", "delete")) and dev in a.split()
                       for a in actions), actions


def test_foreign_device_in_the_way_is_an_error():
    t = target(fan())
    obs = V.Observed(links={"f": V.LinkView("f", 5, "dummy", 1500, True)})
    with pytest.raises(P.PlanError, match="f exists and is a dummy device, not a bridge"):
        P.plan_up(t, obs, None)
    obs = V.Observed(links={"f-tun": V.LinkView("f-tun", 6, "vxlan", 1500, True)})
    with pytest.raises(P.PlanError, match="f-tun exists and was not made by fangen"):
        P.plan_up(target(fan(type="vxlan")), obs, None)
    # upstream IPIP uses the shared device, which must be what fangen makes
    obs = V.Observed(links={"fangen-ipip": V.LinkView("fangen-ipip", 6, "dummy", 1500, True)})
    with pytest.raises(P.PlanError) as exc:
        P.plan_up(t, obs, None)
    assert str(exc.value) == ("f: fangen-ipip exists and is not the collect-metadata IPIP "
                              "device fangen's IPIP fans share: rename or delete it")


def test_another_collect_metadata_device_in_the_way_is_named():
    """The kernel's one-per-namespace (IPIP) and one-per-port (VXLAN) rules: the plan says
    which device holds the slot, instead of a kernel EEXIST later."""
    ext = (("external", True),)
    obs = V.Observed(links={"tun9": V.LinkView("tun9", 6, "ipip", 1480, True, info=ext)})
    with pytest.raises(P.PlanError) as exc:
        P.plan_up(target(fan()), obs, None)
    assert str(exc.value) == (
        "f: tun9 is already this namespace's collect-metadata IPIP device (the kernel "
        "allows one), and fangen's IPIP fans share fangen-ipip: delete tun9, or use "
        "'datapath: kernel'")
    # the kernel datapath has its own device, no collect-metadata slot needed
    assert "create ipip f-tun local 172.16.3.4 fan-map 250.0.0.0/8:172.16.0.0/16 mtu 1480" in \
        lines(P.plan_up(target(fan(), datapath="kernel"), obs, None))
    for info in (ext + (("port", 8472),), (("port", 8472),)):
        obs = V.Observed(links={"vx9": V.LinkView("vx9", 6, "vxlan", 1450, True, info=info)})
        with pytest.raises(P.PlanError) as exc:
            P.plan_up(target(fan(type="vxlan")), obs, None)
        assert str(exc.value) == ("f: UDP port 8472 is already used by the VXLAN device vx9: "
                                  "set 'vxlan: {port: N}' to a free port")
    # another port is fine; a kernel fan device shares a port with other plain VXLANs
    assert "create vxlan f-tun external dstport 4789 mtu 1450" in \
        lines(P.plan_up(target(fan(type="vxlan", vxlan={"port": 4789})), obs, None))
    assert "set link f-tun master f up" in \
        lines(P.plan_up(target(fan(type="vxlan"), datapath="kernel"), obs, None))


# -- several IPIP fans on the upstream datapath share one device ----------------------------

def _merge(a: V.Observed, b: V.Observed, users=frozenset({"f", "g"})) -> V.Observed:
    """What the host holds with both fans up (b seen from b's side)."""
    links = {**a.links, **b.links}
    return V.Observed(links=links, routes=a.routes | b.routes,
                      nft_tables=a.nft_tables | b.nft_tables, tc=b.tc,
                      tc_users={"fangen-ipip": users}, sysctls=b.sysctls,
                      files={**a.files, **b.files},
                      dnsmasq_running=True)


def test_a_second_ipip_fan_shares_the_device():
    f, g = fan(dhcp=False), fan("g", overlay="251.0.0.0/8", dhcp=False, mtu=1400)
    tf, tg = target(f), target(g)
    assert (tf.tunnel, tf.shared_tunnel) == ("fangen-ipip", True)
    first = P.plan_up(tf, V.Observed(sysctls={V.FORWARD_SYSCTL: "1"}), None)
    assert lines(first)[2:6] == [
        "create ipip fangen-ipip external mtu 1480 (shared by the IPIP fans)",
        "set link fangen-ipip up",
        "add address 250.3.4.1/24 dev f",
        "add route 250.0.0.0/8 dev fangen-ipip src 250.3.4.1",
    ]
    assert [a.shared for a in first if isinstance(a, A.AttachPrograms)] == [True]
    # g finds f's device (f's programs on it): no second device, its own programs and route
    obs = converge(tf)
    obs = V.Observed(links=obs.links, routes=obs.routes, nft_tables=obs.nft_tables,
                     tc={}, tc_users={"fangen-ipip": frozenset({"f"})},
                     sysctls=obs.sysctls, files={})
    second = P.plan_up(tg, obs, None)
    assert lines(second)[:5] == [
        "create bridge g mtu 1400",
        "set link g up",
        "add address 251.3.4.1/24 dev g",
        "add route 251.0.0.0/8 dev fangen-ipip src 251.3.4.1",
        "attach tc programs to fangen-ipip (ipip, overlay 251.0.0.0/8, underlay "
        "172.16.0.0/16, own slice 251.3.4.0/24, vni 0, encapsulating to ul0)",
    ]
    [attach] = [a for a in second if isinstance(a, A.AttachPrograms)]
    assert (attach.fan, attach.shared) == ("g", True)
    assert dict([a for a in second if isinstance(a, A.Record)][0].info)["shared_tunnel"] == \
        "fangen-ipip"
    # a fan with a larger MTU raises the shared device's; a smaller one leaves it
    big = target(fan("g", overlay="251.0.0.0/8", dhcp=False, mtu=9000))
    assert "set link fangen-ipip mtu 9000 up" in lines(P.plan_up(big, obs, None))
    # both up: nothing to do for either
    both = _merge(converge(tf), converge(tg))
    assert P.plan_up(tg, both, recorded(tg, second)) == []


def test_down_of_one_ipip_fan_leaves_the_shared_device_to_the_other():
    f, g = fan(dhcp=False), fan("g", overlay="251.0.0.0/8", dhcp=False)
    tf, tg = target(f), target(g)
    state_f = recorded(tf, P.plan_up(tf, V.Observed(), None))
    state_g = recorded(tg, P.plan_up(tg, converge(tf), None))
    assert state_f.links["fangen-ipip"]["shared"] and state_g.links["fangen-ipip"]["shared"]
    both = _merge(converge(tf), converge(tg))
    down_f = lines(P.plan_down(state_f, both, last_fan=False))
    assert down_f == [
        "delete nft table ip fangen-f",
        "detach tc programs of fan f from fangen-ipip",
        "delete route 250.0.0.0/8 dev fangen-ipip src 250.3.4.1",
        "leave fangen-ipip to fan g",
        "delete link f",
        "remove run/fangen/f/cni/f.conflist",
        "remove run/systemd/network/10-fangen-f.network.d/50-slice.conf",
        "reload systemd-networkd (if running)",
        "remove state",
    ]
    # the last user takes the device with it
    alone = _merge(converge(tf), converge(tg), users=frozenset({"g"}))
    down_g = lines(P.plan_down(state_g, alone))
    assert down_g.index("detach tc programs of fan g from fangen-ipip") < \
        down_g.index("delete link fangen-ipip (no other fan uses it)") < \
        down_g.index("delete link g")


def test_a_fan_that_moves_to_the_kernel_datapath_leaves_the_shared_device():
    f, g = fan(dhcp=False), fan("g", overlay="251.0.0.0/8", dhcp=False)
    tf, tg = target(f), target(g)
    state_f = recorded(tf, P.plan_up(tf, V.Observed(), None))
    both = _merge(converge(tf), converge(tg))
    actions = lines(P.plan_up(target(f, datapath="kernel"), both, state_f))
    assert actions[:6] == [
        "detach tc programs of fan f from fangen-ipip",
        "leave fangen-ipip to fan g",
        "create ipip f-tun local 172.16.3.4 fan-map 250.0.0.0/8:172.16.0.0/16 mtu 1480",
        "set link f-tun up",
        "delete route 250.0.0.0/8 dev fangen-ipip src 250.3.4.1",
        "add route 250.0.0.0/8 dev f-tun src 250.3.4.1",
    ]
    alone = _merge(converge(tf), converge(tg), users=frozenset({"f"}))
    assert "delete link fangen-ipip (no other fan uses it)" in \
        lines(P.plan_up(target(f, datapath="kernel"), alone, state_f))


def test_an_ipip_tunnel_of_an_older_release_makes_way_for_the_shared_one():
    """A fan brought up by the previous release (its own external device f-tun, which
    holds the namespace's one collect-metadata IPIP slot) moves to fangen-ipip."""
    t = target(fan(dhcp=False))
    old = State("f")
    old.links = {"f": {"kind": "bridge", "created": True},
                 "f-tun": {"kind": "ipip", "created": True, "spec": []}}
    old.routes = [{"dst": "250.0.0.0/8", "dev": "f-tun", "src": "250.3.4.1"}]
    old.tc = {"f-tun": {"params": {}}}
    ext = (("external", True),)
    obs = V.Observed(links={"f": V.LinkView("f", 5, "bridge", 1480, True, None,
                                            frozenset({"250.3.4.1/24"})),
                            "f-tun": V.LinkView("f-tun", 6, "ipip", 1480, True, info=ext)},
                     routes=frozenset({V.RouteView("250.0.0.0/8", "f-tun", "250.3.4.1"),
                                       V.RouteView("250.3.4.0/24", "f", "250.3.4.1")}))
    assert lines(P.plan_up(t, obs, old))[:4] == [
        "delete link f-tun",
        "create ipip fangen-ipip external mtu 1480 (shared by the IPIP fans)",
        "set link fangen-ipip up",
        "add route 250.0.0.0/8 dev fangen-ipip src 250.3.4.1",
    ]


def test_underlay_move_replaces_the_slice_everywhere():
    f = fan(type="ipip")
    old = target(f)
    state = recorded(old, P.plan_up(old, V.Observed(), None))
    new = target(f, UL_MOVED)
    actions = P.plan_up(new, converge(old), state)
    assert lines(actions) == [
        "delete address 250.3.4.1/24 dev f",
        "add address 250.5.6.1/24 dev f",
        "delete route 250.0.0.0/8 dev fangen-ipip src 250.3.4.1",
        "add route 250.0.0.0/8 dev fangen-ipip src 250.5.6.1",
        "attach tc programs to fangen-ipip (ipip, overlay 250.0.0.0/8, underlay "
        "172.16.0.0/16, own slice 250.5.6.0/24, vni 0, encapsulating to ul0)",
        "replace nft table ip fangen-f:",
        "write run/fangen/f/dnsmasq.conf",
        "write run/systemd/network/10-fangen-f.network.d/50-slice.conf",
        "reload systemd-networkd (if running)",
        "(re)start dnsmasq (process) with run/fangen/f/dnsmasq.conf",
        "record state: datapath upstream, slice 250.5.6.0/24, mtu 1480",
    ]


def test_kernel_tunnel_is_recreated_for_a_new_local_address():
    f = fan(type="ipip", dhcp=False)
    old = target(f, datapath="kernel")
    state = recorded(old, P.plan_up(old, V.Observed(), None))
    obs = converge(old)
    links = dict(obs.links)
    links["f-tun"] = V.LinkView("f-tun", 11, "ipip", 1480, True)
    obs = V.Observed(links=links, routes=obs.routes, nft_tables=obs.nft_tables,
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
    state = recorded(t, P.plan_up(t, V.Observed(), None))
    state.sysctls = {V.FORWARD_SYSCTL: "0"}
    obs = converge(t)
    links = dict(obs.links)
    links["other0"] = V.LinkView("other0", 20, "dummy", 1500, True, None,
                                 frozenset({"10.9.9.9/24"}))
    obs = V.Observed(links=links, nft_tables=obs.nft_tables | {"someone-else"},
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
    state = recorded(t, P.plan_up(t, V.Observed(), None))
    state.links["f"]["created"] = False
    assert lines(P.plan_down(state, converge(t)))[:4] == [
        "stop dnsmasq",
        "delete nft table ip fangen-f",
        "delete address 250.3.4.1/8 dev f",
        "delete link f-tun",
    ]
    # everything already gone: only the state file goes
    assert lines(P.plan_down(State("f"), V.Observed())) == ["remove state"]


def test_a_networkd_bridge_gets_its_mtu_back_on_down():
    """up sets the MTU of a bridge networkd made; down puts the original back."""
    t = target(fan(type="vxlan"))
    obs = V.Observed(links={"f": V.LinkView("f", 5, "bridge", 1500, True)},
                     files={names.networkd_file("f", "netdev"): "x"})
    up = P.plan_up(t, obs, None)
    [set_bridge] = [a for a in up if isinstance(a, A.SetLink) and a.name == "f"]
    assert (set_bridge.mtu, set_bridge.mtu_before) == (t.mtu, 1500)
    state = recorded(t, up)
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
    obs_with_netdev = V.Observed(**{**obs.__dict__, "files": {**obs.files, netdev: "x"}})
    up = P.plan_up(t, V.Observed(links={"f": V.LinkView("f", 5, "bridge", t.mtu, True)},
                                 files={netdev: "x"}), None)
    [record] = [a for a in up if isinstance(a, A.Record)]
    assert dict(record.info)["networkd_bridge"] is True
    state = recorded(t, up)
    state.links["f"] = {"created": False, "networkd": True}
    # still configured: the bridge stays (networkd's), only our address goes
    assert "delete link f" not in lines(P.plan_down(state, obs_with_netdev))
    # removed from the configuration: the bridge goes too, after its port
    down = lines(P.plan_down(state, obs))
    assert down.index("delete link f-tun") < down.index("delete link f")
    # a bridge someone else made (no record of our .netdev) is never deleted
    state.links["f"] = {"created": False}
    assert "delete link f" not in lines(P.plan_down(state, obs))


# ---------------------------------------------------------------- a plain VXLAN device


def test_vxlan_upstream_on_a_plain_device():
    t = target(fan(type="vxlan"), plain=True)
    actions = P.plan_up(t, _with_underlay(V.Observed(sysctls={V.FORWARD_SYSCTL: "1"})), None)
    assert lines(actions)[:6] == [
        "create bridge f mtu 1450",
        "set link f up",
        "create vxlan f-tun id 16384000 dstport 8472 nolearning (no remote: the fan programs "
        "send) mtu 1450",
        "set link f-tun master f up",
        "add address 250.3.4.1/8 dev f",
        "attach tc programs to f-tun (vxlan, overlay 250.0.0.0/8, underlay 172.16.0.0/16, "
        "own slice 250.3.4.0/24, vni 16384000, encapsulating every frame to ul0)",
    ]
    attach = actions[5]
    assert attach.plain and attach.params()["plain"] is True
    assert attach.connected == "172.16.3.0/24"
    [nft_action] = [a for a in actions if isinstance(a, A.NftReplace)]
    assert nft_action.text == nft.ruleset(t.fan, t.slice.network, UL.network, UL.address,
                                          any_address=True)
    # the sender check covers every local address: nothing else checks it on this device
    assert "\t\tudp dport 8472 ip saddr != 172.16.0.0/16 drop\n" in nft_action.text
    state = recorded(t, actions)
    assert P.plan_up(t, _with_underlay(converge(t)), state) == []


def test_a_collect_metadata_device_is_replaced_by_a_plain_one_and_back():
    ext, pln = target(fan(type="vxlan")), target(fan(type="vxlan"), plain=True)
    first = P.plan_up(ext, _with_underlay(V.Observed()), None)
    state = recorded(ext, first)
    again = P.plan_up(pln, _with_underlay(converge(ext)), state)
    assert lines(again)[:3] == [
        "delete link f-tun",
        "create vxlan f-tun id 16384000 dstport 8472 nolearning (no remote: the fan programs "
        "send) mtu 1450",
        "set link f-tun master f up"]
    assert any(isinstance(a, A.AttachPrograms) and a.plain for a in again)
    back = P.plan_up(ext, _with_underlay(converge(pln)), recorded(pln, first + again))
    assert lines(back)[:2] == ["delete link f-tun",
                               "create vxlan f-tun external dstport 8472 mtu 1450"]
    # a plain device with another VNI (the stanza's vxlan: vni changed) is made again
    other = target(fan(type="vxlan", vxlan={"vni": 7}), plain=True)
    assert lines(P.plan_up(other, _with_underlay(converge(pln)), state))[0] == "delete link f-tun"
    # and so is the kernel datapath's device (same VNI and port, but a local address)
    obs = converge(pln)
    tun = obs.links["f-tun"]
    obs.links["f-tun"] = V.LinkView(tun.name, tun.index, tun.kind, tun.mtu, tun.up, tun.master,
                                    tun.addresses, tun.info + (("local", "172.16.3.4"),))
    assert lines(P.plan_up(pln, _with_underlay(obs), state))[0] == "delete link f-tun"


def test_a_plain_device_without_its_address_observed_routes_every_remote():
    t = target(fan(type="vxlan"), plain=True)
    attach = next(a for a in P.plan_up(t, V.Observed(), None) if isinstance(a, A.AttachPrograms))
    assert attach.connected == "172.16.3.4/32"


@pytest.mark.parametrize("extra, datapath, supported, want", [
    ({"type": "vxlan"}, "upstream", True, True),
    ({"type": "vxlan"}, "upstream", False, False),          # the kernel refused the programs
    ({"type": "vxlan"}, "kernel", True, False),
    ({"type": "ipip"}, "upstream", True, False),
    ({"type": "vxlan", "overlay6": "fd5a::/48"}, "upstream", True, False),
    ({"type": "vxlan", "underlay-gateway": "172.16.0.1", "underlay-table": 100},
     "upstream", True, False),
    ({"type": "vxlan", "vrf": "blue"}, "upstream", True, False),
])
def test_which_fans_get_a_plain_device(extra, datapath, supported, want):
    assert P.choose_plain(fan(**extra), datapath, supported) is want
