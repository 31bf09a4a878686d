"""``fangen doctor`` and ``fangen show`` against hosts broken on purpose.

One lab per module (about 40 s alone on the project's machines): two hosts on a DHCP
underlay with real networkd and a VXLAN fan (upstream datapath, DHCP on), brought up
with ``fangen up --no-systemd`` rather than ``fangen run``, so nothing repairs what a
test breaks; one harness container on h1.
Each test breaks one thing the way it happens in the field, checks that the doctor says
so (and exits 1) and that ``show`` calls the fan broken with the reason, then repairs it
and checks that the doctor is content again.  The Docker tests run the real dockerd
(tests/engines/dockerd.py) and reproduce the pitfalls of issue 10: ``--subnet SLICE``
and ``"icc": false``.  Everything is removed by PID in the finalizer.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.engines import dockerd as dk
from tests.harness import Lab, fan_stanza
from tests.harness.host import wait
from tests.harness.ns import ip

pytestmark = [
    pytest.mark.root, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, networkd, nft"),
]

FAN = "fan250"
OVERLAY = "250.0.0.0/8"
MTU = 1450


@pytest.fixture(scope="module")
def lab(request):
    lab = Lab(hosts=2, containers=1, fans=fan_stanza(FAN), tag="doc")
    lab.daemons = []
    failed_before = request.session.testsfailed
    try:
        lab.start_hosts()
        for host in lab.hosts:
            host.fangen("up", FAN, "--no-systemd")
        lab.wait_fans()
        lab.add_containers()
        yield lab
    finally:
        if request.session.testsfailed != failed_before:
            lab.run.keep_workdir = True
            print(f"\nharness logs kept in {lab.run.workdir}")
        for d in lab.daemons:
            d.close()
        lab.close()


def doctor(host, *args):
    """(exit status, {check: (status, message)}) of ``fangen doctor fan250 --json``."""
    res = host.fangen("doctor", FAN, "--json", *args, check=False)
    assert "Traceback" not in res.stderr, res.stderr
    report = json.loads(res.stdout)
    assert report["ok"] == (res.returncode == 0)
    checks: dict = {}
    for c in report["checks"]:
        old = checks.get(c["check"])
        worse = old is None or (c["status"] == "fail" and old[0] != "fail")
        checks[c["check"]] = (c["status"], c["message"]) if worse else old
    return res.returncode, checks


def failing(checks) -> dict:
    return {name: message for name, (status, message) in checks.items() if status == "fail"}


def show(host) -> dict:
    return json.loads(host.fangen("show", "--json").stdout)[0]


def gateway(host) -> str:
    return str(host.slice_for().network_address + 1)


def assert_healthy(lab, host=None):
    host = host or lab.hosts[0]
    peer = lab.hosts[1] if host is lab.hosts[0] else lab.hosts[0]
    rc, checks = doctor(host, "--peer", peer.address())
    assert (rc, failing(checks)) == (0, {})
    statuses = {k: v[0] for k, v in checks.items()}
    assert statuses.items() >= {
        "config": "ok", "state": "ok", "kernel": "ok", "tunnel": "ok", "bridge": "ok",
        "route": "ok", "mtu": "ok", "forwarding": "ok", "nft": "ok", "firewall": "ok",
        "dnsmasq": "ok", "peer": "ok"}.items()
    assert (show(host)["state"], show(host)["problems"]) == ("up", [])


def test_a_healthy_host_passes(lab):
    h1, h2 = lab.hosts
    rc, checks = doctor(h1, "--peer", h2.address())
    assert rc == 0
    assert checks["dnsmasq"][1].startswith(f"offers 250.1.10.")
    assert checks["dnsmasq"][1].endswith(f"on {FAN} with router {gateway(h1)} and MTU {MTU}")
    assert checks["peer"][1] == (f"{h2.address()} (host {h2.address()}, slice "
                                 f"{h2.slice_for()}): {gateway(h2)} answers over the fan, "
                                 f"also a {MTU}-byte packet with DF")
    assert_healthy(lab)
    text = h1.fangen("doctor", FAN, check=False).stdout.splitlines()
    assert text[0] == f"ok   {FAN} config: vxlan, {OVERLAY} over 172.16.0.0/16"


def test_bridge_address_removed(lab):
    h1 = lab.hosts[0]
    ip(h1.ns, "addr", "del", f"{gateway(h1)}/8", "dev", FAN)
    rc, checks = doctor(h1, "--peer", lab.hosts[1].address())
    bad = failing(checks)
    assert rc == 1
    assert bad["bridge"].startswith(f"bridge {FAN} lost its address {gateway(h1)}/8 "
                                    f"(it has no address)")
    assert bad["route"] == f"the overlay route {OVERLAY} dev {FAN} is missing"
    assert "dnsmasq" in bad and "peer" in bad
    row = show(h1)
    assert row["state"] == "broken"
    assert row["problems"] == [f"bridge {FAN} lost its address {gateway(h1)}/8 (it has no "
                               f"address)", f"the overlay route {OVERLAY} dev {FAN} is missing"]
    table = h1.fangen("show").stdout
    assert f"{FAN}: bridge {FAN} lost its address {gateway(h1)}/8" in table
    h1.fangen("up", FAN, "--no-systemd")
    assert_healthy(lab)


def test_overlay_route_removed(lab):
    h1 = lab.hosts[0]
    ip(h1.ns, "route", "del", OVERLAY, "dev", FAN)
    try:
        rc, checks = doctor(h1)
        assert (rc, failing(checks)) == (
            1, {"route": f"the overlay route {OVERLAY} dev {FAN} is missing"})
        assert show(h1)["problems"] == [f"the overlay route {OVERLAY} dev {FAN} is missing"]
    finally:
        ip(h1.ns, "route", "replace", OVERLAY, "dev", FAN, "proto", "kernel", "scope", "link",
           "src", gateway(h1))
    assert_healthy(lab)


def test_mtu_wrong(lab):
    h1 = lab.hosts[0]
    port = lab.containers_of(h1)[0].host_end
    ip(h1.ns, "link", "set", "up0", "mtu", "1400")
    ip(h1.ns, "link", "set", port, "mtu", "1500")
    try:
        rc, checks = doctor(h1)
        message = failing(checks).get("mtu", "")
        assert rc == 1
        assert f"the fan's MTU {MTU} + 50 bytes of vxlan does not fit the underlay up0's " \
               f"1400" in message
        assert f"port {port} of {FAN} has MTU 1500 > {MTU}" in message
        assert show(h1)["state"] == "up"      # show judges the bridge, not the path
    finally:
        ip(h1.ns, "link", "set", "up0", "mtu", "1500")
        ip(h1.ns, "link", "set", port, "mtu", str(MTU))
    assert_healthy(lab)


def test_dnsmasq_killed(lab):
    h1 = lab.hosts[0]
    with open(os.path.join(h1.root, "run/fangen", FAN, "state.json")) as fh:
        pid = json.load(fh)["dnsmasq"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait(lambda: not os.path.exists(f"/proc/{pid}/cmdline") or
         open(f"/proc/{pid}/stat").read().split(") ", 1)[1][0] == "Z", 5, "dnsmasq to die")
    rc, checks = doctor(h1)
    assert (rc, failing(checks)) == (
        1, {"dnsmasq": f"dnsmasq is not running: containers get no address (fangen up {FAN})"})
    h1.fangen("up", FAN, "--no-systemd")
    assert_healthy(lab)


def _dockerd(lab, host, settings) -> dk.Dockerd:
    reason = dk.available()
    if reason:
        pytest.skip(reason)
    d = dk.Dockerd(lab.run, host, settings)
    lab.daemons.append(d)
    d.start()
    return d


def test_docker_subnet_slice_takes_the_bridge_address(lab):
    """Issue 10: ``docker network create --subnet SLICE`` on the fan bridge."""
    h2 = lab.hosts[1]
    d = _dockerd(lab, h2, {})
    sl = h2.slice_for()
    d.cli("network", "create", "--subnet", str(sl), "--gateway", gateway(h2),
          "-o", f"com.docker.network.bridge.name={FAN}", "bad")
    try:
        rc, checks = doctor(h2, "--docker-host", f"unix://{d.socket}")
        bad = failing(checks)
        assert rc == 1
        assert bad["bridge"].startswith(f"bridge {FAN} lost its address {gateway(h2)}/8 "
                                        f"(it has {gateway(h2)}/24)")
        assert bad["route"] == f"the overlay route {OVERLAY} dev {FAN} is missing"
        assert bad["docker"].startswith(f"Docker network 'bad' on {FAN}: subnet {sl} is not "
                                        f"{OVERLAY}")
        assert show(h2)["state"] == "broken"
    finally:
        d.cli("network", "rm", "bad", check=False)
        d.close()
        lab.daemons.remove(d)
    h2.fangen("up", FAN, "--no-systemd")
    ip(h2.ns, "addr", "del", f"{gateway(h2)}/24", "dev", FAN, check=False)   # Docker's
    assert_healthy(lab, h2)


def test_docker_icc_false_cuts_the_fan(lab):
    h1, h2 = lab.hosts
    container = lab.containers_of(h1)[0]
    assert container.ping_until(gateway(h2), timeout=5)          # before: across the fan
    settings = json.loads(h1.fangen("docker", FAN).stdout)       # (warns: dhcp is on)
    d = _dockerd(lab, h1, dict(settings, icc=False))
    rc, checks = doctor(h1, "--docker-host", f"unix://{d.socket}", "--peer", h2.address())
    bad = failing(checks)
    assert rc == 1
    assert bad["docker"] == (f"Docker network 'bridge' on {FAN}: icc is false: Docker drops "
                             f"traffic between the bridge's ports, i.e. all traffic to and "
                             f"from other fan hosts")
    assert bad["firewall"].startswith(f"ip filter FORWARD drops new connections between "
                                      f"hosts ({FAN} -> {FAN}, chain FORWARD rule ")
    assert "peer" not in bad                     # host to host is not forwarded: still fine
    assert checks["docker"][0] == "fail"
    assert not container.ping(gateway(h2))       # the doctor is right: the fan is cut
