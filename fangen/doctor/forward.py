"""Would the forward hook drop the fan's traffic?  A small evaluator over ``nft -j list
ruleset``.  Pure.

Every base chain on the ip (or inet) forward hook sees a forwarded packet, and a drop in
any of them wins, whichever table it is in: Docker's iptables rules (iptables-nft puts
them in ``table ip filter``) as much as a firewall's.  For a fan the packets that matter
are a new connection from the tunnel into the bridge (IPIP, routed), from the bridge
into the bridge (VXLAN: bridged traffic passes the ip hooks when br_netfilter's
bridge-nf-call-iptables is 1, with the bridge as both interfaces) and from the bridge
out to the underlay (NAT to the outside).

The evaluator knows interface names, ``ct state``, jumps, gotos, returns and the
verdicts; a rule that matches anything else (addresses, ports, xt matches) is taken as
not matching this generic packet, so only rules about the interfaces decide.
"""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("ip", "inet")
MAX_DEPTH = 16


@dataclass(frozen=True)
class Packet:
    iifname: str
    oifname: str
    ct_state: str = "new"


@dataclass(frozen=True)
class Verdict:
    table: str                   # "ip filter"
    chain: str
    accept: bool
    why: str                     # "policy drop", "rule 4: iifname fan250 oifname fan250 drop"


def index(ruleset) -> tuple[dict, dict]:
    """({(family, table, chain): chain object}, {(family, table, chain): [rule, ...]})."""
    items = ruleset.get("nftables", []) if isinstance(ruleset, dict) else (ruleset or [])
    chains, rules = {}, {}
    for item in items:
        if "chain" in item:
            c = item["chain"]
            chains[(c.get("family"), c.get("table"), c.get("name"))] = c
        elif "rule" in item:
            r = item["rule"]
            rules.setdefault((r.get("family"), r.get("table"), r.get("chain")), []).append(r)
    return chains, rules


def forward_verdicts(ruleset, pkt: Packet, skip_tables=()) -> list[Verdict]:
    """One verdict per base chain on the forward hook (tables in ``skip_tables`` left out)."""
    chains, rules = index(ruleset)
    out = []
    for key, chain in sorted(chains.items(), key=lambda kv: (kv[1].get("prio", 0), kv[0])):
        family, table, name = key
        if family not in FAMILIES or chain.get("hook") != "forward" or table in skip_tables:
            continue
        result = _run_chain(key, rules, pkt, 0)
        if result is None or result[0] in ("return", "continue"):
            accept = chain.get("policy", "accept") == "accept"
            why = f"policy {chain.get('policy', 'accept')}"
        else:
            accept, why = result[0] == "accept", result[1]
        out.append(Verdict(f"{family} {table}", name, accept, why))
    return out


def _run_chain(key, rules, pkt: Packet, depth: int):
    """("accept" | "drop" | "return", why) or None when the chain ends without a verdict."""
    if depth > MAX_DEPTH:
        return None
    family, table, _ = key
    for number, rule in enumerate(rules.get(key, []), 1):
        matched, verdict = _rule(rule.get("expr") or [], pkt)
        if not matched or verdict is None:
            continue
        kind, target = verdict
        why = f"chain {key[2]} rule {number}: {_describe(rule.get('expr') or [])}"
        if kind in ("accept", "drop"):
            return kind, why
        if kind == "return":
            return "return", why
        sub = _run_chain((family, table, target), rules, pkt, depth + 1)
        if kind == "goto":
            return sub if sub is not None and sub[0] != "return" else ("return", why)
        if sub is not None and sub[0] != "return":
            return sub
    return None


def _rule(exprs: list, pkt: Packet):
    """(every match holds for pkt, (verdict, jump target) or None)."""
    verdict = None
    for expr in exprs:
        if "match" in expr:
            if not _match(expr["match"], pkt):
                return False, None
        elif "counter" in expr or "log" in expr or "comment" in expr:
            continue
        elif "accept" in expr:
            verdict = ("accept", None)
        elif "drop" in expr or "reject" in expr:
            verdict = ("drop", None)
        elif "return" in expr:
            verdict = ("return", None)
        elif "jump" in expr or "goto" in expr:
            kind = "jump" if "jump" in expr else "goto"
            verdict = (kind, (expr[kind] or {}).get("target"))
        else:
            return False, None               # xt, limit, set lookups...: not this packet
    return True, verdict


def _match(m: dict, pkt: Packet) -> bool:
    left, right, op = m.get("left") or {}, m.get("right"), m.get("op", "==")
    meta = left.get("meta", {}).get("key") if isinstance(left, dict) else None
    if meta in ("iifname", "oifname"):
        value = pkt.iifname if meta == "iifname" else pkt.oifname
        hit = any(_name_matches(value, r) for r in _values(right))
        return hit if op in ("==", "in") else (not hit if op == "!=" else False)
    ct = left.get("ct", {}).get("key") if isinstance(left, dict) else None
    if ct == "state":
        states = set()
        for r in _values(right):
            states.update(str(r).split(","))
        hit = pkt.ct_state in {s.strip() for s in states}
        return hit if op in ("==", "in") else (not hit if op == "!=" else False)
    return False


def _values(right) -> list:
    if isinstance(right, dict) and "set" in right:
        return list(right["set"])
    if isinstance(right, list):
        return right
    return [right]


def _name_matches(name: str, pattern) -> bool:
    if not isinstance(pattern, str):
        return False
    if pattern.endswith("*") and not pattern.endswith("\\*"):
        return name.startswith(pattern[:-1])
    return name == pattern.replace("\\*", "*")


def _describe(exprs: list) -> str:
    parts = []
    for expr in exprs:
        if "match" in expr:
            m = expr["match"]
            left = m.get("left") or {}
            key = (left.get("meta") or left.get("ct") or {}).get("key", "?")
            key = "ct state" if "ct" in left else key
            op = "" if m.get("op") in ("==", "in") else f"{m.get('op')} "
            parts.append(f"{key} {op}{','.join(str(v) for v in _values(m.get('right')))}")
        for word in ("accept", "drop", "reject", "return"):
            if word in expr:
                parts.append(word)
        for word in ("jump", "goto"):
            if word in expr:
                parts.append(f"{word} {(expr[word] or {}).get('target')}")
    return " ".join(parts)
