"""What a namespace holds, normalised for comparison: links, addresses, routes,
neighbours, FDB entries, nft rules, tc qdiscs and filters.

Used to prove ``fangen down`` leaves a host as it found it, that ``fangen up`` twice
duplicates nothing, and to count kernel objects per fan (bench/objects.py).
Lifetimes, counters, statistics, handles and interface indexes are left out, since
they change without anything being added or removed.
"""

from __future__ import annotations

import json
import re

from .ns import ip, sh


def _json(ns: str, *args: str) -> list:
    out = ip(ns, "-j", *args, check=False).stdout.strip()
    try:
        return json.loads(out) if out else []
    except ValueError:
        return []


def links(ns: str) -> set[tuple]:
    out = set()
    for link in _json(ns, "-d", "link", "show"):
        info = link.get("linkinfo", {})
        out.add((link["ifname"], info.get("info_kind") or link.get("link_type"),
                 link.get("master"), link.get("mtu"), "UP" in link.get("flags", [])))
    return out


def addresses(ns: str) -> set[tuple]:
    return {(link["ifname"], f"{a['local']}/{a['prefixlen']}")
            for link in _json(ns, "-4", "addr", "show")
            for a in link.get("addr_info", [])}


def routes(ns: str) -> set[tuple]:
    return {(r.get("dst"), r.get("dev"), r.get("gateway"), r.get("prefsrc"), r.get("protocol"),
             r.get("table", "main"), r.get("type", "unicast"), r.get("scope"))
            for r in _json(ns, "-4", "route", "show", "table", "all")}


def neighbours(ns: str) -> set[tuple]:
    return {(n.get("dst"), n.get("dev"), n.get("lladdr"))
            for n in _json(ns, "-4", "neigh", "show") if "PERMANENT" in n.get("state", [])}


def fdb(ns: str, dev: str | None = None) -> set[tuple]:
    args = ["bridge", "-n", ns, "-j", "fdb", "show"] + (["dev", dev] if dev else [])
    try:
        data = json.loads(sh(*args, check=False).stdout or "[]")
    except ValueError:
        data = []
    return {(e.get("mac"), e.get("ifname"), e.get("dst"), tuple(e.get("flags", [])),
             e.get("state")) for e in data}


def nft_rules(ns: str) -> list[str]:
    """``nft list ruleset`` without handles and counter values, one line per statement."""
    text = sh("ip", "netns", "exec", ns, "nft", "list", "ruleset", check=False).stdout
    lines = []
    for line in text.splitlines():
        line = re.sub(r"\s*# handle \d+", "", line)
        line = re.sub(r"counter packets \d+ bytes \d+", "counter", line).strip()
        if line:
            lines.append(line)
    return lines


def nft_rule_count(ns: str) -> int:
    """Rules (not tables, chains or braces) in the ruleset."""
    skip = ("table ", "chain ", "type ", "policy ", "}", "set ", "elements", "flags ")
    return sum(1 for line in nft_rules(ns) if not line.startswith(skip))


def tc(ns: str) -> set[tuple]:
    """(dev, what, text) for every qdisc and every filter on the clsact hooks."""
    out = set()
    for link in _json(ns, "link", "show"):
        dev = link["ifname"]
        for q in sh("tc", "-n", ns, "qdisc", "show", "dev", dev, check=False).stdout.splitlines():
            if "clsact" in q or "ingress" in q:
                out.add((dev, "qdisc", re.sub(r"\s+", " ", q.strip())))
        for hook in ("ingress", "egress"):
            text = sh("tc", "-n", ns, "filter", "show", "dev", dev, hook, check=False).stdout
            for f in text.splitlines():
                if " handle " in f:
                    f = re.sub(r" id \d+| tag [0-9a-f]+", "", f)
                    out.add((dev, hook, re.sub(r"\s+", " ", f.strip())))
    return out


def snapshot(ns: str) -> dict:
    """Everything ``fangen down`` must restore (neighbours/FDB excluded: learnt, not made)."""
    return {"links": links(ns), "addresses": addresses(ns), "routes": routes(ns),
            "nft": nft_rules(ns), "tc": tc(ns)}


def diff(before: dict, after: dict) -> dict:
    """{kind: {"added": [...], "removed": [...]}} for every kind that differs."""
    out = {}
    for kind in before:
        a, b = before[kind], after[kind]
        if isinstance(a, list):
            added = [x for x in b if x not in a]
            removed = [x for x in a if x not in b]
        else:
            added, removed = sorted(b - a, key=str), sorted(a - b, key=str)
        if added or removed:
            out[kind] = {"added": added, "removed": removed}
    return out


def count(ns: str) -> dict[str, int]:
    """Kernel objects in a namespace, per kind (bench/objects.py)."""
    return {
        "links": len(links(ns)),
        "addresses": len(addresses(ns)),
        "routes": len(routes(ns)),
        "neighbours": len(_json(ns, "-4", "neigh", "show")),
        "fdb": len(fdb(ns)),
        "tc filters": sum(1 for entry in tc(ns) if entry[1] != "qdisc"),
        "nft rules": nft_rule_count(ns),
    }
