"""Docker's containers survive the fan's life cycle, with the real dockerd.

Two hosts of the lab (tests/harness: DHCP underlay, real networkd, ``fangen run``) on a
VXLAN fan with ``dhcp: false``, one real dockerd each (tests/engines/dockerd.py):

* h1 has no networkd files from ``fangen generate``, so ``fangen run`` makes the bridge
  itself (the case where restarting the fan deleted the bridge and left Docker's
  containers "Up" but detached); Docker's default network is the fan bridge
  (``fangen docker`` printed the daemon.json keys).  A second network of Docker's own
  (``plain``, not on the fan) needs forwarding and Docker's NAT.
* h2's bridge is networkd's, made from fangen's .netdev; Docker keeps docker0 and puts a
  user-defined network on the fan bridge (``fangen docker --network``).

In file order: restarting ``fangen@fan250`` as systemd does (SIGTERM, the unit's own
ExecStopPost=, ``fangen run`` again), SIGHUP (what ``fangen apply`` and so ``netplan
apply`` do to a running unit), ``fangen apply`` and a networkd restart: ``ip monitor``
sees neither bridge nor address deleted, Docker's veths stay ports of the same bridge,
and containers on two hosts keep pinging.  Then Docker's ``network create --subnet
SLICE`` on the fan bridge (which replaced the bridge's address): ``fangen run`` puts it
back and names Docker's once.  An underlay address change keeps the ports.  Last, ``fangen
down`` on h1 with dockerd running: forwarding stays on (Docker's NAT still carries the
``plain`` container to the outside) and the bridge with a1 on it is kept until
``down --purge``.  About a minute in all.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal

import pytest

from tests.engines import dockerd as dk
from tests.engines import lifecycle
from tests.harness import DOC_ADDR, Lab, fan_stanza
from tests.harness.host import wait
from tests.harness.ns import nsexec
from tests.harness.outside import WHOAMI_PORT
from tests.harness.packets import whoami
from tests.harness.switch import host_address

pytestmark = [
    pytest.mark.root, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, dockerd, nft"),
    pytest.mark.skipif(dk.available() is not None, reason=str(dk.available())),
]

FAN = "fan250"
TUNNEL = f"{FAN}-tun"
OVERLAY = ipaddress.IPv4Network("250.0.0.0/8")
FORWARD = "/proc/sys/net/ipv4/ip_forward"


@pytest.fixture(scope="module")
def lab(request):
    lab = Lab(hosts=2, containers=0, fans=fan_stanza(FAN, dhcp=False), tag="y")
    lab.daemons = []
    failed_before = request.session.testsfailed
    try:
        h1, h2 = lab.hosts
        h1.start(generate=False)                 # fangen run makes the bridge on h1
        h2.start(generate=True)                  # networkd makes it on h2
        for h in lab.hosts:
            h.wait_address()
        lab.forward_before = nsexec(h1.ns, "cat", FORWARD).stdout.strip()
        lab.start_fans()
        lab.wait_fans()
        tar = dk.image_tar(lab.run.path("image", "busybox.tar"))
        d1 = dk.Dockerd(lab.run, h1, dk.docker_settings(h1, FAN))
        d2 = dk.Dockerd(lab.run, h2, {})
        lab.daemons = [d1, d2]
        for d in lab.daemons:
            d.start(wait_ready=False)
        for d in lab.daemons:
            d.wait_ready()
            d.import_image(tar)
        d2.cli(*dk.network_create_argv(h2, FAN, "fannet"))
        d1.cli("network", "create", "--subnet", "10.99.0.0/24", "plain")
        lab.c = {"a1": d1.run_container("a1"),
                 "p1": d1.run_container("p1", "--network", "plain"),
                 "b1": d2.run_container("b1", "--network", "fannet")}
        yield lab
    finally:
        if request.session.testsfailed != failed_before:
            lab.run.keep_workdir = True
            print(f"\nharness logs kept in {lab.run.workdir}")
        for d in lab.daemons:
            d.close()
        lab.close()


def docker_ports(host) -> list[str]:
    return [p for p in lifecycle.ports(host, FAN) if p != TUNNEL]


def pings(daemon, name: str, addr: str) -> bool:
    return any(daemon.cli("exec", name, "ping", "-c", "1", "-W", "2", addr,
                          check=False).returncode == 0 for _ in range(3))


def both_ways(lab) -> bool:
    """a1 (h1) and h2's container on the fan (b1, later its successor) ping each other."""
    d1, d2 = lab.daemons
    a, b = lab.c["a1"], lab.c["b1"]
    return pings(d1, a["name"], b["ip"]) and pings(d2, b["name"], a["ip"])


def show(host) -> dict:
    [row] = json.loads(host.fangen("show", FAN, "--json").stdout)
    return row


def attached(lab) -> dict:
    """{host: (bridge ifindex, Docker's ports on it)}."""
    return {h.name: (lifecycle.index(h, FAN), docker_ports(h)) for h in lab.hosts}


def test_the_lab_is_as_described(lab):
    h1, h2 = lab.hosts
    assert lab.forward_before == "0"
    st = json.loads(open(os.path.join(h1.root, "run/fangen", FAN, "state.json")).read())
    assert st["links"][FAN]["created"] is True              # fangen made h1's bridge
    assert st["sysctls"] == {"net/ipv4/ip_forward": "0"}    # and turned forwarding on
    st2 = json.loads(open(os.path.join(h2.root, "run/fangen", FAN, "state.json")).read())
    assert st2["links"][FAN].get("networkd") is True          # networkd made h2's
    for h in lab.hosts:
        assert len(docker_ports(h)) == 1, docker_ports(h)          # a1's, b1's veth
    assert both_ways(lab)


def test_restarting_the_fans_unit_keeps_containers_attached(lab):
    before = attached(lab)
    for host in lab.hosts:
        watch = lifecycle.Watch(host)
        res = lifecycle.restart_unit(host, FAN)
        assert res.stderr == (f"fangen: {FAN}: left up: still configured and enabled "
                              f"('fangen down {FAN}' takes it down)\n")
        assert (watch.deleted(FAN), watch.deleted(TUNNEL)) == ([], []), host.name
        assert show(host)["state"] == "up"
    assert attached(lab) == before
    assert both_ways(lab)


def test_reload_apply_and_a_networkd_restart_keep_containers_attached(lab):
    h1, h2 = lab.hosts
    before = attached(lab)
    watches = [lifecycle.Watch(h) for h in lab.hosts]
    # what `fangen apply` (so `netplan apply`) does to a running fangen@ unit: SIGHUP
    h1.fangen_run.send_signal(signal.SIGHUP)
    h2.fangen("apply")              # without systemd: generate, reload networkd, up
    h2.restart_networkd()           # what a networkd restart (netplan apply may) does
    wait(lambda: h2.networkctl("status", FAN, check=False).returncode == 0, 20,
         "networkd back")
    for w in watches:
        assert (w.deleted(FAN), w.deleted(TUNNEL)) == ([], []), w.host.name
    assert attached(lab) == before
    assert [show(h)["state"] for h in lab.hosts] == ["up", "up"]
    assert both_ways(lab)


def test_a_subnet_slice_network_is_repaired_and_dockers_address_left(lab):
    """Docker's ``network create --subnet SLICE`` on the fan bridge replaces its address
    (the overlay route went with it, and stayed gone after ``network rm``)."""
    _, h2 = lab.hosts
    _, d2 = lab.daemons
    sl = h2.slice_for()
    gateway = str(sl.network_address + 1)
    d2.cli("rm", "-f", "b1")
    d2.containers.pop("b1")
    d2.cli("network", "rm", "fannet")
    d2.cli("network", "create", "--driver", "bridge", "--subnet", str(sl), "--gateway",
           gateway, "-o", f"com.docker.network.bridge.name={FAN}",
           "-o", "com.docker.network.driver.mtu=1450", "badnet")
    log = h2.log("fangen-run")
    wait(lambda: "which fangen did not set" in open(log).read(), 30,
         "fangen run to put the address back and name Docker's")
    # Docker may add its /24 before it removes ours: the note can come from the change
    # before the one that makes fangen put ours back, so wait for both addresses
    wait(lambda: sorted(h2.addresses(FAN)) == [gateway, gateway], 30,
         "our /8 and Docker's /24 on the bridge")
    assert sorted(h2.addresses(FAN)) == [gateway, gateway]          # /8 (ours), /24 (Docker's)
    routes = nsexec(h2.ns, "ip", "-4", "route", "show", "dev", FAN).stdout
    assert f"{OVERLAY} proto kernel scope link src {gateway}" in routes
    assert show(h2)["state"] == "up"
    # the fan carries h2's traffic again: without the overlay route h2 has no way back
    assert pings(lab.daemons[0], "a1", gateway)
    # Docker's network goes (it leaves its address behind): the fan stays up (before, it
    # stayed broken)
    d2.cli("network", "rm", "badnet")
    assert (show(h2)["state"], show(h2)["problems"]) == ("up", [])
    assert f"{gateway}/8" in nsexec(h2.ns, "ip", "-4", "-o", "addr", "show", "dev",
                                    FAN).stdout
    assert open(log).read().count("which fangen did not set") == 1
    # Docker's leftover makes its next network on the bridge fail ("failed to add IPv4
    # address ... file exists"); fangen's log names it, the user deletes it
    nsexec(h2.ns, "ip", "addr", "del", f"{gateway}/{sl.prefixlen}", "dev", FAN)
    d2.cli(*dk.network_create_argv(h2, FAN, "fannet"))
    lab.c["b1"] = d2.run_container("b3", "--network", "fannet")
    assert both_ways(lab)


def test_an_underlay_address_change_keeps_the_ports(lab):
    h1, h2 = lab.hosts
    d1, _ = lab.daemons
    before = attached(lab)
    new_addr = host_address(h2.index, generation=37)
    assert h2.move_to(new_addr) == new_addr
    gateway = str(h2.slice_for(new_addr).network_address + 1)
    wait(lambda: gateway in h2.addresses(FAN), 20, "the new slice on h2's bridge")
    assert attached(lab) == before
    assert show(h2)["slice"] == str(h2.slice_for(new_addr))
    assert pings(d1, "a1", gateway)                 # across the fan to h2's new slice


def test_down_leaves_forwarding_on_under_a_running_docker(lab):
    h1, _ = lab.hosts
    lab.outside.whoami()
    assert whoami(lab.c["p1"]["ns"], DOC_ADDR, WHOAMI_PORT) == h1.address()
    [a1_port] = docker_ports(h1)
    h1.stop_fangen_run()
    res = h1.fangen("down", FAN)
    notes = res.stderr.splitlines()
    assert notes[0].startswith(f"fangen: {FAN}: net.ipv4.ip_forward stays on: needed by "
                               "nft table ip filter, chain DOCKER"), notes
    assert nsexec(h1.ns, "cat", FORWARD).stdout.strip() == "1"
    # Docker's own network still gets out (its forwarding and NAT)
    assert whoami(lab.c["p1"]["ns"], DOC_ADDR, WHOAMI_PORT) == h1.address()
    # a1 is still on the bridge (kept, without the fan's address), and said so
    assert docker_ports(h1) == [a1_port] and h1.addresses(FAN) == []
    assert notes[1] == (f"fangen: {FAN}: kept bridge {FAN}: {a1_port} still attached "
                        f"(containers); 'fangen down --purge {FAN}' deletes it and detaches "
                        "them")
    assert show(h1)["state"] == "down"
    res = h1.fangen("down", FAN, "--purge")
    assert f"deleted bridge {FAN} with {a1_port} attached" in res.stderr
    assert nsexec(h1.ns, "ip", "link", "show", "dev", FAN, check=False).returncode != 0
    assert nsexec(h1.ns, "cat", FORWARD).stdout.strip() == "1"
