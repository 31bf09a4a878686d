"""The dual-stack fan's IPv6 arithmetic (fangen.fanmap.FanMap6) and `fangen map` over it."""

import ipaddress
import json
import random

import pytest

from fangen.fanmap import FanMap, FanMap6, FanMapError, Slice6, resolve
from tests.unit.test_cli import fangen

M4 = FanMap.parse("250.0.0.0/8", "172.16.0.0/16")
M6 = FanMap6.parse("fd5a:fa00::/48", "172.16.0.0/16")


def test_slice_is_overlay6_followed_by_the_host_bits():
    assert str(M6.slice_for_host("172.16.3.4")) == "fd5a:fa00:0:304::/64"
    assert str(M6.slice_for_host("172.16.255.254")) == "fd5a:fa00:0:fffe::/64"
    assert Slice6(M6.slice_for_host("172.16.3.4")).gateway == \
        ipaddress.IPv6Address("fd5a:fa00:0:304::1")


def test_address_maps_back_to_its_host():
    assert str(M6.host_for_address("fd5a:fa00:0:607::8")) == "172.16.6.7"
    assert str(M6.host_for_address("fd5a:fa00:0:607:ffff:ffff:ffff:ffff")) == "172.16.6.7"
    assert str(M6.slice_for_address("fd5a:fa00:0:607::8")) == "fd5a:fa00:0:607::/64"


@pytest.mark.parametrize("overlay6, underlay", [
    ("fd5a:fa00::/48", "172.16.0.0/16"), ("2001:db8:ab00::/40", "10.0.0.0/8"),
    ("fd00:1:2::/56", "10.224.220.0/24"), ("fd00::/32", "0.0.0.0/0"),
])
def test_round_trip_for_random_hosts(overlay6, underlay):
    m = FanMap6.parse(overlay6, underlay)
    rng = random.Random(14)
    net = m.underlay
    for _ in range(200):
        host = net.network_address + rng.randrange(net.num_addresses)
        sl = m.slice_for_host(host)
        assert sl.prefixlen == 64 and sl.subnet_of(m.overlay)
        inside = sl.network_address + rng.getrandbits(64)
        assert m.host_for_address(inside) == host


@pytest.mark.parametrize("overlay6, underlay, message", [
    ("fd5a:fa00::/40", "172.16.0.0/16",
     "IPv6 slice prefix /56 (overlay6 /40 + 32 - underlay /16) is not /64: use overlay6 /48"),
    ("fd5a:fa00::/56", "172.16.0.0/16",
     "IPv6 slice prefix /72 (overlay6 /56 + 32 - underlay /16) is not /64: use overlay6 /48"),
])
def test_only_64_slices(overlay6, underlay, message):
    with pytest.raises(FanMapError) as exc:
        FanMap6.parse(overlay6, underlay)
    assert str(exc.value) == message


def test_outside_addresses_are_refused():
    with pytest.raises(FanMapError, match="not in the overlay6"):
        M6.host_for_address("fd5b::1")
    with pytest.raises(FanMapError, match="not in the underlay"):
        M6.slice_for_host("10.0.0.1")


def test_resolve_gains_slice6():
    assert resolve(M4, "250.6.7.8", M6) == {
        "address": "250.6.7.8", "underlay_host": "172.16.6.7", "slice": "250.6.7.0/24",
        "slice6": "fd5a:fa00:0:607::/64"}
    assert resolve(M4, "fd5a:fa00:0:607::8", M6)["underlay_host"] == "172.16.6.7"
    assert "slice6" not in resolve(M4, "250.6.7.8")
    with pytest.raises(FanMapError, match="has no overlay6"):
        resolve(M4, "fd5a:fa00:0:607::8")


DS = """network:
  version: 2
  fan:
    ds:
      overlay: 250.0.0.0/8
      underlay: 172.16.3.4/16
      type: vxlan
      overlay6: fd5a:fa00::/48
"""


@pytest.mark.parametrize("args, out", [
    (["--overlay", "250.0.0.0/8", "--underlay", "172.16.0.0/16", "--overlay6", "fd5a:fa00::/48",
      "172.16.3.4"],
     "underlay host 172.16.3.4 owns slice 250.3.4.0/24 and IPv6 slice fd5a:fa00:0:304::/64\n"),
    (["--overlay", "250.0.0.0/8", "--underlay", "172.16.0.0/16", "--overlay6", "fd5a:fa00::/48",
      "fd5a:fa00:0:607::8"],
     "fd5a:fa00:0:607::8 is in IPv6 slice fd5a:fa00:0:607::/64 owned by underlay host "
     "172.16.6.7 (slice 250.6.7.0/24)\n"),
    (["--overlay", "250.0.0.0/8", "--underlay", "172.16.0.0/16", "--overlay6", "fd5a:fa00::/48",
      "250.6.7.8"],
     "250.6.7.8 is in slice 250.6.7.0/24 owned by underlay host 172.16.6.7 and IPv6 slice "
     "fd5a:fa00:0:607::/64\n"),
])
def test_map_cli(args, out):
    res = fangen("map", *args)
    assert (res.returncode, res.stdout, res.stderr) == (0, out, "")


def test_map_cli_with_a_dual_stack_fan(fanroot):
    fanroot.fan(DS)
    res = fangen("map", "--fan", "ds", "--root-dir", fanroot.path, "fd5a:fa00:0:909::1", "--json")
    assert (res.returncode, json.loads(res.stdout)) == (0, {
        "address": "fd5a:fa00:0:909::1", "underlay_host": "172.16.9.9",
        "slice": "250.9.9.0/24", "slice6": "fd5a:fa00:0:909::/64"})


@pytest.mark.parametrize("args, err", [
    (["--overlay", "250.0.0.0/8", "--underlay", "172.16.0.0/16", "fd5a::1"],
     "fangen: fd5a::1 is an IPv6 address, but the fan has no overlay6\n"),
    (["--overlay", "250.0.0.0/8", "--underlay", "172.16.0.0/16", "--overlay6", "fd5a:fa00::/40",
      "250.1.1.1"],
     "fangen: IPv6 slice prefix /56 (overlay6 /40 + 32 - underlay /16) is not /64: use "
     "overlay6 /48\n"),
    (["--overlay", "250.0.0.0/8", "--underlay", "172.16.0.0/16", "--overlay6", "fd5a:fa00::/48",
      "fd5b::1"], "fangen: fd5b::1 is not in the overlay6 fd5a:fa00::/48\n"),
    (["--overlay", "250.0.0.0/8", "--underlay", "172.16.0.0/16", "--overlay6", "x" * 10000,
      "250.1.1.1"], None),
])
def test_map_cli_errors(args, err):
    res = fangen("map", *args)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    if err is not None:
        assert res.stderr == err
    else:
        assert res.stderr.startswith("fangen: invalid overlay6 'xxx") and len(res.stderr) < 400


def test_validate_names_the_ipv6_overlay(fanroot):
    fanroot.fan(DS)
    res = fangen("validate", "--root-dir", fanroot.path)
    assert (res.returncode, res.stdout) == \
        (0, "OK: ds (vxlan, 250.0.0.0/8 + fd5a:fa00::/48 over 172.16.3.4/16)\n")
