"""Small statistics for the benchmarks (pure: no I/O), so the summaries can be tested.

A benchmark on a shared 2-core machine needs the spread next to the median: one
round says little, and drift hits whatever runs at that moment.  ``summary``
gives median, min..max and the interquartile range; ``rotated`` gives the order
of the paths in round ``r`` so that no path always runs first or last.
"""

from __future__ import annotations

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
