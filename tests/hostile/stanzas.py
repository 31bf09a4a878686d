"""Random valid fan stanzas (seeded), and every file fangen renders for one.

``random_stanzas(seed, count)`` gives ``{name: stanza}`` that validation should accept
(prefix pairs, ranges, names, types, defaults left out at random); ``accepted`` runs
them through validation (one fan at a time, in memory) and returns the model fans.
``rendered(fan, root)`` is what fangen writes for a fan: ``generate``'s files, and what
the runtime's plan writes and loads for it once the underlay is known (networkd
drop-ins, dnsmasq's configuration, the nft script), so a renderer's change shows up
here without this module knowing it.
"""

from __future__ import annotations

import ipaddress
import random
import string

from fangen import generate
from fangen.config import loader, validate
from fangen.errors import Report

FIRST = string.ascii_letters + string.digits + "_"
REST = FIRST + ".-"
RESERVED = [ipaddress.IPv4Network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/3")]


def _name(rng: random.Random, taken: set, length: int) -> str:
    for attempt in range(10000):
        size = min(15, length + attempt // 20)          # short names run out: grow
        name = rng.choice(FIRST) + "".join(rng.choice(REST) for _ in range(size - 1))
        if not name.isdigit() and name not in ("lo", "all", "default") and name not in taken:
            taken.add(name)
            return name
    raise AssertionError("no free name")


def _network(rng: random.Random, prefix: int, avoid: list) -> ipaddress.IPv4Network:
    while True:
        value = rng.getrandbits(32) & ((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF)
        net = ipaddress.IPv4Network((value, prefix))
        if not any(net.overlaps(r) for r in RESERVED + avoid):
            return net


def random_stanza(rng: random.Random, taken: set) -> tuple[str, dict]:
    overlay_len = rng.randint(4, 20)
    underlay_len = rng.randint(max(overlay_len + 2, 8), min(overlay_len + 24, 31))
    slice_len = overlay_len + 32 - underlay_len
    overlay = _network(rng, overlay_len, [])
    underlay = _network(rng, underlay_len, [overlay])
    host = underlay.network_address + rng.randint(1, max(1, underlay.num_addresses - 2))
    kind = rng.choice(["network", "host", "interface", "default"])
    spec = {"network": f"{underlay}", "host": f"{host}/{underlay_len}",
            "interface": f"{_name(rng, set(), rng.randint(1, 12))}/{underlay_len}",
            "default": f"default/{underlay_len}"}[kind]
    usable = (1 << (32 - slice_len)) - 2
    name = _name(rng, taken, rng.randint(1, 11))
    stanza: dict = {"overlay": str(overlay), "underlay": spec}
    optional = {
        "type": rng.choice(["ipip", "vxlan"]),
        "dhcp": rng.random() < 0.8,
        "dns": rng.random() < 0.5,
        "host-reserve": rng.randint(1, max(1, min(usable - 1, 500))),
        "lease-time": rng.choice([120, 3600, 86400, 31536000, rng.randint(120, 31536000)]),
        "mtu": rng.randint(576, 9216),
        "nat": rng.random() < 0.5,
        "datapath": rng.choice(["auto", "kernel", "upstream"]),
        "enabled": True,
        "bridge": _name(rng, taken, rng.randint(1, 15)),
        "tunnel": _name(rng, taken, rng.randint(1, 15)),
    }
    for key, value in optional.items():
        if rng.random() < 0.6:
            stanza[key] = value
    if stanza.get("type") == "vxlan" and rng.random() < 0.7:
        stanza["vxlan"] = {k: v for k, v in (("vni", rng.randint(1, 0xFFFFFF)),
                                             ("port", rng.randint(1, 65535)))
                           if rng.random() < 0.7}
    if stanza.get("type") == "vxlan" and stanza.get("datapath") != "kernel":
        _dual_stack(random.Random(name), stanza, underlay_len)
    return name, stanza


def _dual_stack(rng: random.Random, stanza: dict, underlay_len: int) -> None:
    """Half the VXLAN fans get an overlay6 (a random fd00::/8 network whose slices are
    /64) and some dhcp6: from their own generator, so the other stanzas stay as they
    were before the dual-stack keys."""
    if rng.random() < 0.5:
        return
    length = 64 - (32 - underlay_len)
    value = (0xFD << 120) | (rng.getrandbits(120) & ~((1 << (128 - length)) - 1))
    stanza["overlay6"] = str(ipaddress.IPv6Network((value, length)))
    if rng.random() < 0.5:
        stanza["dhcp6"] = rng.random() < 0.7


def random_stanzas(seed: int, count: int) -> dict[str, dict]:
    rng = random.Random(seed)
    taken: set = set()
    found = {}
    devices: set = set()
    while len(found) < count:
        name, stanza = random_stanza(rng, taken)
        mine = {stanza.get("bridge", name), stanza.get("tunnel", f"{name}-tun")}
        taken.update(mine)
        if len(mine) < 2 or mine & devices:
            continue                                  # a clash: validation's business
        devices |= mine
        found[name] = stanza
    return found


def accepted(stanzas: dict[str, dict]) -> tuple[list, list]:
    """(model fans validation accepted, (name, messages) of those it refused)."""
    fans, refused = [], []
    for name, stanza in stanzas.items():
        report = Report()
        data = {"network": {"version": 2, "fan": {name: stanza}}}
        loaded = loader.Loaded(data, loader.Positions(), [], {name: []}, [])
        result = validate.validate(loaded, report)
        if report.errors:
            refused.append((name, [d.message for d in report.errors]))
        fans.extend(result.fans)
    return fans, refused


def host_address(fan) -> ipaddress.IPv4Address:
    """This host's underlay address for ``fan``: the static one, or one in its network."""
    if fan.underlay.host is not None:
        return fan.underlay.host
    net = fan.underlay.network or ipaddress.IPv4Network(
        (ipaddress.IPv4Address("10.0.0.0"), fan.underlay.prefixlen), strict=False)
    hosts = net.num_addresses
    return net.network_address + (1 if hosts <= 2 else min(7, hosts - 2))


def rendered(fan, root: str = "/") -> tuple[dict[str, str], str]:
    """({relative path: text} of every file, the nft script) fangen makes for ``fan``."""
    from fangen.runtime import plan as rplan
    from fangen.runtime.actions import NftReplace, WriteFile
    from fangen.runtime.underlay import Resolved
    from fangen.runtime.view import Observed

    files = dict(generate.render_fan(fan, {fan.name: ["/etc/netplan/fan.d/x.yaml"]}, root))
    address = host_address(fan)
    network = ipaddress.IPv4Network((address, fan.underlay.prefixlen), strict=False)
    target = rplan.Target(fan, Resolved("up0", 2, address, network, 1500), "upstream", root)
    script = ""
    for action in rplan.plan_up(target, Observed(), None):
        if isinstance(action, WriteFile):
            files[action.path] = action.text
        elif isinstance(action, NftReplace):
            script += action.script
    return files, script
