"""Real systemd-networkd accepts what `fangen generate` writes, with no warning about it.

Root; real networkd (Debian 12's systemd 252) in a host namespace made by the test
harness, with a private dbus-daemon.  Three fans: a dynamic VXLAN fan (bridge only; the
slice comes at run time), a static IPIP fan (bridge address and overlay route rendered)
and a static VXLAN fan (bridge carries the overlay prefix).  The tunnels are the
runtime's to create; here the test makes them: a real external VXLAN device, and a real
external IPIP device where the kernel has ipip.  Where it has not (this machine), a veth
takes the IPIP tunnel's name, and networkd must leave it alone: our files match the
device kind as well as the name (Kind=ipip), so a device fangen did not make never gets
our configuration, whatever its name.  networkd must create the bridges, address them,
enslave the VXLAN port, install the route (with ipip), and log nothing about our files.
"""

import json
import os
import re
import time

import pytest

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")]

from tests.harness.host import Host  # noqa: E402
from tests.harness.ns import Run, ip, sh  # noqa: E402
from tests.harness.switch import Switch  # noqa: E402

FANS = {
    "fanv": {"overlay": "250.0.0.0/8", "underlay": "172.16.0.0/16", "type": "vxlan"},
    "fans": {"overlay": "240.0.0.0/8", "underlay": "10.9.3.4/16", "mtu": 1400},
    "fanx": {"overlay": "241.0.0.0/8", "underlay": "10.9.3.4/16", "type": "vxlan",
             "vxlan": {"port": 4789}},        # one UDP port per VXLAN fan (fan.d(5))
}


def links(ns):
    return {link["ifname"]: link for link in json.loads(ip(ns, "-j", "-d", "link").stdout)}


def addrs(ns, dev):
    data = json.loads(ip(ns, "-j", "-4", "addr", "show", "dev", dev).stdout)
    return [f"{a['local']}/{a['prefixlen']}" for link in data for a in link["addr_info"]]


def wait_for(pred, timeout=15):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def host():
    with Run("accept") as run:
        switch = Switch(run)
        h = Host(run, switch, 1, fans=FANS)
        h.start()
        ip(h.ns, "link", "add", "fanv-tun", "type", "vxlan", "external", "dstport", "8472")
        h.has_ipip = ip(h.ns, "link", "add", "fans-tun", "type", "ipip", "external",
                        check=False).returncode == 0
        if not h.has_ipip:                 # this project's machines' kernels have no ipip
            ip(h.ns, "link", "add", "fans-tun", "type", "veth", "peer", "name", "fans-peer")
            ip(h.ns, "link", "set", "fans-peer", "up")
        yield h


def test_networkd_creates_the_bridges(host):
    assert wait_for(lambda: {"fanv", "fans", "fanx"} <= set(links(host.ns)))
    for name in ("fanv", "fans", "fanx"):
        assert links(host.ns)[name]["linkinfo"]["info_kind"] == "bridge"


def test_static_slices_are_addressed(host):
    assert wait_for(lambda: addrs(host.ns, "fans") == ["240.3.4.1/24"])
    assert wait_for(lambda: addrs(host.ns, "fanx") == ["241.3.4.1/8"])
    assert addrs(host.ns, "fanv") == []            # dynamic: the runtime addresses it later


def test_vxlan_port_is_enslaved(host):
    assert wait_for(lambda: links(host.ns)["fanv-tun"].get("master") == "fanv")


def test_ipip_route_installed_or_impostor_left_alone(host):
    def route():
        out = json.loads(ip(host.ns, "-j", "route", "show", "240.0.0.0/8").stdout)
        return out and out[0].get("dev") == "fans-tun" and out[0].get("prefsrc") == "240.3.4.1"
    if host.has_ipip:
        assert wait_for(route)
        return
    # a veth named like the tunnel: Kind=ipip does not match it, so networkd neither
    # routes the overlay through it nor calls it configured
    assert wait_for(lambda: netif_state(host, "fans-tun").get("ADMIN_STATE") == "unmanaged")
    assert "NETWORK_FILE" not in netif_state(host, "fans-tun")
    assert not route()


def netif_state(host, dev):
    """networkd's own record of a link (/run/systemd/netif/links/IFINDEX, in its mount ns)."""
    index = links(host.ns)[dev]["ifindex"]
    try:
        with open(os.path.join(host.root, f"run/systemd/netif/links/{index}")) as fh:
            return dict(line.rstrip("\n").split("=", 1) for line in fh if "=" in line)
    except FileNotFoundError:
        return {}


def test_networkd_uses_our_files(host):
    for dev in ("fanv", "fans", "fanx", "fanv-tun") + (("fans-tun",) if host.has_ipip else ()):
        expected = f"/run/systemd/network/10-fangen-{dev}.network"
        assert wait_for(lambda d=dev, e=expected: netif_state(host, d).get("NETWORK_FILE") == e), \
            netif_state(host, dev)
        assert wait_for(lambda d=dev: netif_state(host, d).get("ADMIN_STATE") == "configured"), \
            netif_state(host, dev)


def test_networkd_logs_nothing_about_our_files(host):
    with open(host.log("networkd")) as fh:
        complaints = [line for line in fh if "10-fangen" in line
                      and not re.search(r": Configuring with /run/systemd/network/"
                                        r"10-fangen-[\w.-]+\.network\.$", line)]
    assert complaints == []


def test_the_log_oracle_catches_a_bad_file(host):
    """The check above can fail: a bad key in one of our files shows up in the log."""
    bad = os.path.join(host.root, "run/systemd/network/10-fangen-zz.network")
    with open(bad, "w") as fh:
        fh.write("[Match]\nName=zz\n\n[Network]\nBogusKey=1\n")
    try:
        host.networkctl("reload")
        assert wait_for(lambda: "10-fangen-zz.network" in open(host.log("networkd")).read(), 5)
    finally:
        os.unlink(bad)
        host.networkctl("reload")
        sh("true")
