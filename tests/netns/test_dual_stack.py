"""A dual-stack fan end to end: three hosts, real networkd, real dnsmasq, ``fangen run``.

The lab of tests/e2e (switch with DHCP for 172.16.0.0/16, three host namespaces with
real systemd-networkd on a private bus) with IPv6 left on in its namespaces and the VXLAN
fan 250.0.0.0/8 given ``overlay6: fd5a:fa00::/48``: host 172.16.N.10 owns
fd5a:fa00:0:N0a::/64.  Each host gets one container (udhcpc for IPv4; the kernel's SLAAC
from dnsmasq's router advertisements for IPv6).  Checked: the containers' IPv6 addresses,
default routes and MTU; ping6 and TCP across hosts; on the switch, every VXLAN frame with
IPv6 inside goes to the host that owns the inner destination (or the solicitation's
target); IPv4 still works; ``fangen down`` leaves the host as it was, IPv6 included.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket
import struct
import threading
import time

import pytest

from fangen.fanmap import FanMap6, host_link_local, hostpart_of_link_local
from tests.harness import HarnessError, Lab, fan_stanza, snapshot
from tests.harness.host import wait
from tests.harness.ns import cmdline, in_netns, ip, nsexec, pids_in, sh
from tests.harness.switch import UNDERLAY

pytestmark = [
    pytest.mark.root, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, networkd, tc, nft"),
]

FAN = "fan250"
OVERLAY6 = ipaddress.IPv6Network("fd5a:fa00::/48")
FMAP6 = FanMap6(OVERLAY6, UNDERLAY)
VXLAN_PORT = 8472
MTU = 1500 - 50
FORWARD6 = "/proc/sys/net/ipv6/conf/all/forwarding"


def _ipv6_state(ns: str) -> dict:
    """What IPv6 fangen could leave behind: global addresses, routes in the overlay6,
    ip6 tables, the forwarding sysctl."""
    addrs = json.loads(ip(ns, "-j", "-6", "addr", "show", "scope", "global").stdout or "[]")
    routes = json.loads(ip(ns, "-j", "-6", "route", "show").stdout or "[]")
    tables = nsexec(ns, "nft", "list", "tables", "ip6", check=False).stdout.split()
    return {"addresses": sorted(f"{link['ifname']} {a['local']}/{a['prefixlen']}"
                                for link in addrs for a in link.get("addr_info", [])
                                if "local" in a),
            "routes": sorted(r["dst"] for r in routes
                             if r.get("dst", "").startswith(str(OVERLAY6.network_address)[:9])),
            "tables": tables,
            "forwarding": nsexec(ns, "cat", FORWARD6).stdout.strip()}


@pytest.fixture(scope="module")
def lab(request):
    lab = Lab(hosts=3, containers=1, fans=fan_stanza(FAN, overlay6=str(OVERLAY6)), tag="6",
              ipv6=True)
    failed_before = request.session.testsfailed
    try:
        lab.start_hosts()
        wait(lambda: all(ip(h.ns, "link", "show", "dev", h.bridge(), check=False).returncode == 0
                         for h in lab.hosts), 10, "networkd's fan bridges")
        lab.before = {h.name: (snapshot.snapshot(h.ns), _ipv6_state(h.ns)) for h in lab.hosts}
        lab.start_fans()
        lab.wait_fans()
        lab.add_containers()
        for c in lab.containers:
            c.wait_address6()
        yield lab
    finally:
        if request.session.testsfailed != failed_before:
            lab.run.keep_workdir = True
            print(f"\nharness logs kept in {lab.run.workdir}")
        lab.close()


def _address6(c) -> str | None:
    return c.address6


def _slice6(host) -> ipaddress.IPv6Network:
    return FMAP6.slice_for_host(host.address())


# -- addresses -----------------------------------------------------------------------------

def test_bridges_hold_the_first_address_of_their_ipv6_slice(lab):
    for host in lab.hosts:
        want = f"{_slice6(host).network_address + 1}/{OVERLAY6.prefixlen}"
        data = json.loads(ip(host.ns, "-j", "-6", "addr", "show", "dev", host.bridge()).stdout)
        got = [f"{a['local']}/{a['prefixlen']}" for a in data[0]["addr_info"]]
        assert want in got, (host.name, got)
        # the link-local address carries the host bits (RAs come from it); the
        # kernel's own (from the MAC) is not there
        hostpart = int(ipaddress.IPv4Address(host.address())) & int(UNDERLAY.hostmask)
        assert [a for a in got if a.startswith("fe80:")] == [f"{host_link_local(hostpart)}/64"]
        assert nsexec(host.ns, "cat", FORWARD6).stdout.strip() == "1"


def test_containers_autoconfigure_in_their_hosts_slice(lab):
    for c in lab.containers:
        addr = ipaddress.IPv6Address(_address6(c))
        assert addr in _slice6(c.host), (c.name, addr, _slice6(c.host))
        routes = json.loads(ip(c.ns, "-j", "-6", "route", "show", "default").stdout)
        hostpart = int(ipaddress.IPv4Address(c.host.address())) & int(UNDERLAY.hostmask)
        assert routes and routes[0]["gateway"] == str(host_link_local(hostpart)), routes
        assert nsexec(c.ns, "cat", "/proc/sys/net/ipv6/conf/eth0/mtu").stdout.strip() == \
            str(MTU)


def test_fangen_map_names_the_host_of_a_container(lab):
    for c in lab.containers:
        res = c.host.fangen("map", "--fan", FAN, _address6(c), "--json")
        answer = json.loads(res.stdout)
        assert answer["underlay_host"] == c.host.address()
        assert answer["slice6"] == str(_slice6(c.host))


# -- traffic -------------------------------------------------------------------------------

def test_ping6_matrix_across_hosts(lab):
    """The first echo of each pair already gets through (neighbour discovery across
    the fan, both ways, within ping's second)."""
    failed = [(a.name, b.name) for a in lab.containers for b in lab.containers
              if a is not b and not a.ping(_address6(b), count=1, wait_s=2)]
    assert not failed, f"unreachable over IPv6: {failed}"


def test_tcp_over_ipv6_across_hosts(lab):
    server, client = lab.containers[0], lab.containers[-1]
    data = os.urandom(8 << 20)
    addr = _address6(server)
    with in_netns(server.ns):
        srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.bind((addr, 5206))
    srv.listen(1)
    srv.settimeout(20)
    got = {}

    def serve():
        conn, _ = srv.accept()
        digest, total = hashlib.sha256(), 0
        with conn:
            conn.settimeout(20)
            while chunk := conn.recv(1 << 16):
                digest.update(chunk)
                total += len(chunk)
        got["total"], got["digest"] = total, digest.hexdigest()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with in_netns(client.ns):
            cli = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        with cli:
            cli.settimeout(20)
            cli.connect((addr, 5206))
            cli.sendall(data)
            cli.shutdown(socket.SHUT_WR)
            thread.join(20)
    finally:
        srv.close()
    assert (got.get("total"), got.get("digest")) == (len(data), hashlib.sha256(data).hexdigest())


def _capture(ns: str, dev: str, seconds: float, out: list) -> None:
    """Every frame on ``dev`` in ``ns`` for ``seconds`` (AF_PACKET), appended to ``out``."""
    with in_netns(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    with sock:
        sock.bind((dev, 0))
        sock.settimeout(0.2)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                out.append(sock.recv(65535))
            except TimeoutError:
                continue


def _vxlan_ipv6(frame: bytes):
    """(outer IPv4 source, outer IPv4 destination, the inner address that decides, is it
    a neighbour solicitation) of a VXLAN frame with IPv6 inside, else None."""
    if len(frame) < 14 + 20 + 8 + 8 + 14 + 40 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[14 + 9] != 17:
        return None
    udp = 14 + ihl
    if struct.unpack("!H", frame[udp + 2:udp + 4])[0] != VXLAN_PORT:
        return None
    inner = udp + 8 + 8
    if frame[inner + 12:inner + 14] != b"\x86\xdd":
        return None
    ip6 = inner + 14
    dst = ipaddress.IPv6Address(frame[ip6 + 24:ip6 + 40])
    solicitation = frame[ip6 + 6] == 58 and frame[ip6 + 40] == 135
    if solicitation:                                              # the target decides
        dst = ipaddress.IPv6Address(frame[ip6 + 48:ip6 + 64])
    return (ipaddress.IPv4Address(frame[14 + 12:14 + 16]),
            ipaddress.IPv4Address(frame[14 + 16:14 + 20]), dst, solicitation)


def test_outer_packets_go_to_the_computed_host(lab):
    a, b = lab.containers[0], lab.containers[1]
    frames: list = []
    port = a.host.switch_port            # what host 1 sends to the underlay and receives
    thread = threading.Thread(target=_capture, args=(lab.switch.ns, port, 4.0, frames))
    thread.start()
    time.sleep(0.3)
    nsexec(a.ns, "ip", "-6", "neigh", "flush", "dev", "eth0", check=False)
    nsexec(a.host.ns, "ip", "-6", "neigh", "flush", "dev", a.host.bridge(), check=False)
    assert a.ping(_address6(b), count=3, wait_s=1)
    thread.join()
    seen = [found for f in frames if (found := _vxlan_ipv6(f)) is not None]
    sent = [(dst, inner) for src, dst, inner, _ in seen if str(src) == a.host.address()]
    assert sent, "no VXLAN frame with IPv6 inside left host 1"
    assert {str(dst) for dst, _ in sent} == {b.host.address()}
    for src, dst, inner, _ in seen:          # both ways: each to the owner of what is inside
        if inner in OVERLAY6:
            assert dst == FMAP6.host_for_address(inner), (src, dst, inner)
        else:                                # a fan bridge's link-local address
            hostpart = hostpart_of_link_local(inner)
            assert hostpart is not None, (src, dst, inner)
            assert int(dst) == int(UNDERLAY.network_address) | hostpart, (src, dst, inner)
    # solicitations were mapped by their target: at least one NS crossed, none for
    # multicast or other link-local addresses (RAs, MLD stay on their host)
    assert not [inner for _, _, inner, _ in seen if inner.is_multicast]
    assert any(ns for *_, ns in seen), "no neighbour solicitation crossed (caches flushed)"


def test_ipv4_keeps_working(lab):
    matrix = lab.ping_matrix()
    assert not [pair for pair, ok in matrix.items() if not ok]


# -- down ----------------------------------------------------------------------------------

def test_down_leaves_nothing(lab):
    host = lab.hosts[2]
    for c in lab.containers_of(host):
        lab.run.stop(c.client)
        sh("ip", "netns", "del", c.ns)
        lab.run.namespaces.remove(c.ns)
        lab.containers.remove(c)
    host.stop_fangen_run()
    host.fangen("down", FAN)
    before, before6 = lab.before[host.name]
    try:
        wait(lambda: snapshot.diff(before, snapshot.snapshot(host.ns)) == {} and
             _ipv6_state(host.ns) == before6, 5, "the host to look as before")
    except HarnessError:
        pass
    assert snapshot.diff(before, snapshot.snapshot(host.ns)) == {}
    assert _ipv6_state(host.ns) == before6
    assert not [p for p in pids_in(host.ns) if "dnsmasq" in cmdline(p)]


# -- without networkd ----------------------------------------------------------------------

DS_YAML = """network:
  version: 2
  fan:
    fan250:
      overlay: 250.0.0.0/8
      underlay: 172.16.0.0/16
      type: vxlan
      overlay6: fd5a:fa00::/48
"""


def test_up_without_networkd_and_down(tmp_path):
    """fangen makes the bridge itself (no networkd): its only link-local address is
    fangen's (the kernel's from the MAC is never made); a container autoconfigures;
    down restores the namespace, IPv6 forwarding included."""
    from tests.harness import cli
    from tests.harness.ns import Run, underlay_host, veth
    from tests.netns.test_runtime_updown import _end_dnsmasq, snapshot as full_snapshot

    run = Run("d6", ipv6=True)
    root = str(tmp_path / "root")
    try:
        h, _ = underlay_host(run)                               # 172.16.3.4/16
        c = run.netns("c")
        veth(h, "c0", c, "eth0")
        cli.install(root, DS_YAML)
        # the kernel's link-local addresses of the veths first finish their DAD
        time.sleep(0.2)
        wait(lambda: not ip(h, "-6", "addr", "show", "tentative").stdout.strip(), 10,
             "duplicate address detection on the host's veths")
        before, before6 = full_snapshot(h), _ipv6_state(h)
        cli.fangen(h, root, "up", "fan250")
        got = json.loads(ip(h, "-j", "-6", "addr", "show", "dev", "fan250").stdout)
        assert sorted(f"{a['local']}/{a['prefixlen']}" for a in got[0]["addr_info"]) == \
            ["fd5a:fa00:0:304::1/48", "fe80::fa:0:0:304/64"]
        assert nsexec(h, "cat", FORWARD6).stdout.strip() == "1"
        [row] = json.loads(cli.fangen(h, root, "show", "--json").stdout)
        assert (row["overlay6"], row["slice6"], row["state"]) == \
            ("fd5a:fa00::/48", "fd5a:fa00:0:304::/64", "up")
        ip(h, "link", "set", "c0", "master", "fan250")
        wait(lambda: [a for link in json.loads(ip(c, "-j", "-6", "addr", "show", "dev", "eth0",
                                                  "scope", "global").stdout or "[]")
                      for a in link.get("addr_info", []) if "local" in a
                      and not a.get("tentative")], 70, "a SLAAC address in the container")
        route = ip(c, "-6", "route", "show", "default").stdout
        assert route.startswith("default via fe80::fa:0:0:304 dev eth0"), route
        ip(h, "link", "set", "c0", "nomaster")
        cli.fangen(h, root, "down", "fan250")
        assert full_snapshot(h) == before
        assert _ipv6_state(h) == before6
    finally:
        _end_dnsmasq(root)
        run.close()


DHCLIENT_SCRIPT = """#!/bin/sh
[ -n "$new_ip6_address" ] && echo "$reason $new_ip6_address/$new_ip6_prefixlen" >> "{out}"
exit 0
"""


def test_dhcp6_hands_out_addresses_from_the_slice(tmp_path):
    """dhcp6: true: a DHCPv6 client (ISC dhclient -6, its script ours, not the host's)
    gets an address from the slice after 1 + host-reserve; SLAAC still works."""
    from tests.harness import cli
    from tests.harness.ns import Run, underlay_host, veth
    from tests.netns.test_runtime_updown import _end_dnsmasq

    run = Run("d6", ipv6=True)
    root = str(tmp_path / "root")
    out = tmp_path / "dhcp6.out"
    script = tmp_path / "dhclient.sh"
    script.write_text(DHCLIENT_SCRIPT.format(out=out))
    script.chmod(0o755)
    try:
        h, _ = underlay_host(run)
        c = run.netns("c")
        veth(h, "c0", c, "eth0")
        cli.install(root, DS_YAML + "      dhcp6: true\n      host-reserve: 15\n")
        cli.fangen(h, root, "up", "fan250")
        ip(h, "link", "set", "c0", "master", "fan250")
        wait(lambda: not ip(c, "-6", "addr", "show", "dev", "eth0", "tentative").stdout.strip()
             and ip(c, "-6", "addr", "show", "dev", "eth0", "scope", "link").stdout.strip(),
             10, "the container's link-local address")
        nsexec(c, "dhclient", "-6", "-1", "-sf", str(script), "-lf", str(tmp_path / "leases"),
               "-pf", str(tmp_path / "dhclient.pid"), "eth0", timeout=40)
        reasons = out.read_text().split()
        addr = ipaddress.IPv6Interface(reasons[1])
        assert reasons[0] == "BOUND6", reasons
        assert addr.ip in ipaddress.IPv6Network("fd5a:fa00:0:304::/64"), reasons
        assert int(addr.ip) - int(ipaddress.IPv6Address("fd5a:fa00:0:304::")) >= 1 + 1 + 15
        wait(lambda: ip(c, "-6", "route", "show", "default").stdout.strip(), 20,
             "a default route from the router advertisement")
    finally:
        pid_file = tmp_path / "dhclient.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), 9)
            except (ValueError, OSError):
                pass
        _end_dnsmasq(root)
        run.close()
