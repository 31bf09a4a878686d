"""Engine settings fangen renders (fangen.engines.cni, fangen.engines.lxd): exact content for
each fan type, the runtime keeping the CNI network current, and the podman and LXD examples
checked against the renderers for IPIP and VXLAN.

The real engines run these files in tests/engines (podman 4.3 and LXD 5.0.2, VXLAN: the
type this machine's kernel runs).  Regenerate the example files after an intended change:

    FANGEN_UPDATE_GOLDEN=1 /usr/bin/python3 -m pytest -q tests/unit/test_cni_lxd.py
"""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Address, IPv4Network

import pytest
import yaml

from fangen.config import loader, validate
from fangen.config.model import build
from fangen.engines import cni, lxd
from fangen.errors import Report
from fangen.fanmap import Slice
from fangen.runtime import actions as A
from fangen.runtime import plan as P
from fangen.runtime import view as V
from fangen.runtime.state import State
from fangen.runtime.underlay import Resolved

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, "examples")
UPDATE = os.environ.get("FANGEN_UPDATE_GOLDEN") == "1"
TYPES = ("vxlan", "ipip")
EXAMPLE_HOST = "10.0.3.4"                   # the host the podman example files are for
UNDERLAY_MTU = 1500


def fan(**extra):
    data = {"overlay": "250.0.0.0/8", "underlay": "172.16.0.0/16"}
    data.update(extra)
    return build(extra.pop("name", "fan-250"), data)


def bridge_plugin(text: str) -> dict:
    data = json.loads(text)
    assert [p["type"] for p in data["plugins"]] == ["bridge", "portmap"]
    return data["plugins"][0]


# -- CNI ----------------------------------------------------------------------------------

def test_cni_host_local_on_a_vxlan_fan_spans_the_overlay_and_hands_out_the_slice():
    f = fan(type="vxlan", dhcp=False)
    text = cni.render(f, f.slice_for("172.16.3.4"), 1450)
    data = json.loads(text)
    assert data["cniVersion"] == "0.4.0" and data["name"] == "fan-250"
    assert bridge_plugin(text) == {
        "type": "bridge", "bridge": "fan-250", "isGateway": False, "isDefaultGateway": False,
        "ipMasq": False, "hairpinMode": False, "mtu": 1450,
        "ipam": {"type": "host-local",
                 "ranges": [[{"subnet": "250.0.0.0/8", "rangeStart": "250.3.4.2",
                              "rangeEnd": "250.3.4.254", "gateway": "250.3.4.1"}]],
                 "routes": [{"dst": "0.0.0.0/0"}]}}
    assert data["plugins"][1] == {"type": "portmap", "capabilities": {"portMappings": True}}


def test_cni_host_local_on_an_ipip_fan_is_the_slice():
    f = fan(dhcp=False, bridge="br-fan", **{"host-reserve": 10})
    ipam = bridge_plugin(cni.render(f, f.slice_for("172.16.3.4"), 1480))["ipam"]
    assert ipam["ranges"] == [[{"subnet": "250.3.4.0/24", "rangeStart": "250.3.4.11",
                                "rangeEnd": "250.3.4.254", "gateway": "250.3.4.1"}]]


def test_cni_uses_the_fans_bridge_name_and_mtu():
    f = fan(type="vxlan", bridge="br-fan")
    plugin = bridge_plugin(cni.render(f, f.slice_for("172.16.3.4"), 1400))
    assert plugin["bridge"] == "br-fan" and plugin["mtu"] == 1400


@pytest.mark.parametrize("kind", TYPES)
def test_cni_with_fangens_dhcp_asks_dnsmasq(kind):
    f = fan(type=kind)
    text = cni.render(f, f.slice_for("172.16.3.4"), 1450)
    assert bridge_plugin(text)["ipam"] == {"type": "dhcp"}
    assert text == cni.render(f, f.slice_for("172.16.9.9"), 1450)     # no slice in it


def test_cni_nothing_when_the_slice_has_no_address_left():
    f = fan(dhcp=False, **{"host-reserve": 300})          # build() does not validate
    assert cni.render(f, f.slice_for("172.16.3.4"), 1480) is None


def test_cni_path_is_in_the_fans_own_directory():
    assert cni.path("fan-250") == "run/fangen/fan-250/cni/fan-250.conflist"


# -- the runtime keeps it current ----------------------------------------------------------

UL = Resolved("ul0", 2, IPv4Address("172.16.3.4"), IPv4Network("172.16.0.0/16"), 1500)
UL_MOVED = Resolved("ul0", 2, IPv4Address("172.16.5.6"), IPv4Network("172.16.0.0/16"), 1500)


def _written(actions) -> dict:
    return {a.path: a.text for a in actions if isinstance(a, A.WriteFile)}


def test_runtime_writes_the_network_and_rewrites_it_when_the_slice_moves():
    f = fan(type="vxlan", dhcp=False)
    first = P.plan_up(P.Target(f, UL, "upstream"), V.Observed(), None)
    text = _written(first)[cni.path(f.name)]
    assert text == cni.render(f, Slice(IPv4Network("250.3.4.0/24")), 1450)
    state = State(f.name, files={cni.path(f.name): text})
    obs = V.Observed(files={cni.path(f.name): text})
    moved = _written(P.plan_up(P.Target(f, UL_MOVED, "upstream"), obs, state))
    assert moved[cni.path(f.name)] == cni.render(f, Slice(IPv4Network("250.5.6.0/24")), 1450)


def test_down_removes_the_network():
    state = State("fan-250", files={cni.path("fan-250"): "{}"})
    obs = V.Observed(files={cni.path("fan-250"): "{}"})
    assert f"remove {cni.path('fan-250')}" in [str(a) for a in P.plan_down(state, obs)]


# -- LXD ------------------------------------------------------------------------------------

def test_lxd_profile_plugs_eth0_into_the_fan_bridge():
    assert lxd.profile(fan(type="vxlan", bridge="br-fan")) == {
        "name": "fan-250", "description": "Containers on the fan bridge br-fan (fangen)",
        "config": {},
        "devices": {"eth0": {"type": "nic", "nictype": "bridged", "parent": "br-fan",
                             "name": "eth0"}}}


def test_lxd_profile_is_the_same_for_every_type_and_mtu():
    texts = {lxd.render(fan(type=kind, **extra))
             for kind in TYPES for extra in ({}, {"mtu": 1400})}
    assert len(texts) == 1
    assert yaml.safe_load(texts.pop()) == lxd.profile(fan())


# -- the examples ---------------------------------------------------------------------------

def _example_fan(directory: str, tmp_path, kind: str):
    """The example's only fan, as ``kind``: loaded and validated like a real fan.d file."""
    root = tmp_path / kind
    target = root / "etc/netplan/fan.d"
    target.mkdir(parents=True)
    fan_files = [f for f in os.listdir(os.path.join(EXAMPLES, directory))
                 if f.endswith("-fan.yaml")]
    with open(os.path.join(EXAMPLES, directory, fan_files[0]), encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    (name, stanza), = data["network"]["fan"].items()
    stanza["type"] = kind
    (target / "50-example.yaml").write_text(yaml.safe_dump(data))
    os.chmod(target / "50-example.yaml", 0o600)
    report = Report()
    result = validate.validate(loader.load(str(root), report), report)
    assert not report.items, [d.format() for d in report.items]
    (only,) = result.fans
    return only


def _check(path: str, text: str) -> None:
    if UPDATE:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return
    with open(path, encoding="utf-8") as fh:
        assert fh.read() == text, f"{path} differs from fangen's rendering"


@pytest.mark.parametrize("kind", TYPES)
def test_podman_example_is_what_fangen_writes(kind, tmp_path):
    f = _example_fan("podman", tmp_path, kind)
    text = cni.render(f, f.slice_for(EXAMPLE_HOST), f.mtu_for(UNDERLAY_MTU))
    _check(os.path.join(EXAMPLES, "podman", kind, f"{f.name}.conflist"), text)
    ipam = bridge_plugin(text)["ipam"]
    assert ipam["ranges"][0][0]["gateway"] == "250.3.4.1"
    assert ipam["ranges"][0][0]["subnet"] == ("250.0.0.0/8" if kind == "vxlan"
                                             else "250.3.4.0/24")


def test_podman_example_comment_names_the_files(tmp_path):
    f = _example_fan("podman", tmp_path, "vxlan")
    with open(os.path.join(EXAMPLES, "podman", "podman-fan.yaml"), encoding="utf-8") as fh:
        text = fh.read()
    assert f"/run/{cni.path(f.name)[len('run/'):]}" in text
    assert f"--network {f.name}" in text
    assert str(f.slice_for(EXAMPLE_HOST).network) in text


@pytest.mark.parametrize("kind", TYPES)
def test_lxd_example_profile_is_what_fangen_renders(kind, tmp_path):
    f = _example_fan("lxd", tmp_path, kind)
    _check(os.path.join(EXAMPLES, "lxd", "profile.yaml"), lxd.render(f))
