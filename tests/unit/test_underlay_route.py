"""The pure part of fangen.runtime.underlay_route: which rule and routes a fan wants."""

from ipaddress import IPv4Address, IPv4Network

from fangen.config.model import Underlay, build
from fangen.runtime.underlay_route import IPPROTO_IPIP, IPPROTO_UDP, Route, Rule, wanted

ADDR = IPv4Address("10.20.1.5")
NET = IPv4Network("10.20.0.0/16")
SEG = IPv4Network("10.20.1.0/24")


def fan(**extra):
    data = {"overlay": "251.0.0.0/8", "underlay": "10.20.0.0/16",
            "underlay-gateway": "10.20.1.1", "underlay-table": 100, **extra}
    return build("storage", data)


def test_vxlan_fan_selects_its_udp_port():
    rules, routes = wanted(fan(type="vxlan", vxlan={"port": 4789}), 3, ADDR, NET, SEG,
                           IPv4Address("10.20.1.1"))
    assert rules == {Rule("10.20.0.0/16", IPPROTO_UDP, 4789, 100)}
    assert routes == {Route("10.20.1.0/24", 3, "10.20.1.5", 100),
                      Route("10.20.0.0/16", 3, "10.20.1.5", 100, "10.20.1.1")}
    assert [r.text() for r in sorted(rules)] == [
        "rule priority 32700 to 10.20.0.0/16 ipproto udp dport 4789 lookup 100"]


def test_ipip_fan_selects_ipip():
    rules, _ = wanted(fan(), 3, ADDR, NET, SEG, IPv4Address("10.20.1.1"))
    assert rules == {Rule("10.20.0.0/16", IPPROTO_IPIP, 0, 100)}


def test_unknown_dhcp_gateway_keeps_only_the_segment():
    _, routes = wanted(fan(**{"underlay-gateway": "dhcp"}), 3, ADDR, NET, SEG, None)
    assert routes == {Route("10.20.1.0/24", 3, "10.20.1.5", 100)}


def test_one_segment_underlay_needs_no_gateway_route():
    _, routes = wanted(fan(), 3, ADDR, NET, NET, IPv4Address("10.20.1.1"))
    assert routes == {Route("10.20.0.0/16", 3, "10.20.1.5", 100)}


def test_model_keeps_the_keys():
    f = fan(**{"underlay-gateway": "dhcp"})
    assert (f.underlay_gateway, f.underlay_table, f.underlay) == \
        ("dhcp", 100, Underlay.parse("10.20.0.0/16"))
