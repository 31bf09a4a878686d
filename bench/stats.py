"""Small statistics for the benchmarks (pure: no I/O), so the summaries can be tested.

A benchmark on a shared 2-core machine needs the spread next to the median: one
round says little, and drift hits whatever runs at that moment.  ``summary``
gives median, min..max and the interquartile range; ``rotated`` gives the order
of the paths in round ``r`` so that no path always runs first or last.
"""

from __future__ import annotations

import argparse
import random
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    low: float
    high: float
    q1: float
    q3: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def text(self, fmt: str = "6.2f") -> str:
        """``median  [min..max]  IQR q1..q3`` in one fixed-width line."""
        return (f"{self.median:{fmt}}  [{self.low:{fmt}} .. {self.high:{fmt}}]  "
                f"IQR {self.q1:{fmt}} .. {self.q3:{fmt}}")


def summary(values: list[float]) -> Summary:
    """Median, extremes and quartiles (inclusive method: the quartiles of 1..5 are 2 and 4)."""
    if not values:
        raise ValueError("no values to summarise")
    vals = sorted(values)
    if len(vals) == 1:
        q1 = q3 = vals[0]
    else:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    return Summary(len(vals), statistics.median(vals), vals[0], vals[-1], q1, q3)


def rotated(items: list, round_index: int) -> list:
    """``items`` rotated left by ``round_index`` (round 0: as given)."""
    if not items:
        return []
    k = round_index % len(items)
    return items[k:] + items[:k]


def ratios(num: list[float], den: list[float]) -> list[float]:
    """Per-round ratios of two paired series (round i of one over round i of the other)."""
    if len(num) != len(den):
        raise ValueError(f"{len(num)} vs {len(den)} rounds")
    return [a / b for a, b in zip(num, den) if b]


def median_ci(values: list[float], level: float = 0.95, resamples: int = 4000,
              seed: int = 1) -> tuple[float, float]:
    """A percentile-bootstrap confidence interval for the median of ``values``.

    Resamples with replacement ``resamples`` times (a fixed seed: the same values give the
    same interval) and returns the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles
    of the resampled medians.  With per-round ratios this says how far the median ratio
    can be trusted: a claim "at least 0.97x" needs the low end of the interval at 0.97.
    """
    if not values:
        raise ValueError("no values to summarise")
    if not 0 < level < 1:
        raise ValueError(f"level {level}: give a fraction between 0 and 1")
    rng = random.Random(seed)
    n = len(values)
    meds = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    lo = meds[int((1 - level) / 2 * (resamples - 1))]
    hi = meds[int((1 + level) / 2 * (resamples - 1))]
    return lo, hi


def busy_ticks(proc_stat: str) -> int:
    """The whole machine's busy time in clock ticks from /proc/stat's text: user, nice,
    system, irq and softirq of the ``cpu`` line (guest time is inside user).  Idle, iowait
    and steal -- time the hypervisor gave to someone else -- are left out."""
    for line in proc_stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[1:8])
            return user + nice + system + irq + softirq
    raise ValueError("no cpu line in /proc/stat")


def whole(low: int, high: int):
    """An argparse ``type`` for a whole number in low..high, with a message that says so.
    ``--seconds`` needs it: iperf3 reads ``-t`` as an integer, so "0.5" would become 0,
    which iperf3 takes as "run until stopped"; ``--rounds 0`` would leave nothing to
    summarise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value
    return parse


def parse_sizes(text: str) -> list[int]:
    """``"10,50,200"`` -> [10, 50, 200]: positive, at most 254 (a /24 underlay), ascending."""
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"--sizes {text!r}: give comma-separated whole numbers, "
                         "e.g. 10,50,200") from None
    if not sizes:
        raise ValueError("--sizes: give at least one size, e.g. 10,50")
    bad = [n for n in sizes if not 2 <= n <= 250]
    if bad:
        raise ValueError(f"--sizes: {bad[0]} is outside 2..250 (hosts on a /24 underlay)")
    return sizes
