"""The pure parts of bench/footprint.py: no root, no network."""

from __future__ import annotations

import yaml

from bench import footprint

STATUS = """Name:\tpython3
VmHWM:\t   14000 kB
VmRSS:\t   13244 kB
Threads:\t1
"""
ROLLUP = """55d0c0a00000-7ffd5c5f9000 ---p 00000000 00:00 0                      [rollup]
Rss:               13244 kB
Pss:                7190 kB
Pss_Dirty:          6000 kB
Private_Clean:       708 kB
Private_Dirty:      6000 kB
"""


def test_memory_from_status_and_smaps_rollup():
    assert footprint.memory(STATUS, ROLLUP) == {"rss": 13244, "pss": 7190, "private": 6708}
    assert footprint.memory("", "") == {"rss": 0, "pss": 0, "private": 0}


def test_cpu_ticks_sum_utime_stime_and_reaped_children():
    # a command name with spaces and parentheses must not shift the fields
    stat = "42 (py (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 5 2 20 0 1 0 99 1000 300"
    assert footprint.cpu_ticks(stat) == 7 + 3 + 5 + 2


def test_per_extra_fan_and_spread():
    assert footprint.per_extra_fan({1: 13.0, 2: 13.5, 4: 14.5}) == 0.5
    assert footprint.spread([3.0, 1.0, 2.0]) == "2.0 [1.0..3.0]"
    assert footprint.spread([2048.0], " MB", 1 / 1024) == "2.0 MB [2.0..2.0]"


def test_the_fans_are_valid_and_apart():
    data = yaml.safe_load(footprint.fan_yaml(4))
    fans = data["network"]["fan"]
    assert sorted(fans) == footprint.FANS
    assert len({f["overlay"] for f in fans.values()}) == 4
    assert len({f["vxlan"]["port"] for f in fans.values()}) == 4
