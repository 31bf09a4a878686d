"""podman on the fan, for real: ``podman run --network fan250`` with the CNI network that
fangen's runtime writes for this host's slice and keeps current.

Two hosts of the lab (tests/harness: DHCP underlay, real networkd, ``fangen run``) on a
VXLAN fan, the type this machine's kernel runs (IPIP needs the kernel's ipip module; its
network list goes through the real CNI plugins in tests/engines/test_cni_plugins.py and is
checked against examples/podman in tests/unit/test_cni_lxd.py).
Each host runs Debian 12's podman 4.3 with its CNI backend inside the host's namespace
(tests/engines/podman_host.py: private storage, run and CNI directories, cgroupfs, file
events), and a busybox image imported with ``podman import`` (no registry here).

* h1 keeps fangen's DHCP server (``dhcp: true``, the default): the network's addresses come
  from the CNI ``dhcp`` plugin, i.e. from fangen's dnsmasq through the CNI DHCP daemon;
* h2 has ``dhcp: false``: ``host-local`` over h2's slice.

The tests run in file order; the last ones move h2's underlay address and take its fan
down.  About 25 s in all.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket

import pytest

from fangen.engines import cni
from tests.engines import images, lifecycle, traffic
from tests.engines.podman_host import Podman
from tests.harness import Lab, fan_stanza
from tests.harness.host import wait
from tests.harness.ns import cmdline, in_netns, ip, pids_in
from tests.harness.packets import tcp_transfer
from tests.harness.switch import host_address

pytestmark = [
    pytest.mark.root, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, podman, networkd"),
    pytest.mark.skipif(not os.path.exists("/usr/bin/podman"), reason="needs podman (Debian 12)"),
    pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"),
                       reason="needs containernetworking-plugins"),
]

FAN = "fan250"
OVERLAY = ipaddress.IPv4Network("250.0.0.0/8")
MTU = 1500 - 50
WEB_PORT = 8080


def _conflist(host) -> dict | None:
    try:
        with open(os.path.join(host.root, cni.path(FAN))) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def lab(request):
    lab = Lab(hosts=2, containers=0, tag="p")
    lab.podman = []
    failed_before = request.session.testsfailed
    try:
        lab.hosts[1].write_fans(fan_stanza(FAN, dhcp=False))
        lab.start_hosts()
        lab.start_fans()
        lab.wait_fans()
        for host in lab.hosts:
            wait(lambda h=host: _conflist(h), 10, f"{host.name}: fangen's CNI network list")
        image = images.podman_tarball(lab.run.workdir)
        lab.podman = [Podman(lab.run, host, FAN, image) for host in lab.hosts]
        lab.podman[0].start_dhcp_daemon()
        p1, p2 = lab.podman
        lab.ctr = {"a": p1.run_container("a", "--network", FAN),
                   "b": p2.run_container("b", "--network", FAN),
                   "c": p2.run_container("c", "--network", FAN)}
        yield lab
    finally:
        for podman in lab.podman:
            podman.close()
        if request.session.testsfailed != failed_before:
            lab.run.keep_workdir = True
            print(f"\nharness logs kept in {lab.run.workdir}")
        lab.close()


def _host_of(lab, name):
    return lab.hosts[0] if name == "a" else lab.hosts[1]


# -- the network -----------------------------------------------------------------------------

def test_podman_runs_with_cni_and_lists_the_fan_network(lab):
    for podman in lab.podman:
        assert podman.info("{{.Host.NetworkBackend}}") == "cni"
        names = podman.podman("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert FAN in names


def test_network_list_is_this_hosts_slice(lab):
    h1, h2 = lab.hosts
    assert _conflist(h1)["plugins"][0]["ipam"] == {"type": "dhcp"}
    ipam = _conflist(h2)["plugins"][0]["ipam"]
    (rng,), = ipam["ranges"]
    sl = h2.slice_for()
    assert rng == {"subnet": str(OVERLAY), "rangeStart": str(sl.network_address + 2),
                   "rangeEnd": str(sl.broadcast_address - 1),
                   "gateway": str(sl.network_address + 1)}
    inspect = json.loads(lab.podman[1].podman("network", "inspect", FAN).stdout)[0]
    assert inspect["network_interface"] == h2.bridge()
    assert inspect["subnets"][0]["subnet"] == str(OVERLAY)
    assert inspect["subnets"][0]["gateway"] == str(sl.network_address + 1)


# -- containers ------------------------------------------------------------------------------

def test_containers_get_addresses_in_their_hosts_slice(lab):
    seen = set()
    for name, ctr in lab.ctr.items():
        host = _host_of(lab, name)
        got = traffic.iface(ctr.ns)
        sl = host.slice_for()
        assert ipaddress.IPv4Address(got["address"]) in sl, (name, got, sl)
        assert got["prefixlen"] == OVERLAY.prefixlen          # VXLAN: one L2 overlay
        assert got["mtu"] == MTU
        assert traffic.default_gateway(ctr.ns) == str(sl.network_address + 1)
        seen.add(got["address"])
    assert len(seen) == len(lab.ctr)


def test_dhcp_network_leases_from_fangens_dnsmasq(lab):
    h1 = lab.hosts[0]
    ctr = lab.ctr["a"]
    addr = traffic.iface(ctr.ns)["address"]
    mac = json.loads(ip(ctr.ns, "-j", "link", "show", "dev", "eth0").stdout)[0]["address"]
    with open(os.path.join(h1.root, "var/lib/fangen", f"{FAN}.leases")) as fh:
        leases = [line.split() for line in fh]
    assert any(entry[1] == mac and entry[2] == addr for entry in leases), leases


def test_host_side_of_each_veth_is_a_bridge_port_with_the_fans_mtu(lab):
    for host in lab.hosts:
        links = json.loads(ip(host.ns, "-j", "-d", "link", "show", "master",
                              host.bridge()).stdout)
        veths = [link for link in links
                 if link.get("linkinfo", {}).get("info_kind") == "veth"]
        assert veths, f"{host.name}: no container port on {host.bridge()}"
        assert {link["mtu"] for link in veths} == {MTU}


def test_fangens_bridge_address_is_left_alone(lab):
    for host in lab.hosts:
        gateway = str(host.slice_for().network_address + 1)
        assert host.addresses(host.bridge()) == [gateway]
        prefixes = [a["prefixlen"] for link in json.loads(
            ip(host.ns, "-j", "-4", "addr", "show", "dev", host.bridge()).stdout)
            for a in link["addr_info"]]
        assert prefixes == [OVERLAY.prefixlen]


# -- traffic ---------------------------------------------------------------------------------

def test_ping_across_hosts(lab):
    addrs = {name: traffic.iface(ctr.ns)["address"] for name, ctr in lab.ctr.items()}
    for src, dst in (("a", "b"), ("a", "c"), ("b", "a"), ("c", "a"), ("b", "c")):
        assert traffic.ping(lab.ctr[src].ns, addrs[dst]), f"{src} -> {dst} ({addrs[dst]})"


def test_full_mtu_datagram_crosses_hosts_and_one_more_byte_is_refused(lab):
    a, b = lab.ctr["a"], lab.ctr["b"]
    dst = traffic.iface(b.ns)["address"]
    assert traffic.df_datagram(a.ns, b.ns, dst, MTU) == "delivered"
    assert traffic.df_datagram(a.ns, b.ns, dst, MTU + 1) == "EMSGSIZE"


def test_tcp_across_hosts(lab):
    a, b = lab.ctr["a"], lab.ctr["b"]
    got, sent_digest, got_digest = tcp_transfer(b.ns, traffic.iface(b.ns)["address"], a.ns,
                                                size=4 << 20)
    assert got == 4 << 20 and got_digest == sent_digest


def test_published_port_answers_on_the_hosts_underlay_address(lab):
    h2 = lab.hosts[1]
    lab.podman[1].podman("run", "-d", "--name", "web", "--network", FAN,
                         "-p", f"{WEB_PORT}:{WEB_PORT}", "localhost/fanbox", "sh", "-c",
                         f"while :; do echo fan | nc -l -p {WEB_PORT}; done")

    def answer():
        try:
            with in_netns(lab.outside.ns):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            with s:
                s.settimeout(2)
                s.connect((h2.address(), WEB_PORT))
                return s.recv(16).decode().strip()
        except OSError:
            return None
    assert wait(answer, 10, "the published port") == "fan"


# -- life cycle ------------------------------------------------------------------------------

def test_restarting_the_fans_unit_keeps_containers_and_the_network(lab):
    """``systemctl restart fangen@fan250`` as systemd does it (tests/engines/lifecycle.py):
    the bridge, its address and the CNI network stay; the containers keep pinging."""
    def attached():
        return {h.name: (lifecycle.index(h, h.bridge()), lifecycle.ports(h, h.bridge()))
                for h in lab.hosts}
    before = attached()
    for host in lab.hosts:
        conflist = _conflist(host)
        watch = lifecycle.Watch(host)
        lifecycle.restart_unit(host, FAN)
        assert (watch.deleted(host.bridge()), watch.deleted(f"{FAN}-tun")) == ([], [])
        assert _conflist(host) == conflist
    assert attached() == before
    addrs = {name: traffic.iface(ctr.ns)["address"] for name, ctr in lab.ctr.items()}
    assert traffic.ping(lab.ctr["a"].ns, addrs["b"]) and traffic.ping(lab.ctr["b"].ns, addrs["a"])


def test_slice_move_rewrites_the_network_and_restart_readdresses(lab):
    h2 = lab.hosts[1]
    p2 = lab.podman[1]
    old = h2.slice_for()
    new_addr = host_address(h2.index, generation=41)
    assert h2.move_to(new_addr) == new_addr
    new = h2.slice_for(new_addr)
    assert new != old

    def rewritten():
        got = _conflist(h2)
        return got and got["plugins"][0]["ipam"]["ranges"][0][0]["gateway"] == \
            str(new.network_address + 1)
    wait(rewritten, 15, "fangen to rewrite the CNI network for the new slice")
    fresh = p2.run_container("d", "--network", FAN)
    assert ipaddress.IPv4Address(traffic.iface(fresh.ns)["address"]) in new
    b = lab.ctr["b"] = p2.restart(lab.ctr["b"])
    addr = traffic.iface(b.ns)["address"]
    assert ipaddress.IPv4Address(addr) in new
    assert traffic.default_gateway(b.ns) == str(new.network_address + 1)
    assert traffic.ping(lab.ctr["a"].ns, addr)


def test_down_removes_the_network(lab):
    h2 = lab.hosts[1]
    p2 = lab.podman[1]
    p2.podman("rm", "--all", "--force", "--time", "0")
    h2.stop_fangen_run()
    h2.fangen("down", FAN)
    assert _conflist(h2) is None
    assert not os.path.exists(os.path.join(h2.root, cni.path(FAN)))
    names = p2.podman("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert FAN not in names
    res = p2.podman("run", "-d", "--name", "late", "--network", FAN, "localhost/fanbox",
                    "sleep", "10", check=False)
    assert res.returncode != 0
    assert FAN in res.stderr
    assert not [p for p in pids_in(h2.ns) if cmdline(p).startswith("/usr/lib/cni")]
