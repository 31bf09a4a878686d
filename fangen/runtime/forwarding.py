"""Who else needs ``net.ipv4.ip_forward`` (or, for a dual-stack fan,
``net.ipv6.conf.all.forwarding``): the rule ``down`` follows.

``up`` turns IPv4 forwarding on when it is off and records the earlier value.
``down`` puts that value back only when fangen changed it *and* nothing else
needs forwarding:

* no other fan is up under the same root (the last one down restores it);
* no ruleset of someone else forwards or translates IPv4: a base chain with a
  ``forward`` hook or of type ``nat`` in an ``ip`` or ``inet`` table that is not
  one of fangen's ``fangen-*`` tables, or a chain named like Docker's
  (``DOCKER``, ``DOCKER-USER``, ...) in any table;
* no legacy iptables table is loaded (``/proc/net/ip_tables_names`` is not empty:
  an engine using iptables-legacy is invisible to nft).

When something else needs it, forwarding stays on and the state that recorded
the earlier value goes with the fan: fangen no longer claims it.  The parser is
pure (text of ``nft list chains`` in, reasons out); :func:`users` reads the host.

IPv6 follows the same rule with ``ip6`` and ``inet`` tables and
``/proc/net/ip6_tables_names``; ``up`` turns IPv6 forwarding on only for a fan with
``overlay6``, and ``down`` restores only a value fangen recorded.
"""

from __future__ import annotations

import os

from fangen.render.nft import TABLE_PREFIX

FAMILIES = ("ip", "inet")
FAMILIES6 = ("ip6", "inet")
ENGINE_CHAINS = ("DOCKER",)          # DOCKER, DOCKER-USER, DOCKER-ISOLATION-STAGE-1, ...


def users_from_chains(text: str, families: tuple = FAMILIES) -> list[str]:
    """Reasons (one per table) found in ``nft list chains`` output."""
    found: dict[str, str] = {}
    family = table = chain = ""
    for raw in text.splitlines():
        words = raw.split()
        if len(words) >= 3 and words[0] == "table" and words[-1] == "{":
            family, table, chain = words[1], words[2], ""
            continue
        if len(words) >= 2 and words[0] == "chain":
            chain = words[1]
            if table and not table.startswith(TABLE_PREFIX) and \
                    chain.startswith(ENGINE_CHAINS):
                found.setdefault(f"{family} {table}", f"chain {chain}")
            continue
        if not words or words[0] != "type" or family not in families or \
                table.startswith(TABLE_PREFIX):
            continue
        hook = words[words.index("hook") + 1] if "hook" in words[:-1] else ""
        kind = words[1] if len(words) > 1 else ""
        if hook == "forward" or kind == "nat":
            what = f"{kind} hook {hook}".rstrip()
            found.setdefault(f"{family} {table}", f"chain {chain} ({what})")
    return [f"nft table {key}, {why}" for key, why in sorted(found.items())]


def legacy_tables(proc: str = "/proc", names: str = "ip_tables_names") -> list[str]:
    try:
        with open(os.path.join(proc, "net", names)) as fh:
            return sorted(line.strip() for line in fh if line.strip())
    except OSError:
        return []


def users(host, family: int = 4) -> list[str]:
    """Why forwarding must stay on besides fangen's fans (empty: nothing else needs it);
    ``family`` 6: IPv6 forwarding."""
    six = family == 6
    reasons = users_from_chains(host.nft.chains(), FAMILIES6 if six else FAMILIES)
    tables = legacy_tables(host.proc, "ip6_tables_names" if six else "ip_tables_names")
    if tables:
        reasons.append(f"{'ip6tables' if six else 'iptables'}-legacy tables "
                       f"{', '.join(tables)}")
    return reasons
