"""Self-tests of the namespace harness: real networkd, real dnsmasq, real udhcpc.

These do not need fangen's runtime: the fan bridge comes from the units that
``fangen generate`` wrote (networkd creates it), and the containers' DHCP server is
a dnsmasq started by hand with the config fangen's renderer produces.
"""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

from . import DOC_ADDR, Container, Lab, Run, cleanup
from .ns import in_netns, ip, list_netns, pids_in
from .outside import WHOAMI_PORT
from .switch import host_address

pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces")]


@pytest.fixture(scope="module")
def lab():
    lab = Lab(hosts=2, containers=0, tag="t")
    try:
        lab.start_hosts()
        yield lab
    finally:
        lab.close()


def test_networkd_gets_underlay_lease(lab):
    for host in lab.hosts:
        assert host.address() == host_address(host.index)
        assert host.networkd.poll() is None


def test_networkd_creates_fan_bridge_from_generated_units(lab):
    host = lab.hosts[0]
    bridge = host.bridge()
    out = ip(host.ns, "-d", "link", "show", "dev", bridge).stdout
    assert " bridge " in out or "bridge_id" in out or "\n    bridge" in out


def test_default_route_leads_to_outside(lab):
    host = lab.hosts[0]
    lab.outside.whoami()
    with in_netns(host.ns):
        s = socket.create_connection((DOC_ADDR, WHOAMI_PORT), timeout=5)
    with s:
        seen = s.recv(64).decode().strip()
    assert seen == host.address()


def test_container_gets_lease_from_fangen_rendered_dnsmasq(lab):
    from fangen.config.model import build
    from fangen.render import dnsmasq

    host = lab.hosts[1]
    fan = build(lab.fan, host.fans[lab.fan])
    sl = fan.slice_for(host.address())
    bridge = host.bridge()
    ip(host.ns, "addr", "add", f"{sl.gateway}/{fan.bridge_prefix}", "dev", bridge)
    ip(host.ns, "link", "set", bridge, "up")
    conf = os.path.join(host.dir, "manual-dnsmasq.conf")
    text = dnsmasq.render(fan, sl, 1450, root=host.root).replace("pid-file=", "#pid-file=")
    os.makedirs(os.path.join(host.root, "run/fangen", lab.fan), exist_ok=True)
    with open(conf, "w") as fh:
        fh.write(text)
    lab.run.spawn(host.ns, ["dnsmasq", "--keep-in-foreground", "--log-facility=-",
                            f"--conf-file={conf}", "--user=root"],
                  log=os.path.join(host.dir, "manual-dnsmasq.log"))
    c = Container(lab.run, host, 1, lab.fan)
    c.start_dhcp()
    lease = c.wait_lease()
    assert ipaddress.IPv4Address(lease["ip"]) in sl.network
    assert lease["router"] == str(sl.gateway)
    assert lease["mtu"] == "1450"
    assert c.ping(str(sl.gateway))
    again = c.renew()
    assert ipaddress.IPv4Address(again["ip"]) in sl.network


def test_lease_change_on_demand(lab):
    host = lab.hosts[0]
    new = host_address(host.index, generation=5)
    assert host.move_to(new) == new


def test_cleanup_leaves_nothing():
    run = Run("c")
    ns = run.netns("x")
    proc = run.spawn(ns, ["sleep", "60"])
    stray = run.netns("y")
    # a process started behind the run's back, inside one of its namespaces
    import subprocess
    hidden = subprocess.Popen(["ip", "netns", "exec", stray, "sleep", "60"],
                              start_new_session=True)
    assert hidden.pid in pids_in(stray) or hidden.poll() is None
    workdir = run.workdir
    run.close()
    assert proc.poll() is not None
    hidden.wait(timeout=5)
    assert not [n for n in list_netns() if n.startswith(run.prefix)]
    assert not os.path.exists(workdir)


def test_cleanup_by_prefix_removes_leftovers():
    run = Run("l")
    run.netns("left")
    run.namespaces.clear()                # forgotten, as after a SIGKILLed run
    assert cleanup(run.prefix) == [f"{run.prefix}-left"]
    assert not [n for n in list_netns() if n.startswith(run.prefix)]
    run.close()
