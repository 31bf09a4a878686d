"""Two fans of one kind on one host, with `fangen up` / `down` on real kernel objects.

Needs root.  The layout of examples/two-fans.yaml (a front network 10.10.0.0/16 and a
storage network 10.20.0.0/16, one fan over each), made VXLAN because this machine's
kernel has no ipip (tests/kernel/test_multifan.py runs the example itself, IPIP, in the
VM on Debian's stock kernel).  The kernel allows one collect-metadata VXLAN device per
UDP port, so the storage fan gets port 4789; a second fan on the same port is refused by
validation with one exact line, and nothing is created.

Two host namespaces, each with a NIC on a "front" and a "storage" switch namespace and a
root directory under pytest's tmp_path; one container namespace per host and fan, with a
static slice address (DHCP is covered by test_runtime_updown).  fangen runs as
``ip netns exec HOST /usr/bin/python3 -m fangen ... --root-dir ROOT``.  Everything is
removed in the finalizer, also on failure.
"""

from __future__ import annotations

import os

import pytest
import yaml

from tests.harness import cli
from tests.harness.cli import REPO, fangen
from tests.harness.ns import Run, ip, nsexec, ping, plug, sh, switch_ns, veth

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: netns, bpf(2), nft")

EXAMPLE = os.path.join(REPO, "examples", "two-fans.yaml")
HOSTS = [("10.10.1.2", "10.20.1.2"), ("10.10.2.3", "10.20.2.3")]
VX_MTU = 1450


def example_as_vxlan(storage_port: int | None) -> dict:
    """examples/two-fans.yaml with both fans VXLAN (and no DHCP: static containers)."""
    with open(EXAMPLE) as fh:
        data = yaml.safe_load(fh)
    for fan in data["network"]["fan"].values():
        fan.update(type="vxlan", dhcp=False)
    if storage_port is not None:
        data["network"]["fan"]["storage"]["vxlan"] = {"port": storage_port}
    return data


def snapshot(ns: str) -> dict:
    links = [row.split()[0].split("@")[0]
             for row in sh("ip", "-n", ns, "-br", "link").stdout.splitlines()]
    tc = {f"{dev} {hook}": sh("tc", "-n", ns, "filter", "show", "dev", dev, hook).stdout
          for dev in links for hook in ("ingress", "egress")}
    return {
        "links": sh("ip", "-n", ns, "-br", "link").stdout,
        "addresses": sh("ip", "-n", ns, "-br", "addr").stdout,
        "routes": sh("ip", "-n", ns, "route", "show", "table", "all").stdout,
        "nft": nsexec(ns, "nft", "list", "ruleset").stdout,
        "tc": tc,
    }


class World:
    def __init__(self, run: Run, tmp_path, data: dict):
        self.run = run
        self.switches = {}
        for net in ("front", "storage"):
            sw = switch_ns(run, f"sw{net[0]}")
            self.switches[net] = sw
        self.hosts = []
        for i, (front, storage) in enumerate(HOSTS, 1):
            h = run.netns(f"h{i}")
            for nic, (net, addr) in enumerate((("front", front), ("storage", storage))):
                plug(self.switches[net], f"p{i}", h, f"eth{nic}", f"{addr}/16")
            root = str(tmp_path / f"h{i}")
            cli.install(root, yaml.safe_dump(data), "two-fans.yaml")
            self.hosts.append((h, root, front))

    def container(self, i: int, fan: str, bridge: str) -> tuple[str, str]:
        """A container on host i's fan bridge at its slice's .10 (the bridge holds the
        overlay prefix on a VXLAN fan)."""
        h, _, front = self.hosts[i]
        third, fourth = front.split(".")[2:]
        first = "250" if fan == "front" else "251"
        c = self.run.netns(f"c{i}{fan[0]}")
        veth(h, f"c-{fan}", c, "eth0", mtu=VX_MTU)
        ip(h, "link", "set", f"c-{fan}", "master", bridge)
        addr = f"{first}.{third}.{fourth}.10"
        ip(c, "addr", "add", f"{addr}/8", "dev", "eth0")
        return c, addr


@pytest.fixture
def run():
    with Run("mf") as r:
        yield r


def test_two_vxlan_fans_on_distinct_ports_both_carry_traffic(run, tmp_path):
    w = World(run, tmp_path, example_as_vxlan(storage_port=4789))
    before = [snapshot(h) for h, _, _ in w.hosts]
    for h, root, _ in w.hosts:
        fangen(h, root, "up", "front")
        fangen(h, root, "up", "storage")
        # one plain VXLAN device per fan (its VNI, no remote), each on its own port
        details = {dev: ip(h, "-d", "link", "show", "dev", dev).stdout
                   for dev in ("front-tun", "storage-tun")}
        for dev, port in (("front-tun", 8472), ("storage-tun", 4789)):
            assert "external" not in details[dev] and "remote" not in details[dev]
            assert "vxlan id " in details[dev] and f"dstport {port}" in details[dev]
    fans = {"front": "br-front", "storage": "br-storage"}
    cs = {(i, fan): w.container(i, fan, bridge) for i in (0, 1) for fan, bridge in fans.items()}
    for fan in fans:
        (a_ns, _), (b_ns, b_addr) = cs[0, fan], cs[1, fan]
        assert ping(a_ns, b_addr, count=2), f"{fan}: host 1 -> host 2"
        assert ping(b_ns, cs[0, fan][1]), f"{fan}: host 2 -> host 1"
    # the overlays stay apart: no route from one fan's container into the other's overlay
    assert not ping(cs[0, "front"][0], cs[1, "storage"][1], wait=1)

    # down of one fan on host 1 leaves the other fan working there
    h1, root1, _ = w.hosts[0]
    fangen(h1, root1, "down", "front")
    assert ip(h1, "link", "show", "dev", "front-tun", check=False).returncode != 0
    assert ping(cs[0, "storage"][0], cs[1, "storage"][1], count=2)
    assert not ping(cs[1, "front"][0], cs[0, "front"][1], wait=1)
    fangen(h1, root1, "up", "front")
    ip(h1, "link", "set", "c-front", "master", "br-front")     # the bridge is a new one
    assert ping(cs[1, "front"][0], cs[0, "front"][1], count=2)

    # down of both leaves each host as it was (the containers' veths are the test's)
    for i, (h, root, _) in enumerate(w.hosts):
        for fan in fans:
            ip(h, "link", "del", f"c-{fan}")
            fangen(h, root, "down", fan)
        assert snapshot(h) == before[i]


def test_two_vxlan_fans_on_one_port_are_refused_with_one_line(run, tmp_path):
    w = World(run, tmp_path, example_as_vxlan(storage_port=None))
    h, root, _ = w.hosts[0]
    before = snapshot(h)
    path = os.path.join(root, "etc/netplan/fan.d/two-fans.yaml")
    with open(path) as fh:
        text = fh.read().splitlines()
    start = text.index("    storage:")
    line = next(n for n in range(start, len(text)) if text[n].strip() == "type: vxlan")
    col = text[line].index("vxlan") + 1
    want = (f"{path}:{line + 1}:{col}: Error in fan definition: storage: vxlan port 8472 is also "
            "used by fan 'front': the upstream datapath needs a UDP port of its own for each "
            "VXLAN fan; set 'vxlan: {port: N}' to another port (or 'datapath: kernel' on "
            "both fans, with the kernel fan patch)")
    res = fangen(h, root, "up", "storage", check=False)
    assert res.returncode != 0
    assert res.stderr.splitlines()[0] == want, res.stderr
    assert "Traceback" not in res.stderr
    assert snapshot(h) == before                        # nothing was made
    res = fangen(h, root, "validate", check=False)
    assert res.returncode != 0 and want in res.stderr.splitlines()
    # the first fan of the pair is fine and comes up
    fangen(h, root, "up", "front")
    fangen(h, root, "down", "front")
    assert snapshot(h) == before


def test_a_foreign_device_on_the_port_is_named_and_nothing_is_made(run, tmp_path):
    """Not fangen's collect-metadata VXLAN device on the fan's port (the kernel allows one
    per port): up says which device, instead of the kernel's EEXIST, and makes nothing."""
    w = World(run, tmp_path, example_as_vxlan(storage_port=4789))
    h, root, _ = w.hosts[0]
    ip(h, "link", "add", "vx-other", "type", "vxlan", "external", "dstport", "4789")
    before = snapshot(h)
    res = fangen(h, root, "up", "storage", check=False)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr == ("fangen: storage: UDP port 4789 is already used by the VXLAN "
                          "device vx-other: set 'vxlan: {port: N}' to a free port\n")
    assert snapshot(h) == before
    fangen(h, root, "up", "front")          # the other port is free
    fangen(h, root, "down", "front")
    assert snapshot(h) == before
