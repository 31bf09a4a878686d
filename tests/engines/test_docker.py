"""Docker on a VXLAN fan, with the real dockerd: what ``fangen docker`` prints is enough.

One lab per module (about 20 s alone on the project's 2-core machines): three hosts
on a DHCP underlay (real networkd, ``fangen run``; the harness of tests/e2e) with a
VXLAN fan (upstream datapath, ``dhcp: false``: Docker assigns the addresses), and one
real dockerd (docker.io 20.10) per host namespace (tests/engines/dockerd.py: its own
data-root, exec-root, socket and mount namespace; nothing under /etc/docker or
/run/docker is written):

* h1 and h3 take the default network from the daemon.json keys ``fangen docker fan250``
  printed on that host (before fangen's fix every host's first container got the same
  address outside its slice, and nothing crossed hosts);
* h2 keeps Docker's own docker0 and gets a user-defined network from the command
  ``fangen docker fan250 --network fannet`` printed there.

The fan type this kernel runs is VXLAN (no ipip); IPIP runs in the VM harness only.
dockerd, containerd, shims and container processes are ended by PID in the fixture's
finalizer, also when a test fails.
"""

from __future__ import annotations

import ipaddress
import json
import os

import pytest

from fangen.doctor import icmp
from tests.engines import dockerd as dk
from tests.harness import DOC_ADDR, Lab, fan_stanza
from tests.harness.ns import in_netns, nsexec
from tests.harness.outside import WHOAMI_PORT
from tests.harness.packets import Whoami, tcp_transfer, whoami

pytestmark = [
    pytest.mark.root, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, dockerd, nft"),
    pytest.mark.skipif(dk.available() is not None, reason=str(dk.available())),
]

FAN = "fan250"
OVERLAY = ipaddress.IPv4Network("250.0.0.0/8")
MTU = 1500 - 50
PUBLISHED = 8080


@pytest.fixture(scope="module")
def lab(request):
    lab = Lab(hosts=3, containers=0, fans=fan_stanza(FAN, dhcp=False), tag="d")
    lab.daemons = []
    failed_before = request.session.testsfailed
    try:
        lab.start_hosts()
        lab.start_fans()
        lab.wait_fans()
        h1, h2, h3 = lab.hosts
        lab.settings = {h.name: dk.docker_settings(h, FAN) for h in lab.hosts}
        lab.network_argv = dk.network_create_argv(h2, FAN, "fannet")
        tar = dk.image_tar(lab.run.path("image", "busybox.tar"))
        for h in lab.hosts:
            d = dk.Dockerd(lab.run, h, lab.settings[h.name] if h is not h2 else {})
            lab.daemons.append(d)
            d.start(wait_ready=False)
        for d in lab.daemons:
            d.wait_ready()
            d.import_image(tar)
        d1, d2, d3 = lab.daemons
        d2.cli(*lab.network_argv)
        lab.c = {
            "a1": d1.run_container("a1"),
            "a2": d1.run_container("a2", "-p", f"{PUBLISHED}:80"),
            "b1": d2.run_container("b1", "--network", "fannet"),
            "c1": d3.run_container("c1"),
        }
        yield lab
    finally:
        if request.session.testsfailed != failed_before:
            lab.run.keep_workdir = True          # dockerd.log, daemon.json, fangen run logs
            print(f"\nharness logs kept in {lab.run.workdir}")
        for d in lab.daemons:
            d.close()
        lab.close()


def _host(lab, name):
    return next(h for h in lab.hosts if h.name == name)


def test_fangen_docker_prints_this_hosts_slice(lab):
    for host in lab.hosts:
        assert lab.settings[host.name] == {"bridge": FAN, "fixed-cidr": str(host.slice_for()),
                                           "mtu": MTU, "icc": True, "ip-masq": False}
    h2 = _host(lab, "h2")
    sl = h2.slice_for()
    argv = lab.network_argv
    assert argv[argv.index("--subnet") + 1] == str(OVERLAY)
    assert argv[argv.index("--ip-range") + 1] == str(sl)
    assert argv[argv.index("--gateway") + 1] == str(sl.network_address + 1)
    assert f"com.docker.network.bridge.name={FAN}" in argv
    assert f"com.docker.network.driver.mtu={MTU}" in argv


def test_docker_uses_the_fan_bridge_as_told(lab):
    d1, d2, _ = lab.daemons
    for daemon, network in ((d1, "bridge"), (d2, "fannet")):
        sl = daemon.host.slice_for()
        info = daemon.network(network)
        [config] = info["IPAM"]["Config"]
        assert (config["Subnet"], config["IPRange"], config["Gateway"]) == \
            (str(OVERLAY), str(sl), str(sl.network_address + 1))
        assert info["Options"]["com.docker.network.bridge.name"] == FAN
        assert info["Options"]["com.docker.network.driver.mtu"] == str(MTU)
    # Docker left the bridge as fangen made it: one address, the overlay route on it
    for host in lab.hosts:
        gateway = str(host.slice_for().network_address + 1)
        assert host.addresses(FAN) == [gateway]
        routes = nsexec(host.ns, "ip", "-4", "route", "show", "dev", FAN).stdout
        assert f"{OVERLAY} proto kernel scope link src {gateway}" in routes


def test_containers_get_addresses_in_their_hosts_slice(lab):
    addresses = []
    for c in lab.c.values():
        slice_ = c["host"].slice_for()
        assert ipaddress.IPv4Address(c["ip"]) in slice_, (c["name"], c["ip"], slice_)
        assert ipaddress.IPv4Address(c["ip"]) != slice_.network_address + 1
        addresses.append(c["ip"])
        mtu = nsexec(c["ns"], "cat", "/sys/class/net/eth0/mtu").stdout.strip()
        assert mtu == str(MTU), (c["name"], mtu)
    assert len(set(addresses)) == len(addresses), addresses
    # the user-defined network keeps the slice's first address out (--aux-address)
    assert lab.c["b1"]["ip"] != str(_host(lab, "h2").slice_for().network_address)


def test_ping_across_hosts(lab):
    names = ("a1", "b1", "c1")
    failed = []
    for src in names:
        for dst in names:
            if src == dst:
                continue
            daemon = next(d for d in lab.daemons if src in d.containers)
            ok = any(daemon.cli("exec", src, "ping", "-c", "1", "-W", "2", lab.c[dst]["ip"],
                                check=False).returncode == 0 for _ in range(3))
            if not ok:
                failed.append((src, dst))
    assert not failed, f"no answer: {failed}"


def test_tcp_across_hosts_keeps_the_containers_addresses(lab):
    b1 = lab.c["b1"]
    server = Whoami(b1["ns"], b1["ip"], 7000)
    try:
        for name in ("a1", "c1"):
            assert whoami(lab.c[name]["ns"], b1["ip"], 7000) == lab.c[name]["ip"]
    finally:
        server.close()
    got, sent_digest, got_digest = tcp_transfer(b1["ns"], b1["ip"], lab.c["a1"]["ns"],
                                                size=8 << 20, port=7001)
    assert (got, got_digest) == (8 << 20, sent_digest)


def test_a_full_mtu_packet_passes(lab):
    a1, b1 = lab.c["a1"], lab.c["b1"]
    with in_netns(a1["ns"]):
        assert icmp.ping(a1["ip"], b1["ip"], 64) == "ok"
        assert icmp.ping(a1["ip"], b1["ip"], MTU) == "ok"           # DF set, 1450 bytes
        assert icmp.ping(a1["ip"], b1["ip"], MTU + 1) == "too big"  # the container's MTU


def test_a_published_port_answers_another_host(lab):
    a2 = lab.c["a2"]
    h1, h2 = _host(lab, "h1"), _host(lab, "h2")
    server = Whoami(a2["ns"], "0.0.0.0", 80)
    try:
        assert whoami(h2.ns, h1.address(), PUBLISHED) == h2.address()
    finally:
        server.close()
    assert server.seen == [h2.address()]


def test_nat_for_traffic_leaving_the_overlay(lab):
    lab.outside.whoami()
    for name in ("a1", "b1"):
        c = lab.c[name]
        assert whoami(c["ns"], DOC_ADDR, WHOAMI_PORT) == c["host"].address(), name


def test_show_json_has_what_engines_need(lab):
    h1 = _host(lab, "h1")
    [row] = json.loads(h1.fangen("show", FAN, "--json").stdout)
    sl = h1.slice_for()
    assert {k: row[k] for k in ("slice", "gateway", "bridge_address", "mtu", "type", "state",
                                "overlay", "problems")} == {
        "slice": str(sl), "gateway": str(sl.network_address + 1),
        "bridge_address": f"{sl.network_address + 1}/8", "mtu": MTU, "type": "vxlan",
        "state": "up", "overlay": str(OVERLAY), "problems": []}


def test_doctor_passes_with_docker_on_the_fan(lab):
    d1 = lab.daemons[0]
    h1, h3 = d1.host, _host(lab, "h3")
    res = h1.fangen("doctor", FAN, "--docker-host", f"unix://{d1.socket}", "--peer",
                    h3.address(), "--json", check=False)
    report = json.loads(res.stdout)
    bad = [c for c in report["checks"] if c["status"] not in ("ok", "skip")]
    assert (res.returncode, bad) == (0, [])
    docker = [c["message"] for c in report["checks"] if c["check"] == "docker"]
    assert docker == [f"Docker network 'bridge' on {FAN}: subnet {OVERLAY}, ip-range "
                      f"{h1.slice_for()}, gateway {h1.slice_for().network_address + 1}, "
                      f"MTU {MTU}"]
