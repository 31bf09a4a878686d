"""Hand-built VXLAN tunnels between two host namespaces: the fan's baselines.

Both sit in the same host namespaces as the fan (same underlay link, same nft
table and conntrack) and give one container-like namespace per host, MTU 1450
like the fan, so the three paths differ only in how the tunnel is built:

* ``l2_static``: what a person builds by hand for two hosts.  Per host a VXLAN
  device with a static remote (``ip link add l2vx type vxlan id 4242 remote PEER
  local SELF dstport 4789 dev up0``) as a port of a plain bridge; the containers
  hold the whole prefix 10.99.0.0/16 and the remote container is on-link, like the
  fan's L2 path (the fan's containers hold the whole overlay).
* ``routed``: what a per-peer-state system such as flannel's vxlan backend
  builds.  Per host a VXLAN device without learning (``ip link add rtvx type vxlan
  id 1 local SELF dstport 8473 dev up0 nolearning``) holding 10.98.N.0/32, a
  bridge holding 10.98.N.1/24 with the container behind it (10.98.N.2/24, default
  route via .1), and per peer exactly one route, one neighbour and one FDB entry:
  ``ip route add 10.98.P.0/24 via 10.98.P.0 dev rtvx onlink``,
  ``ip neigh add 10.98.P.0 lladdr MAC_P dev rtvx nud permanent``,
  ``bridge fdb append MAC_P dev rtvx dst UNDERLAY_P``.  Traffic is routed on both
  hosts (container -> bridge -> IP forward -> VXLAN), one hop more than the fan.
"""

from __future__ import annotations

from tests.harness.ns import Run, ip, nsexec, sh

MTU = 1450
UPLINK = "up0"


def _container(run: Run, host_ns: str, name: str, bridge: str, host_end: str) -> str:
    ns = run.netns(name)
    ip(ns, "link", "add", "eth0", "mtu", str(MTU), "type", "veth", "peer", "name", host_end,
       "netns", host_ns)
    ip(host_ns, "link", "set", host_end, "mtu", str(MTU), "master", bridge, "up")
    ip(ns, "link", "set", "eth0", "up")
    return ns


def _bridge(host_ns: str, name: str) -> None:
    ip(host_ns, "link", "add", name, "mtu", str(MTU), "type", "bridge", "forward_delay", "0",
       "stp_state", "0")
    ip(host_ns, "link", "set", name, "up")


def l2_static(run: Run, hosts: list[tuple[str, str]]) -> tuple[str, str, str]:
    """hosts = [(ns, underlay address)] x2 -> (container ns 1, container ns 2, address of 2)."""
    ends = []
    for n, ((ns, addr), (_, peer)) in enumerate(zip(hosts, reversed(hosts)), 1):
        ip(ns, "link", "add", "l2vx", "mtu", str(MTU), "type", "vxlan", "id", "4242",
           "remote", peer, "local", addr, "dstport", "4789", "dev", UPLINK)
        _bridge(ns, "l2br")
        ip(ns, "link", "set", "l2vx", "master", "l2br", "up")
        c = _container(run, ns, f"l2c{n}", "l2br", "vl2")
        ip(c, "addr", "add", f"10.99.{n}.2/16", "dev", "eth0")
        ends.append(c)
    return ends[0], ends[1], "10.99.2.2"


def _mac(n: int) -> str:
    return f"02:f1:00:00:00:{n:02x}"


def routed(run: Run, hosts: list[tuple[str, str]]) -> tuple[str, str, str]:
    """Flannel-style routed VXLAN; same signature as :func:`l2_static`."""
    ends = []
    for n, (ns, addr) in enumerate(hosts, 1):
        nsexec(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        ip(ns, "link", "add", "rtvx", "address", _mac(n), "mtu", str(MTU), "type", "vxlan",
           "id", "1", "local", addr, "dstport", "8473", "dev", UPLINK, "nolearning")
        ip(ns, "addr", "add", f"10.98.{n}.0/32", "dev", "rtvx")
        ip(ns, "link", "set", "rtvx", "up")
        _bridge(ns, "rtbr")
        ip(ns, "addr", "add", f"10.98.{n}.1/24", "dev", "rtbr")
        c = _container(run, ns, f"rtc{n}", "rtbr", "vrt")
        ip(c, "addr", "add", f"10.98.{n}.2/24", "dev", "eth0")
        ip(c, "route", "add", "default", "via", f"10.98.{n}.1")
        ends.append(c)
    for n, (ns, _) in enumerate(hosts, 1):          # one route + neighbour + fdb per peer
        for p, (_, peer_addr) in enumerate(hosts, 1):
            if p == n:
                continue
            ip(ns, "route", "add", f"10.98.{p}.0/24", "via", f"10.98.{p}.0", "dev", "rtvx",
               "onlink")
            ip(ns, "neigh", "add", f"10.98.{p}.0", "lladdr", _mac(p), "dev", "rtvx", "nud",
               "permanent")
            sh("bridge", "-n", ns, "fdb", "append", _mac(p), "dev", "rtvx", "dst", peer_addr)
    return ends[0], ends[1], "10.98.2.2"


def static_key_program(vni: int, remote: str) -> list:
    """A tc egress program that sets one fixed tunnel key (VNI, remote, TTL 64, no UDP
    checksum) on every packet: the least a collect-metadata device can be driven with."""
    from ipaddress import IPv4Address

    from fangen.datapath import bpf as b
    return [
        b.mov64_reg(b.R6, b.R1),
        b.st_mem(b.DW, b.FP, -32, 0), b.st_mem(b.DW, b.FP, -24, 0),
        b.st_mem(b.DW, b.FP, -16, 0), b.st_mem(b.W, b.FP, -8, 0),
        b.st_mem(b.W, b.FP, -32 + b.TK_TUNNEL_ID, vni),
        b.st_mem(b.W, b.FP, -32 + b.TK_REMOTE_IPV4, int(IPv4Address(remote))),
        b.st_mem(b.B, b.FP, -32 + b.TK_TTL, 64),
        b.mov64_reg(b.R1, b.R6), b.mov64_reg(b.R2, b.FP), b.alu64_imm(b.ADD, b.R2, -32),
        b.mov64_imm(b.R3, b.TK_SIZE_V4), b.mov64_imm(b.R4, b.BPF_F_ZERO_CSUM_TX),
        b.call(b.FN_SKB_SET_TUNNEL_KEY),
        b.mov64_imm(b.R0, b.TC_ACT_OK),
        b.exit_(),
    ]


def l2_external(run: Run, hosts: list[tuple[str, str]]) -> tuple[str, str, str]:
    """:func:`l2_static` on a collect-metadata VXLAN device (``external``) whose remote is
    set by :func:`static_key_program`: the kernel's collect-metadata path with no fan
    logic (no per-packet decision, no ingress program).  Same signature."""
    import contextlib
    import os

    from fangen.datapath import bpf, upstream
    from tests.harness.ns import iproute_in
    ends = []
    for n, ((ns, addr), (_, peer)) in enumerate(zip(hosts, reversed(hosts)), 1):
        ip(ns, "link", "add", "mdvx", "mtu", str(MTU), "type", "vxlan", "external",
           "dstport", "4790", "nolearning")
        _bridge(ns, "mdbr")
        ip(ns, "link", "set", "mdvx", "master", "mdbr", "up")
        with contextlib.closing(iproute_in(ns)) as ipr:
            index = ipr.link_lookup(ifname="mdvx")[0]
            ipr.tc("add", "clsact", index)
            fd = bpf.prog_load(bpf.assemble(static_key_program(4243, peer)), name="static_key")
            try:
                ipr.tc("add-filter", "bpf", index, 0, fd=fd, name="static_key",
                       parent=upstream.PARENT["egress"], prio=1, protocol=upstream.ETH_P_ALL,
                       direct_action=True)
            finally:
                os.close(fd)
        c = _container(run, ns, f"mdc{n}", "mdbr", "vmd")
        ip(c, "addr", "add", f"10.97.{n}.2/16", "dev", "eth0")
        ends.append(c)
    return ends[0], ends[1], "10.97.2.2"
