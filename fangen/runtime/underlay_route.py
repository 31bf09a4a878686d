"""Multi-homed hosts: the fan's encapsulated traffic leaves by its own underlay.

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
removed (networkd drops foreign rules when it starts, ManageForeignRoutingPolicyRules),
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
           segment: IPv4Network, gateway: IPv4Address | None) -> tuple[set, set]:
    """Pure: the rules and routes for ``fan`` whose underlay is ``address`` (in
    ``segment``, on ``ifindex``) in ``network``, reached beyond the segment by
    ``gateway`` (None: not known yet, so only the segment route)."""
    table = fan.underlay_table
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


def recorded_table(root: str, name: str) -> int | None:
    try:
        with open(record_path(root, name), encoding="utf-8") as fh:
            table = json.load(fh).get("table")
    except (OSError, ValueError, AttributeError):
        return None
    return table if isinstance(table, int) and not isinstance(table, bool) else None


def _record(root: str, name: str, table: int | None) -> None:
    from fangen import writer

    path = record_path(root, name)
    if table is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    writer.write_file(path, json.dumps({"table": table}) + "\n", 0o644, durable=False)


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
    # the segment route, then the gateway's (its nexthop is on the segment), the rule last
    for obj in sorted(add, key=lambda o: (isinstance(o, Rule), bool(getattr(o, "gateway", "")))):
        try:
            if isinstance(obj, Rule):
                ipr.rule("add", **_rule_args(obj))
            else:
                ipr.route("add", **_route_args(obj))
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise FangenError(f"cannot add {obj.text()}: {exc}") from None


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


def plan(host, fan: Fan, resolved) -> tuple[list, list]:
    """(to add, to remove): what makes the kernel match the stanza for ``fan`` on
    ``resolved`` (fangen.runtime.underlay.Resolved), including a table the fan no
    longer uses."""
    ipr = host.ipr
    add, drop = [], []
    old = recorded_table(host.root, fan.name)
    if old is not None and old != fan.underlay_table:
        rules, routes = observed(ipr, old)
        drop += sorted(rules) + sorted(routes)
    if fan.underlay_table is None or resolved is None:
        return add, drop
    if fan.underlay_gateway == GATEWAY_DHCP:
        gateway = dhcp_gateway(ipr, resolved.ifindex, host.root)
    else:
        gateway = fan.underlay_gateway
    segment = segment_of(ipr, resolved.ifindex, resolved.address)
    want_rules, want_routes = wanted(fan, resolved.ifindex, resolved.address,
                                     resolved.network, segment, gateway)
    have_rules, have_routes = observed(ipr, fan.underlay_table)
    add += sorted(want_rules - have_rules) + sorted(want_routes - have_routes)
    drop += sorted(have_rules - want_rules) + sorted(have_routes - want_routes)
    return add, drop


def reconcile(host, fan: Fan, resolved, held: bool = True, log=None) -> list[str]:
    """Make the kernel match (``held``: the caller holds the root's lock; otherwise it
    is taken only when something changes).  The changes, as text."""
    add, drop = plan(host, fan, resolved)
    if not add and not drop and \
            recorded_table(host.root, fan.name) == fan.underlay_table:
        return []
    if held:
        _apply(host.ipr, add, drop)
        _record(host.root, fan.name, fan.underlay_table)
    else:
        from fangen.runtime import lock

        with lock.held(host.root, f"underlay route {fan.name}"):
            add, drop = plan(host, fan, resolved)       # again, under the lock
            _apply(host.ipr, add, drop)
            _record(host.root, fan.name, fan.underlay_table)
    done = [f"removed {o.text()}" for o in drop] + [f"added {o.text()}" for o in add]
    if log is not None:
        for line in done:
            log(line)
    return done


def remove(host, name: str) -> list[str]:
    """down: fangen's rules and routes in the fan's recorded table (the caller holds the
    lock)."""
    table = recorded_table(host.root, name)
    if table is None:
        return []
    rules, routes = observed(host.ipr, table)
    drop = sorted(rules) + sorted(routes)
    _apply(host.ipr, [], drop)
    _record(host.root, name, None)
    return [f"removed {o.text()}" for o in drop]
