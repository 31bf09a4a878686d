"""Docker on a fan bridge: the settings to give it, and what is wrong with what it has.  Pure.

Two ways to put Docker's containers on the fan bridge, both for this host's slice:

* the default network, from ``/etc/docker/daemon.json`` (:func:`daemon_json`):
  ``bridge`` names the fan bridge (Docker then takes its subnet and gateway from the
  bridge's address), ``fixed-cidr`` the slice (on a VXLAN fan the bridge holds the whole
  overlay, and without it every host's first container gets the same address),
  ``mtu`` the fan's MTU (Docker does not learn it from the bridge), ``icc`` true (false
  drops traffic between the bridge's ports: on a VXLAN fan the tunnel is one of them),
  ``ip-masq`` false (fangen's ``nat`` masquerades what leaves the overlay; Docker's rule
  would also hide container addresses in an IPIP tunnel);
* a user-defined network (:func:`network_create`): ``--subnet`` the network the bridge
  address holds (the overlay on a VXLAN fan: a slice there makes Docker replace the
  bridge's address, and the overlay route goes with it), ``--ip-range`` the slice,
  ``--gateway`` the bridge's address, ``--aux-address`` for what the slice keeps out,
  and the same MTU, icc and masquerade options.

:func:`check_networks` compares what Docker reports (``GET /networks``) with the fan:
the pitfalls above, a range left behind when the slice moved, and foreign networks
inside the overlay.  It returns (status, message) pairs for ``fangen doctor``.
"""

from __future__ import annotations

import ipaddress

from fangen.engines.common import EngineNetwork

BRIDGE_NAME = "com.docker.network.bridge.name"
MTU = "com.docker.network.driver.mtu"
ICC = "com.docker.network.bridge.enable_icc"
MASQ = "com.docker.network.bridge.enable_ip_masquerade"
DEFAULT_BRIDGE = "com.docker.network.bridge.default_bridge"
DOCKER_DEFAULT_MTU = 1500


def daemon_json(net: EngineNetwork) -> dict:
    """The keys of /etc/docker/daemon.json that put the default network on the fan."""
    return {"bridge": net.bridge, "fixed-cidr": str(net.ip_range), "mtu": net.mtu,
            "icc": True, "ip-masq": False}


def network_create(net: EngineNetwork, name: str | None = None) -> list[str]:
    """argv of ``docker network create`` for a user-defined network on the fan bridge."""
    argv = ["docker", "network", "create", "--driver", "bridge",
            "--subnet", str(net.subnet), "--ip-range", str(net.ip_range),
            "--gateway", str(net.gateway)]
    for i, addr in enumerate(net.excluded, 1):
        argv += ["--aux-address", f"fangen{i}={addr}"]
    argv += ["-o", f"{BRIDGE_NAME}={net.bridge}", "-o", f"{MTU}={net.mtu}",
             "-o", f"{ICC}=true", "-o", f"{MASQ}=false", name or net.fan]
    return argv


# -- what Docker has -------------------------------------------------------------------------

def _ipv4_config(network: dict) -> dict:
    for conf in (network.get("IPAM") or {}).get("Config") or []:
        if "." in (conf.get("Subnet") or ""):
            return conf
    return {}


def _net(text: str | None):
    try:
        return ipaddress.IPv4Network(text) if text else None
    except ValueError:
        return None


def _daemon_mtu(networks: list[dict]) -> int:
    """Docker's default MTU (daemon.json "mtu"): what its default network shows."""
    for n in networks:
        if (n.get("Options") or {}).get(DEFAULT_BRIDGE) == "true":
            return _int((n.get("Options") or {}).get(MTU), DOCKER_DEFAULT_MTU)
    return DOCKER_DEFAULT_MTU


def _int(text, default: int) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def check_networks(net: EngineNetwork, networks: list[dict]) -> list[tuple[str, str]]:
    """("ok" | "warn" | "fail", message) for Docker's networks against this fan."""
    found: list[tuple[str, str]] = []
    default_mtu = _daemon_mtu(networks)
    on_bridge = [n for n in networks if n.get("Driver") == "bridge" and
                 (n.get("Options") or {}).get(BRIDGE_NAME) == net.bridge]
    for n in on_bridge:
        found += _check_one(net, n, default_mtu)
    for n in networks:
        if n in on_bridge:
            continue
        subnet = _net(_ipv4_config(n).get("Subnet"))
        if subnet is not None and subnet.overlaps(net.overlay):
            found.append(("fail", f"Docker network '{n.get('Name')}' uses {subnet}, inside "
                                  f"the overlay {net.overlay} but not on {net.bridge}: its "
                                  f"route competes with the fan's"))
    if not on_bridge:
        found.append(("ok", f"no Docker network uses {net.bridge}"))
    elif net.dhcp:
        found.append(("warn", f"fangen's dnsmasq also hands out {net.slice} on {net.bridge}: "
                              f"it and Docker can give two containers one address; set "
                              f"'dhcp: false' for a fan Docker uses"))
    return found


def _check_one(net: EngineNetwork, n: dict, default_mtu: int) -> list[tuple[str, str]]:
    name = n.get("Name") or n.get("Id", "?")[:12]
    what = f"Docker network '{name}' on {net.bridge}"
    opts = n.get("Options") or {}
    conf = _ipv4_config(n)
    subnet, ip_range = _net(conf.get("Subnet")), _net(conf.get("IPRange"))
    problems = []
    if subnet != net.subnet:
        problems.append(f"subnet {subnet} is not {net.subnet}, the network of the bridge's "
                        f"address {net.bridge_address}: Docker puts its own address on the "
                        f"bridge and the overlay route can go with it")
    if ip_range is None:
        if subnet is not None and subnet != net.slice:
            problems.append(f"no ip-range: Docker hands out addresses from all of {subnet}, "
                            f"including other hosts' slices (set it to {net.slice})")
    elif not ip_range.subnet_of(net.slice):
        problems.append(f"ip-range {ip_range} is outside this host's slice {net.slice} "
                        f"(the slice moved? give Docker {net.slice} and restart it)")
    gateway = conf.get("Gateway")
    if gateway and gateway != str(net.gateway):
        problems.append(f"gateway {gateway} is not the bridge's address {net.gateway}")
    mtu = _int(opts.get(MTU), default_mtu)
    if mtu != net.mtu:
        problems.append(f"MTU {mtu} is not the fan's {net.mtu}: full-size packets are "
                        f"dropped and bulk TCP stalls")
    if opts.get(ICC) == "false":
        cut = ("all traffic to and from other fan hosts" if net.type == "vxlan"
               else "traffic between containers on this host")
        problems.append(f"icc is false: Docker drops traffic between the bridge's ports, "
                        f"i.e. {cut}")
    if net.type == "ipip" and opts.get(MASQ, "true") == "true":
        problems.append("ip-masq is on: Docker masquerades what goes into the tunnel, so "
                        "other fan hosts see this host's address instead of the container's")
    if problems:
        return [("fail", f"{what}: {p}") for p in problems]
    return [("ok", f"{what}: subnet {subnet}, ip-range {ip_range or subnet}, gateway "
                   f"{gateway}, MTU {mtu}")]
