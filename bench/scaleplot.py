"""The pure parts of bench/scale.py: addresses, pair sampling, kernel-memory deltas, the plot.

Nothing here touches the network; the plot needs matplotlib (Debian's
python3-matplotlib, Agg backend) and is imported only when one is written.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

UNDERLAY = IPv4Network("172.16.0.0/24")
OVERLAY = IPv4Network("250.0.0.0/8")         # slices of /16 on a /24 underlay
# kernel memory that networking objects and processes hold and cannot give back; the
# reclaimable slab (dentries, inodes: builds on the same machine move it by MBs a second)
# is left out
MEMINFO_KERNEL = ("SUnreclaim", "Percpu", "VmallocUsed", "KernelStack", "PageTables")


def host_address(index: int) -> IPv4Address:
    """Underlay address of host ``index`` (1..250): 172.16.0.<index>."""
    if not 1 <= index <= 250:
        raise ValueError(f"host {index} is outside 1..250")
    return UNDERLAY.network_address + index


def fan_slice(index: int) -> IPv4Network:
    """The slice host ``index`` owns: 250.<index>.0.0/16."""
    return IPv4Network((int(OVERLAY.network_address) + (index << 16), 16))


def sample_pairs(hosts: list[int], count: int, rng: random.Random) -> list[tuple[int, int]]:
    """``count`` distinct ordered pairs (a, b) of different hosts (all of them when fewer)."""
    total = len(hosts) * (len(hosts) - 1)
    if count >= total:
        return [(a, b) for a in hosts for b in hosts if a != b]
    seen: set[tuple[int, int]] = set()
    while len(seen) < count:
        a, b = rng.sample(hosts, 2)
        seen.add((a, b))
    return sorted(seen)


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo -> {key: kB}."""
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0])
    return out


def kernel_kb(meminfo: dict[str, int], keys=MEMINFO_KERNEL) -> int:
    return sum(meminfo.get(k, 0) for k in keys)


def plot(rows: list[dict], path: str) -> None:
    """Four panels against N: objects per host, up time, memory per host, reachability."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), dpi=80)
    ax = axes[0][0]
    for kind in rows[0]["made"]:
        ax.plot(ns, [r["made"][kind] for r in rows], marker="o", label=kind)
    ax.plot(ns, [sum(r["made"].values()) for r in rows], marker="s", color="black",
            label="total")
    ax.set_title("kernel objects fangen made, per host")
    ax.set_ylabel("objects")
    ax.legend(fontsize=7, ncol=2)
    ax = axes[0][1]
    med = [r["up"]["median"] for r in rows]
    lo = [r["up"]["median"] - r["up"]["low"] for r in rows]
    hi = [r["up"]["high"] - r["up"]["median"] for r in rows]
    ax.errorbar(ns, med, yerr=[lo, hi], marker="o", capsize=4, label="median, min..max")
    ax.fill_between(ns, [r["up"]["q1"] for r in rows], [r["up"]["q3"] for r in rows],
                    alpha=0.3, label="IQR")
    if "cpu_median" in rows[0]["up"]:
        ax.plot(ns, [r["up"]["cpu_median"] for r in rows], marker="s",
                label="CPU time (user + sys), median")
    for r in rows:
        if "load" in r:
            ax.annotate(f"load {r['load'][0]:.1f}", (r["n"], 0), textcoords="offset points",
                        xytext=(0, 4), ha="center", fontsize=7)
    ax.set_title("one host's `fangen up` (wall time; load average)")
    ax.set_ylabel("seconds")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax = axes[1][0]
    ax.plot(ns, [r["mem"]["dnsmasq_pss_kb"] for r in rows], marker="o", label="dnsmasq PSS")
    ax.plot(ns, [r["mem"]["dnsmasq_rss_kb"] for r in rows], marker="o", label="dnsmasq RSS")
    ax.plot(ns, [r["mem"]["kernel_kb"] for r in rows], marker="o",
            label="kernel (unreclaimable, meminfo delta of the step / hosts)")
    ax.set_title("memory per host")
    ax.set_ylabel("KiB")
    ax.set_xlabel("hosts (N)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax = axes[1][1]
    ax.plot(ns, [r["reach"]["ok"] / r["reach"]["pairs"] * 100 for r in rows], marker="o",
            label="sampled container pairs answering, %")
    ax.set_title("reachability")
    ax.set_ylim(0, 105)
    ax.set_xlabel("hosts (N)")
    for r in rows:
        ax.annotate(f"{r['reach']['ok']}/{r['reach']['pairs']}", (r["n"], 100),
                    textcoords="offset points", xytext=(0, -14), ha="center", fontsize=7)
    ax.legend(fontsize=7, loc="lower left")
    for row in axes:
        for a in row:
            a.set_xscale("log")
            a.minorticks_off()
            a.set_xticks(ns)
            a.set_xticklabels([str(n) for n in ns])
            a.grid(alpha=0.3)
    fig.suptitle("fangen up on N simulated hosts (VXLAN fan 250.0.0.0/8 over 172.16.0.0/24, "
                 "upstream datapath)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
