"""The pure parts of the benchmarks (bench/stats.py, bench/scaleplot.py): no root, no network."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

import pytest

from bench import scaleplot
from bench.stats import busy_ticks, median_ci, parse_sizes, ratios, rotated, summary, whole
from fangen.fanmap import FanMap


def test_summary_median_extremes_and_quartiles():
    s = summary([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (s.n, s.median, s.low, s.high, s.q1, s.q3) == (5, 3.0, 1.0, 5.0, 2.0, 4.0)
    assert s.iqr == 2.0
    assert summary([7.0]).q1 == summary([7.0]).q3 == 7.0
    with pytest.raises(ValueError):
        summary([])


def test_every_path_leads_a_round_in_turn():
    order = ["fan", "l2", "routed"]
    firsts = [rotated(order, r)[0] for r in range(6)]
    assert firsts == ["fan", "l2", "routed", "fan", "l2", "routed"]
    assert sorted(rotated(order, 4)) == sorted(order)


def test_ratios_are_paired_by_round():
    assert ratios([2.0, 3.0], [1.0, 6.0]) == [2.0, 0.5]
    with pytest.raises(ValueError):
        ratios([1.0], [1.0, 2.0])


def test_median_interval_holds_the_median_and_narrows_with_more_rounds():
    rng = random.Random(7)
    few = [1.0 + rng.gauss(0, 0.1) for _ in range(9)]
    many = [1.0 + rng.gauss(0, 0.1) for _ in range(81)]
    lo_few, hi_few = median_ci(few)
    lo_many, hi_many = median_ci(many)
    assert lo_few <= sorted(few)[4] <= hi_few
    assert lo_many < 1.0 < hi_many
    assert hi_many - lo_many < (hi_few - lo_few) / 1.5
    assert median_ci(few) == (lo_few, hi_few)          # seeded: the same every time
    assert median_ci([2.0] * 5) == (2.0, 2.0)
    with pytest.raises(ValueError):
        median_ci([])
    with pytest.raises(ValueError):
        median_ci([1.0], level=1.5)


def test_busy_ticks_leave_out_idle_iowait_and_steal():
    text = ("cpu  100 2 30 5000 7 4 9 800 0 0\n"
            "cpu0 50 1 15 2500 3 2 4 400 0 0\n")
    assert busy_ticks(text) == 100 + 2 + 30 + 4 + 9
    with pytest.raises(ValueError):
        busy_ticks("intr 1 2 3\n")


def test_seconds_and_rounds_are_whole_and_bounded():
    import argparse
    seconds = whole(1, 3600)
    assert seconds("2") == 2
    for bad in ("0.5", "0", "-1", "x", "", "3601", "1e3"):
        with pytest.raises(argparse.ArgumentTypeError):
            seconds(bad)


def test_sizes_parse_sorted_and_bounded():
    assert parse_sizes("50,10, 200") == [10, 50, 200]
    for bad, needle in (("10,x", "comma-separated"), ("", "at least one"),
                        ("251", "outside 2..250"), ("1", "outside 2..250")):
        with pytest.raises(ValueError, match=needle):
            parse_sizes(bad)


def test_simulated_slices_are_the_ones_fangen_computes():
    fmap = FanMap(scaleplot.OVERLAY, scaleplot.UNDERLAY)
    for i in (1, 2, 77, 250):
        addr = scaleplot.host_address(i)
        assert addr in scaleplot.UNDERLAY
        assert fmap.slice_for_host(addr) == scaleplot.fan_slice(i)
        assert fmap.host_for_address(scaleplot.fan_slice(i).network_address + 9) == addr
    assert scaleplot.fan_slice(3) == IPv4Network("250.3.0.0/16")
    assert scaleplot.host_address(250) == IPv4Address("172.16.0.250")
    with pytest.raises(ValueError):
        scaleplot.host_address(251)


def test_pair_sample_is_distinct_and_crosses_hosts():
    hosts = list(range(1, 51))
    pairs = scaleplot.sample_pairs(hosts, 40, random.Random(1))
    assert len(pairs) == len(set(pairs)) == 40
    assert all(a != b and a in hosts and b in hosts for a, b in pairs)
    assert len(scaleplot.sample_pairs([1, 2, 3], 100, random.Random(1))) == 6


def test_meminfo_parse_and_kernel_sum():
    text = "MemTotal:       24684032 kB\nSUnreclaim:  1000 kB\nPercpu:  24 kB\nHugePages_Total: 0\n"
    info = scaleplot.parse_meminfo(text)
    assert info["MemTotal"] == 24684032 and info["HugePages_Total"] == 0
    assert scaleplot.kernel_kb(info) == 1024


def test_plot_writes_a_small_png(tmp_path):
    pytest.importorskip("matplotlib", reason="needs python3-matplotlib (scripts/setup.sh)")
    row = {"n": 10, "made": {"links": 2, "routes": 3},
           "up": {"median": 1.0, "low": 0.8, "high": 1.5, "q1": 0.9, "q3": 1.1},
           "mem": {"dnsmasq_pss_kb": 600, "dnsmasq_rss_kb": 2000, "kernel_kb": 300},
           "reach": {"ok": 20, "pairs": 20}}
    out = tmp_path / "scale.png"
    scaleplot.plot([row, dict(row, n=50)], str(out))
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) < 200_000
