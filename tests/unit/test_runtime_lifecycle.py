"""The fan's life cycle in the pure parts: repairs, kept bridges, the stub state.

What `up`/`run` put back when someone else removed it (the route the kernel made
with the bridge address: `ip route del` on a VXLAN fan made `up` say "nothing to
do" while `show` said broken), what `down` keeps (a bridge with containers on
it), and when `run` stops repairing (fangen.runtime.repairs).  The same on real
kernel objects and real engines: tests/netns/test_lifecycle.py and
tests/engines/test_lifecycle.py.
"""

from ipaddress import IPv4Address, IPv4Network

from fangen.config.model import build
from fangen.runtime import actions as A
from fangen.runtime import plan as P
from fangen.runtime import repairs
from fangen.runtime import view as V
from fangen.runtime.state import State
from fangen.runtime.underlay import Resolved

from .test_runtime_plan import converge, lines, recorded

UL = Resolved("ul0", 2, IPv4Address("172.16.3.4"), IPv4Network("172.16.0.0/16"), 1500)


def fan(**extra):
    data = {"overlay": "250.0.0.0/8", "underlay": "172.16.0.0/16"}
    data.update(extra)
    return build("f", data)


def target(f, datapath="upstream"):
    return P.Target(f, UL, datapath, "/r", False)


def without_routes(obs, drop):
    return V.Observed(**{**obs.__dict__, "routes": frozenset(r for r in obs.routes
                                                             if r.dst != drop)})


def with_links(obs, **extra):
    return V.Observed(**{**obs.__dict__, "links": {**obs.links, **extra}})


def settled(t):
    """(state, observed) of a fan that is up and well."""
    state = recorded(t, P.plan_up(t, V.Observed(), None))
    obs = converge(t)
    assert P.plan_up(t, obs, state) == []
    return state, obs


def repairs_of(t, obs, state):
    """The plan's lines without the final bookkeeping (any action re-records the state)."""
    actions = lines(P.plan_up(t, obs, state))
    assert actions[-1].startswith("record state: ")
    return actions[:-1]


# -- up/run put back what someone else removed ------------------------------------------------

def test_vxlan_overlay_route_deleted_is_restored():
    """`ip route del 250.0.0.0/8 dev f`: the address stays, its route is gone."""
    t = target(fan(type="vxlan"))
    state, obs = settled(t)
    assert repairs_of(t, without_routes(obs, "250.0.0.0/8"), state) == [
        "restore route 250.0.0.0/8 dev f src 250.3.4.1 (of the bridge address)"]


def test_ipip_bridge_route_and_overlay_route_are_restored():
    t = target(fan(type="ipip"))
    state, obs = settled(t)
    assert repairs_of(t, without_routes(obs, "250.3.4.0/24"), state) == [
        "restore route 250.3.4.0/24 dev f src 250.3.4.1 (of the bridge address)"]
    assert repairs_of(t, without_routes(obs, "250.0.0.0/8"), state) == [
        "add route 250.0.0.0/8 dev fangen-ipip src 250.3.4.1"]


def test_address_replaced_by_an_engine_is_added_back_and_theirs_left():
    """Docker's `network create --subnet 250.3.4.0/24 -o ...bridge.name=f` on a VXLAN fan
    replaces 250.3.4.1/8 with 250.3.4.1/24: ours comes back, theirs stays."""
    t = target(fan(type="vxlan"))
    state, obs = settled(t)
    bridge = obs.links["f"]
    replaced = with_links(obs, f=V.LinkView("f", bridge.index, "bridge", bridge.mtu, True,
                                            None, frozenset({"250.3.4.1/24"})))
    replaced = without_routes(replaced, "250.0.0.0/8")
    assert repairs_of(t, replaced, state) == ["add address 250.3.4.1/8 dev f"]
    assert repairs.foreign_addresses({"250.3.4.1/24", "250.3.4.1/8"},
                                     {"250.3.4.1/8"}) == ["250.3.4.1/24"]
    # the kernel's own link-local address (IPv6 on) is nobody's to name; a fan-style
    # one fangen did not set, or a global IPv6 address, is
    assert repairs.foreign_addresses(
        {"250.3.4.1/8", "fe80::d0d6:11ff:fefd:a674/64", "fe80::fa:0:3:4/64",
         "fd00::1/64"}, {"250.3.4.1/8"}) == ["fd00::1/64", "fe80::fa:0:3:4/64"]


# -- down keeps a bridge with containers on it -------------------------------------------------

def veth(name, master="f"):
    return V.LinkView(name, 30, "veth", 1450, True, master)


def test_down_keeps_a_bridge_with_container_ports():
    t = target(fan(type="vxlan"))
    state, obs = settled(t)
    state.sysctls = {V.FORWARD_SYSCTL: "0"}
    busy = with_links(obs, vethA=veth("vethA"), vethB=veth("vethB"),
                      other=veth("other", master=None))
    actions = P.plan_down(state, busy)
    assert lines(actions) == [
        "stop dnsmasq",
        "delete nft table ip fangen-f",
        "delete address 250.3.4.1/8 dev f",
        "delete link f-tun",
        "keep bridge f (ports vethA, vethB still attached)",
        "remove run/fangen/f/cni/f.conflist",
        "remove run/fangen/f/dnsmasq.conf",
        "remove run/systemd/network/10-fangen-f.network.d/50-slice.conf",
        "reload systemd-networkd (if running)",
        "set sysctl net.ipv4.ip_forward=0",
        "remove state, except the kept bridge f",
    ]
    assert actions[-1] == A.Forget(("f",))
    # --purge: deleted all the same
    purged = lines(P.plan_down(state, busy, purge=True))
    assert "delete link f" in purged and purged[-1] == "remove state"
    # no ports but fangen's own tunnel: deleted as before
    assert "delete link f" in lines(P.plan_down(state, obs))


def test_down_keeps_a_networkd_bridge_with_ports_once_its_netdev_is_gone():
    t = target(fan(type="vxlan"))
    state, obs = settled(t)
    state.links["f"] = {"created": False, "networkd": True}
    busy = with_links(obs, vethA=veth("vethA"))
    down = lines(P.plan_down(state, busy))
    assert "keep bridge f (ports vethA still attached)" in down
    assert "delete address 250.3.4.1/8 dev f" in down and "delete link f" not in down


def test_the_stub_a_kept_bridge_leaves():
    t = target(fan(type="vxlan"))
    state, obs = settled(t)
    stub = State("f", bridge="f", tunnel="f-tun", links={"f": state.links["f"]}, kept=["f"])
    assert stub.is_stub() and not state.is_stub()
    busy = with_links(obs, vethA=veth("vethA"))
    del busy.links["f-tun"]
    # down again while the container is still there: kept again; once it left: deleted
    assert lines(P.plan_down(stub, busy)) == ["keep bridge f (ports vethA still attached)",
                                              "remove state, except the kept bridge f"]
    alone = with_links(obs)
    del alone.links["f-tun"]
    assert lines(P.plan_down(stub, alone)) == ["delete link f", "remove state"]
    # up takes it back: the bridge is not made again, it is addressed
    up = lines(P.plan_up(t, busy, stub))
    assert "create bridge f mtu 1450" not in up
    assert up[:2] == ["create vxlan f-tun external dstport 8472 mtu 1450",
                      "set link f-tun master f up"]


# -- run stops a fight ------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_repairs_give_up_a_fight_once_and_start_over_on_reset():
    clock = Clock()
    r = repairs.Repairs(clock)
    add = A.AddAddress("f", "250.3.4.1/8")
    record = A.Record((("slice", "x"),))
    for _ in range(repairs.LIMIT):
        skip, said = r.skip([add, record])
        assert (skip, said) == (frozenset(), [])
        r.note([add])
        clock.now += 1
    skip, said = r.skip([add, record])
    assert skip == {add} and len(said) == 1
    assert said[0].startswith("something keeps undoing 'add address 250.3.4.1/8 dev f' "
                              "(tried 3 times in 60 s)")
    # said once; other repairs are not affected
    other = A.RestoreRoute("250.0.0.0/8", "f", "250.3.4.1")
    assert r.skip([add, other]) == (frozenset({add}), [])
    r.reset()
    assert r.skip([add]) == (frozenset(), [])


def test_repairs_spread_out_in_time_are_not_a_fight():
    clock = Clock()
    r = repairs.Repairs(clock)
    add = A.AddAddress("f", "250.3.4.1/8")
    for _ in range(10):
        assert r.skip([add]) == (frozenset(), [])
        r.note([add])
        clock.now += repairs.WINDOW / 2
    assert repairs.key(A.Record(())) is None and repairs.key(A.Forget()) is None
