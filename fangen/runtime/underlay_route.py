"""Multi-homed hosts: the fan's encapsulated traffic leaves by its own underlay.

With ``vrf: NAME`` (a VRF netplan or networkd defines, holding the underlay interface)
the same rule looks up the VRF's table and fangen adds no route; a VXLAN fan then needs
net.ipv4.udp_l3mdev_accept=1 (see _l3mdev_wanted).

A fan with ``underlay-gateway`` and ``underlay-table`` (fan.d(5)) gets, in the
fan's own routing table, the route to the whole underlay network by the gateway
and the underlay interface's own segment on-link, and one policy rule that sends
the fan's encapsulated packets towards the underlay network to that table:

    ip rule add priority 32700 to UNDERLAY ipproto udp dport PORT lookup TABLE proto 250
    ip route add SEGMENT dev IF scope link src ADDR table TABLE proto 250
    ip route add UNDERLAY via GATEWAY dev IF src ADDR table TABLE proto 250

(``ipproto ipencap``, IPIP, instead of ``udp dport PORT`` for an IPIP fan.)  The
selector is the outer packet's own (protocol, and the fan's UDP port for VXLAN),
the one thing every datapath sets in the route lookup of an encapsulated packet:
the upstream datapath's collect-metadata devices look the route up without a
source address, so a ``from ADDR`` rule would never match them.  Containers'
own traffic, NAT and the host's other traffic do not carry the selector and keep
the main table.  Priority 32700 is just before the main table's rule: any rule
the administrator set comes first.

networkd cannot express this without touching files fangen does not own: a
``[Route]`` is always on the link of its ``.network`` (the underlay's, which
netplan or the administrator owns, drop-ins included), and a DHCP gateway is only
known once the lease is there.  So the runtime sets all three objects, marks them
with protocol 250 (RTPROT_FANGEN) in the fan's own table, puts back what someone
removed (a restart of systemd-networkd 252 drops the underlay's address for a moment, and
the kernel takes the routes on it along; tests/e2e/test_multihome_networkd.py),
follows a DHCP gateway when it changes, and ``down`` removes exactly them.
``ROOT/run/fangen/NAME/underlay-route.json`` records the table, so ``down``
works after the stanza is gone.

``underlay-gateway: dhcp``: the gateway of the main table's default route on the
underlay interface (a DHCP client puts it there), else the ROUTER= of networkd's
lease file for the interface.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from fangen.config.model import GATEWAY_DHCP, Fan
from fangen.errors import FangenError
from fangen.runtime.view import UDP_L3MDEV_ACCEPT
from fangen.render import names

RTPROT_FANGEN = 250            # fangen's rules and routes (iproute2's rt_protos leaves it free)
RULE_PRIORITY = 32700          # before the main table's rule (32766), after anything else
RECORD = "underlay-route.json"
AF_INET = 2
IPPROTO_IPIP = 4
IPPROTO_UDP = 17
RT_SCOPE_LINK = 253
MAIN_TABLE = 254
LEASES = "run/systemd/netif/leases"


@dataclass(frozen=True, order=True)
class Rule:
    dst: str                   # the underlay network, NET/LEN
    ipproto: int
    dport: int                 # 0: none (IPIP)
    table: int
    priority: int = RULE_PRIORITY

    def text(self) -> str:
        sel = "ipproto ipencap" if self.ipproto == IPPROTO_IPIP else \
            f"ipproto udp dport {self.dport}"
        return f"rule priority {self.priority} to {self.dst} {sel} lookup {self.table}"


@dataclass(frozen=True, order=True)
class Route:
    dst: str                   # NET/LEN
    oif: int
    src: str
    table: int
    gateway: str = ""          # "": on-link (scope link)

    def text(self) -> str:
        via = f"via {self.gateway} " if self.gateway else ""
        scope = "" if self.gateway else "scope link "
        return f"route {self.dst} {via}dev #{self.oif} {scope}src {self.src} table {self.table}"


def wanted(fan: Fan, ifindex: int, address: IPv4Address, network: IPv4Network,
           segment: IPv4Network, gateway: IPv4Address | None,
           table: int | None = None) -> tuple[set, set]:
    """Pure: the rules and routes for ``fan`` whose underlay is ``address`` (in
    ``segment``, on ``ifindex``) in ``network``, reached beyond the segment by
    ``gateway`` (None: not known yet, so only the segment route), in ``table``
    (default: the fan's underlay-table)."""
    table = table if table is not None else fan.underlay_table
    if fan.type == "vxlan":
        rule = Rule(str(network), IPPROTO_UDP, fan.port, table)
    else:
        rule = Rule(str(network), IPPROTO_IPIP, 0, table)
    routes = {Route(str(segment), ifindex, str(address), table)}
    if gateway is not None and segment != network:
        routes.add(Route(str(network), ifindex, str(address), table, str(gateway)))
    return {rule}, routes


# -- reading the kernel ----------------------------------------------------------------------
def observed(ipr, table: int) -> tuple[set, set]:
    """fangen's rules and routes in ``table`` (protocol RTPROT_FANGEN)."""
    rules, routes = set(), set()
    for msg in ipr.get_rules(family=AF_INET):
        if msg.get_attr("FRA_PROTOCOL") != RTPROT_FANGEN or \
                (msg.get_attr("FRA_TABLE") or msg["table"]) != table:
            continue
        dport = msg.get_attr("FRA_DPORT_RANGE")
        rules.add(Rule(f"{msg.get_attr('FRA_DST') or '0.0.0.0'}/{msg['dst_len']}",
                       msg.get_attr("FRA_IP_PROTO") or 0,
                       int(dport.split(":")[0]) if dport else 0, table,
                       msg.get_attr("FRA_PRIORITY") or 0))
    for msg in ipr.get_routes(family=AF_INET, table=table):
        if msg["proto"] != RTPROT_FANGEN or (msg.get_attr("RTA_TABLE") or msg["table"]) != table:
            continue
        routes.add(Route(f"{msg.get_attr('RTA_DST') or '0.0.0.0'}/{msg['dst_len']}",
                         msg.get_attr("RTA_OIF") or 0, msg.get_attr("RTA_PREFSRC") or "",
                         table, msg.get_attr("RTA_GATEWAY") or ""))
    return rules, routes


def segment_of(ipr, ifindex: int, address: IPv4Address) -> IPv4Network:
    """The on-link network of ``address`` on ``ifindex`` (its prefix length in the kernel)."""
    for msg in ipr.get_addr(family=AF_INET, index=ifindex):
        local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        if local == str(address):
            return IPv4Network((address, msg["prefixlen"]), strict=False)
    return IPv4Network((address, 32))


def dhcp_gateway(ipr, ifindex: int, root: str = "/") -> IPv4Address | None:
    """The gateway the underlay interface got by DHCP: the main table's default route
    on it (lowest metric), else ROUTER= in networkd's lease file."""
    best = None
    for msg in ipr.get_routes(family=AF_INET, table=MAIN_TABLE):
        if msg["dst_len"] != 0 or msg.get_attr("RTA_OIF") != ifindex:
            continue
        gw = msg.get_attr("RTA_GATEWAY")
        metric = msg.get_attr("RTA_PRIORITY") or 0
        if gw and (best is None or metric < best[0]):
            best = (metric, gw)
    if best is not None:
        return IPv4Address(best[1])
    try:
        with open(os.path.join(root, LEASES, str(ifindex)), encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.strip().partition("=")
                if key == "ROUTER" and value:
                    return IPv4Address(value.split()[0])
    except (OSError, ValueError):
        pass
    return None


# -- the record (what down removes) ---------------------------------------------------------
def record_path(root: str, name: str) -> str:
    return os.path.join(root, names.fan_dir(name), RECORD)


def read_record(root: str, name: str) -> dict | None:
    """{"table": T, "rules": [[dst, ipproto, dport], ...], "routes": bool}: the table
    fangen used for the fan, which rules in it are the fan's (a table may be a VRF's, or
    named by another fan's vrf), and whether the routes of protocol 250 in it are (the
    fan's own underlay-table) or not (a VRF's); None: nothing."""
    try:
        with open(record_path(root, name), encoding="utf-8") as fh:
            data = json.load(fh)
        table, rules, routes = data.get("table"), data.get("rules"), data.get("routes")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(table, int) or isinstance(table, bool):
        return None
    if not isinstance(rules, list) or any(not isinstance(r, list) or len(r) != 3
                                          for r in rules):
        rules = []
    return {"table": table, "rules": sorted(tuple(r) for r in rules), "routes": routes is True}


def _record(root: str, name: str, record: dict | None) -> None:
    from fangen import writer

    path = record_path(root, name)
    if record is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    writer.write_file(path, json.dumps(record, sort_keys=True) + "\n", 0o644, durable=False)


def _selector(rule: Rule) -> tuple:
    return (rule.dst, rule.ipproto, rule.dport)


def owned(ipr, record: dict | None) -> tuple[list, list]:
    """What fangen made for the fan, by ``record``: its rules (protocol 250, its
    selectors) and, in its own table, the routes of protocol 250."""
    if record is None:
        return [], []
    rules, routes = observed(ipr, record["table"])
    mine = {tuple(r) for r in record["rules"]}
    return sorted(r for r in rules if _selector(r) in mine), \
        sorted(routes) if record["routes"] else []


# -- changing the kernel ---------------------------------------------------------------------
def _apply(ipr, add: list, drop: list) -> None:
    from pyroute2 import NetlinkError

    for obj in drop:
        try:
            if isinstance(obj, Rule):
                ipr.rule("del", **_rule_args(obj))
            else:
                ipr.route("del", **_route_args(obj))
        except NetlinkError as exc:
            if exc.code not in (errno.ENOENT, errno.ESRCH):
                raise FangenError(f"cannot remove {obj.text()}: {exc}") from None
    for obj in in_order(add):
        try:
            if isinstance(obj, Rule):
                ipr.rule("add", **_rule_args(obj))
            else:
                ipr.route("add", **_route_args(obj))
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise FangenError(f"cannot add {obj.text()}: {exc}") from None


def in_order(add: list) -> list:
    """The segment route, then the gateway's (its nexthop is on the segment), the rule
    last (it sends traffic to the table only once the table can carry it)."""
    return sorted(add, key=lambda o: (isinstance(o, Rule), bool(getattr(o, "gateway", ""))))


def _rule_args(rule: Rule) -> dict:
    net = IPv4Network(rule.dst)
    args = dict(family=AF_INET, table=rule.table, priority=rule.priority,
                dst=str(net.network_address), dst_len=net.prefixlen,
                protocol=RTPROT_FANGEN, ip_proto=rule.ipproto)
    if rule.dport:
        args["dport_range"] = f"{rule.dport}:{rule.dport}"
    return args


def _route_args(route: Route) -> dict:
    args = dict(family=AF_INET, dst=route.dst, oif=route.oif, table=route.table,
                proto=RTPROT_FANGEN, prefsrc=route.src)
    if route.gateway:
        args["gateway"] = route.gateway
    else:
        args["scope"] = RT_SCOPE_LINK
    return args


def vrf_table(ipr, vrf: str, ifindex: int, ifname: str) -> int:
    """The routing table of ``vrf``, which must hold the underlay interface."""
    found = ipr.link_lookup(ifname=vrf)
    if not found:
        raise FangenError(f"vrf {vrf} does not exist: define it (netplan's vrfs:, or a "
                          f"networkd .netdev of Kind=vrf) with {ifname} in it")
    link = ipr.get_links(found[0])[0]
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    if kind != "vrf":
        raise FangenError(f"{vrf} is not a VRF (its kind is {kind or 'unknown'})")
    table = info.get_attr("IFLA_INFO_DATA").get_attr("IFLA_VRF_TABLE")
    underlay = ipr.get_links(ifindex)[0]
    if underlay.get_attr("IFLA_MASTER") != found[0]:
        raise FangenError(f"the underlay interface {ifname} is not in vrf {vrf}: the VRF's "
                          "table would not route the underlay")
    return table


def plan(host, fan: Fan, resolved) -> tuple[list, list, dict | None]:
    """(to add, to remove, the record): what makes the kernel match the stanza for
    ``fan`` on ``resolved`` (fangen.runtime.underlay.Resolved), including what the fan
    no longer uses.  A link that went away while reading: FangenError."""
    from pyroute2 import NetlinkError

    try:
        return _plan(host, fan, resolved)
    except NetlinkError as exc:
        raise FangenError(f"{fan.name}: cannot read the underlay's routing: {exc}") from None


def _plan(host, fan: Fan, resolved) -> tuple[list, list, dict | None]:
    ipr = host.ipr
    old = read_record(host.root, fan.name)
    if resolved is None:
        return [], [], old
    if fan.vrf is not None:
        table = vrf_table(ipr, fan.vrf, resolved.ifindex, resolved.ifname)
    else:
        table = fan.underlay_table
    if table is None:
        gone = owned(ipr, old)
        return [], gone[0] + gone[1], None
    segment = segment_of(ipr, resolved.ifindex, resolved.address)
    if fan.vrf is not None:
        gateway = None
    elif fan.underlay_gateway == GATEWAY_DHCP:
        gateway = dhcp_gateway(ipr, resolved.ifindex, host.root)
    else:
        gateway = fan.underlay_gateway
    want_rules, want_routes = wanted(fan, resolved.ifindex, resolved.address,
                                     resolved.network, segment, gateway, table)
    if fan.vrf is not None:
        want_routes = set()
    record = {"table": table, "rules": sorted(_selector(r) for r in want_rules),
              "routes": fan.vrf is None}
    have_rules, have_routes = owned(ipr, record)
    if old is not None and old != record:          # another table or other rules before
        old_rules, old_routes = owned(ipr, old)
        have_rules, have_routes = sorted(set(have_rules) | set(old_rules)), \
            sorted(set(have_routes) | set(old_routes))
    add = sorted(want_rules - set(have_rules)) + sorted(want_routes - set(have_routes))
    drop = sorted(set(have_rules) - want_rules) + sorted(set(have_routes) - want_routes)
    return add, drop, record


def reconcile(host, fan: Fan, resolved, held: bool = True, log=None) -> list[str]:
    """Make the kernel match (``held``: the caller holds the root's lock; otherwise it
    is taken only when something changes).  The changes, as text."""
    add, drop, record = plan(host, fan, resolved)
    sysctl = _l3mdev_wanted(host, fan)
    if not add and not drop and not sysctl and record == read_record(host.root, fan.name):
        return []
    if held:
        _change(host, fan, add, drop, record, sysctl)
    else:
        from fangen.runtime import lock

        with lock.held(host.root, f"underlay route {fan.name}"):
            add, drop, record = plan(host, fan, resolved)       # again, under the lock
            sysctl = _l3mdev_wanted(host, fan)
            _change(host, fan, add, drop, record, sysctl)
    done = [f"removed {o.text()}" for o in drop] + [f"added {o.text()}" for o in in_order(add)]
    done += [f"set {sysctl.replace('/', '.')}=1"] if sysctl else []
    if log is not None:
        for line in done:
            log(line)
    return done


# A VXLAN fan's UDP socket is bound to no device; a packet that arrives on a port of a
# VRF reaches such a socket only with udp_l3mdev_accept=1 (the kernel's VRF
# documentation).  fangen sets it for a VXLAN fan over a VRF and records the value it
# found in the fan's state, so the last fan down puts it back (as ip_forward).
# tcp_l3mdev_accept is left alone: the fan has no TCP socket.


def _l3mdev_wanted(host, fan: Fan) -> str | None:
    if fan.vrf is None or fan.type != "vxlan":
        return None
    return UDP_L3MDEV_ACCEPT if host.read_sysctl(UDP_L3MDEV_ACCEPT) not in (None, "1") \
        else None


def _change(host, fan: Fan, add: list, drop: list, record, sysctl) -> None:
    if sysctl:
        from fangen.runtime import state as state_mod

        st = state_mod.load(host.root, fan.name)
        before = host.read_sysctl(sysctl)
        if st is not None and before is not None:
            st.sysctls.setdefault(sysctl, before)
            state_mod.save(host.root, st)
        host.write_sysctl(sysctl, "1")
    _apply(host.ipr, add, drop)
    _record(host.root, fan.name, record)


def preview(host, fan: Fan, resolved) -> list[str]:
    """``up --dry-run``: what reconcile would change, one line each."""
    add, drop, _ = plan(host, fan, resolved)
    lines = [f"delete {o.text()}" for o in drop] + [f"add {o.text()}" for o in in_order(add)]
    if _l3mdev_wanted(host, fan):
        lines.append(f"set sysctl {UDP_L3MDEV_ACCEPT.replace('/', '.')}=1")
    return lines


def remove(host, name: str) -> list[str]:
    """down: what fangen made for the fan, by its record (the caller holds the lock)."""
    rules, routes = owned(host.ipr, read_record(host.root, name))
    _apply(host.ipr, [], rules + routes)
    _record(host.root, name, None)
    return [f"removed {o.text()}" for o in rules + routes]
