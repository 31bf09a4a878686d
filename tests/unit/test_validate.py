"""Every check: exact file, line, column and message (netplan style)."""

import time

import pytest

from fangen.config import loader, validate
from fangen.errors import Report


def check(root):
    report = Report()
    loaded = loader.load(root.path, report)
    result = validate.validate(loaded, report)
    return report, result


def first_lines(report, severity="error"):
    return sorted(d.format().splitlines()[0] for d in report.items if d.severity == severity)


GOOD = """
network:
  version: 2
  fan:
    fan-250:
      overlay: 250.0.0.0/8
      underlay: 172.16.0.0/16
"""


def test_good_file_has_no_diagnostics(fanroot):
    fanroot.fan(GOOD)
    report, result = check(fanroot)
    assert report.items == []
    [fan] = result.fans
    assert (fan.name, fan.bridge, fan.tunnel, fan.type, fan.host_reserve) == \
        ("fan-250", "fan-250", "fan-250-tun", "ipip", 1)
    assert fan.vni == 16384000 and fan.port == 8472 and fan.datapath == "auto"


def one_error(fanroot, text):
    path = fanroot.fan(text)
    report, result = check(fanroot)
    lines = first_lines(report)
    assert len(lines) == 1, lines
    return lines[0].replace(path, "F"), result


@pytest.mark.parametrize("body, expected", [
    ("      bogus: 1\n",
     "F:7:7: Error in fan definition: fan-250: unknown key 'bogus' (expected one of: bridge, "
     "datapath, dhcp, dhcp6, dns, enabled, host-reserve, lease-time, mtu, nat, overlay, overlay6, "
     "tunnel, type, underlay, underlay-gateway, underlay-table, vrf, vxlan)"),
    ("      dhcp: maybe\n",
     "F:7:13: Error in fan definition: fan-250: 'dhcp' must be a boolean (true or false), "
     "not 'maybe'"),
    ("      type: gre\n",
     "F:7:13: Error in fan definition: fan-250: invalid type 'gre' (expected one of: ipip, vxlan)"),
    ("      mtu: 100\n",
     "F:7:12: Error in fan definition: fan-250: mtu 100 out of range: must be 576..9216"),
    ("      type: vxlan\n      vxlan: {vni: 0}\n",
     "F:8:20: Error in fan definition: fan-250: vni 0 out of range: must be 1..16777215"),
    ("      type: vxlan\n      vxlan: {vni: 16777216}\n",
     "F:8:20: Error in fan definition: fan-250: vni 16777216 out of range: must be 1..16777215"),
    ("      vxlan: {port: 4789}\n",
     "F:7:7: Error in fan definition: fan-250: 'vxlan' settings need 'type: vxlan'"),
    ("      host-reserve: 254\n",
     "F:7:21: Error in fan definition: fan-250: host-reserve 254 leaves no DHCP range in a /24 "
     "slice (254 usable addresses): use at most 253"),
    ("      bridge: a-very-long-bridge\n",
     "F:7:15: Error in fan definition: fan-250: invalid bridge name 'a-very-long-bridge': it "
     "is longer than 15 bytes"),
    ("      tunnel: fan-250\n",
     "F:7:15: Error in fan definition: fan-250: tunnel and bridge must have different names"),
])
def test_fan_key_errors(fanroot, body, expected):
    text = GOOD + body
    line, result = one_error(fanroot, text)
    assert line == expected
    assert result.fans == []


def test_host_bits_in_overlay(fanroot):
    line, _ = one_error(fanroot, GOOD.replace("250.0.0.0/8", "250.1.0.0/8"))
    assert line == ("F:5:16: Error in fan definition: fan-250: overlay 250.1.0.0/8 has host "
                    "bits set (did you mean 250.0.0.0/8?)")


def test_slice_prefix_above_30(fanroot):
    line, _ = one_error(fanroot, GOOD.replace("250.0.0.0/8", "250.0.0.0/16"))
    assert line == ("F:6:17: Error in fan definition: fan-250: slice prefix /32 (overlay /16 + "
                    "32 - underlay /16) is longer than /30: use a larger overlay or a smaller "
                    "underlay")


def test_slice_not_larger_than_overlay(fanroot):
    line, _ = one_error(fanroot, GOOD.replace("172.16.0.0/16", "172.16.0.0/32"))
    assert line.endswith("fan-250: underlay /32 leaves no host bits: the overlay cannot be "
                         "divided into slices")


def test_overlay_overlaps_underlay(fanroot):
    line, _ = one_error(fanroot, GOOD.replace("250.0.0.0/8", "172.0.0.0/8"))
    assert line == ("F:5:16: Error in fan definition: fan-250: overlay 172.0.0.0/8 overlaps "
                    "the underlay 172.16.0.0/16")


def test_missing_required_key(fanroot):
    line, _ = one_error(fanroot, GOOD.replace("      underlay: 172.16.0.0/16\n", ""))
    assert line == "F:4:5: Error in fan definition: fan-250: missing required key 'underlay'"


def test_bad_underlay(fanroot):
    line, _ = one_error(fanroot, GOOD.replace("172.16.0.0/16", "172.16.0.300/16"))
    assert line.endswith("fan-250: invalid underlay: '172.16.0.300' is not a valid IPv4 address")
    line, _ = one_error(fanroot, GOOD.replace("172.16.0.0/16", "172.16.3.4"))
    assert line.endswith("fan-250: invalid underlay: '172.16.3.4' needs a prefix length, "
                         "e.g. 172.16.3.4/16")


def test_version_must_be_2(fanroot):
    line, _ = one_error(fanroot, GOOD.replace("version: 2", "version: 3"))
    assert line == "F:2:12: Error in fan definition: 'version' must be 2, not 3"


def test_default_device_name_too_long(fanroot):
    line, _ = one_error(fanroot, GOOD.replace("fan-250:", "fan-250-abcdef:"))
    assert line == ("F:4:5: Error in fan definition: fan-250-abcdef: tunnel name "
                    "'fan-250-abcdef-tun' is longer than 15 bytes; set 'tunnel:' to a "
                    "shorter name")


def test_two_fans_overlapping_overlays_and_shared_bridge(fanroot):
    """A clash refuses both fans: which was meant is unknown, and a new definition must
    not take a working fan's devices (each stays frozen as it was, fan.d(5) SAFETY)."""
    path = fanroot.fan(GOOD + """\
    fan-b:
      overlay: 250.128.0.0/9
      underlay: 10.1.0.0/16
      bridge: fan-250
""")
    report, result = check(fanroot)
    assert [line.replace(path, "F") for line in first_lines(report)] == [
        "F:10:15: Error in fan definition: fan-b: bridge name 'fan-250' is also used by "
        "fan 'fan-250'",
        "F:4:5: Error in fan definition: fan-250: bridge name 'fan-250' is also used by fan "
        "'fan-b'",
        "F:5:16: Error in fan definition: fan-250: overlay 250.0.0.0/8 overlaps fan 'fan-b' "
        "(250.128.0.0/9)",
        "F:8:16: Error in fan definition: fan-b: overlay 250.128.0.0/9 overlaps fan 'fan-250' "
        "(250.0.0.0/8)",
    ]
    assert result.fans == [] and result.broken == {"fan-250", "fan-b"}
    assert result.frozen == []                       # each fan alone, not every fan


def test_one_broken_fan_does_not_stop_another(fanroot):
    fanroot.fan(GOOD + "      dhcp: maybe\n")
    fanroot.fan("""
network:
  version: 2
  fan:
    fan-240:
      overlay: 240.0.0.0/8
      underlay: 10.0.0.0/16
""", name="20-other.yaml")
    report, result = check(fanroot)
    assert len(report.errors) == 1
    assert [f.name for f in result.fans] == ["fan-240"]
    assert result.broken == {"fan-250"}


def test_yaml_syntax_error(fanroot):
    path = fanroot.fan("network:\n  version: 2\n  fan: [\n")
    report, _ = check(fanroot)
    [diag] = report.errors
    assert diag.format().splitlines()[0] == \
        f"{path}:4:1: Invalid YAML: did not find expected node content"


def test_duplicate_key(fanroot):
    path = fanroot.fan(GOOD + "      overlay: 251.0.0.0/8\n")
    report, _ = check(fanroot)
    assert first_lines(report) == [f"{path}:7:7: Invalid YAML: duplicate key 'overlay'"]


def test_caret_under_the_column(fanroot):
    fanroot.fan(GOOD + "      dhcp: maybe\n")
    report, _ = check(fanroot)
    _, source, caret = report.errors[0].format().splitlines()
    assert source == "      dhcp: maybe"
    assert caret == " " * 12 + "^"


def test_alias_bomb_is_refused_quickly(fanroot):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i-1}"] * 9) + "]")
    path = fanroot.fan("\n".join(lines) + "\n")
    start = time.monotonic()
    report, _ = check(fanroot)
    assert time.monotonic() - start < 5     # a guard against a hang, not a benchmark
    assert first_lines(report) == [f"{path}:5:15: Invalid YAML: document too large: more than "
                                   "20000 values (after expanding aliases)"]


def test_huge_file_is_refused(fanroot):
    path = fanroot.fan("# " + "x" * (2 << 20) + "\n")
    report, _ = check(fanroot)
    assert first_lines(report) == [f"{path}:1:1: Invalid YAML: file larger than 1048576 bytes; "
                                   "a fan definition is a few lines"]


def test_deep_nesting_is_refused(fanroot):
    path = fanroot.fan("network: " + "[" * 100 + "]" * 100 + "\n")
    report, _ = check(fanroot)
    [line] = first_lines(report)
    assert line.startswith(f"{path}:") and "nested deeper than 32 levels" in line


def test_world_readable_file_warns(fanroot):
    path = fanroot.fan(GOOD, mode=0o644)
    report, result = check(fanroot)
    assert report.errors == []
    assert first_lines(report, "warning") == [
        f"{path}:1:1: Warning: permissions are too open: fan configuration should not be "
        f"readable by others (chmod 600 {path})"]
    assert len(result.fans) == 1


def test_fan_in_plain_netplan_file_is_an_error(fanroot):
    path = fanroot.write("etc/netplan/01-netcfg.yaml", """
network:
  version: 2
  ethernets:
    eth0: {dhcp4: true}
  fan:
    fan-250: {overlay: 250.0.0.0/8, underlay: 172.16.0.0/16}
""")
    report, _ = check(fanroot)
    assert first_lines(report) == [
        f"{path}:5:3: Error in fan definition: 'fan' does not belong in a plain netplan file: "
        "netplan rejects it (unknown key 'fan') and its generator skips this whole file; move "
        "the fan stanza to a file in /etc/netplan/fan.d/"]


def test_layering_run_hides_etc_hides_lib(fanroot):
    fanroot.fan(GOOD, layer="lib")
    fanroot.fan(GOOD.replace("250.0.0.0/8", "251.0.0.0/8"), layer="etc")
    report, result = check(fanroot)
    assert str(result.fans[0].overlay) == "251.0.0.0/8"
    fanroot.fan(GOOD.replace("250.0.0.0/8", "252.0.0.0/8"), layer="run")
    report, result = check(fanroot)
    assert str(result.fans[0].overlay) == "252.0.0.0/8"


def test_later_file_overrides_keys_of_the_same_fan(fanroot):
    fanroot.fan(GOOD + "      host-reserve: 5\n", name="10-base.yaml")
    fanroot.fan("""
network:
  fan:
    fan-250:
      host-reserve: 9
      type: vxlan
""", name="20-override.yaml")
    report, result = check(fanroot)
    assert report.items == []
    [fan] = result.fans
    assert (fan.host_reserve, fan.type, str(fan.overlay)) == (9, "vxlan", "250.0.0.0/8")


def test_error_points_into_the_file_that_gave_the_value(fanroot):
    fanroot.fan(GOOD, name="10-base.yaml")
    path = fanroot.fan("network:\n  fan:\n    fan-250:\n      mtu: 50\n", name="20-mtu.yaml")
    report, _ = check(fanroot)
    assert first_lines(report) == [
        f"{path}:4:12: Error in fan definition: fan-250: mtu 50 out of range: must be 576..9216"]


def test_underlay_kinds(fanroot):
    from fangen.config.model import Underlay
    assert Underlay.parse("172.16.0.0/16").kind == "network"
    host = Underlay.parse("172.16.3.4/16")
    assert (host.kind, str(host.host), str(host.network)) == ("host", "172.16.3.4",
                                                              "172.16.0.0/16")
    assert (Underlay.parse("eth0/20").kind, Underlay.parse("eth0/20").prefixlen) == \
        ("interface", 20)
    assert (Underlay.parse("default").kind, Underlay.parse("default").prefixlen) == ("default", 16)
    assert Underlay.parse("default/24").prefixlen == 24


def test_host_reserve_zero_would_hand_out_the_bridge_address(fanroot):
    line, _ = one_error(fanroot, GOOD + "      host-reserve: 0\n")
    assert line == ("F:7:21: Error in fan definition: fan-250: host-reserve must be at least 1, "
                    "not 0")


@pytest.mark.parametrize("text, expected", [
    ("- a\n", "F:1:1: Error in fan definition: a fan.d file holds a mapping with 'network:' at "
              "the top, not a list"),
    ("hello\n", "F:1:1: Error in fan definition: a fan.d file holds a mapping with 'network:' "
                "at the top, not the text 'hello'"),
    ("network: 5\n", "F:1:10: Error in fan definition: 'network' must be a mapping, not the "
                     "value 5"),
    ("network:\n", "F:1:9: Error in fan definition: 'network' must be a mapping, not nothing "
                   "(null)"),
    ("x: 1\n", "F:1:1: Error in fan definition: unknown key 'x' (expected one of: network)"),
])
def test_wrong_top_level_shapes(fanroot, text, expected):
    line, result = one_error(fanroot, text)
    assert line == expected
    assert result.fans == []
