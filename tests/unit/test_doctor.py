"""fangen doctor's pure parts: the verdicts over a facts snapshot, the forward-hook
evaluator (on a ruleset captured from a real dockerd with icc false), the DHCP and ICMP
packets, and runtime.health which ``show`` shares.  No root; the probes run against
broken hosts in tests/engines/test_doctor.py."""

from __future__ import annotations

import copy
import json
import os
import socket
import struct
from dataclasses import replace

import pytest

from fangen.config.model import build
from fangen.doctor import checks, dhcp, forward, icmp
from fangen.doctor.checks import Facts
from fangen.doctor.probe import peer_target
from fangen.runtime import health
from fangen.runtime.view import LinkView, RouteView
from fangen.runtime.state import State
from tests.harness import packets

HERE = os.path.dirname(os.path.abspath(__file__))


def ruleset_icc_false() -> dict:
    """``nft -j list ruleset`` in a host namespace running dockerd 20.10 on a VXLAN fan
    (bridge fan250) with "icc": false and one published port (tests/engines)."""
    with open(os.path.join(HERE, "data", "nft-docker-icc-false.json")) as fh:
        return json.load(fh)


def state(type_="vxlan", **extra) -> State:
    st = State("fan250", type=type_, datapath="upstream", overlay="250.0.0.0/8",
               bridge="fan250", tunnel="fan250-tun", slice="250.1.10.0/24",
               gateway="250.1.10.1", mtu=1450 if type_ == "vxlan" else 1480,
               underlay={"ifname": "up0", "address": "172.16.1.10",
                         "network": "172.16.0.0/16", "mtu": 1500},
               dnsmasq={"mode": "process", "pid": 1})
    for key, value in extra.items():
        setattr(st, key, value)
    return st


# every link of a host with IPv6 on also holds the kernel's link-local address
KERNEL_LL = "fe80::d0d6:11ff:fefd:a674/64"


def links(type_="vxlan", bridge_addr="250.1.10.1/8", mtu=1450) -> dict:
    return {
        "up0": LinkView("up0", 2, "veth", 1500, True, None, frozenset({"172.16.1.10/16"})),
        "fan250": LinkView("fan250", 3, "bridge", mtu, True, None,
                           frozenset({bridge_addr, KERNEL_LL})),
        "fan250-tun": LinkView("fan250-tun", 4, type_, mtu, True,
                               "fan250" if type_ == "vxlan" else None, frozenset(),
                               (("external", True),)),
    }


def healthy(type_="vxlan", **extra) -> Facts:
    fan = build("fan250", {"overlay": "250.0.0.0/8", "underlay": "172.16.0.0/16",
                           "type": type_})
    if type_ == "vxlan":
        routes = frozenset({RouteView("250.0.0.0/8", "fan250", "250.1.10.1")})
        lk = links()
    else:
        routes = frozenset({RouteView("250.0.0.0/8", "fan250-tun", "250.1.10.1"),
                            RouteView("250.1.10.0/24", "fan250", "250.1.10.1")})
        lk = links("ipip", "250.1.10.1/24", 1480)
    facts = Facts(
        name="fan250", fan=fan, state=state(type_), kernel_fan={"ipip": False, "vxlan": False},
        links=lk, routes=routes, tc={"fan250-tun": {"ingress": "a", "egress": "b"}},
        ip_forward="1", bridge_nf_call_iptables="1", nft_tables=frozenset({"fangen-fan250"}),
        ruleset={"nftables": []}, dnsmasq_running=True,
        dhcp={"offer": {"address": "250.1.10.40", "router": "250.1.10.1",
                        "mtu": 1450 if type_ == "vxlan" else 1480}})
    return replace(facts, **extra)


def verdicts(facts: Facts) -> dict:
    out = {}
    for c in checks.evaluate(facts):
        out.setdefault(c.name, []).append((c.status, c.message))
    return out


def status(facts: Facts) -> dict:
    return {name: sorted({s for s, _ in found}) for name, found in verdicts(facts).items()}


# -- checks --------------------------------------------------------------------------------------

@pytest.mark.parametrize("type_", ["vxlan", "ipip"])
def test_a_healthy_fan_is_all_ok(type_):
    got = status(healthy(type_))
    assert got == {name: ["ok"] for name in (
        "config", "state", "kernel", "tunnel", "bridge", "route", "mtu", "forwarding", "nft",
        "firewall", "dnsmasq")} | {"docker": ["skip"]}
    lines = [c.line() for c in checks.evaluate(healthy(type_))]
    assert lines[0] == f"ok   fan250 config: {type_}, 250.0.0.0/8 over 172.16.0.0/16"


def test_not_configured_not_up_disabled():
    assert [c.line() for c in checks.evaluate(Facts(name="nope"))] == [
        "FAIL nope config: no fan named 'nope' is configured or up"]
    down = healthy(state=None)
    assert [(c.name, c.status) for c in checks.evaluate(down)] == [("config", "ok"),
                                                                  ("state", "fail")]
    off = healthy(state=None, fan=replace(healthy().fan, enabled=False))
    assert [(c.name, c.status) for c in checks.evaluate(off)] == [("config", "ok"),
                                                                 ("state", "skip")]


def test_bridge_without_its_address():
    facts = healthy(links=links(bridge_addr="250.1.10.1/24"), routes=frozenset())
    v = verdicts(facts)
    assert v["bridge"] == [("fail", "bridge fan250 lost its address 250.1.10.1/8 (it has "
                                    "250.1.10.1/24); containers lost their gateway "
                                    "(fangen up fan250)")]
    assert v["route"] == [("fail", "the overlay route 250.0.0.0/8 dev fan250 is missing")]


def test_an_extra_subnet_on_the_bridge_is_a_warning():
    lk = links()
    lk["fan250"] = replace(lk["fan250"], addresses=frozenset({"250.1.10.1/8",
                                                              "250.1.10.1/24", KERNEL_LL}))
    [(s, message)] = verdicts(healthy(links=lk))["bridge"]
    assert s == "warn" and "also 250.1.10.1/24" in message and "--subnet 250.0.0.0/8" in message
    assert "fe80" not in message


def test_routes_into_the_overlay_elsewhere():
    facts = healthy()
    routes = facts.routes | {RouteView("250.7.0.0/16", "docker0", None),
                             RouteView("0.0.0.0/0", "up0", None)}
    [(s, message)] = verdicts(replace(facts, routes=routes))["route"]
    assert s == "fail" and message == ("route 250.7.0.0/16 dev docker0 takes part of the "
                                       "overlay away from the fan")
    # the whole overlay elsewhere too (the first of two equal routes wins); a wider
    # route does not take anything away (the longest prefix wins)
    routes = facts.routes | {RouteView("250.0.0.0/8", "up0", None),
                             RouteView("240.0.0.0/4", "up0", None)}
    [(s, message)] = verdicts(replace(facts, routes=routes))["route"]
    assert s == "fail" and message == ("route 250.0.0.0/8 dev up0 takes part of the "
                                       "overlay away from the fan")


def test_kernel_and_tunnel():
    v = verdicts(healthy(tc={}))
    assert v["kernel"] == [("fail", "upstream datapath, but no fan program on fan250-tun "
                                    "egress, ingress: nothing is encapsulated (fangen up "
                                    "fan250)")]
    kernel = healthy(state=state(datapath="kernel"))
    assert verdicts(kernel)["kernel"][0][0] == "fail"
    lk = links()
    lk["fan250-tun"] = replace(lk["fan250-tun"], info=())
    kernel = healthy(state=state(datapath="kernel"), kernel_fan={"vxlan": True}, links=lk)
    assert status(kernel)["kernel"] == ["ok"] and status(kernel)["tunnel"] == ["ok"]
    assert "not a collect-metadata device" in verdicts(healthy(links=lk))["tunnel"][0][1]
    lk = links()
    lk["fan250-tun"] = replace(lk["fan250-tun"], master=None, up=False)
    assert verdicts(healthy(links=lk))["tunnel"] == [
        ("fail", "tunnel fan250-tun is down; tunnel fan250-tun is not a port of fan250")]


def test_a_plain_device_is_what_an_upstream_vxlan_fan_may_have():
    # an upstream VXLAN fan on a plain device (its recorded program parameters say so)
    plain_state = state(tc={"fan250-tun": {"params": {"mode": "vxlan", "plain": True}}})
    lk = links()
    lk["fan250-tun"] = replace(lk["fan250-tun"], info=(("external", False), ("port", 8472)))
    assert status(healthy(state=plain_state, links=lk))["tunnel"] == ["ok"]
    # and a collect-metadata device where the record says plain is wrong, as is the reverse
    [(verdict, message)] = verdicts(healthy(state=plain_state))["tunnel"]
    assert verdict == "fail" and message == (
        "fan250-tun is a collect-metadata device, which the upstream datapath on a plain "
        "device does not use")
    assert "not a collect-metadata device" in verdicts(healthy(links=lk))["tunnel"][0][1]


def test_mtu_along_the_path():
    lk = links()
    lk["up0"] = replace(lk["up0"], mtu=1400)
    lk["veth1"] = LinkView("veth1", 9, "veth", 1500, True, "fan250")
    lk["veth2"] = LinkView("veth2", 10, "veth", 1400, True, "fan250")
    [(s, message)] = verdicts(healthy(links=lk))["mtu"]
    assert s == "fail"
    assert message == ("the fan's MTU 1450 + 50 bytes of vxlan does not fit the underlay "
                       "up0's 1400: full-size packets are dropped or fragmented (set mtu: "
                       "1350, or raise the underlay's); port veth1 of fan250 has MTU 1500 > "
                       "1450: the container behind it sends frames the fan drops")


def test_forwarding_nft_dnsmasq():
    assert status(healthy(ip_forward="0"))["forwarding"] == ["fail"]
    assert status(healthy(nft_tables=frozenset()))["nft"] == ["fail"]
    assert verdicts(healthy(dnsmasq_running=False))["dnsmasq"] == [
        ("fail", "dnsmasq is not running: containers get no address (fangen up fan250)")]
    assert verdicts(healthy(dhcp={"error": "no DHCP offer on fan250 within 2 s"}))[
        "dnsmasq"] == [("fail", "dnsmasq runs but does not answer on fan250: no DHCP offer "
                                "on fan250 within 2 s")]
    wrong = healthy(dhcp={"offer": {"address": "250.9.9.9", "router": "250.1.10.1",
                                    "mtu": 1500}})
    assert verdicts(wrong)["dnsmasq"] == [("fail", "dnsmasq offers MTU 1500, not 1450, address "
                                                   "250.9.9.9 outside the slice 250.1.10.0/24")]
    off = healthy(fan=replace(healthy().fan, dhcp=False), dnsmasq_running=False)
    assert status(off)["dnsmasq"] == ["skip"]


def test_docker_findings_come_through():
    net = {"Name": "bridge", "Driver": "bridge",
           "IPAM": {"Config": [{"Subnet": "250.0.0.0/8", "IPRange": "250.1.10.0/24",
                                "Gateway": "250.1.10.1"}]},
           "Options": {"com.docker.network.bridge.name": "fan250",
                       "com.docker.network.bridge.enable_icc": "false",
                       "com.docker.network.bridge.default_bridge": "true",
                       "com.docker.network.driver.mtu": "1450"}}
    v = verdicts(healthy(docker={"socket": "/s", "networks": [net]}))
    assert [s for s, _ in v["docker"]] == ["fail", "warn"]      # icc; dnsmasq on the bridge
    assert verdicts(healthy(docker={"socket": "/s", "error": "/s: Connection refused"}))[
        "docker"] == [("fail", "cannot ask Docker: /s: Connection refused")]


def test_peer():
    base = {"address": "172.16.2.10", "host": "172.16.2.10", "slice": "250.2.10.0/24",
            "gateway": "250.2.10.1", "size": 1450}
    assert verdicts(healthy(peer=dict(base, small="ok", full="ok")))["peer"] == [
        ("ok", "172.16.2.10 (host 172.16.2.10, slice 250.2.10.0/24): 250.2.10.1 answers over "
               "the fan, also a 1450-byte packet with DF")]
    assert status(healthy(peer=dict(base, small="timeout", full=None)))["peer"] == ["fail"]
    [(s, message)] = verdicts(healthy(peer=dict(base, small="ok", full="timeout")))["peer"]
    assert s == "fail" and "the path is narrower than the fan's MTU" in message


def test_peer_target_from_either_address():
    st = state()
    assert peer_target(st, "250.2.10.77") == {
        "address": "250.2.10.77", "host": "172.16.2.10", "slice": "250.2.10.0/24",
        "gateway": "250.2.10.1", "size": 1450}
    assert peer_target(st, "172.16.2.10")["gateway"] == "250.2.10.1"
    assert peer_target(st, "10.0.0.1") == {"error": "--peer 10.0.0.1 is in neither the overlay "
                                                    "250.0.0.0/8 nor the underlay 172.16.0.0/16"}
    assert "error" in peer_target(st, "not-an-address")


# -- the forward hook ----------------------------------------------------------------------------

def test_docker_icc_false_drops_bridged_fan_traffic():
    rs = ruleset_icc_false()
    [v] = forward.forward_verdicts(rs, forward.Packet("fan250", "fan250"))
    assert (v.table, v.chain, v.accept) == ("ip filter", "FORWARD", False)
    assert v.why == "chain FORWARD rule 6: iifname fan250 oifname fan250 drop"
    # leaving the bridge (NAT to the outside) is accepted, published ports too
    [out] = forward.forward_verdicts(rs, forward.Packet("fan250", "up0"))
    assert out.accept and out.why.startswith("chain FORWARD rule 5")
    facts = healthy(ruleset=rs)
    [(s, message)] = verdicts(facts)["firewall"]
    assert s == "fail" and message.startswith(
        "ip filter FORWARD drops new connections between hosts (fan250 -> fan250, chain "
        "FORWARD rule 6: iifname fan250 oifname fan250 drop)")
    # no br_netfilter: bridged traffic never meets the ip hooks
    assert status(replace(facts, bridge_nf_call_iptables=None))["firewall"] == ["ok"]


def _rules(rs, chain):
    return [i["rule"] for i in rs["nftables"] if "rule" in i and i["rule"]["chain"] == chain]


def test_icc_true_and_an_ipip_fan_under_a_drop_policy():
    rs = ruleset_icc_false()
    _rules(rs, "FORWARD")[5]["expr"][-1] = {"accept": None}             # icc: true
    assert forward.forward_verdicts(rs, forward.Packet("fan250", "fan250"))[0].accept
    # IPIP: from the tunnel into the bridge nothing accepts a new connection; policy
    # accept lets it through, Docker's DROP policy (dockerd started first) does not
    assert forward.forward_verdicts(rs, forward.Packet("fan250-tun", "fan250"))[0].accept
    dropping = copy.deepcopy(rs)
    for item in dropping["nftables"]:
        if "chain" in item and item["chain"]["name"] == "FORWARD":
            item["chain"]["policy"] = "drop"
    [v] = forward.forward_verdicts(dropping, forward.Packet("fan250-tun", "fan250"))
    assert (v.accept, v.why) == (False, "policy drop")
    facts = healthy("ipip", ruleset=dropping)
    assert status(facts)["firewall"] == ["fail"]


def test_goto_return_sets_and_wildcards():
    rs = {"nftables": [
        {"chain": {"family": "inet", "table": "fw", "name": "fwd", "hook": "forward",
                   "type": "filter", "prio": 0, "policy": "drop"}},
        {"chain": {"family": "inet", "table": "fw", "name": "fans"}},
        {"chain": {"family": "ip", "table": "nat", "name": "post", "hook": "postrouting",
                   "type": "nat", "policy": "accept"}},
        {"rule": {"family": "inet", "table": "fw", "chain": "fwd", "expr": [
            {"match": {"op": "in", "left": {"ct": {"key": "state"}},
                       "right": {"set": ["established", "related"]}}}, {"accept": None}]}},
        {"rule": {"family": "inet", "table": "fw", "chain": "fwd", "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "fan*"}},
            {"goto": {"target": "fans"}}]}},
        {"rule": {"family": "inet", "table": "fw", "chain": "fans", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                       "right": 22}}, {"drop": None}]}},
        {"rule": {"family": "inet", "table": "fw", "chain": "fans", "expr": [
            {"match": {"op": "in", "left": {"meta": {"key": "oifname"}},
                       "right": {"set": ["fan250", "up0"]}}}, {"accept": None}]}},
    ]}
    [v] = forward.forward_verdicts(rs, forward.Packet("fan250", "fan250"))
    assert v.accept and v.table == "inet fw" and "chain fans rule 2" in v.why
    [v] = forward.forward_verdicts(rs, forward.Packet("fan250", "eth9"))
    assert (v.accept, v.why) == (False, "policy drop")            # goto fell off the end
    [v] = forward.forward_verdicts(rs, forward.Packet("eth9", "fan250"))
    assert not v.accept
    assert forward.forward_verdicts(rs, forward.Packet("fan250", "fan250"),
                                    skip_tables=("fw",)) == []
    assert forward.forward_verdicts(None, forward.Packet("a", "b")) == []


# -- packets -------------------------------------------------------------------------------------

def offer(xid: int, **opts) -> bytes:
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 2, 1, 6, 0, xid, 0, 0x8000, b"\0" * 4,
                       bytes([250, 1, 10, 40]), bytes([250, 1, 10, 1]), b"\0" * 4,
                       b"\x02\xfa\x6e\x01\x02\x03".ljust(16, b"\0"), b"\0" * 64, b"\0" * 128)
    body = bytes([53, 1, opts.get("type", 2), 0, 1, 4, 255, 0, 0, 0, 3, 4, 250, 1, 10, 1,
                  26, 2, 0x05, 0xAA, 54, 4, 250, 1, 10, 1, 255])
    return head + dhcp.MAGIC + body


def test_dhcp_discover_and_offer():
    packet = dhcp.discover(0x1234, b"\x02\xfa\x6e\x01\x02\x03")
    assert len(packet) >= 240 and packet[236:240] == dhcp.MAGIC
    assert packet[0] == 1 and struct.unpack("!I", packet[4:8])[0] == 0x1234
    assert struct.unpack("!H", packet[10:12])[0] == 0x8000          # answer by broadcast
    assert packet[240:243] == bytes([53, 1, 1])                      # DHCPDISCOVER
    assert dhcp.parse_offer(offer(0x1234), 0x1234) == {
        "address": "250.1.10.40", "router": "250.1.10.1", "mask": "255.0.0.0",
        "server": "250.1.10.1", "mtu": 1450}
    assert dhcp.parse_offer(offer(0x1234), 0x9999) is None
    assert dhcp.parse_offer(offer(0x1234, type=5), 0x1234) is None     # an ACK
    assert dhcp.parse_offer(b"short", 0x1234) is None
    cut = dhcp.parse_offer(offer(0x1234)[:254], 0x1234)                # options cut off
    assert (cut["router"], cut["mtu"]) == (None, None)


def test_icmp_echo():
    packet = icmp.echo_request(7, 1, 1450)
    assert len(packet) == 1450 - 20
    assert icmp.checksum(packet) == 0
    reply = packets.ipv4("250.2.10.1", "250.1.10.1", struct.pack("!BBHHH", 0, 0, 0, 7, 1),
                         proto=socket.IPPROTO_ICMP)
    assert icmp.parse_reply(reply, 7, 1, "250.2.10.1")
    assert not icmp.parse_reply(reply, 7, 2, "250.2.10.1")
    assert not icmp.parse_reply(reply, 7, 1, "250.2.10.9")
    assert not icmp.parse_reply(reply[:20], 7, 1, "250.2.10.1")


# -- health (shared with show) --------------------------------------------------------------------

def test_health_is_what_show_reports():
    st = state()
    routes = frozenset({RouteView("250.0.0.0/8", "fan250", "250.1.10.1")})
    assert health.problems(st, links(), routes) == []
    assert health.problems(st, {}, frozenset()) == [
        ("bridge", "bridge fan250 is missing"),
        ("route", "the overlay route 250.0.0.0/8 dev fan250 is missing"),
        ("tunnel", "tunnel fan250-tun is missing")]
    ipip = state("ipip")
    assert health.bridge_address(ipip) == "250.1.10.1/24"
    assert health.overlay_route(ipip) == ("250.0.0.0/8", "fan250-tun")
    assert health.problems(State("x"), {}, frozenset()) == [
        ("bridge", "no slice recorded (the fan is still coming up)")]
