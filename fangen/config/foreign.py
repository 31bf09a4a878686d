"""Names this host already uses for devices fangen did not make, as data (pure).

A fan's bridge or tunnel must never be a device that belongs to someone else: a
``10-fangen-*.network`` sorts before ``10-netplan-*``, so its ``[Match]`` would win
over the host's own configuration.  The shell (``fangen.hostnames``) reads the
host's netplan and networkd configuration and hands the result to validation as a
:class:`ForeignNames`, with an object that answers for the live host's interfaces
one name at a time (so generate's memo depends on the names validation asks
about, not on every veth that comes and goes); parsing that configuration text is
pure and lives here.

A literal name refuses exactly that name; a rule (a networkd ``[Match] Name=``
list, a netplan ``match: name:``) refuses every name it would match, with
networkd's semantics: shell globs (``*``, ``?``, ``[...]``), and a list of only
``!``-negated patterns matches every name none of them matches.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from fangen.errors import shown

NETPLAN_DEVICE_SECTIONS = ("ethernets", "bonds", "bridges", "vlans", "tunnels", "wifis",
                           "vrfs", "modems", "dummy-devices", "virtual-ethernets",
                           "nm-devices")


@dataclass(frozen=True)
class Rule:
    words: tuple          # networkd Name= words: globs, '!' negates
    where: str


@dataclass
class ForeignNames:
    literal: dict = field(default_factory=dict)     # name -> where it is used
    rules: list = field(default_factory=list)       # [Rule]
    # the live host's interfaces, asked one name at a time: an object whose
    # ``where(name)`` says where an interface of that name comes from, or None
    # (the shell's, fangen.hostnames.LiveInterfaces); checked after the literal names
    interfaces: object = None

    def add_name(self, name: str, where: str) -> None:
        self.literal.setdefault(name, where)

    def add_rule(self, words, where: str) -> None:
        words = tuple(w for w in words if w)
        if words:
            self.rules.append(Rule(words, where))

    def update(self, other: ForeignNames) -> None:
        for name, where in other.literal.items():
            self.add_name(name, where)
        self.rules.extend(other.rules)
        if self.interfaces is None:
            self.interfaces = other.interfaces

    def use_of(self, name: str) -> str | None:
        """Where ``name`` is already used or matched, or None."""
        if name in self.literal:
            return self.literal[name]
        if self.interfaces is not None:
            where = self.interfaces.where(name)
            if where is not None:
                return where
        for rule in self.rules:
            if networkd_matches(rule.words, name):
                return rule.where
        return None


def networkd_matches(words, name: str) -> bool:
    """systemd-networkd's test of a ``[Match] Name=`` list against an interface name."""
    matched = positive = False
    for word in words:
        negated = word.startswith("!")
        pattern = word[1:] if negated else word
        positive = positive or not negated
        if fnmatch.fnmatchcase(name, pattern):
            if negated:
                return False
            matched = True
    return matched if positive else True


# -- systemd .network / .netdev / .link --------------------------------------------------
def _ini_lines(text: str):
    """(line number, section, key, value) of a systemd unit-style file."""
    section = None
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if pending:
            line, start = pending + " " + line, start
        else:
            start = number
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if sep:
            yield start, section, key.strip(), value.strip()


def _words(value: str) -> list[str]:
    return [w.strip("\"'") for w in value.split()]


def from_networkd(text: str, display: str, suffix: str) -> ForeignNames:
    """Names a networkd file creates (.netdev), renames to (.link) or matches (.network)."""
    found = ForeignNames()
    match_words: list[str] = []
    match_line = 0
    for number, section, key, value in _ini_lines(text):
        if suffix == ".network" and section == "Match" and key == "Name":
            if not value:
                match_words = []                # an empty assignment resets the list
                continue
            match_words += _words(value)
            match_line = match_line or number
        elif (suffix == ".netdev" and section == "NetDev" and key == "Name") or \
                (suffix == ".link" and section == "Link" and key == "Name"):
            for word in _words(value):
                found.add_name(word, f"{display}:{number}: {section}.Name={shown(word)[1:-1]}")
    if match_words:
        shown_words = shown(" ".join(match_words))[1:-1]
        where = f"{display}:{match_line}: Match.Name={shown_words}"
        literal = [w for w in match_words if not _is_pattern(w)]
        if len(literal) == len(match_words):
            for word in literal:
                found.add_name(word, where)
        else:
            found.add_rule(match_words, where)
    return found


def _is_pattern(word: str) -> bool:
    return word.startswith("!") or any(c in word for c in "*?[")


# -- netplan YAML ------------------------------------------------------------------------
def from_netplan(data, positions, display: str) -> ForeignNames:
    """Device ids, ``set-name`` and ``match: name:`` of one netplan document."""
    found = ForeignNames()
    network = data.get("network") if isinstance(data, dict) else None
    if not isinstance(network, dict):
        return found
    for section in NETPLAN_DEVICE_SECTIONS:
        devices = network.get(section)
        if not isinstance(devices, dict):
            continue
        for ident, conf in devices.items():
            base = ("network", section, ident)
            found.add_name(str(ident), _where(positions, base, display, f"{section}.{ident}",
                                              key=True))
            if not isinstance(conf, dict):
                continue
            if isinstance(conf.get("set-name"), str):
                found.add_name(conf["set-name"], _where(positions, base + ("set-name",),
                                                        display, f"{ident}: set-name"))
            match = conf.get("match")
            if isinstance(match, dict) and isinstance(match.get("name"), str):
                found.add_rule((match["name"],), _where(
                    positions, base + ("match", "name"), display,
                    f"{ident}: match: name: {shown(match['name'])[1:-1]}"))
    return found


def _where(positions, path: tuple, display: str, what: str, key: bool = False) -> str:
    pos = positions.of(path, key=key) if positions is not None else None
    at = f"{display}:{pos.line}:{pos.col}" if pos is not None else display
    return f"{at}: {shown(what)[1:-1]}"
