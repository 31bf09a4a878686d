"""The kernel datapath only where the kernel means it, on this machine's real kernel.

Needs root.  This machine runs an upstream kernel newer than 6.14 without the fan
patch: VXLAN attribute 33 is IFLA_VXLAN_RESERVED_BITS here.  So:

* a plain VXLAN device created by kernelfan (no attribute 33 sent) reads back with
  an attribute 33 that is not a fan map nest;
* fangen itself, with datapath auto, chooses upstream (no /proc/sys/net/fan);
* a kernel that *claims* the fan in /proc but reads attribute 33 back as something
  else: the tunnel is deleted again and the fan falls back to upstream (auto), or
  ``datapath: kernel`` fails with a clear line.  The one stand-in: fangen runs
  through a wrapper that makes ``kernelfan.present`` claim the VXLAN fan and strips
  the fan map from the creation request, so attribute 33 is never sent to this
  kernel; the read-back is the real kernel's.
"""

from __future__ import annotations

import json
import os

import pytest

from fangen.datapath import kernelfan as kf
from fangen.datapath import rtnl
from tests.harness import cli, snapshot
from tests.harness.ns import Run, in_netns, ip, nsexec, underlay_host

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: netns"),
]

# fangen as on a kernel that claims the VXLAN fan; the creation request carries no fan map
CLAIMS_FAN = """import sys
from fangen.datapath import kernelfan as kf
kf.present = lambda proc_root="/proc": {"ipip": False, "vxlan": True}
_newlink = kf.newlink_vxlan_fan
kf.newlink_vxlan_fan = lambda name, vni, local, maps=(), **kw: _newlink(name, vni, local, (), **kw)
from fangen.cli import main
sys.exit(main(sys.argv[1:]))
"""
FAN_YAML = """network:
  version: 2
  fan:
    fan250:
      overlay: 250.0.0.0/8
      underlay: 172.16.0.0/16
      type: vxlan
      datapath: {datapath}
"""


def _release() -> tuple[int, int]:
    parts = os.uname().release.split(".")
    return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)


needs_6_14 = pytest.mark.skipif(_release() < (6, 14) or kf.present()["vxlan"],
                                reason="attribute 33 is RESERVED_BITS only on upstream 6.14+")


@pytest.fixture
def host():
    with Run("kp") as run:
        h, _ = underlay_host(run)
        yield run, h


@needs_6_14
def test_this_kernel_reads_attribute_33_back_as_something_else(host):
    _, h = host
    with in_netns(h):
        nl = rtnl.Rtnl()
    with nl:
        kf.create_vxlan_fan(nl, "vx0", 42, "172.16.3.4", dev="ul0")     # no maps: no attr 33
        link = rtnl.get_link(nl, "vx0")
        assert len(kf.fan_attr(link)) == 8                                  # struct vxlanhdr
        assert kf.fan_attr_meaning(link) == "foreign"
        assert kf.fan_maps(link) == []


def _fangen(run, h, root, *args, wrapper=True):
    return cli.fangen(h, root, *args, check=False,
                      head=[cli.PYTHON, "-c", CLAIMS_FAN] if wrapper else None)


def _root(run, datapath: str) -> str:
    root = os.path.join(run.workdir, f"root-{datapath}")
    cli.install(root, FAN_YAML.format(datapath=datapath))
    return root


@needs_6_14
def test_auto_chooses_upstream_without_the_fan(host):
    run, h = host
    root = _root(run, "auto")
    res = _fangen(run, h, root, "up", "fan250", "--dry-run", wrapper=False)
    assert res.returncode == 0, res.stderr
    assert "vxlan, upstream datapath" not in res.stderr
    assert res.stdout.splitlines()[0].endswith(", upstream datapath")
    assert "fan-map" not in res.stdout


@needs_6_14
def test_a_failed_read_back_falls_back_to_upstream(host):
    run, h = host
    root = _root(run, "auto")
    before = snapshot.snapshot(h)
    # what the plan wants on a kernel claiming the fan: the kernel datapath
    dry = _fangen(run, h, root, "up", "fan250", "--dry-run")
    assert "create vxlan fan250-tun id 16384000 dev ul0 dstport 8472 local 172.16.3.4 " \
           "fan-map 250.0.0.0/8:172.16.0.0/16" in dry.stdout
    res = _fangen(run, h, root, "up", "fan250")
    assert res.returncode == 0, res.stderr
    assert res.stdout == ("fan250: up, slice 250.3.4.0/24 via ul0 172.16.3.4 (vxlan, upstream "
                          "datapath)\n")
    [note] = res.stderr.splitlines()
    assert note.startswith("fangen: fan250: kernel fan datapath not usable here (create vxlan "
                           "fan fan250-tun: Operation not supported (attribute 33 of a vxlan "
                           "link reads back as something other than fan maps")
    assert note.endswith("); using the upstream datapath")
    with open(os.path.join(root, "run/fangen/fan250/state.json")) as fh:
        assert json.load(fh)["datapath"] == "upstream"
    link = json.loads(ip(h, "-j", "-d", "link", "show", "dev", "fan250-tun").stdout)[0]
    # the upstream datapath's VXLAN device: a plain one (the programs send every frame)
    data = link["linkinfo"]["info_data"]
    assert data.get("external") is None and data["id"] == 16384000
    assert data["port"] == 8472 and data["learning"] is False and "remote" not in data
    res = _fangen(run, h, root, "down", "fan250")
    assert res.returncode == 0, res.stderr
    assert snapshot.snapshot(h) == before


@needs_6_14
def test_datapath_kernel_fails_clearly_and_leaves_no_tunnel(host):
    run, h = host
    root = _root(run, "kernel")
    before = snapshot.snapshot(h)
    res = _fangen(run, h, root, "up", "fan250")
    assert res.returncode == 1 and res.stdout == ""
    [line] = res.stderr.splitlines()
    assert line.startswith("fangen: fan250: datapath: kernel, but the kernel refused the fan "
                           "map (create vxlan fan fan250-tun: Operation not supported "
                           "(attribute 33 of a vxlan link reads back as something other than "
                           "fan maps")
    # a first up: what it made before the refusal (the bridge) is gone again
    assert line.endswith("); use datapath: auto or upstream "
                         "(undone: nothing of fan250 was left)"), line
    assert snapshot.snapshot(h) == before
    assert _fangen(run, h, root, "down", "fan250").returncode == 0
    assert snapshot.snapshot(h) == before
    # and without the claim (this kernel's real /proc): the same fan is refused up front
    res = _fangen(run, h, root, "up", "fan250", wrapper=False)
    assert (res.returncode, res.stderr) == (
        1, "fangen: fan250: datapath: kernel, but this kernel has no vxlan fan "
           "(/proc/sys/net/fan/vxlan is missing); use datapath: auto or upstream\n")
    assert nsexec(h, "nft", "list", "tables").stdout == ""
