"""What a dual-stack fan (overlay6) renders: exact networkd, dnsmasq and nft text, and the
runtime plan's IPv6 forwarding (on at up, back at down only when fangen changed it)."""

from fangen.config.model import build
from fangen.render import dnsmasq, networkd, nft
from fangen.runtime import forwarding
from fangen.runtime import plan as P
from fangen.runtime.state import State
from tests.unit.test_runtime_plan import UL, converge, fan, target


def ds(**extra):
    return fan("ds", type="vxlan", overlay6="fd5a:fa00::/48", **extra)


def test_bridge_gets_the_ipv6_slice_first_address_and_a_host_link_local():
    f = build("ds", {"overlay": "250.0.0.0/8", "underlay": "172.16.3.4/16", "type": "vxlan",
                     "overlay6": "fd5a:fa00::/48"})
    text = networkd.render(f, "x")["run/systemd/network/10-fangen-ds.network"]
    assert "LinkLocalAddressing=no\n" in text          # not the kernel's: fangen's own
    assert text.endswith("Address=250.3.4.1/8\nAddress=fd5a:fa00:0:304::1/48\n"
                         "Address=fe80::fa:0:0:304/64\n")
    tunnel = networkd.render(f, "x")["run/systemd/network/10-fangen-ds-tun.network"]
    assert "LinkLocalAddressing=no\n" in tunnel                  # the port has no address
    dropin = networkd.slice_dropins(ds(), P.Target(ds(), UL, "upstream").slice)
    assert dropin["run/systemd/network/10-fangen-ds.network.d/50-slice.conf"].endswith(
        "[Network]\nAddress=250.3.4.1/8\nAddress=fd5a:fa00:0:304::1/48\n"
        "Address=fe80::fa:0:0:304/64\n")


def test_ipv4_only_fan_is_unchanged():
    f = fan("v4", type="vxlan")
    sl = P.Target(f, UL, "upstream").slice
    assert "enable-ra" not in dnsmasq.render(f, sl, 1450)
    assert "ip6" not in nft.ruleset(f, sl.network, UL.network, UL.address)
    assert "fe80" not in networkd.render(f, "x")["run/systemd/network/10-fangen-v4.network"]


def test_dnsmasq_router_advertisements():
    sl = P.Target(ds(), UL, "upstream").slice
    six = dnsmasq.render(ds(), sl, 1450).split("option:dns-server,250.3.4.1\n")[1]
    assert six == ("listen-address=fd5a:fa00:0:304::1\n"
                   "enable-ra\n"
                   "ra-param=ds,mtu:1450,60,1800\n"
                   "dhcp-range=fd5a:fa00:0:304::,ra-only,64,3600s\n"
                   "dhcp-option=option6:dns-server,[fd5a:fa00:0:304::1]\n")
    stateful = dnsmasq.render(ds(dhcp6=True, dns=False, **{"host-reserve": 9}), sl, 1400)
    assert stateful.endswith("port=0\n"
                             "listen-address=fd5a:fa00:0:304::1\n"
                             "enable-ra\n"
                             "ra-param=ds,mtu:1400,60,1800\n"
                             "dhcp-range=fd5a:fa00:0:304::a,fd5a:fa00:0:304::ffff:ffff,slaac,"
                             "64,3600s\n")


def test_nft_ip6_table():
    sl = P.Target(ds(), UL, "upstream").slice
    text = nft.ruleset(ds(), sl.network, UL.network, UL.address)
    six = text[text.index("table ip6 fangen-ds {"):]
    assert six == ("table ip6 fangen-ds {\n"
                   "\tchain postrouting {\n"
                   "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
                   "\t\tip6 saddr fd5a:fa00:0:304::/64 ip6 daddr != fd5a:fa00::/48 masquerade\n"
                   "\t}\n"
                   "\tchain input {\n"
                   "\t\ttype filter hook input priority filter; policy accept;\n"
                   '\t\tip6 daddr fd5a:fa00:0:304::1 iifname != { "ds", "ds-tun", "lo" } drop\n'
                   "\t}\n"
                   "\tchain forward {\n"
                   "\t\ttype filter hook forward priority filter; policy accept;\n"
                   '\t\tiifname "ds" accept\n'
                   '\t\toifname != { "ds", "ds-tun" } accept\n'
                   "\t\tct state established,related accept\n"
                   '\t\tiifname "ds-tun" oifname "ds" accept\n'
                   "\t\tct status dnat accept\n"
                   "\t\tdrop\n"
                   "\t}\n"
                   "}\n")


def test_up_turns_ipv6_forwarding_on_and_down_restores_it():
    t = target(ds())
    obs = converge(t)
    off = P.Observed(**{**obs.__dict__, "sysctls": {P.FORWARD_SYSCTL: "1",
                                                    P.FORWARD6_SYSCTL: "0"}})
    acts = [a for a in P.plan_up(t, off, None) if isinstance(a, P.SetSysctl)]
    assert acts == [P.SetSysctl(P.FORWARD6_SYSCTL, "1")]
    v4 = target(fan("ds", type="vxlan"))
    assert not [a for a in P.plan_up(v4, converge(v4), None)
                if isinstance(a, P.SetSysctl)]
    state = State("ds", sysctls={P.FORWARD6_SYSCTL: "0"})
    on = P.Observed(sysctls={P.FORWARD6_SYSCTL: "1"})
    assert [a for a in P.plan_down(state, on) if isinstance(a, P.SetSysctl)] == \
        [P.SetSysctl(P.FORWARD6_SYSCTL, "0", restore=True)]


def test_ipv6_forwarding_users_read_ip6_and_inet_tables():
    chains = ("table ip6 docker6 {\n\tchain fwd {\n\t\ttype filter hook forward priority 0; "
              "policy accept;\n\t}\n}\n"
              "table ip v4only {\n\tchain fwd {\n\t\ttype filter hook forward priority 0; "
              "policy accept;\n\t}\n}\n"
              "table ip6 fangen-ds {\n\tchain forward {\n\t\ttype filter hook forward "
              "priority filter; policy accept;\n\t}\n}\n")
    assert forwarding.users_from_chains(chains, forwarding.FAMILIES6) == \
        ["nft table ip6 docker6, chain fwd (filter hook forward)"]
    assert forwarding.users_from_chains(chains) == \
        ["nft table ip v4only, chain fwd (filter hook forward)"]


def test_up_adds_the_ipv6_bridge_address_and_down_removes_it():
    t = target(ds())
    six = ["fd5a:fa00:0:304::1/48", "fe80::fa:0:0:304/64"]
    assert t.bridge_addresses6 == six
    obs = converge(t)
    acts = P.plan_up(t, obs, None)
    assert [a for a in acts if isinstance(a, P.AddAddress)] == \
        [P.AddAddress("ds", addr) for addr in six]
    [record] = [a for a in acts if isinstance(a, P.Record)]
    assert dict(record.info)["own_addresses"] == (("ds", "250.3.4.1/8"),
                                                  ("ds", six[0]), ("ds", six[1]))
    state = State("ds", addresses=[{"dev": "ds", "address": a}
                                   for a in ["250.3.4.1/8"] + six])
    bridge = obs.links["ds"]
    both = P.LinkView("ds", bridge.index, "bridge", bridge.mtu, True, None,
                      frozenset(["250.3.4.1/8"] + six), alias="fangen:ds")
    up_again = P.plan_up(t, P.Observed(**{**obs.__dict__, "links": {**obs.links, "ds": both}}),
                         state)
    assert not [a for a in up_again if isinstance(a, (P.AddAddress, P.DelAddress))]
    down = P.plan_down(state, P.Observed(links={"ds": both}), last_fan=False)
    assert [a for a in down if isinstance(a, P.DelAddress)] == [
        P.DelAddress("ds", a) for a in ["250.3.4.1/8"] + six]


def test_ip6_table_goes_with_the_fan_and_only_a_dual_stack_fan_names_ip6():
    t = target(ds())
    [replace] = [a for a in P.plan_up(t, converge(t), None) if isinstance(a, P.NftReplace)]
    assert replace.script.startswith("table ip fangen-ds\ndelete table ip fangen-ds\n"
                                     "table ip6 fangen-ds\ndelete table ip6 fangen-ds\n")
    assert "table ip6 fangen-ds {" in replace.text
    # the fan loses its overlay6: its old ip6 table goes in the same transaction
    v4 = target(fan("ds", type="vxlan"))
    state = State("ds", nft_tables={"fangen-ds": replace.text})
    [again] = [a for a in P.plan_up(v4, converge(v4), state) if isinstance(a, P.NftReplace)]
    assert "delete table ip6 fangen-ds\n" in again.script and "{" not in \
        again.script.split("table ip fangen-ds {")[0]
    assert "ip6" not in [a for a in P.plan_up(v4, converge(v4), None)
                         if isinstance(a, P.NftReplace)][0].script
    # down: the ip6 table too, only where the state says there was one
    obs = P.Observed(nft_tables=frozenset({"fangen-ds"}))
    assert [a for a in P.plan_down(state, obs) if isinstance(a, P.NftDelete)] == \
        [P.NftDelete("fangen-ds", True)]
    plain = State("ds", nft_tables={"fangen-ds": "table ip fangen-ds {\n}\n"})
    assert [a for a in P.plan_down(plain, obs) if isinstance(a, P.NftDelete)] == \
        [P.NftDelete("fangen-ds", False)]


def test_doctor_checks_ipv6_forwarding_of_a_dual_stack_fan():
    from dataclasses import replace

    from tests.unit.test_doctor import healthy, verdicts

    facts = healthy()
    assert verdicts(facts)["forwarding"] == [("ok", "net.ipv4.ip_forward is 1")]
    dual = replace(facts, fan=replace(facts.fan, overlay6=ds().overlay6))
    assert verdicts(replace(dual, ipv6_forward="1"))["forwarding"][1] == \
        ("ok", "net.ipv6.conf.all.forwarding is 1 (overlay6)")
    assert verdicts(replace(dual, ipv6_forward="0"))["forwarding"][1] == \
        ("fail", "net.ipv6.conf.all.forwarding is 0: the host routes no IPv6 for its "
                 "containers (overlay6)")
