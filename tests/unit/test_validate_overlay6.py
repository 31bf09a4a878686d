"""Validation of the dual-stack keys (overlay6, dhcp6): the model, and what only two fans
can get wrong (tests/hostile/cases.py holds the one-fan refusals with exact positions)."""

import ipaddress

from tests.unit.test_validate import check, first_lines

TWO = """
network:
  version: 2
  fan:
    a:
      overlay: 250.0.0.0/8
      underlay: 172.16.0.0/16
      type: vxlan
      overlay6: fd5a:fa00::/48
      dhcp6: true
    b:
      overlay: 251.0.0.0/8
      underlay: 172.16.0.0/16
      type: vxlan
      vxlan: {port: 4789}
      overlay6: {overlay6}
"""


def test_model_carries_overlay6(fanroot):
    fanroot.fan(TWO.replace("{overlay6}", "fd5a:fb00::/48"))
    report, result = check(fanroot)
    assert first_lines(report) == []
    a, b = result.fans
    assert (a.overlay6, a.dhcp6, b.dhcp6) == (ipaddress.IPv6Network("fd5a:fa00::/48"), True, False)
    sl = a.slice6_for("172.16.3.4")
    assert (str(sl.network), str(sl.gateway)) == ("fd5a:fa00:0:304::/64", "fd5a:fa00:0:304::1")


def test_no_overlay6_is_ipv4_only(fanroot):
    fanroot.fan("network:\n  fan:\n    c: {overlay: 250.0.0.0/8, underlay: 172.16.3.4/16}\n")
    _, result = check(fanroot)
    [fan] = result.fans
    assert (fan.overlay6, fan.dhcp6, fan.static_slice6, fan.fanmap6()) == (None, False, None, None)


def test_overlapping_overlay6_refuses_both(fanroot):
    path = fanroot.fan(TWO.replace("{overlay6}", "fd5a:fa00:0:100::/56")
                       .replace("underlay: 172.16.0.0/16\n      type: vxlan\n      vxlan",
                                "underlay: 172.16.0.0/24\n      type: vxlan\n      vxlan"))
    report, result = check(fanroot)
    assert [line.replace(path, "F") for line in first_lines(report)] == [
        "F:15:17: Error in fan definition: b: overlay6 fd5a:fa00:0:100::/56 overlaps fan 'a' "
        "(fd5a:fa00::/48)",
        "F:8:17: Error in fan definition: a: overlay6 fd5a:fa00::/48 overlaps fan 'b' "
        "(fd5a:fa00:0:100::/56)"]
    assert result.fans == []
