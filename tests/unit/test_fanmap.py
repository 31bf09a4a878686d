"""Fan address arithmetic: the kernel comment's examples and round-trip properties."""

import ipaddress
import random

import pytest

from fangen.fanmap import FanMap, FanMapError, Slice, resolve


def test_kernel_comment_example_slash8_over_slash16():
    fmap = FanMap.parse("99.0.0.0/8", "10.88.0.0/16")
    assert str(fmap.slice_for_host("10.88.3.4")) == "99.3.4.0/24"
    assert str(fmap.host_for_address("99.6.7.8")) == "10.88.6.7"


def test_kernel_comment_example_slash10_over_slash24():
    fmap = FanMap.parse("100.64.0.0/10", "10.224.220.0/24")
    assert fmap.slice_prefix == 18
    assert str(fmap.host_for_address("100.66.200.5")) == "10.224.220.11"


def test_brief_example():
    fmap = FanMap.parse("250.0.0.0/8", "172.16.0.0/16")
    assert str(fmap.slice_for_host("172.16.3.4")) == "250.3.4.0/24"


def test_slice_prefix_above_30_is_refused():
    with pytest.raises(FanMapError, match="longer than /30"):
        FanMap.parse("250.0.0.0/16", "172.16.0.0/16")


def test_underlay_slash32_is_refused():
    with pytest.raises(FanMapError):
        FanMap.parse("250.0.0.0/8", "172.16.3.4/32")


def test_resolve_overlay_and_underlay_and_neither():
    fmap = FanMap.parse("250.0.0.0/8", "172.16.0.0/16")
    assert resolve(fmap, "250.6.7.8") == {"address": "250.6.7.8", "underlay_host": "172.16.6.7",
                                          "slice": "250.6.7.0/24"}
    assert resolve(fmap, "172.16.3.4")["slice"] == "250.3.4.0/24"
    with pytest.raises(FanMapError, match="neither"):
        resolve(fmap, "10.0.0.1")


def test_slice_addresses():
    sl = Slice(ipaddress.IPv4Network("250.3.4.0/24"), host_reserve=1)
    assert str(sl.gateway) == "250.3.4.1"
    assert tuple(map(str, sl.dhcp_range)) == ("250.3.4.2", "250.3.4.254")
    assert Slice(ipaddress.IPv4Network("250.3.4.0/30"), host_reserve=1).dhcp_range[0] == \
        ipaddress.IPv4Address("250.3.4.2")
    assert Slice(ipaddress.IPv4Network("250.3.4.0/30"), host_reserve=2).dhcp_range is None


def _random_pairs(count, seed=20261121):
    rng = random.Random(seed)
    while count:
        overlay_len = rng.randint(1, 29)
        underlay_len = rng.randint(max(1, overlay_len + 2), 31)
        slice_len = overlay_len + 32 - underlay_len
        if slice_len > 30 or slice_len <= overlay_len:
            continue
        overlay = ipaddress.IPv4Network((rng.getrandbits(32), overlay_len), strict=False)
        underlay = ipaddress.IPv4Network((rng.getrandbits(32), underlay_len), strict=False)
        count -= 1
        yield rng, FanMap(overlay, underlay)


def test_round_trip_host_to_slice_to_host():
    for rng, fmap in _random_pairs(500):
        host = fmap.underlay.network_address + rng.randrange(fmap.underlay.num_addresses)
        sl = fmap.slice_for_host(host)
        assert sl.prefixlen == fmap.slice_prefix
        assert sl.subnet_of(fmap.overlay)
        # every address of the slice maps back to the host
        for addr in (sl.network_address, sl.broadcast_address,
                     sl.network_address + rng.randrange(sl.num_addresses)):
            assert fmap.host_for_address(addr) == host
            assert fmap.slice_for_address(addr) == sl


def test_kernel_formula_bit_for_bit():
    """host_for_address is exactly the kernel's expression on 32-bit integers."""
    for rng, fmap in _random_pairs(500, seed=7):
        addr = fmap.overlay.network_address + rng.randrange(fmap.overlay.num_addresses)
        olen, ulen = fmap.overlay.prefixlen, fmap.underlay.prefixlen
        omask = (0xFFFFFFFF << (32 - olen)) & 0xFFFFFFFF
        expected = int(fmap.underlay.network_address) | \
            ((int(addr) & ~omask & 0xFFFFFFFF) >> (32 - olen - (32 - ulen)))
        assert int(fmap.host_for_address(addr)) == expected


def test_slices_partition_the_overlay():
    fmap = FanMap.parse("10.0.0.0/20", "192.168.1.0/24")     # /28 slices, 256 hosts
    slices = {fmap.slice_for_host(h) for h in fmap.underlay}
    assert len(slices) == 256
    assert sum(s.num_addresses for s in slices) == fmap.overlay.num_addresses
