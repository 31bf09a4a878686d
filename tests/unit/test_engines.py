"""What container engines get from a fan (fangen.engines.common) and what Docker gets and
is checked against (fangen.engines.docker).  Pure, no root; the real dockerd runs in
tests/engines/test_docker.py."""

from __future__ import annotations

import json
import os
import subprocess
from ipaddress import IPv4Network

import pytest

from fangen.config.model import build
from fangen.engines import docker
from fangen.engines.common import EngineNetwork, NotUp
from fangen.runtime import state as state_mod

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def vxlan(**extra) -> EngineNetwork:
    fan = build("fan250", {"overlay": "250.0.0.0/8", "underlay": "172.16.0.0/16",
                           "type": "vxlan", "dhcp": False, **extra})
    return EngineNetwork.from_fan(fan, fan.slice_for("172.16.3.4").network, fan.mtu_for(1500))


def ipip(**extra) -> EngineNetwork:
    fan = build("fan250", {"overlay": "250.0.0.0/8", "underlay": "172.16.0.0/16",
                           "dhcp": False, **extra})
    return EngineNetwork.from_fan(fan, fan.slice_for("172.16.3.4").network, fan.mtu_for(1500))


# -- the engine-neutral view -------------------------------------------------------------------

def test_vxlan_bridge_holds_the_overlay_and_containers_take_the_slice():
    net = vxlan()
    assert net.as_dict() == {
        "fan": "fan250", "type": "vxlan", "bridge": "fan250", "overlay": "250.0.0.0/8",
        "slice": "250.3.4.0/24", "subnet": "250.0.0.0/8", "ip_range": "250.3.4.0/24",
        "gateway": "250.3.4.1", "bridge_address": "250.3.4.1/8", "mtu": 1450,
        "excluded": ["250.3.4.0", "250.3.4.255"]}


def test_ipip_bridge_holds_the_slice():
    net = ipip()
    assert (str(net.subnet), str(net.ip_range), net.bridge_address, net.mtu, net.excluded) == \
        ("250.3.4.0/24", "250.3.4.0/24", "250.3.4.1/24", 1480, ())


def test_host_reserve_keeps_addresses_out():
    assert [str(a) for a in vxlan(**{"host-reserve": 3}).excluded] == \
        ["250.3.4.0", "250.3.4.2", "250.3.4.3", "250.3.4.255"]
    assert [str(a) for a in ipip(**{"host-reserve": 2}).excluded] == ["250.3.4.2"]


def test_tiny_slices_keep_what_fits():
    fan = build("f", {"overlay": "10.0.0.0/8", "underlay": "192.168.0.0/10", "type": "vxlan",
                      "host-reserve": 5})
    net = EngineNetwork.from_fan(fan, IPv4Network("10.0.0.0/30"), 1450)
    assert all(a in net.slice and a != net.gateway for a in net.excluded)


def test_from_state_needs_a_slice():
    with pytest.raises(NotUp, match=r"fan250 is not up on this host: .*fangen up fan250"):
        EngineNetwork.from_state(state_mod.State("fan250"))
    st = state_mod.State("fan250", type="vxlan", overlay="250.0.0.0/8", bridge="br-fan",
                         slice="250.3.4.0/24", gateway="250.3.4.1", mtu=1400,
                         dnsmasq={"mode": "process"})
    net = EngineNetwork.from_state(st)
    assert (net.bridge, net.bridge_address, net.mtu, net.dhcp) == \
        ("br-fan", "250.3.4.1/8", 1400, True)


# -- what Docker gets --------------------------------------------------------------------------

def test_daemon_json_vxlan_and_ipip():
    assert docker.daemon_json(vxlan()) == {"bridge": "fan250", "fixed-cidr": "250.3.4.0/24",
                                           "mtu": 1450, "icc": True, "ip-masq": False}
    assert docker.daemon_json(ipip())["mtu"] == 1480


def test_network_create_reuses_the_bridge_without_touching_its_address():
    assert docker.network_create(vxlan(), "fannet") == [
        "docker", "network", "create", "--driver", "bridge", "--subnet", "250.0.0.0/8",
        "--ip-range", "250.3.4.0/24", "--gateway", "250.3.4.1",
        "--aux-address", "fangen1=250.3.4.0", "--aux-address", "fangen2=250.3.4.255",
        "-o", "com.docker.network.bridge.name=fan250",
        "-o", "com.docker.network.driver.mtu=1450",
        "-o", "com.docker.network.bridge.enable_icc=true",
        "-o", "com.docker.network.bridge.enable_ip_masquerade=false", "fannet"]
    argv = docker.network_create(ipip())
    assert argv[-1] == "fan250" and argv[argv.index("--subnet") + 1] == "250.3.4.0/24"


# -- what Docker has ---------------------------------------------------------------------------

def network(name="bridge", bridge="fan250", subnet="250.0.0.0/8", ip_range="250.3.4.0/24",
            gateway="250.3.4.1", default=True, options=None) -> dict:
    opts = {"com.docker.network.bridge.name": bridge,
            "com.docker.network.bridge.enable_icc": "true",
            "com.docker.network.bridge.enable_ip_masquerade": "false",
            "com.docker.network.driver.mtu": "1450"}
    if default:
        opts["com.docker.network.bridge.default_bridge"] = "true"
    opts.update({f"com.docker.network.{k}": v for k, v in (options or {}).items()})
    config = {"Subnet": subnet, "Gateway": gateway}
    if ip_range:
        config["IPRange"] = ip_range
    return {"Name": name, "Driver": "bridge", "IPAM": {"Config": [config]}, "Options": opts}


def fails(found) -> list[str]:
    return [m for s, m in found if s == "fail"]


def test_docker_as_fangen_says_passes():
    found = docker.check_networks(vxlan(), [network(), {"Name": "host", "Driver": "host"}])
    assert found == [("ok", "Docker network 'bridge' on fan250: subnet 250.0.0.0/8, ip-range "
                            "250.3.4.0/24, gateway 250.3.4.1, MTU 1450")]


def test_docker_not_on_the_fan_is_fine():
    other = network(bridge="docker0", subnet="172.17.0.0/16", ip_range=None,
                    gateway="172.17.0.1")
    assert docker.check_networks(vxlan(), [other]) == [("ok", "no Docker network uses fan250")]


def test_subnet_slice_is_the_pitfall():
    bad = network("bad", subnet="250.3.4.0/24", ip_range=None, default=False)
    [message] = fails(docker.check_networks(vxlan(), [network(bridge="docker0",
                                                              subnet="172.17.0.0/16"), bad]))
    assert message.startswith("Docker network 'bad' on fan250: subnet 250.3.4.0/24 is not "
                              "250.0.0.0/8, the network of the bridge's address 250.3.4.1/8")


def test_no_fixed_cidr_on_vxlan_hands_out_other_hosts_slices():
    [message] = fails(docker.check_networks(vxlan(), [network(ip_range=None)]))
    assert "no ip-range: Docker hands out addresses from all of 250.0.0.0/8" in message
    plain = network(subnet="250.3.4.0/24", ip_range=None, options={"driver.mtu": "1480"})
    assert docker.check_networks(ipip(), [plain])[0][0] == "ok"


def test_a_stale_range_after_the_slice_moved():
    [message] = fails(docker.check_networks(vxlan(), [network(ip_range="250.3.9.0/24")]))
    assert "ip-range 250.3.9.0/24 is outside this host's slice 250.3.4.0/24" in message


def test_mtu_icc_gateway_and_masquerade():
    net = network(gateway="250.3.4.9",
                  options={"driver.mtu": "1500", "bridge.enable_icc": "false"})
    messages = fails(docker.check_networks(vxlan(), [net]))
    assert len(messages) == 3
    assert any("MTU 1500 is not the fan's 1450" in m for m in messages)
    assert any("icc is false: Docker drops traffic between the bridge's ports, i.e. all "
               "traffic to and from other fan hosts" in m for m in messages)
    assert any("gateway 250.3.4.9 is not the bridge's address 250.3.4.1" in m for m in messages)
    masq = network(subnet="250.3.4.0/24", options={
        "driver.mtu": "1480", "bridge.enable_ip_masquerade": "true"})
    [message] = fails(docker.check_networks(ipip(), [masq]))
    assert "ip-masq is on" in message
    # VXLAN: Docker's masquerade only sees what leaves the bridge, i.e. the overlay
    assert docker.check_networks(vxlan(), [network(
        options={"bridge.enable_ip_masquerade": "true"})])[0][0] == "ok"


def test_user_network_without_mtu_takes_the_daemons():
    user = network("fannet", default=False)
    del user["Options"]["com.docker.network.driver.mtu"]
    daemon = network(bridge="docker0", subnet="172.17.0.0/16", ip_range=None,
                     gateway="172.17.0.1")
    assert docker.check_networks(vxlan(), [daemon, user])[0][0] == "ok"
    daemon["Options"]["com.docker.network.driver.mtu"] = "1500"
    assert "MTU 1500" in fails(docker.check_networks(vxlan(), [daemon, user]))[0]


def test_a_foreign_network_inside_the_overlay():
    other = network("x", bridge="br-x", subnet="250.9.0.0/16", ip_range=None,
                    gateway="250.9.0.1", default=False)
    [message] = fails(docker.check_networks(vxlan(), [network(), other]))
    assert message == ("Docker network 'x' uses 250.9.0.0/16, inside the overlay 250.0.0.0/8 "
                       "but not on fan250: its route competes with the fan's")


def test_dhcp_on_a_docker_bridge_is_a_warning():
    found = docker.check_networks(vxlan(dhcp=True), [network()])
    assert [s for s, _ in found] == ["ok", "warn"]
    assert "set 'dhcp: false' for a fan Docker uses" in found[1][1]


# -- fangen docker, the command ------------------------------------------------------------------

def fangen(*args):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run(["/usr/bin/python3", "-m", "fangen", *args], capture_output=True,
                          text=True, env=env)


FAN = """network:
  version: 2
  fan:
    fan250:
      overlay: 250.0.0.0/8
      underlay: 172.16.0.0/16
      type: vxlan
      dhcp: false
"""


def test_fangen_docker_needs_the_fan_up(fanroot):
    fanroot.fan(FAN)
    res = fangen("docker", "fan250", "--root-dir", fanroot.path)
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == ("fangen: fan250 is not up on this host: its slice comes from the "
                          "underlay address, which fangen learns when it brings the fan up "
                          "(fangen up fan250, or systemctl start fangen@fan250)\n")
    res = fangen("docker", "nope", "--root-dir", fanroot.path)
    assert res.returncode == 1 and res.stderr.startswith("fangen: no fan named 'nope'")


def test_fangen_docker_prints_from_the_recorded_slice(fanroot):
    fanroot.fan(FAN)
    state_mod.save(fanroot.path, state_mod.State(
        "fan250", type="vxlan", overlay="250.0.0.0/8", bridge="fan250", tunnel="fan250-tun",
        slice="250.3.4.0/24", gateway="250.3.4.1", mtu=1450))
    res = fangen("docker", "fan250", "--root-dir", fanroot.path)
    assert (res.returncode, res.stderr) == (0, "")
    assert json.loads(res.stdout) == docker.daemon_json(vxlan())
    res = fangen("docker", "fan250", "--network", "fannet", "--root-dir", fanroot.path)
    assert res.stdout.split() == docker.network_create(vxlan(), "fannet")
