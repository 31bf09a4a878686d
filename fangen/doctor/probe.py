"""Read the facts ``fangen doctor`` judges, for one fan on this host.  Reads only.

Links, routes, tc filters, nft tables, ip_forward and dnsmasq through the runtime's
observer; /proc for the kernel's fan support and br_netfilter; ``nft -j list ruleset``;
a DHCP DISCOVER on the bridge (no lease is made: the doctor never sends a REQUEST);
Docker's ``GET /networks`` when a socket is there; ICMP echoes to a peer's gateway.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from ipaddress import IPv4Address, IPv4Network

from fangen.doctor import dhcp, icmp
from fangen.doctor.checks import Facts
from fangen.engines import dockerapi
from fangen.runtime import observe as observe_mod
from fangen.runtime import state as state_mod
from fangen.runtime.view import FORWARD6_SYSCTL, FORWARD_SYSCTL

BRIDGE_NF = "net/bridge/bridge-nf-call-iptables"


def ruleset() -> dict | None:
    nft = shutil.which("nft") or "/usr/sbin/nft"
    try:
        res = subprocess.run([nft, "-j", "list", "ruleset"], capture_output=True, text=True,
                             timeout=30)
        return json.loads(res.stdout) if res.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def facts(host, name: str, fan, config_errors=(), docker_socket: str | None = None,
          peer: str | None = None, shared: dict | None = None) -> Facts:
    """Everything about fan ``name``; ``shared`` caches what all fans share (ruleset)."""
    from fangen.datapath import kernelfan

    shared = shared if shared is not None else {}
    st = state_mod.load(host.root, name)
    base = Facts(name=name, fan=fan, config_errors=tuple(config_errors), state=st)
    if st is None or not st.slice:
        return base
    obs = observe_mod.observe(host, name, st.bridge, st.tunnel, st)
    if "ruleset" not in shared:
        shared["ruleset"] = ruleset()
    dhcp_on = fan.dhcp if fan is not None else bool(st.dnsmasq)
    return Facts(
        name=name, fan=fan, config_errors=tuple(config_errors), state=st,
        kernel_fan=kernelfan.present(host.proc), links=obs.links, routes=obs.routes,
        tc=obs.tc, ip_forward=host.read_sysctl(FORWARD_SYSCTL),
        ipv6_forward=host.read_sysctl(FORWARD6_SYSCTL),
        bridge_nf_call_iptables=host.read_sysctl(BRIDGE_NF), nft_tables=obs.nft_tables,
        ruleset=shared["ruleset"], dnsmasq_running=obs.dnsmasq_running,
        dhcp=_dhcp(st.bridge) if dhcp_on and obs.dnsmasq_running else None,
        docker=_docker(docker_socket), peer=_peer(st, peer) if peer else None)


def _dhcp(bridge: str) -> dict:
    try:
        return {"offer": dhcp.probe(bridge)}
    except OSError as exc:
        return {"error": str(exc.strerror or exc)}


def _docker(host: str | None) -> dict | None:
    try:
        path = dockerapi.socket_path(host)
    except dockerapi.DockerUnavailable as exc:
        return {"socket": host, "error": str(exc)}
    if not dockerapi.present(path):
        if host is None:
            return None                    # no Docker here: nothing to check
        return {"socket": path, "error": f"{path}: no such socket"}
    try:
        return {"socket": path, "networks": dockerapi.networks(path)}
    except dockerapi.DockerUnavailable as exc:
        return {"socket": path, "error": str(exc)}


def peer_target(st, address: str) -> dict:
    """Which host and slice ``address`` (an overlay or underlay address) names.  Pure."""
    from fangen.fanmap import FanMap, FanMapError, Slice, resolve

    try:
        addr = IPv4Address(address)
        fmap = FanMap(IPv4Network(st.overlay), IPv4Network(st.underlay["network"]))
    except (ValueError, KeyError) as exc:       # FanMapError is a ValueError
        return {"error": f"--peer {address}: {exc}"}
    try:
        found = resolve(fmap, addr)
    except FanMapError as exc:                  # in neither network
        return {"error": f"--peer {exc}"}
    return {"address": found["address"], "host": found["underlay_host"],
            "slice": found["slice"], "gateway": str(Slice(IPv4Network(found["slice"])).gateway),
            "size": st.mtu}


def _peer(st, address: str) -> dict:
    target = peer_target(st, address)
    if "error" in target:
        return target
    try:
        target["small"] = icmp.ping(st.gateway, target["gateway"], 64)
        target["full"] = icmp.ping(st.gateway, target["gateway"], st.mtu) \
            if target["small"] == "ok" else None
    except OSError as exc:
        target["error"] = f"cannot ping {target['gateway']} from {st.gateway}: " \
                          f"{exc.strerror or exc}"
    return target
