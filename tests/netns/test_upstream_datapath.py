"""The upstream (no kernel fan patch) VXLAN datapath on real kernel objects.

Needs root (network namespaces, bpf(2), tc); skipped otherwise.  Builds, in
namespaces of a :class:`tests.harness.ns.Run`: an underlay "switch" (a bridge), three host
namespaces with veths into it (172.16.x.y/16), per host a fan bridge carrying
the overlay prefix, a collect-metadata VXLAN port with fangen's programs
attached through :mod:`fangen.datapath.upstream`, and container namespaces on
the fan bridge with static slice addresses.  Everything is removed in the
fixtures' finalizers, also on failure.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from dataclasses import dataclass, field, replace

import pytest

from fangen.datapath import bpf, upstream
from fangen.datapath.encap import Encap
from fangen.datapath.fanprog import FanParams
from fangen.fanmap import FanMap
from tests.harness import snapshot
from tests.harness.ns import (
    Run,
    ip,
    ipip_available,
    nsexec,
    ping,
    plug,
    sh,
    socket_in,
    switch_ns,
    sysctl,
    veth,
)
from tests.harness.packets import ipv4_udp, tcp_transfer, vxlan_frame

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: netns, bpf(2), tc")

OVERLAY = "250.0.0.0/8"
VX_MTU = 1450


@dataclass
class Host:
    ns: str
    addr: ipaddress.IPv4Address
    params: FanParams
    ipr: object
    containers: list = field(default_factory=list)   # [(ns, addr, mac)]

    @property
    def vx_index(self) -> int:
        return self.ipr.link_lookup(ifname="vx0")[0]


@dataclass
class Fan:
    run: Run
    fmap: FanMap
    switch: str
    hosts: list


def build_fan(run: Run, underlay: str, host_addrs: list[str],
              containers_per_host: int = 1, encap: bool = False, plain: bool = False,
              prefix: int | None = None, gateways: list[str] | None = None) -> Fan:
    """``encap``: the egress programs encapsulate IPv4 themselves (fangen.datapath.encap);
    else they set the tunnel key for every frame (what ARP, IPv6 and older kernels get).
    ``plain``: on a plain VXLAN device (the fan's VNI, no remote), the programs
    encapsulate every frame (fangen's default for an IPv4 VXLAN fan).  ``prefix``: the
    hosts' own prefix on ul0 (default: the underlay's), ``gateways``: each host's
    default route (a router the test adds to the switch)."""
    fmap = FanMap.parse(OVERLAY, underlay)
    sw = switch_ns(run, "sw")
    hosts = []
    for i, addr in enumerate(host_addrs, 1):
        h = run.netns(f"h{i}")
        own = ipaddress.IPv4Interface(f"{addr}/{prefix or fmap.underlay.prefixlen}")
        plug(sw, f"p{i}", h, "ul0", str(own))
        if gateways:
            ip(h, "route", "add", "default", "via", gateways[i - 1])
        params = FanParams.for_host(fmap, addr, "vxlan")
        if encap or plain:
            ul0 = json.loads(ip(h, "-j", "link", "show", "ul0").stdout)[0]["ifindex"]
            params = replace(params, encap=Encap(ipaddress.IPv4Address(addr), ul0, 8472,
                                                 own.network), plain=plain)
        gw = params.own_slice.network_address + 1
        ip(h, "link", "add", "fan0", "type", "bridge")
        ip(h, "addr", "add", f"{gw}/{fmap.overlay.prefixlen}", "dev", "fan0")
        kind = ["id", str(params.vni)] if plain else ["external"]
        ip(h, "link", "add", "vx0", "mtu", str(VX_MTU), "type", "vxlan", *kind,
           "dstport", "8472", "nolearning")
        ip(h, "link", "set", "vx0", "master", "fan0")
        ip(h, "link", "set", "vx0", "up")
        ip(h, "link", "set", "fan0", "up")
        host = Host(h, ipaddress.IPv4Address(addr), params, run.ipr(h))
        upstream.attach(host.ipr, host.vx_index, params)
        for j in range(containers_per_host):
            c = run.netns(f"h{i}c{j}")
            veth(h, f"c{j}", c, "eth0", mtu=VX_MTU)
            ip(h, "link", "set", f"c{j}", "master", "fan0")
            caddr = params.own_slice.network_address + 10 + j
            ip(c, "addr", "add", f"{caddr}/{fmap.overlay.prefixlen}", "dev", "eth0")
            mac = json.loads(ip(c, "-j", "link", "show", "eth0").stdout)[0]["address"]
            host.containers.append((c, caddr, mac))
        hosts.append(host)
    return Fan(run, fmap, sw, hosts)


def add_switch_counters(fan: Fan) -> None:
    """nft counters in the switch: VXLAN datagrams per destination host, and with our VNI."""
    vni = fan.hosts[0].params.vni
    rules = ["add table bridge fgt",
             "add chain bridge fgt fw { type filter hook forward priority 0; policy accept; }",
             "add counter bridge fgt vni_ok", "add counter bridge fgt vxlan_all",
             "add counter bridge fgt udp_csum"]
    for i, host in enumerate(fan.hosts, 1):
        rules.append(f"add counter bridge fgt to_h{i}")
        rules.append(f"add rule bridge fgt fw ip daddr {host.addr} udp dport 8472 "
                     f"counter name to_h{i}")
    rules.append("add rule bridge fgt fw udp dport 8472 counter name vxlan_all")
    rules.append(f"add rule bridge fgt fw udp dport 8472 @th,96,24 {vni} counter name vni_ok")
    rules.append("add rule bridge fgt fw udp dport 8472 udp checksum != 0 counter name udp_csum")
    script = "\n".join(rules) + "\n"
    path = fan.run.path("switch.nft")
    with open(path, "w") as f:
        f.write(script)
    nsexec(fan.switch, "nft", "-f", path)


def counters(fan: Fan) -> dict[str, int]:
    out = json.loads(nsexec(fan.switch, "nft", "-j", "list", "counters",
                            "table", "bridge", "fgt").stdout)
    return {o["counter"]["name"]: o["counter"]["packets"]
            for o in out["nftables"] if "counter" in o}


@pytest.fixture(scope="module", params=["key", "encap", "plain"])
def fan(request):
    with Run("a") as run:
        fan = build_fan(run, "172.16.0.0/16", ["172.16.1.2", "172.16.2.3", "172.16.3.4"],
                        containers_per_host=2, encap=request.param == "encap",
                        plain=request.param == "plain")
        add_switch_counters(fan)
        yield fan


# ---------------------------------------------------------------- traffic


def test_ping_across_hosts_goes_to_the_right_host_only(fan):
    h1, h2, h3 = fan.hosts
    before = counters(fan)
    src, dst = h1.containers[0], h2.containers[1]
    assert ping(src[0], str(dst[1]), count=3), f"{src[1]} cannot ping {dst[1]}"
    after = counters(fan)
    delta = {k: after[k] - before[k] for k in after}
    assert delta["to_h1"] >= 3 and delta["to_h2"] >= 3     # requests, replies (and ARP)
    assert delta["to_h3"] == 0, "a third host received fan traffic not meant for it"
    assert delta["vni_ok"] == delta["vxlan_all"], "VXLAN with a VNI other than the fan's"


def test_every_container_reaches_every_other(fan):
    everyone = [c for h in fan.hosts for c in h.containers]
    for a in everyone:
        for b in everyone:
            if a is not b:
                assert ping(a[0], str(b[1])), f"{a[1]} -> {b[1]}"


def test_vxlan_carries_no_outer_udp_checksum(fan):
    # like a VXLAN device built by hand and the kernel datapath's (IPv4: no UDP
    # checksum by default); bpf_skb_set_tunnel_key would ask for one per packet unless
    # told not to (BPF_F_ZERO_CSUM_TX)
    h1, h2, _ = fan.hosts
    before = counters(fan)
    assert ping(h1.containers[0][0], str(h2.containers[0][1]), count=3)
    tcp_transfer(h2.containers[0][0], str(h2.containers[0][1]), h1.containers[0][0],
                 size=1 << 20, port=5003)
    after = counters(fan)
    assert after["vxlan_all"] - before["vxlan_all"] >= 6
    assert after["udp_csum"] == before["udp_csum"], "outer UDP checksums were computed"


def _tx_packets(ns: str, dev: str, what: str = "packets") -> int:
    return json.loads(ip(ns, "-j", "-s", "link", "show", dev).stdout)[0]["stats64"]["tx"][what]


def test_encapsulated_ipv4_leaves_past_the_tunnel_device(fan):
    """With encapsulation in the program, IPv4 never reaches the device's transmit path
    (it leaves through the underlay interface directly); with the tunnel key, all of it
    does.  ARP takes the device either way (the other hosts' containers refresh their
    neighbours now and then: a few packets of background), except on a plain device,
    whose transmit path nothing takes."""
    h1, h2, _ = fan.hosts
    (cns, _, _), (_, daddr, _) = h1.containers[0], h2.containers[0]
    assert ping(cns, str(daddr), count=1)               # neighbours resolved
    tx = socket_in(cns, socket.AF_INET, socket.SOCK_DGRAM)
    before = (_tx_packets(h1.ns, "vx0"), _tx_packets(h1.ns, "ul0"))
    try:
        for _ in range(300):
            tx.sendto(b"fan", (str(daddr), 9))
    finally:
        tx.close()
    vx0, ul0 = (_tx_packets(h1.ns, dev) - was for dev, was in zip(("vx0", "ul0"), before))
    assert ul0 >= 300
    if h1.params.plain:
        assert vx0 == 0, f"{vx0} packets went through the plain vx0's transmit path"
    elif h1.params.encap is not None:
        assert vx0 < 30, f"{vx0} packets went through vx0's transmit path"
    else:
        assert vx0 >= 300


def test_host_reaches_remote_container(fan):
    h1, _, h3 = fan.hosts
    assert ping(h1.ns, str(h3.containers[0][1]))


def test_first_packet_to_a_forgotten_underlay_neighbour_arrives(fan):
    """The host's own packet carries the overlay route's dst (its device is the fan
    bridge).  When the underlay neighbour is unresolved the kernel queues the packet
    and, once resolved, re-sends it by the neighbour that dst names: with that dst
    still on it, an ARP for the remote's underlay address on the fan bridge, and the
    packet is lost.  The egress program replaces it (the tunnel key's metadata dst
    names no neighbour), so the first echo after the flush is answered."""
    h1, h2, _ = fan.hosts
    daddr = h2.containers[0][1]
    assert ping(h1.ns, str(daddr))                      # the overlay neighbour, resolved
    for _ in range(3):
        ip(h1.ns, "neigh", "flush", "dev", "ul0")
        assert ping(h1.ns, str(daddr), count=1), "the first echo was lost"
    assert f"{h2.addr} " not in ip(h1.ns, "neigh", "show", "dev", "fan0").stdout


def test_tcp_transfer(fan):
    h1, _, h3 = fan.hosts
    (cns, _, _), (sns, saddr, _) = h1.containers[0], h3.containers[1]
    got, sent_sha, got_sha = tcp_transfer(sns, str(saddr), cns, size=4 << 20, port=5001)
    assert got == 4 << 20
    assert got_sha == sent_sha


# ---------------------------------------------------------------- crafted VXLAN


SENDER_MAC = "02:fa:00:00:00:99"


def crafted(vni: int, dst_mac: str, dst_ip, port: int, payload: bytes) -> bytes:
    """A VXLAN datagram's payload: from 250.250.9.99 to dst_ip:port."""
    return vxlan_frame(vni, dst_mac, SENDER_MAC,
                       ipv4_udp("250.250.9.99", str(dst_ip), 40000, port, payload))


@pytest.fixture(scope="module")
def outsider(fan):
    """A namespace on the underlay switch holding 192.0.2.5/24 (outside the underlay)
    and 172.16.250.9/16 (inside), with a static neighbour for host 1."""
    ns = fan.run.netns("out")
    plug(fan.switch, "p9", ns, "eth0", "192.0.2.5/24")
    ip(ns, "addr", "add", "172.16.250.9/16", "dev", "eth0")
    h1 = fan.hosts[0]
    mac = json.loads(ip(h1.ns, "-j", "link", "show", "ul0").stdout)[0]["address"]
    ip(ns, "neigh", "replace", str(h1.addr), "lladdr", mac, "dev", "eth0", "nud", "permanent")
    return ns


def _sender_rule(fan: Fan, host: Host) -> None:
    """The sender check of a fan on a plain device: the input rule fangen renders for
    it (fangen.render.nft, ``any_address``), in a table of the test's own."""
    from fangen.config.model import build
    from fangen.render import nft as render_nft
    model = build("t", {"overlay": OVERLAY, "underlay": str(fan.fmap.underlay),
                        "type": "vxlan"})
    text = render_nft.ruleset(model, host.params.own_slice, fan.fmap.underlay, host.addr,
                              any_address=True)
    [rule] = [line.strip() for line in text.splitlines() if "udp dport" in line]
    assert "daddr" not in rule
    path = fan.run.path(f"{host.ns}-sender.nft")
    with open(path, "w") as fh:
        fh.write("table ip fgt-in {\n\tchain input {\n\t\ttype filter hook input priority "
                 f"filter; policy accept;\n\t\t{rule}\n\t}}\n}}\n")
    nsexec(host.ns, "nft", "-f", path)


def test_crafted_vxlan_needs_our_vni_and_an_underlay_sender(fan, outsider):
    h1 = fan.hosts[0]
    cns, caddr, cmac = h1.containers[0]
    vni = h1.params.vni
    if h1.params.plain:
        _sender_rule(fan, h1)
    rx = socket_in(cns, socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((str(caddr), 5555))
    senders = {}
    for src in ("172.16.250.9", "192.0.2.5"):
        s = socket_in(outsider, socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        senders[src] = s

    def send(src: str, vni_: int, tag: str) -> None:
        frame = crafted(vni_, cmac, caddr, 5555, tag.encode())
        senders[src].sendto(frame, (str(h1.addr), 8472))

    def received() -> set[str]:
        got = set()
        rx.settimeout(1.0)
        try:
            while True:
                got.add(rx.recv(2048).decode())
                rx.settimeout(0.3)
        except TimeoutError:
            return got

    try:
        send("172.16.250.9", vni, "good")
        send("172.16.250.9", vni + 1, "wrong-vni")
        send("192.0.2.5", vni, "outside-underlay")
        assert received() == {"good"}

        # control: without the programs the kernel itself accepts both bad frames,
        # so it is the ingress program that dropped them above; a plain device takes
        # only its own VNI, and its senders are checked by the fan's nft rule
        upstream.detach(h1.ipr, h1.vx_index)
        if h1.params.plain:
            nsexec(h1.ns, "nft", "delete", "table", "ip", "fgt-in")
        send("172.16.250.9", vni + 1, "wrong-vni-2")
        send("192.0.2.5", vni, "outside-underlay-2")
        assert received() == ({"outside-underlay-2"} if h1.params.plain
                              else {"wrong-vni-2", "outside-underlay-2"})
    finally:
        upstream.attach(h1.ipr, h1.vx_index, h1.params)
        if h1.params.plain:
            _sender_rule(fan, h1)
        rx.close()
        for s in senders.values():
            s.close()
    send_after = socket_in(outsider, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        send_after.bind(("192.0.2.5", 0))
        rx2 = socket_in(cns, socket.AF_INET, socket.SOCK_DGRAM)
        rx2.bind((str(caddr), 5556))
        rx2.settimeout(1.0)
        send_after.sendto(crafted(vni, cmac, caddr, 5556, b"x"), (str(h1.addr), 8472))
        with pytest.raises(socket.timeout):
            rx2.recv(2048)
        rx2.close()
    finally:
        send_after.close()


# ---------------------------------------------------------------- attach / detach


def _qdisc_kinds(ipr, index):
    return [q.get_attr("TCA_KIND") for q in ipr.get_qdiscs(index)]


def _tc_filters(ns: str, dev: str, hook: str) -> list[str]:
    out = sh("tc", "-n", ns, "filter", "show", "dev", dev, hook).stdout
    return [line for line in out.splitlines() if " handle " in line]


def test_attach_twice_leaves_one_filter_and_detach_leaves_nothing(fan):
    h = fan.hosts[1]
    ip(h.ns, "link", "add", "vx9", "type", "vxlan", "external", "dstport", "4790")
    try:
        index = h.ipr.link_lookup(ifname="vx9")[0]
        assert upstream.attached(h.ipr, index) == {}
        first = upstream.attach(h.ipr, index, h.params)
        second = upstream.attach(h.ipr, index, h.params)
        assert first == second == {"ingress": "fangen:fan:250.0.0.0/8",
                                   "egress": "fangen:fan:250.0.0.0/8"}
        for hook in ("ingress", "egress"):
            lines = _tc_filters(h.ns, "vx9", hook)
            assert len(lines) == 2, lines            # the fan's, then the final drop
            assert all("direct-action" in line for line in lines)
            assert "fangen:fan:250.0.0.0/8" in lines[0] and "fangen:drop" in lines[1]
        assert _qdisc_kinds(h.ipr, index).count("clsact") == 1
        upstream.detach(h.ipr, index)
        assert upstream.attached(h.ipr, index) == {}
        assert _tc_filters(h.ns, "vx9", "ingress") == _tc_filters(h.ns, "vx9", "egress") == []
        assert "clsact" not in _qdisc_kinds(h.ipr, index)
        upstream.detach(h.ipr, index)          # detaching again is harmless
    finally:
        ip(h.ns, "link", "del", "vx9", check=False)


def test_detach_keeps_a_clsact_that_others_use(fan):
    h = fan.hosts[1]
    ip(h.ns, "link", "add", "vx8", "type", "vxlan", "external", "dstport", "4791")
    try:
        index = h.ipr.link_lookup(ifname="vx8")[0]
        upstream.attach(h.ipr, index, h.params)
        # someone else's filter on the same hook, at another priority
        fd = bpf.prog_load(bpf.assemble([bpf.mov64_imm(bpf.R0, -1), bpf.exit_()]))
        try:
            h.ipr.tc("add-filter", "bpf", index, 1, fd=fd, name="someone-else",
                     parent=upstream.PARENT["ingress"], prio=7, direct_action=True)
        finally:
            os.close(fd)
        upstream.detach(h.ipr, index)
        assert upstream.attached(h.ipr, index) == {}
        assert "clsact" in _qdisc_kinds(h.ipr, index)
        assert len(_tc_filters(h.ns, "vx8", "ingress")) == 1
    finally:
        ip(h.ns, "link", "del", "vx8", check=False)


def _bpf_filter(ipr, index: int, hook: str, name: str, prio: int, verdict: int) -> None:
    fd = bpf.prog_load(bpf.assemble([bpf.mov64_imm(bpf.R0, verdict), bpf.exit_()]))
    try:
        ipr.tc("add-filter", "bpf", index, 1, fd=fd, name=name, parent=upstream.PARENT[hook],
               prio=prio, protocol=upstream.ETH_P_ALL, direct_action=True)
    finally:
        os.close(fd)


def test_several_fans_on_one_device_and_the_last_takes_the_drop_filter(fan):
    """The shared-device bookkeeping: one filter per fan and hook in front of one drop
    filter; attaching again replaces in place; the fans are the device's users."""
    h = fan.hosts[1]
    other = FanParams.for_host(FanMap.parse("251.0.0.0/8", "172.16.0.0/16"), h.addr, "vxlan")
    ip(h.ns, "link", "add", "vx7", "type", "vxlan", "external", "dstport", "4792")
    try:
        index = h.ipr.link_lookup(ifname="vx7")[0]
        # a filter of the previous release (one fan per device) is replaced, not kept
        h.ipr.tc("add", "clsact", index)
        _bpf_filter(h.ipr, index, "ingress", "fangen:fan_vx_in", upstream.PRIO, 0)
        assert upstream.attach(h.ipr, index, h.params, "a") == \
            {"ingress": "fangen:fan:a", "egress": "fangen:fan:a"}
        assert upstream.attach(h.ipr, index, other, "b") == \
            {"ingress": "fangen:fan:b", "egress": "fangen:fan:b"}
        handles = {line.split(" handle ")[1].split()[0]
                   for line in _tc_filters(h.ns, "vx7", "egress")}
        upstream.attach(h.ipr, index, h.params, "a")          # again: in place
        assert {line.split(" handle ")[1].split()[0]
                for line in _tc_filters(h.ns, "vx7", "egress")} == handles
        assert upstream.users(h.ipr, index) == {"a", "b"}
        for hook in ("ingress", "egress"):
            names = _tc_filters(h.ns, "vx7", hook)
            assert len(names) == 3, names
            assert sum("fangen:drop" in n for n in names) == 1
            assert "fangen:drop" in names[-1]                 # last: highest priority number
            assert not any("fangen:fan_vx" in n for n in names)      # the legacy one went
        assert upstream.detach(h.ipr, index, "a") == {"b"}
        assert upstream.attached(h.ipr, index, "a") == {}
        assert upstream.attached(h.ipr, index, "b") == \
            {"ingress": "fangen:fan:b", "egress": "fangen:fan:b"}
        assert len(_tc_filters(h.ns, "vx7", "ingress")) == 2
        assert upstream.detach(h.ipr, index, "b") == set()
        assert _tc_filters(h.ns, "vx7", "ingress") == _tc_filters(h.ns, "vx7", "egress") == []
        assert "clsact" not in _qdisc_kinds(h.ipr, index)
        # a fan's filter without the drop behind it does not count as attached
        upstream.attach(h.ipr, index, h.params, "a")
        drop = [m for m in upstream._filters(h.ipr, index, "ingress")
                if upstream._name(m) == upstream.DROP_NAME]
        upstream._delete(h.ipr, index, "ingress", drop[0])
        assert upstream.attached(h.ipr, index, "a") == {"egress": "fangen:fan:a"}
        assert upstream.attach(h.ipr, index, h.params, "a") == \
            {"ingress": "fangen:fan:a", "egress": "fangen:fan:a"}
    finally:
        ip(h.ns, "link", "del", "vx7", check=False)


def test_two_fans_chained_on_one_device_each_carry_their_own_overlay():
    """Dispatch on real traffic (VXLAN here, the IPIP fans' shared device works the same
    way; tests/kernel runs that in the VM): two fans' programs on one collect-metadata
    device per host, overlays 250/8 (VNI A) and 251/8 (VNI B) on one bridge.  Each
    fan's egress program claims its overlay and passes the rest on; ingress dispatches by
    VNI; detaching one fan stops only its traffic."""
    with Run("m") as run:
        fmaps = [FanMap.parse("250.0.0.0/8", "172.16.0.0/16"),
                 FanMap.parse("251.0.0.0/8", "172.16.0.0/16")]
        sw = switch_ns(run, "sw")
        hosts = []
        for i, addr in enumerate(["172.16.1.2", "172.16.2.3"], 1):
            h = run.netns(f"h{i}")
            plug(sw, f"p{i}", h, "ul0", f"{addr}/16")
            ip(h, "link", "add", "fan0", "type", "bridge")
            ip(h, "link", "add", "vx0", "mtu", str(VX_MTU), "type", "vxlan", "external",
               "dstport", "8472", "nolearning")
            ip(h, "link", "set", "vx0", "master", "fan0")
            ip(h, "link", "set", "vx0", "up")
            ip(h, "link", "set", "fan0", "up")
            ipr = run.ipr(h)
            index = ipr.link_lookup(ifname="vx0")[0]
            containers = []
            for k, fmap in enumerate(fmaps):
                params = FanParams.for_host(fmap, addr, "vxlan")
                upstream.attach(ipr, index, params, f"fan{k}")
                c = run.netns(f"h{i}c{k}")
                veth(h, f"c{k}", c, "eth0", mtu=VX_MTU)
                ip(h, "link", "set", f"c{k}", "master", "fan0")
                caddr = params.own_slice.network_address + 10
                ip(c, "addr", "add", f"{caddr}/8", "dev", "eth0")
                containers.append((c, caddr))
            hosts.append((h, ipr, index, containers))
        (_, ipr1, idx1, c1), (_, _, _, c2) = hosts
        assert upstream.users(ipr1, idx1) == {"fan0", "fan1"}
        for k in (0, 1):
            assert ping(c1[k][0], str(c2[k][1]), count=2), f"fan{k}"
            assert ping(c2[k][0], str(c1[k][1])), f"fan{k} back"
        # host 1 without fan0's programs: fan0 stops (the final drop), fan1 carries on
        assert upstream.detach(ipr1, idx1, "fan0") == {"fan1"}
        assert not ping(c1[0][0], str(c2[0][1]), count=2)
        assert ping(c1[1][0], str(c2[1][1]), count=2)


# ---------------------------------------------------------------- a routed underlay


@pytest.mark.parametrize("mode", ["encap", "plain"])
def test_remotes_behind_a_router_are_reached_through_it(mode):
    """Two hosts on two /24 segments of the /16 underlay, each with a default route to a
    router: the remote is outside the prefix the program sends to directly.  With
    ``encap`` such a packet keeps the tunnel key and the device routes it; on a plain
    device the program hands it to the kernel's route lookup from the underlay
    interface (``bpf_redirect_neigh`` without a next hop), ARP included.  Either way
    the frames cross the router, and TCP (GSO) arrives whole."""
    with Run("r") as run:
        fan = build_fan(run, "172.16.0.0/16", ["172.16.1.2", "172.16.2.3"], prefix=24,
                        gateways=["172.16.1.1", "172.16.2.1"], encap=mode == "encap",
                        plain=mode == "plain")
        router = run.netns("rt")
        plug(fan.switch, "p8", router, "eth0", "172.16.1.1/24")
        ip(router, "addr", "add", "172.16.2.1/24", "dev", "eth0")
        sysctl(router, "net.ipv4.ip_forward", 1)
        sysctl(router, "net.ipv4.conf.all.send_redirects", 0)
        sysctl(router, "net.ipv4.conf.eth0.send_redirects", 0)
        nsexec(router, "nft", "add", "table", "ip", "t")
        nsexec(router, "nft", "add", "chain", "ip", "t", "f",
               "{ type filter hook forward priority 0; }")
        nsexec(router, "nft", "add", "rule", "ip", "t", "f", "udp", "dport", "8472", "counter")
        h1, h2 = fan.hosts
        (c1, a1, _), (c2, a2, _) = h1.containers[0], h2.containers[0]
        assert ping(c1, str(a2), count=2), "host 1's container -> host 2's"
        assert ping(c2, str(a1), count=2), "host 2's container -> host 1's"
        got, sent_sha, got_sha = tcp_transfer(c2, str(a2), c1, size=1 << 20, port=5004)
        assert got == 1 << 20 and got_sha == sent_sha
        out = nsexec(router, "nft", "list", "table", "ip", "t").stdout
        forwarded = int(out.split("counter packets")[1].split()[0])
        assert forwarded >= 8, out
        if mode == "plain":
            assert _tx_packets(h1.ns, "vx0") == 0


# ---------------------------------------------------------------- state size


def test_host_state_does_not_depend_on_the_underlay_prefix():
    """Same fan, same traffic, underlay /16 vs /24: the same number of kernel objects."""
    counts = {}
    for tag, underlay, addrs in (
            ("p", "172.16.0.0/16", ["172.16.1.2", "172.16.2.3", "172.16.3.4"]),
            ("q", "172.16.5.0/24", ["172.16.5.2", "172.16.5.3", "172.16.5.4"])):
        with Run(tag) as run:
            fan = build_fan(run, underlay, addrs, containers_per_host=1)
            h1 = fan.hosts[0]
            for other in fan.hosts[1:]:
                assert ping(h1.containers[0][0], str(other.containers[0][1]))
            counts[underlay] = snapshot.count(h1.ns)
    small, large = counts["172.16.5.0/24"], counts["172.16.0.0/16"]
    assert small == large, counts
    assert large["tc filters"] == 4     # per hook: the fan's filter and the final drop


# ---------------------------------------------------------------- IPIP mode (L3, as fanctl)


@pytest.mark.skipif(os.geteuid() == 0 and not ipip_available(),
                    reason="this kernel has no ipip (runs in the VM with NET_IPIP)")
@pytest.mark.parametrize("encap", [False, True], ids=["key", "encap"])
def test_ipip_mode_routes_the_overlay_through_an_external_tunnel(encap):
    """fanctl's layout: slice on the bridge, the whole overlay via the tunnel, src the .1.
    ``encap``: the programs encapsulate IPv4 themselves, the tunnel's transmit path
    sees none of it; a 4 MiB TCP transfer checks GSO of the IPIP-marked packets, and
    first packets to unresolved underlay neighbours arrive."""
    with Run("j") as run:
        fmap = FanMap.parse(OVERLAY, "172.16.0.0/16")
        sw = switch_ns(run, "sw")
        hosts = []
        for i, addr in enumerate(["172.16.1.2", "172.16.2.3", "172.16.3.4"], 1):
            h = run.netns(f"h{i}")
            plug(sw, f"p{i}", h, "ul0", f"{addr}/16")
            sysctl(h, "net.ipv4.ip_forward", 1)
            params = FanParams.for_host(fmap, addr, "ipip")
            if encap:
                ul0 = json.loads(ip(h, "-j", "link", "show", "ul0").stdout)[0]["ifindex"]
                params = replace(params, encap=Encap(ipaddress.IPv4Address(addr), ul0, 0,
                                                     fmap.underlay))
            gw = params.own_slice.network_address + 1
            ip(h, "link", "add", "fan0", "type", "bridge")
            ip(h, "addr", "add", f"{gw}/{params.own_slice.prefixlen}", "dev", "fan0")
            ip(h, "link", "set", "fan0", "up")
            ip(h, "link", "add", "tun0", "mtu", "1480", "type", "ipip", "external")
            ip(h, "link", "set", "tun0", "up")
            ip(h, "route", "add", str(fmap.overlay), "dev", "tun0", "src", str(gw))
            ipr = run.ipr(h)
            index = ipr.link_lookup(ifname="tun0")[0]
            assert upstream.attach(ipr, index, params) == {
                "ingress": "fangen:fan:250.0.0.0/8", "egress": "fangen:fan:250.0.0.0/8"}
            c = run.netns(f"h{i}c0")
            veth(h, "c0", c, "eth0", mtu=1480)
            ip(h, "link", "set", "c0", "master", "fan0")
            caddr = params.own_slice.network_address + 10
            ip(c, "addr", "add", f"{caddr}/{params.own_slice.prefixlen}", "dev", "eth0")
            ip(c, "route", "add", "default", "via", str(gw))
            hosts.append((h, c, caddr))
        (h1, c1, a1), (h2, c2, a2), (h3, c3, a3) = hosts
        before = _tx_packets(h1, "tun0", "bytes")
        # every IPIP packet carries the overlay route's dst: the first one, queued for
        # the unresolved underlay neighbour, must still leave (see the VXLAN test above)
        assert ping(c1, str(a2), count=1), "the first packet was lost"
        for _ in range(2):
            ip(h1, "neigh", "flush", "dev", "ul0")
            assert ping(c1, str(a2), count=1), "the first packet after a flush was lost"
        assert ping(c1, str(a2), count=2)
        assert ping(c3, str(a1), count=2)
        assert ping(h1, str(a3))
        got, sent_sha, got_sha = tcp_transfer(c2, str(a2), c1, size=4 << 20, port=5002)
        assert (got, got_sha) == (4 << 20, sent_sha)
        # bytes, not packets: with GSO the 4 MiB can leave as fewer than 100 packets
        through_tun0 = _tx_packets(h1, "tun0", "bytes") - before
        assert through_tun0 == 0 if encap else through_tun0 >= 4 << 20, through_tun0
