"""``fangen doctor``'s verdicts: what a :class:`Facts` snapshot of one fan means.  Pure.

:mod:`fangen.doctor.probe` reads the facts (netlink, /proc, nft, a DHCP DISCOVER, Docker's
API, a ping to a peer); :func:`evaluate` turns them into one :class:`Check` per line.
A check is "ok", "warn" (works, but a trap is set), "fail" (something is broken: the
command exits 1) or "skip" (nothing to check here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network

from fangen.doctor import forward
from fangen.engines import docker as docker_engine
from fangen.engines.common import EngineNetwork
from fangen.runtime import health

OVERHEAD = {"ipip": 20, "vxlan": 50}


@dataclass(frozen=True)
class Check:
    fan: str
    name: str
    status: str                  # ok | warn | fail | skip
    message: str

    def line(self) -> str:
        return f"{self.status.upper() if self.status == 'fail' else self.status:<4} " \
               f"{self.fan} {self.name}: {self.message}"

    def as_dict(self) -> dict:
        return {"fan": self.fan, "check": self.name, "status": self.status,
                "message": self.message}


@dataclass(frozen=True)
class Facts:
    name: str
    fan: object = None                       # fangen.config.model.Fan, or None
    config_errors: tuple = ()                # messages about this fan's definition
    state: object = None                     # fangen.runtime.state.State, or None
    kernel_fan: dict = field(default_factory=dict)      # {"ipip": bool, "vxlan": bool}
    links: dict = field(default_factory=dict)           # name -> LinkView
    routes: frozenset = frozenset()                     # RouteView, main table
    tc: dict = field(default_factory=dict)              # dev -> {direction: name}
    ip_forward: str | None = None
    ipv6_forward: str | None = None                     # net.ipv6.conf.all.forwarding
    bridge_nf_call_iptables: str | None = None          # None: no br_netfilter
    nft_tables: frozenset = frozenset()
    ruleset: object = None                   # ``nft -j list ruleset``, or None
    dnsmasq_running: bool = False
    dhcp: dict | None = None                 # {"offer": {...}} | {"error": str} | None
    docker: dict | None = None               # {"socket", "networks"} | {"socket", "error"}
    peer: dict | None = None                 # see probe.peer


def evaluate(f: Facts) -> list[Check]:
    out: list[Check] = []

    def add(name, status, message):
        out.append(Check(f.name, name, status, message))

    st, fan = f.state, f.fan
    if f.config_errors:
        add("config", "fail", "; ".join(f.config_errors))
    elif fan is None and st is None:
        add("config", "fail", f"no fan named '{f.name}' is configured or up")
        return out
    elif fan is None:
        add("config", "warn", f"up, but no longer configured (fangen down {f.name})")
    else:
        add("config", "ok", f"{fan.type}, {fan.overlay} over {fan.underlay.spec}"
                            + ("" if fan.enabled else ", disabled"))
    if st is None or not st.slice:
        if fan is not None and not fan.enabled:
            add("state", "skip", "disabled, not up")
        else:
            add("state", "fail", f"not up on this host (fangen up {f.name}, or systemctl "
                                 f"start fangen@{f.name})")
        return out
    add("state", "ok", f"up: slice {st.slice} via {st.underlay.get('ifname')} "
                       f"{st.underlay.get('address')}")
    problems = health.problems(st, f.links, f.routes)
    _kernel(f, add)
    _tunnel(f, problems, add)
    _bridge(f, problems, add)
    _route(f, problems, add)
    _mtu(f, add)
    _forwarding(f, add)
    _nft(f, add)
    _firewall(f, add)
    _dnsmasq(f, add)
    _docker(f, add)
    _peer(f, add)
    return out


def _kernel(f: Facts, add) -> None:
    st = f.state
    where = "/proc/sys/net/fan/" + ("version" if st.type == "ipip" else "vxlan")
    have = f.kernel_fan.get(st.type, False)
    if st.datapath == "kernel":
        if have:
            add("kernel", "ok", f"kernel datapath: this kernel has the {st.type} fan ({where})")
        else:
            add("kernel", "fail", f"kernel datapath, but this kernel has no {st.type} fan "
                                  f"({where} is missing)")
        return
    attached = set(f.tc.get(st.tunnel, {}))
    note = "the kernel also has the fan patch" if have else \
        f"this kernel has no {st.type} fan patch"
    if attached >= {"ingress", "egress"}:
        add("kernel", "ok", f"upstream datapath: tc programs on {st.tunnel} (ingress, "
                            f"egress); {note}")
    else:
        missing = ", ".join(sorted({"ingress", "egress"} - attached))
        add("kernel", "fail", f"upstream datapath, but no fan program on {st.tunnel} "
                              f"{missing}: nothing is encapsulated (fangen up {f.name})")


def _tunnel(f: Facts, problems, add) -> None:
    st = f.state
    mine = [reason for check, reason in problems if check == "tunnel"]
    link = f.links.get(st.tunnel)
    if link is not None and link.kind != st.type:
        mine.append(f"{st.tunnel} is a {link.kind or 'plain'} device, not {st.type}")
    # an upstream VXLAN fan's plain device (fangen.runtime.plan.choose_plain) is the one
    # upstream tunnel that is not collect-metadata; its recorded program parameters say so
    plain = bool(st.tc.get(st.tunnel, {}).get("params", {}).get("plain"))
    want_external = st.datapath == "upstream" and not plain
    if link is not None and want_external != bool(link.get("external")):
        which = "upstream datapath on a plain device" if plain else f"{st.datapath} datapath"
        mine.append(f"{st.tunnel} is {'' if link.get('external') else 'not '}a "
                    f"collect-metadata device, which the {which} "
                    f"{'does not use' if link.get('external') else 'needs'}")
    if mine:
        add("tunnel", "fail", "; ".join(mine))
    else:
        port = f", a port of {st.bridge}" if st.type == "vxlan" else ""
        add("tunnel", "ok", f"{st.tunnel} ({st.type}) is up{port}")


def _bridge(f: Facts, problems, add) -> None:
    st = f.state
    mine = [reason for check, reason in problems if check == "bridge"]
    if mine:
        add("bridge", "fail", "; ".join(mine) + f"; containers lost their gateway "
                                                f"(fangen up {f.name})")
        return
    want = health.bridge_address(st)
    bridge = f.links[st.bridge]
    overlay = IPv4Network(st.overlay)
    extra = sorted(a for a in bridge.addresses if a != want and ":" not in a and
                   IPv4Network(a, strict=False).overlaps(overlay))
    if extra:
        add("bridge", "warn", f"{st.bridge} holds {want} and also {', '.join(extra)}: "
                              f"an engine put its own subnet on the bridge (Docker's "
                              f"--subnet {st.slice}?); give it --subnet "
                              f"{IPv4Network(want, strict=False)} --ip-range {st.slice}")
    else:
        add("bridge", "ok", f"{st.bridge} is up with {want}")


def _route(f: Facts, problems, add) -> None:
    st = f.state
    mine = [reason for check, reason in problems if check == "route"]
    dst, dev = health.overlay_route(st)
    if mine:
        add("route", "fail", "; ".join(mine))
    else:
        add("route", "ok", f"{dst} dev {dev}")


def _mtu(f: Facts, add) -> None:
    st = f.state
    mtu = st.mtu
    issues = []
    ifname = st.underlay.get("ifname")
    under = f.links.get(ifname)
    overhead = OVERHEAD.get(st.type, 20)
    if under is not None and mtu + overhead > under.mtu:
        issues.append(f"the fan's MTU {mtu} + {overhead} bytes of {st.type} does not fit "
                      f"the underlay {ifname}'s {under.mtu}: full-size packets are dropped "
                      f"or fragmented (set mtu: {under.mtu - overhead}, or raise the "
                      f"underlay's)")
    for name in (st.bridge, st.tunnel):
        link = f.links.get(name)
        if link is not None and link.mtu != mtu:
            issues.append(f"{name} has MTU {link.mtu}, the fan {mtu}")
    ports = sorted(n for n, link in f.links.items()
                   if link.master == st.bridge and n != st.tunnel and link.mtu > mtu)
    for name in ports:
        issues.append(f"port {name} of {st.bridge} has MTU {f.links[name].mtu} > {mtu}: "
                      f"the container behind it sends frames the fan drops")
    if issues:
        add("mtu", "fail", "; ".join(issues))
    else:
        path = f"underlay {ifname} {under.mtu}, " if under is not None else ""
        add("mtu", "ok", f"{path}fan {mtu} on {st.bridge} and {st.tunnel}")


def _forwarding(f: Facts, add) -> None:
    if f.ip_forward == "1":
        add("forwarding", "ok", "net.ipv4.ip_forward is 1")
    else:
        add("forwarding", "fail", f"net.ipv4.ip_forward is {f.ip_forward or 'unreadable'}: "
                                  f"the host routes nothing for its containers")
    if getattr(f.fan, "overlay6", None) is None:
        return
    if f.ipv6_forward == "1":
        add("forwarding", "ok", "net.ipv6.conf.all.forwarding is 1 (overlay6)")
    else:
        add("forwarding", "fail", f"net.ipv6.conf.all.forwarding is "
                                  f"{f.ipv6_forward or 'unreadable'}: the host routes no IPv6 "
                                  f"for its containers (overlay6)")


def _nft(f: Facts, add) -> None:
    from fangen.render.nft import table_name

    table = table_name(f.name)
    if table in f.nft_tables:
        nat = "NAT out of the overlay, " if f.fan is None or f.fan.nat else ""
        add("nft", "ok", f"table ip {table} ({nat}encapsulated traffic only from the "
                         f"underlay)")
    else:
        add("nft", "fail", f"nft table ip {table} is missing: no NAT to the outside and no "
                           f"filter for encapsulated traffic (fangen up {f.name})")


def _packets(f: Facts) -> list[tuple[str, forward.Packet]]:
    st = f.state
    out_dev = st.underlay.get("ifname") or "?"
    if st.type == "vxlan":
        flows = []
        if f.bridge_nf_call_iptables == "1":
            flows.append(("between hosts", forward.Packet(st.bridge, st.bridge)))
    else:
        flows = [("from other hosts", forward.Packet(st.tunnel, st.bridge)),
                 ("to other hosts", forward.Packet(st.bridge, st.tunnel))]
    flows.append(("to the outside", forward.Packet(st.bridge, out_dev)))
    return flows


def _firewall(f: Facts, add) -> None:
    if f.ruleset is None:
        add("firewall", "skip", "cannot read the nft ruleset")
        return
    dropped, iptables = [], False
    for what, pkt in _packets(f):
        for v in forward.forward_verdicts(f.ruleset, pkt):
            if not v.accept:
                iptables |= v.table == "ip filter"
                dropped.append(f"{v.table} {v.chain} drops new connections {what} "
                               f"({pkt.iifname} -> {pkt.oifname}, {v.why})")
    if dropped:
        hint = (" (iptables -S FORWARD shows these rules; for Docker: \"icc\": true, and "
                "start it after the fan, so that it leaves the FORWARD policy alone)"
                if iptables else "")
        add("firewall", "fail", "; ".join(dropped) + hint)
    else:
        bridged = "" if f.state.type != "vxlan" or f.bridge_nf_call_iptables == "1" else \
            " (bridged traffic bypasses the ip hooks: bridge-nf-call-iptables is off)"
        add("firewall", "ok", "no forward chain drops the fan's traffic" + bridged)


def _dnsmasq(f: Facts, add) -> None:
    st = f.state
    dhcp = f.fan.dhcp if f.fan is not None else bool(st.dnsmasq)
    if not dhcp:
        add("dnsmasq", "skip", "dhcp: false (containers get addresses elsewhere)")
        return
    if not f.dnsmasq_running:
        add("dnsmasq", "fail", f"dnsmasq is not running: containers get no address "
                               f"(fangen up {f.name})")
        return
    probe = f.dhcp or {}
    offer = probe.get("offer")
    if offer is None:
        add("dnsmasq", "fail", f"dnsmasq runs but does not answer on {st.bridge}: "
                               f"{probe.get('error', 'no DHCP offer')}")
        return
    issues = []
    if offer.get("router") != st.gateway:
        issues.append(f"router {offer.get('router')}, not {st.gateway}")
    if offer.get("mtu") != st.mtu:
        issues.append(f"MTU {offer.get('mtu')}, not {st.mtu}")
    if not _in(offer.get("address"), st.slice):
        issues.append(f"address {offer.get('address')} outside the slice {st.slice}")
    if issues:
        add("dnsmasq", "fail", f"dnsmasq offers {', '.join(issues)}")
    else:
        add("dnsmasq", "ok", f"offers {offer['address']} on {st.bridge} with router "
                             f"{offer['router']} and MTU {offer['mtu']}")


def _in(address, network: str) -> bool:
    from ipaddress import IPv4Address

    try:
        return IPv4Address(address) in IPv4Network(network)
    except ValueError:
        return False


def _docker(f: Facts, add) -> None:
    d = f.docker
    if d is None:
        add("docker", "skip", "no Docker socket found")
        return
    if "error" in d:
        add("docker", "fail", f"cannot ask Docker: {d['error']}")
        return
    net = EngineNetwork.from_state(f.state, f.fan)
    for status, message in docker_engine.check_networks(net, d.get("networks") or []):
        add("docker", status, message)


def _peer(f: Facts, add) -> None:
    p = f.peer
    if p is None:
        return
    if p.get("error"):
        add("peer", "fail", p["error"])
        return
    who = f"{p['address']} (host {p['host']}, slice {p['slice']})"
    if p.get("small") != "ok":
        add("peer", "fail", f"{who}: no answer from its gateway {p['gateway']} over the fan")
    elif p.get("full") != "ok":
        add("peer", "fail", f"{who}: {p['gateway']} answers, but not a {p['size']}-byte "
                            f"packet with DF ({p.get('full')}): the path is narrower than "
                            f"the fan's MTU")
    else:
        add("peer", "ok", f"{who}: {p['gateway']} answers over the fan, also a "
                          f"{p['size']}-byte packet with DF")
