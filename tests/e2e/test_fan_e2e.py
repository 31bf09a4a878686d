"""End to end: three hosts on a DHCP underlay, real networkd, ``fangen run``, containers.

One lab per module (set up once, ~10 s): a switch namespace with dnsmasq handing out
172.16.0.0/16, an outside namespace (203.0.113.1, the underlay's router), three
host namespaces each running real systemd-networkd (private mount namespace,
private dbus-daemon) on the units ``fangen generate`` wrote from a fan.d file
(VXLAN fan 250.0.0.0/8 over 172.16.0.0/16, upstream datapath) plus
``fangen run fan250 --no-systemd`` in the background, and two containers per host
getting addresses from the fan's dnsmasq.

The tests run in file order and build on each other: host 2's underlay address
moves half-way, and host 3 is taken down at the end.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import time

import pytest

from tests.harness import DOC_ADDR, HarnessError, Lab, snapshot
from tests.harness.host import wait
from tests.harness.ns import cmdline, ip, pids_in, sh
from tests.harness.outside import WHOAMI_PORT
from tests.harness.packets import UdpListener, ipv4_udp, send_udp, tcp_transfer, vxlan_frame, whoami
from tests.harness.switch import host_address

pytestmark = [
    pytest.mark.root, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, networkd, tc, nft"),
]

FAN = "fan250"
OVERLAY = ipaddress.IPv4Network("250.0.0.0/8")
UNDERLAY_MTU = 1500
VXLAN_PORT = 8472
VNI = int(OVERLAY.network_address) >> 8


@pytest.fixture(scope="module")
def lab(request):
    lab = Lab(hosts=3, containers=2, tag="e")
    failed_before = request.session.testsfailed
    try:
        lab.start_hosts()
        # what each host holds before fangen touches it (networkd already made the bridge)
        wait(lambda: all(ip(h.ns, "link", "show", "dev", h.bridge(), check=False).returncode == 0
                         for h in lab.hosts), 10, "networkd's fan bridges")
        lab.before = {h.name: snapshot.snapshot(h.ns) for h in lab.hosts}
        lab.start_fans()
        lab.wait_fans()
        lab.add_containers()
        yield lab
    finally:
        if request.session.testsfailed != failed_before:
            lab.run.keep_workdir = True          # logs of networkd, fangen run, dnsmasq, udhcpc
            print(f"\nharness logs kept in {lab.run.workdir}")
        lab.close()


def _gateway(host) -> str:
    return str(host.slice_for().network_address + 1)


def _assert_matrix(lab, containers=None):
    matrix = lab.ping_matrix(containers)
    failed = sorted(pair for pair, ok in matrix.items() if not ok)
    assert not failed, f"unreachable: {failed}"


def _dnsmasq_pid(host) -> int:
    path = os.path.join(host.root, "run/fangen", FAN, "dnsmasq.pid")
    with open(path) as fh:
        return int(fh.read().strip())


# -- addresses and traffic -----------------------------------------------------------------

def test_containers_get_addresses_in_their_hosts_slice(lab):
    for c in lab.containers:
        lease = c.lease()
        slice_ = c.host.slice_for()
        assert ipaddress.IPv4Address(lease["ip"]) in slice_, (c.name, lease, slice_)
        assert lease["router"] == _gateway(c.host)
        assert int(lease["mtu"]) == UNDERLAY_MTU - 50
        assert int(lease["prefixlen"]) == OVERLAY.prefixlen        # VXLAN: L2 over the overlay


def test_slices_follow_the_underlay_leases(lab):
    for host in lab.hosts:
        assert host.address() == host_address(host.index)
        assert f"{_gateway(host)}/{OVERLAY.prefixlen}" in [
            f"{a}/{OVERLAY.prefixlen}" for a in host.addresses(host.bridge())]


def test_ping_matrix_across_hosts(lab):
    _assert_matrix(lab)


def test_tcp_transfer_across_hosts(lab):
    server, client = lab.containers[0], lab.containers[-1]
    assert server.host is not client.host
    got, sent_digest, got_digest = tcp_transfer(server.ns, server.address, client.ns,
                                                size=16 << 20)
    assert got == 16 << 20
    assert got_digest == sent_digest


def test_nat_to_the_outside(lab):
    lab.outside.whoami()
    for c in (lab.containers[0], lab.containers[2]):
        seen = whoami(c.ns, DOC_ADDR, WHOAMI_PORT)
        assert seen == c.host.address(), f"{c.name}: outside saw {seen}"


def test_vxlan_from_outside_the_underlay_is_dropped(lab):
    """A crafted VXLAN frame for a container: delivered from inside the underlay
    network (the control), dropped when its outer source is outside it."""
    target = lab.containers[0]
    host = target.host
    mac = ip(target.ns, "-br", "link", "show", "dev", "eth0").stdout.split()[2]
    listener = UdpListener(target.ns, target.address, 9999)
    outside = lab.outside.ns
    stranger = "198.51.100.7"
    ip(outside, "addr", "add", f"{stranger}/32", "dev", "lo", check=False)
    # inner source in the slice of the outer source's underlay address (172.16.0.254)
    inner_src = str(ipaddress.IPv4Address("250.0.254.9"))
    try:
        frame = vxlan_frame(VNI, mac, "02:aa:bb:cc:dd:ee",
                            ipv4_udp(inner_src, target.address, 4444, 9999, b"from-underlay"))
        send_udp(outside, "172.16.0.254", host.address(), VXLAN_PORT, frame)
        control = listener.received(wait=2.0)
        assert b"from-underlay" in [p for p in control], "control frame was not delivered"

        frame = vxlan_frame(VNI, mac, "02:aa:bb:cc:dd:ee",
                            ipv4_udp(inner_src, target.address, 4444, 9999, b"from-stranger"))
        for _ in range(3):
            send_udp(outside, stranger, host.address(), VXLAN_PORT, frame)
        assert listener.received(wait=1.5) == []
    finally:
        listener.close()


# -- robustness ----------------------------------------------------------------------------

def test_dnsmasq_killed_comes_back(lab):
    host = lab.hosts[0]
    old = _dnsmasq_pid(host)
    os.kill(old, signal.SIGKILL)
    wait(lambda: _pid_changed(host, old), 10, "fangen run to restart dnsmasq")
    c = lab.containers_of(host)[0]
    lease = c.renew()
    assert ipaddress.IPv4Address(lease["ip"]) in host.slice_for()


def _pid_changed(host, old: int) -> bool:
    try:
        new = _dnsmasq_pid(host)
    except (OSError, ValueError):
        return False
    return new != old and new in pids_in(host.ns)


def test_networkd_restart_keeps_the_fan(lab):
    host = lab.hosts[0]
    before = snapshot.addresses(host.ns)
    host.restart_networkd()
    time.sleep(1.0)                       # networkd (re)configures its links
    assert host.address() == host_address(host.index)
    assert (host.bridge(), f"{_gateway(host)}/{OVERLAY.prefixlen}") in snapshot.addresses(host.ns)
    assert snapshot.addresses(host.ns) == before
    _assert_matrix(lab, lab.containers_of(host) + lab.containers_of(lab.hosts[1])[:1])


def test_up_twice_duplicates_nothing(lab):
    host = lab.hosts[0]
    first = snapshot.snapshot(host.ns)
    host.fangen("up", FAN, "--no-systemd")
    host.fangen("up", FAN, "--no-systemd")
    second = snapshot.snapshot(host.ns)
    assert snapshot.diff(first, second) == {}
    tables = [line for line in second["nft"] if line.startswith("table ")]
    assert len(tables) == len(set(tables))
    # per hook (ingress, egress): the fan's filter and the final drop filter
    assert len([d for d in second["tc"] if d[1] != "qdisc"]) == 4
    assert len([p for p in pids_in(host.ns)
                if "dnsmasq" in cmdline(p) and host.root in cmdline(p)]) == 1


def test_underlay_lease_change_moves_the_slice(lab):
    host = lab.hosts[1]
    old_slice = host.slice_for()
    new_addr = host_address(host.index, generation=67)            # 172.16.2.77
    assert host.move_to(new_addr) == new_addr
    new_slice = host.slice_for(new_addr)
    assert new_slice != old_slice
    wait(lambda: str(new_slice.network_address + 1) in host.addresses(host.bridge()), 10,
         "the bridge to move to the new slice")
    wait(lambda: str(old_slice.network_address + 1) not in host.addresses(host.bridge()), 10,
         "the old slice address to go")
    for c in lab.containers_of(host):
        lease = c.renew(timeout=30)
        assert ipaddress.IPv4Address(lease["ip"]) in new_slice
        assert lease["router"] == str(new_slice.network_address + 1)
    _assert_matrix(lab)
    lab.outside.whoami()
    c = lab.containers_of(host)[0]
    assert whoami(c.ns, DOC_ADDR, WHOAMI_PORT) == new_addr


# -- down ----------------------------------------------------------------------------------

def test_down_restores_the_host(lab):
    host = lab.hosts[2]
    for c in lab.containers_of(host):                 # their veths are not fangen's
        lab.run.stop(c.client)
        sh("ip", "netns", "del", c.ns)
        lab.run.namespaces.remove(c.ns)
        lab.containers.remove(c)
    host.stop_fangen_run()
    host.fangen("down", FAN)
    try:
        wait(lambda: snapshot.diff(lab.before[host.name], snapshot.snapshot(host.ns)) == {}, 5,
             "the host to look as before")
    except HarnessError:
        pass
    left = snapshot.diff(lab.before[host.name], snapshot.snapshot(host.ns))
    assert left == {}, f"after fangen down, {host.name} differs from before up: {left}"
    assert not [p for p in pids_in(host.ns) if "dnsmasq" in cmdline(p)]
