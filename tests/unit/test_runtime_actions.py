"""Each action's dry-run line and its bookkeeping (``record``): pure, tested once here.

The executor (fangen.runtime.execute) only does the I/O of an action and hands its
outcome to ``record``; the plan tests replay plans through the same ``record``.
"""

import pytest

from fangen.runtime import actions as A
from fangen.runtime import execute
from fangen.runtime.state import State, mark

TUNNEL = A.CreateTunnel("f-tun", "vxlan", "kernel", 1450, port=8472, vni=7, local="10.0.0.4",
                        underlay_dev="eth0", overlay="250.0.0.0/8", underlay="10.0.0.0/16")
ATTACH = A.AttachPrograms("fangen-ipip", "ipip", "250.0.0.0/8", "10.0.0.0/16",
                          "250.0.4.0/24", 0, "f", shared=True)


def state(**fields) -> State:
    return State("f", **fields)


def test_every_action_has_its_io_in_the_executor():
    found = {c for c in vars(A).values()
             if isinstance(c, type) and issubclass(c, A.Action) and c is not A.Action
             and not c.__name__.startswith("_")}
    assert found == set(A.ALL)
    assert set(execute._DO) == set(A.ALL)


@pytest.mark.parametrize("action, line", [
    (A.CreateBridge("f", 1450), "create bridge f mtu 1450"),
    (TUNNEL, "create vxlan f-tun id 7 dev eth0 dstport 8472 local 10.0.0.4 "
             "fan-map 250.0.0.0/8:10.0.0.0/16 mtu 1450"),
    (A.CreateTunnel("fangen-ipip", "ipip", "upstream", 1480, shared=True),
     "create ipip fangen-ipip external mtu 1480 (shared by the IPIP fans)"),
    (A.CreateTunnel("f-tun", "vxlan", "upstream", 1450, port=4789),
     "create vxlan f-tun external dstport 4789 mtu 1450"),
    (A.DeleteLink("f"), "delete link f"),
    (A.SetLink("f-tun", mtu=1400, master="f"), "set link f-tun mtu 1400 master f up"),
    (A.SetLink("f", up=False), "set link f down"),
    (A.ReleaseTunnel("fangen-ipip", ("g", "h")), "leave fangen-ipip to fan g, h"),
    (A.ReleaseTunnel("fangen-ipip"), "delete link fangen-ipip (no other fan uses it)"),
    (A.KeepBridge("f", ("veth1", "veth2")), "keep bridge f (ports veth1, veth2 still attached)"),
    (A.AddAddress("f", "250.0.4.1/24"), "add address 250.0.4.1/24 dev f"),
    (A.DelAddress("f", "250.0.4.1/24"), "delete address 250.0.4.1/24 dev f"),
    (A.AddRoute("250.0.0.0/8", "f-tun", "250.0.4.1"),
     "add route 250.0.0.0/8 dev f-tun src 250.0.4.1"),
    (A.DelRoute("250.0.0.0/8", "f-tun", "250.0.4.1"),
     "delete route 250.0.0.0/8 dev f-tun src 250.0.4.1"),
    (A.RestoreRoute("250.0.4.0/24", "f", "250.0.4.1"),
     "restore route 250.0.4.0/24 dev f src 250.0.4.1 (of the bridge address)"),
    (ATTACH, "attach tc programs to fangen-ipip (ipip, overlay 250.0.0.0/8, underlay "
             "10.0.0.0/16, own slice 250.0.4.0/24, vni 0)"),
    (A.DetachPrograms("fangen-ipip", "f"), "detach tc programs of fan f from fangen-ipip"),
    (A.DetachPrograms("f-tun"), "detach tc programs from f-tun"),
    (A.SetSysctl("net/ipv4/ip_forward", "1"), "set sysctl net.ipv4.ip_forward=1"),
    (A.NftReplace("fangen-f", "script", "table ip fangen-f {\n}\n"),
     "replace nft table ip fangen-f:\n    table ip fangen-f {\n    }"),
    (A.NftDelete("fangen-f"), "delete nft table ip fangen-f"),
    (A.WriteFile("run/fangen/f/dnsmasq.conf", "x"), "write run/fangen/f/dnsmasq.conf"),
    (A.RemoveFile("run/fangen/f/dnsmasq.conf"), "remove run/fangen/f/dnsmasq.conf"),
    (A.ReloadNetworkd(), "reload systemd-networkd (if running)"),
    (A.StartDnsmasq("run/fangen/f/dnsmasq.conf", True),
     "(re)start dnsmasq (fangen-dnsmasq@ unit) with run/fangen/f/dnsmasq.conf"),
    (A.StopDnsmasq(), "stop dnsmasq"),
    (A.Record((("datapath", "kernel"), ("type", "ipip"), ("slice", "250.0.4.0/24"),
               ("mtu", 1480))), "record state: datapath kernel, slice 250.0.4.0/24, mtu 1480"),
    (A.Forget(), "remove state"),
    (A.Forget(("f",)), "remove state, except the kept bridge f"),
])
def test_the_dry_run_line(action, line):
    assert str(action) == line


def test_actions_of_the_same_shape_stay_apart():
    add, delete = A.AddRoute("a", "b", "c"), A.DelRoute("a", "b", "c")
    assert add != delete and len({add, delete, A.RestoreRoute("a", "b", "c")}) == 3


def test_a_created_link_is_recorded_with_its_mark_a_found_one_is_not():
    st = state()
    A.CreateBridge("f", 1450).record(st)
    TUNNEL.record(st)
    assert st.links == {"f": {"kind": "bridge", "created": True, "mark": mark("f")},
                        "f-tun": {"kind": "vxlan", "created": True, "mark": mark("f"),
                                  "spec": ["vxlan", "kernel", 8472, 7, "10.0.0.4", "eth0",
                                           "250.0.0.0/8", "10.0.0.0/16"]}}
    st = state()
    A.CreateBridge("f", 1450).record(st, True)          # it existed: not fangen's
    TUNNEL.record(st, True)
    assert st.links == {}


def test_the_shared_tunnel_is_recorded_as_used_not_created():
    for existed in (False, True):
        st = state()
        A.CreateTunnel("fangen-ipip", "ipip", "upstream", 1480, shared=True).record(st, existed)
        assert st.links == {"fangen-ipip": {"kind": "ipip", "created": False, "shared": True}}
    st = state()
    ATTACH.record(st)
    assert st.links == {"fangen-ipip": {"kind": "ipip", "created": False, "shared": True}}
    assert st.tc == {"fangen-ipip": {"params": ATTACH.params()}}
    A.DetachPrograms("fangen-ipip", "f").record(st)
    assert st.tc == {}


def test_a_deleted_or_released_link_takes_its_addresses_routes_and_programs_along():
    st = state(links={"f-tun": {"created": True}, "f": {"created": True}},
               tc={"f-tun": {"params": {}}},
               addresses=[{"dev": "f-tun", "address": "1.2.3.4/8"},
                          {"dev": "f", "address": "250.0.4.1/24"}],
               routes=[{"dst": "250.0.0.0/8", "dev": "f-tun", "src": "250.0.4.1"}])
    A.DeleteLink("f-tun").record(st)
    assert (st.links, st.tc, st.routes) == ({"f": {"created": True}}, {}, [])
    assert st.addresses == [{"dev": "f", "address": "250.0.4.1/24"}]
    st = state(links={"fangen-ipip": {"shared": True}}, tc={"fangen-ipip": {}},
               routes=[{"dst": "250.0.0.0/8", "dev": "fangen-ipip", "src": "250.0.4.1"}])
    A.ReleaseTunnel("fangen-ipip", ("g",)).record(st)
    assert (st.links, st.tc, st.routes) == ({}, {}, [])


def test_set_link_keeps_the_first_mtu_of_a_link_fangen_did_not_make():
    st = state(links={"made": {"created": True}})
    A.SetLink("f", mtu=1450, mtu_before=1500).record(st)
    A.SetLink("f", mtu=1400, mtu_before=1450).record(st)
    A.SetLink("made", mtu=1400, mtu_before=1450).record(st)
    A.SetLink("g").record(st)
    assert st.links == {"f": {"created": False, "mtu_before": 1500},
                        "made": {"created": True}, "g": {"created": False}}


def test_addresses_and_routes_once_each_and_a_restored_route_is_not_ours():
    st = state()
    for _ in range(2):
        A.AddAddress("f", "250.0.4.1/24").record(st)
        A.AddRoute("250.0.0.0/8", "f-tun", "250.0.4.1").record(st)
        A.RestoreRoute("250.0.4.0/24", "f", "250.0.4.1").record(st)
    assert st.addresses == [{"dev": "f", "address": "250.0.4.1/24"}]
    assert st.routes == [{"dst": "250.0.0.0/8", "dev": "f-tun", "src": "250.0.4.1"}]
    A.DelAddress("f", "250.0.4.1/24").record(st)
    A.DelRoute("250.0.0.0/8", "f-tun", "250.0.4.1").record(st)
    assert (st.addresses, st.routes) == ([], [])


def test_a_sysctl_remembers_the_value_before_up_and_forgets_it_when_put_back():
    st = state()
    on = A.SetSysctl("net/ipv4/ip_forward", "1")
    on.record(st, None)                 # could not be read: nothing to put back
    on.record(st, "1")                  # it was on already
    assert st.sysctls == {}
    on.record(st, "0")
    on.record(st, "1")                  # a second up: the original value stays
    assert st.sysctls == {"net/ipv4/ip_forward": "0"}
    A.SetSysctl("net/ipv4/ip_forward", "0", restore=True).record(st, "1")
    assert st.sysctls == {}


def test_nft_files_and_dnsmasq():
    st = state()
    A.NftReplace("fangen-f", "script", "text").record(st)
    A.WriteFile("a", "x").record(st)
    A.StartDnsmasq("a", False).record(st, {"mode": "process", "pid": 9, "cmdline": ["d"]})
    assert (st.nft_tables, st.files, st.dnsmasq) == (
        {"fangen-f": "text"}, {"a": "x"}, {"mode": "process", "pid": 9, "cmdline": ["d"]})
    A.NftDelete("fangen-f").record(st)
    A.RemoveFile("a").record(st)
    A.StopDnsmasq().record(st)
    assert (st.nft_tables, st.files, st.dnsmasq) == ({}, {}, {})


def test_record_describes_the_fan_and_adopts_a_networkd_bridge():
    info = (("datapath", "kernel"), ("type", "ipip"), ("overlay", "250.0.0.0/8"),
            ("bridge", "f"), ("tunnel", "f-tun"), ("shared_tunnel", ""),
            ("underlay", (("address", "10.0.0.4"), ("ifname", "eth0"))),
            ("slice", "250.0.4.0/24"), ("gateway", "250.0.4.1"), ("mtu", 1480),
            ("tunnel_spec", ("ipip", "kernel")),
            ("own_addresses", (("f", "250.0.4.1/24"),)),
            ("own_routes", (("250.0.0.0/8", "f-tun", "250.0.4.1"),)),
            ("networkd_bridge", True))
    st = state(links={"f-tun": {"created": True, "spec": []}}, kept=["f"])
    record = A.Record(info)
    assert record.adopts() == "f"
    record.record(st)
    assert (st.datapath, st.type, st.overlay, st.bridge, st.tunnel, st.slice, st.gateway,
            st.mtu, st.kept) == ("kernel", "ipip", "250.0.0.0/8", "f", "f-tun",
                                 "250.0.4.0/24", "250.0.4.1", 1480, [])
    assert st.underlay == {"address": "10.0.0.4", "ifname": "eth0"}
    assert st.links == {"f-tun": {"created": True, "spec": ["ipip", "kernel"]},
                        "f": {"created": False, "networkd": True, "mark": mark("f")}}
    assert st.addresses == [{"dev": "f", "address": "250.0.4.1/24"}]
    assert st.routes == [{"dst": "250.0.0.0/8", "dev": "f-tun", "src": "250.0.4.1"}]
    shared = dict(info, tunnel="fangen-ipip", shared_tunnel="fangen-ipip",
                  networkd_bridge=False)
    st = state()
    A.Record(tuple(shared.items())).record(st)
    assert st.links == {"fangen-ipip": {"kind": "ipip", "created": False, "shared": True}}
    assert A.Record(tuple(shared.items())).adopts() is None


def test_keep_bridge_and_forget_leave_the_state_to_the_executor():
    st = state(links={"f": {"created": True}})
    before = st.to_json()
    A.KeepBridge("f", ("veth1",)).record(st)
    A.Forget(("f",)).record(st)
    assert st.to_json() == before
