"""The runtime (`fangen up|show|down`) on IPIP, in the VM: the kernel datapath against our
patch, the upstream datapath (collect-metadata ipip + tc BPF) on any kernel with ipip.

Runs inside the qemu guest (make kernel-check / kernel-check-stock), because this
project's machines have no ipip.  Three host namespaces on an underlay bridge, each
running `fangen up` from a fan.d file; containers get their addresses from the fan's
dnsmasq (busybox udhcpc) and ping each other across hosts; `fangen down` leaves each
host as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import pytest
from kutil import lease

from fangen.datapath import kernelfan as kf
from fangen.datapath import rtnl
from tests.harness import cli
from tests.harness.cli import fangen
from tests.harness.ns import Run, ip, nsexec, ping, plug, sh, switch_ns

HOSTS = ["172.16.1.2", "172.16.2.3", "172.16.10.11"]
STANZA = """network:
  version: 2
  fan:
    fan250:
      overlay: 250.0.0.0/8
      underlay: 172.16.0.0/16
      type: ipip
      datapath: {datapath}
"""


def snapshot(ns: str) -> dict:
    def j(*args):
        return json.loads(ip(ns, "-j", *args).stdout or "[]")
    return {
        "links": sorted((link["ifname"], link.get("mtu")) for link in j("link")),
        "addrs": sorted((a["ifname"], x["local"], x["prefixlen"]) for a in j("-4", "addr")
                        for x in a.get("addr_info", [])),
        "routes": sorted(json.dumps(r, sort_keys=True) for r in j("-4", "route")),
        "nft": nsexec(ns, "nft", "list", "ruleset").stdout,
    }


def bring_up(net: Run, datapath: str):
    workdir = tempfile.mkdtemp(prefix="fangen-rt-")
    u = switch_ns(net, "u")
    hosts = []
    for i, addr in enumerate(HOSTS):
        h = net.netns(f"h{i}")
        plug(u, f"p{i}", h, "eth0", f"{addr}/16")
        root = os.path.join(workdir, f"h{i}")
        cli.install(root, STANZA.format(datapath=datapath), "10-fan.yaml")
        before = snapshot(h)
        fangen(h, root, "up", "fan250", "--no-systemd", "--timeout", "10")
        hosts.append((h, root, before))
    return workdir, hosts


def check_fan(net, datapath: str, while_up=None) -> None:
    workdir, hosts = bring_up(net, datapath)
    for h, root, _ in hosts:
        [shown] = json.loads(fangen(h, root, "show", "--json").stdout)
        assert (shown["datapath"], shown["state"], shown["type"]) == (datapath, "up", "ipip")
    # one container per host, addressed by the fan's dnsmasq from its host's slice
    containers = []
    for i, (h, _, _) in enumerate(hosts):
        addr = lease(net, h, "fan250", f"c{i}", workdir)
        third, fourth = HOSTS[i].split(".")[2:]
        assert addr.startswith(f"250.{third}.{fourth}."), addr
        containers.append((f"{net.prefix}-c{i}", addr))
    # one echo each, answered: no first packet may be lost to an underlay neighbour
    # the hosts have not resolved yet
    for a_ns, _ in containers:
        for b_ns, b_addr in containers:
            if a_ns != b_ns:
                assert ping(a_ns, b_addr, count=1), f"{a_ns} -> {b_addr}"
    if while_up is not None:
        while_up(hosts)
    # up again: nothing to do; down: each host as it was before up
    for i, (h, root, before) in enumerate(hosts):
        assert fangen(h, root, "up", "fan250", "--dry-run").stdout.endswith("# nothing to do\n")
        assert "already up, nothing changed" in fangen(h, root, "up", "fan250",
                                                       "--no-systemd").stdout
        ip(h, "link", "del", f"vc{i}")                  # the container's veth is the test's
        fangen(h, root, "down", "fan250")
        deadline = time.monotonic() + 5
        while snapshot(h) != before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert snapshot(h) == before


@pytest.mark.skipif(not kf.present()["ipip"], reason="the kernel datapath needs our IPIP "
                    "fan patch: make kernel-check runs this on the patched kernel")
def test_fangen_up_kernel_datapath(net):
    def maps_read_back(hosts):
        for h, _, _ in hosts:
            with rtnl.Rtnl(netns=h) as nl:
                assert [str(m) for m in kf.get_maps(nl, "fan250-tun")] == \
                    ["250.0.0.0/8:172.16.0.0/16"]
    check_fan(net, "kernel", maps_read_back)


def test_fangen_up_upstream_ipip(net):
    def encapsulating(hosts):
        for h, _, _ in hosts:           # IPv4 encapsulated by the egress program itself
            egress = sh("tc", "-n", h, "filter", "show", "dev", "fangen-ipip",
                        "egress").stdout
            assert " name fan_ip_encap " in egress, egress
    check_fan(net, "upstream", encapsulating)
