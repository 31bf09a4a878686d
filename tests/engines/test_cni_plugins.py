"""The CNI network fangen writes, run by the real CNI plugins (containernetworking-plugins)
the way a runtime runs them (``CNI_COMMAND=ADD`` / ``DEL``, the config on stdin), for both
fan types.

This covers what tests/engines/test_podman.py cannot on this machine: an IPIP fan (the
kernel here has no ipip, so there is no tunnel, but the plugins' side, a container on a
bridge that holds the slice, is the same).  Each case is one host namespace with the fan
bridge addressed as fangen addresses it, and a container namespace the plugin configures;
``host-local`` keeps its allocations in /var/lib/cni, so the plugins run in a
:class:`~tests.engines.holder.Holder` mount namespace.  About 2 s.
"""

from __future__ import annotations

import json
import os

import pytest

from fangen.config.model import build
from fangen.engines import cni
from tests.engines import traffic
from tests.engines.holder import Holder
from tests.harness.host import wait
from tests.harness.ns import Run, ip

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces"),
    pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"),
                       reason="needs containernetworking-plugins"),
]

CNI_PATH = "/usr/lib/cni"
HOST = "172.16.3.4"
UNDERLAY_MTU = 1500


def _plugin(holder: Holder, command: str, conf: dict, netns: str, cid: str):
    """Run the first plugin of the list as libcni does (cniVersion and name copied in)."""
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_NETNS=netns,
               CNI_IFNAME="eth0", CNI_PATH=CNI_PATH)
    plugin = dict(conf["plugins"][0], cniVersion=conf["cniVersion"], name=conf["name"])
    return holder.sh(os.path.join(CNI_PATH, plugin["type"]), env=env,
                     input=json.dumps(plugin), check=False, timeout=30)


@pytest.mark.parametrize("kind", ["ipip", "vxlan"])
def test_bridge_plugin_puts_a_container_in_the_slice(kind):
    fan = build("fan250", {"overlay": "250.0.0.0/8", "underlay": "172.16.0.0/16",
                           "type": kind, "dhcp": False})
    sl = fan.slice_for(HOST)
    mtu = fan.mtu_for(UNDERLAY_MTU)
    conf = json.loads(cni.render(fan, sl, mtu))
    with Run("n") as run:
        host = run.netns("h")
        ctr = run.netns("c")
        ip(host, "link", "add", fan.bridge, "type", "bridge")
        ip(host, "link", "set", fan.bridge, "mtu", str(mtu), "up")
        bridge_address = f"{sl.gateway}/{fan.bridge_prefix}"
        ip(host, "addr", "add", bridge_address, "dev", fan.bridge)
        holder = Holder(run, host, os.path.join(run.workdir, "cni"))
        # the holder's /run is its own: name the container's namespace by a process in it,
        # once that process is in it (never hand a plugin the namespace we run in)
        netns = f"/proc/{run.spawn(ctr, ['sleep', '120']).pid}/ns/net"
        want = os.stat(f"/run/netns/{ctr}").st_ino
        wait(lambda: os.stat(netns).st_ino == want, 5, "the container's namespace")

        res = _plugin(holder, "ADD", conf, netns, "ctr1")
        assert res.returncode == 0, res.stdout + res.stderr
        result = json.loads(res.stdout)
        got = traffic.iface(ctr)
        assert [i["address"] for i in result["ips"]] == \
            [f"{sl.gateway + 1}/{fan.bridge_prefix}"]
        assert got["address"] == str(sl.gateway + 1)
        assert got["prefixlen"] == (8 if kind == "vxlan" else 24)
        assert got["mtu"] == mtu
        assert traffic.default_gateway(ctr) == str(sl.gateway)
        assert traffic.ping(ctr, str(sl.gateway))
        # the plugin leaves fangen's bridge address alone (isGateway false)
        link = json.loads(ip(host, "-j", "-4", "addr", "show", "dev", fan.bridge).stdout)[0]
        assert [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]] == [bridge_address]

        res = _plugin(holder, "DEL", conf, netns, "ctr1")
        assert res.returncode == 0, res.stdout + res.stderr
        assert ip(ctr, "link", "show", "dev", "eth0", check=False).returncode != 0
        ports = json.loads(ip(host, "-j", "link", "show", "master", fan.bridge).stdout)
        assert ports == []
