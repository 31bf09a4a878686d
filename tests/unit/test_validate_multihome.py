"""underlay-gateway and underlay-table (multi-homed hosts): exact diagnostics."""

from ipaddress import IPv4Address

import pytest

from tests.unit.test_validate import check, first_lines

HEAD = """
network:
  version: 2
  fan:
    fan-250:
      overlay: 250.0.0.0/8
      underlay: 10.20.0.0/16
"""


def one_error(fanroot, body):
    path = fanroot.fan(HEAD + body)
    report, result = check(fanroot)
    lines = first_lines(report)
    assert len(lines) == 1, lines
    assert result.fans == []
    return lines[0].replace(path, "F")


def test_gateway_and_table_build_the_model(fanroot):
    fanroot.fan(HEAD + "      underlay-gateway: 10.20.1.1\n      underlay-table: 100\n")
    report, result = check(fanroot)
    assert report.items == []
    [fan] = result.fans
    assert (fan.underlay_gateway, fan.underlay_table) == (IPv4Address("10.20.1.1"), 100)


def test_dhcp_gateway(fanroot):
    fanroot.fan(HEAD + "      underlay-gateway: dhcp\n      underlay-table: 4294967295\n")
    report, result = check(fanroot)
    assert report.items == []
    assert (result.fans[0].underlay_gateway, result.fans[0].underlay_table) == \
        ("dhcp", 4294967295)


def test_neither_key_is_the_default(fanroot):
    fanroot.fan(HEAD)
    _, result = check(fanroot)
    assert (result.fans[0].underlay_gateway, result.fans[0].underlay_table) == (None, None)


E = "F:{}: Error in fan definition: fan-250: "


@pytest.mark.parametrize("body, expected", [
    ("      underlay-gateway: 10.30.1.1\n      underlay-table: 100\n",
     E.format("7:25") + "underlay-gateway 10.30.1.1 is outside the underlay 10.20.0.0/16: "
     "the gateway must be a router on this host's underlay segment"),
    ("      underlay-gateway: 10.20.255.255\n      underlay-table: 100\n",
     E.format("7:25") + "underlay-gateway 10.20.255.255 is the underlay's broadcast address, "
     "not a router's"),
    ("      underlay-gateway: 10.20.0.0\n      underlay-table: 100\n",
     E.format("7:25") + "underlay-gateway 10.20.0.0 is the underlay's network address, "
     "not a router's"),
    ("      underlay-gateway: 10.20.1.300\n      underlay-table: 100\n",
     E.format("7:25") + "invalid underlay-gateway '10.20.1.300': expected an IPv4 address "
     "such as 10.20.1.1, or dhcp"),
    ("      underlay-gateway: \"dhcp\\n\"\n      underlay-table: 100\n",
     E.format("7:25") + "invalid underlay-gateway 'dhcp\\n': expected an IPv4 address "
     "such as 10.20.1.1, or dhcp"),
    ("      underlay-gateway: 10.20.1.1\n",
     E.format("7:7") + "underlay-gateway needs underlay-table: a routing table of the fan's "
     "own for its encapsulated traffic (e.g. underlay-table: 100)"),
    ("      underlay-table: 100\n",
     E.format("7:7") + "underlay-table needs underlay-gateway: the router (ADDR, or dhcp) "
     "that reaches the rest of the underlay"),
    ("      underlay-gateway: 10.20.1.1\n      underlay-table: 254\n",
     E.format("8:23") + "underlay-table 254 is reserved by the kernel (253 default, 254 main, "
     "255 local): choose another number, e.g. 100"),
    ("      underlay-gateway: 10.20.1.1\n      underlay-table: 0\n",
     E.format("8:23") + "underlay-table 0 out of range: must be 1..4294967295"),
    ("      underlay-gateway: 10.20.1.1\n      underlay-table: 4294967296\n",
     E.format("8:23") + "underlay-table 4294967296 out of range: must be 1..4294967295"),
    ("      underlay-gateway: 10.20.1.1\n      underlay-table: 100.0\n",
     E.format("8:23") + "'underlay-table' must be an integer, not 100.0"),
])
def test_bad_values(fanroot, body, expected):
    assert one_error(fanroot, body) == expected


def test_gateway_must_not_be_the_hosts_own_address(fanroot):
    path = fanroot.fan(HEAD.replace("10.20.0.0/16", "10.20.1.5/16") +
                       "      underlay-gateway: 10.20.1.5\n      underlay-table: 100\n")
    report, _ = check(fanroot)
    assert [line.replace(path, "F") for line in first_lines(report)] == [
        E.format("7:25") + "underlay-gateway 10.20.1.5 is this host's own underlay address: "
        "name the router"]


def test_default_underlay_refuses_a_gateway(fanroot):
    path = fanroot.fan(HEAD.replace("10.20.0.0/16", "default") +
                       "      underlay-gateway: dhcp\n      underlay-table: 100\n")
    report, _ = check(fanroot)
    assert [line.replace(path, "F") for line in first_lines(report)] == [
        E.format("7:25") + "underlay-gateway is for an underlay that is not reached by the "
        "default route, but 'underlay: default' follows it: name the underlay network "
        "(NET/LEN) instead"]


def test_two_fans_cannot_share_a_table(fanroot):
    path = fanroot.fan(HEAD + "      underlay-gateway: 10.20.1.1\n      underlay-table: 100\n"
                       "    other:\n      overlay: 251.0.0.0/8\n      underlay: eth1/16\n"
                       "      underlay-gateway: dhcp\n      underlay-table: 100\n")
    report, result = check(fanroot)
    assert [line.replace(path, "F") for line in first_lines(report)] == [
        "F:13:23: Error in fan definition: other: underlay-table 100 is also used by fan "
        "'fan-250': each fan needs a routing table of its own",
        E.format("8:23") + "underlay-table 100 is also used by fan 'other': each fan needs a "
        "routing table of its own"]
    assert result.fans == []


def test_vrf_builds_the_model(fanroot):
    fanroot.fan(HEAD + "      vrf: vrf-storage\n")
    report, result = check(fanroot)
    assert report.items == []
    assert result.fans[0].vrf == "vrf-storage"


@pytest.mark.parametrize("body, expected", [
    ("      vrf: vrf-storage\n      underlay-table: 100\n",
     E.format("8:7") + "underlay-table does not go with vrf: the VRF's own routing table "
     "routes the underlay; remove one of them"),
    ("      vrf: \"vrf storage\"\n",
     E.format("7:12") + "invalid vrf name 'vrf storage': use only letters, digits, '_', '.' "
     "and '-'"),
    ("      vrf: all\n",
     E.format("7:12") + "invalid vrf name 'all': 'all' is reserved"),
    ("      vrf: fan-250\n",
     E.format("7:12") + "vrf 'fan-250' is the name of the fan's own bridge or tunnel: name "
     "the VRF that holds the underlay interface"),
])
def test_bad_vrf(fanroot, body, expected):
    assert one_error(fanroot, body) == expected


def test_two_fans_over_one_vrf_need_distinct_rules(fanroot):
    other = ("    other:\n      overlay: 251.0.0.0/8\n      underlay: 10.20.0.0/16\n"
             "      vrf: vs\n")
    path = fanroot.fan(HEAD + "      vrf: vs\n" + other)
    report, result = check(fanroot)
    assert [line.replace(path, "F") for line in first_lines(report)] == [
        "F:11:12: Error in fan definition: other: vrf 'vs' carries fan 'fan-250' over the "
        "same underlay with the same encapsulation: the two fans would share one policy "
        "rule; make one of them 'type: vxlan'",
        E.format("7:12") + "vrf 'vs' carries fan 'other' over the same underlay with the "
        "same encapsulation: the two fans would share one policy rule; make one of "
        "them 'type: vxlan'"]
    fanroot.fan(HEAD + "      vrf: vs\n" + other.replace("vrf: vs", "vrf: vs\n      type: vxlan"))
    report, result = check(fanroot)
    assert report.items == [] and len(result.fans) == 2
