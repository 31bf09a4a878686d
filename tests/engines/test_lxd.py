"""LXD on the fan, for real: containers launched with fangen's profile sit on the fan
bridge and take their address and MTU from fangen's dnsmasq.

Two hosts of the lab (tests/harness: DHCP underlay, real networkd, ``fangen run``) on a
VXLAN fan, the type this machine's kernel runs (an IPIP fan needs the kernel's ipip
module; LXD's side is the same profile, checked against both types in
tests/unit/test_cni_lxd.py).  Each host runs Debian 12's LXD 5.0.2 daemon in its
namespace (tests/engines/lxd_host.py: private LXD_DIR, ``dir`` storage pool) with a
busybox image built here and imported with ``lxc image import``.  The profile loaded is
:func:`fangen.engines.lxd.render` for the lab's fan, the function examples/lxd/profile.yaml
is checked against.  About 20 s in all.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re

import pytest

from fangen.config.model import build
from fangen.engines import lxd as lxd_profile
from tests.engines import images, lifecycle, traffic
from tests.engines.lxd_host import Lxd
from tests.harness import Lab
from tests.harness.ns import cmdline, ip, nsexec, pids_in
from tests.harness.packets import tcp_transfer

pytestmark = [
    pytest.mark.root, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, LXD, networkd"),
    pytest.mark.skipif(not os.path.exists("/usr/bin/lxd"), reason="needs lxd (Debian 12)"),
]

FAN = "fan250"
OVERLAY = ipaddress.IPv4Network("250.0.0.0/8")
MTU = 1500 - 50


@pytest.fixture(scope="module")
def lab(request):
    lab = Lab(hosts=2, containers=0, tag="l")
    lab.lxd = []
    failed_before = request.session.testsfailed
    try:
        lab.start_hosts()
        lab.start_fans()
        lab.wait_fans()
        image = images.lxd_tarball(lab.run.workdir)
        fan = build(FAN, lab.hosts[0].fans[FAN])
        lab.ctr = {}
        for host in lab.hosts:
            lab.lxd.append(Lxd(lab.run, host, image))
        # the two ways the README gives: the rendered file, and the one-line device add
        lab.lxd[0].load_profile(fan.name, lxd_profile.render(fan))
        lab.lxd[1].lxc("profile", "create", fan.name)
        lab.lxd[1].lxc("profile", "device", "add", fan.name, "eth0", "nic", "nictype=bridged",
                       f"parent={fan.bridge}", "name=eth0")
        prefix = lab.run.prefix
        for key, engine in (("a", lab.lxd[0]), ("b", lab.lxd[1]), ("c", lab.lxd[0])):
            lab.ctr[key] = engine.launch(f"{prefix}-{engine.host.name}{key}", "default", FAN)
        lab.lease = {key: ctr.lease() for key, ctr in lab.ctr.items()}
        yield lab
    finally:
        for engine in lab.lxd:
            engine.close()
        if request.session.testsfailed != failed_before:
            lab.run.keep_workdir = True
            print(f"\nharness logs kept in {lab.run.workdir}")
        lab.close()


def _host_of(lab, key):
    return lab.ctr[key].lxd.host


def test_lxd_takes_the_fan_bridge_as_unmanaged(lab):
    for engine in lab.lxd:
        nets = {n["name"]: n for n in engine.networks()}
        assert nets[FAN]["managed"] is False
        assert nets[FAN]["type"] == "bridge"


def test_loaded_profiles_are_fangens(lab):
    """h1 loaded the rendered file, h2 ran the README's ``lxc profile device add``."""
    fan = build(FAN, lab.hosts[0].fans[FAN])
    for engine in lab.lxd:
        assert engine.profile(FAN)["devices"] == lxd_profile.profile(fan)["devices"]


def test_containers_lease_from_fangens_dnsmasq(lab):
    for key, lease in lab.lease.items():
        host = _host_of(lab, key)
        sl = host.slice_for()
        gateway = str(sl.network_address + 1)
        assert ipaddress.IPv4Address(lease["ip"]) in sl, (key, lease, sl)
        assert int(lease["prefixlen"]) == OVERLAY.prefixlen
        assert lease["router"] == gateway
        assert lease["serverid"] == gateway                  # fangen's dnsmasq answered
        assert int(lease["mtu"]) == MTU
        with open(os.path.join(host.root, "var/lib/fangen", f"{FAN}.leases")) as fh:
            assert lease["ip"] in fh.read()
    assert len({lease["ip"] for lease in lab.lease.values()}) == len(lab.lease)


def test_container_interface_has_the_lease_and_the_fans_mtu(lab):
    for key, ctr in lab.ctr.items():
        got = traffic.iface(ctr.ns)
        assert got["address"] == lab.lease[key]["ip"]
        assert got["mtu"] == MTU
        assert traffic.default_gateway(ctr.ns) == lab.lease[key]["router"]


def test_host_side_veths_take_the_bridges_mtu(lab):
    """The profile has no mtu: LXD gives the veth its parent's MTU, which fangen set."""
    for host in lab.hosts:
        links = json.loads(ip(host.ns, "-j", "-d", "link", "show", "master",
                              host.bridge()).stdout)
        veths = [link for link in links
                 if link.get("linkinfo", {}).get("info_kind") == "veth"]
        assert veths
        assert {link["mtu"] for link in veths} == {MTU}


def test_lxd_runs_no_dhcp_server_of_its_own(lab):
    for host in lab.hosts:
        dnsmasqs = [pid for pid in pids_in(host.ns) if "dnsmasq" in cmdline(pid)]
        assert len(dnsmasqs) == 1, [cmdline(p) for p in dnsmasqs]
        assert host.root in cmdline(dnsmasqs[0])            # fangen's, for this root


def test_ping_across_hosts(lab):
    addr = {key: lease["ip"] for key, lease in lab.lease.items()}
    for src, dst in (("a", "b"), ("b", "a"), ("c", "b"), ("b", "c"), ("a", "c")):
        assert traffic.ping(lab.ctr[src].ns, addr[dst]), f"{src} -> {dst} ({addr[dst]})"


def test_full_mtu_datagram_crosses_hosts_and_one_more_byte_is_refused(lab):
    a, b = lab.ctr["a"], lab.ctr["b"]
    assert traffic.df_datagram(a.ns, b.ns, lab.lease["b"]["ip"], MTU) == "delivered"
    assert traffic.df_datagram(a.ns, b.ns, lab.lease["b"]["ip"], MTU + 1) == "EMSGSIZE"


def test_tcp_across_hosts(lab):
    a, b = lab.ctr["a"], lab.ctr["b"]
    got, sent_digest, got_digest = tcp_transfer(b.ns, lab.lease["b"]["ip"], a.ns,
                                                size=4 << 20)
    assert got == 4 << 20 and got_digest == sent_digest


def test_restarting_the_fans_unit_keeps_containers_attached(lab):
    """``systemctl restart fangen@fan250`` as systemd does it (tests/engines/lifecycle.py):
    neither the bridge nor its address goes; the containers keep their ports and pings."""
    def attached():
        return {h.name: (lifecycle.index(h, h.bridge()), lifecycle.ports(h, h.bridge()))
                for h in lab.hosts}
    before = attached()
    for host in lab.hosts:
        watch = lifecycle.Watch(host)
        lifecycle.restart_unit(host, FAN)
        assert (watch.deleted(host.bridge()), watch.deleted(f"{FAN}-tun")) == ([], [])
    assert attached() == before
    addr = {key: lease["ip"] for key, lease in lab.lease.items()}
    assert traffic.ping(lab.ctr["a"].ns, addr["b"]) and traffic.ping(lab.ctr["b"].ns, addr["a"])


def test_lxd_adds_no_firewall_rules_for_the_bridge(lab):
    for host in lab.hosts:
        text = nsexec(host.ns, "nft", "list", "ruleset").stdout
        tables = re.split(r"(?m)^table ", text)
        foreign = [t for t in tables if t.strip() and not t.startswith(f"ip fangen-{FAN} ")]
        assert not [t for t in foreign if host.bridge() in t], foreign


def test_a_container_cannot_start_before_its_bridge_exists(lab):
    """What the README says happens when LXD starts a container before the fan is up."""
    engine = lab.lxd[0]
    engine.lxc("profile", "create", "nofan")
    engine.lxc("profile", "device", "add", "nofan", "eth0", "nic", "nictype=bridged",
               "parent=fan-missing", "name=eth0")
    name = f"{lab.run.prefix}-early"
    engine.containers.append(name)
    res = engine.lxc("launch", "fanbox", name, "--profile", "default", "--profile", "nofan",
                     check=False)
    assert res.returncode != 0
    assert 'Failed to start device "eth0": Parent device "fan-missing" doesn\'t exist' in \
        res.stderr
