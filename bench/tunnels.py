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

Two more take the static tunnel apart step by step towards the fan, so the gap
between ``l2_static`` and the fan can be split by cause (bench/throughput.py
``--steps``):

* ``l2_nocache``: ``l2_static`` with a tc egress program that sets skb->mark on
  every packet.  A marked packet may not use the device's cached route to the
  remote (``ip_tunnel_dst_cache_usable`` in include/net/ip_tunnels.h), so this is
  the static tunnel paying one route lookup per packet, as a collect-metadata
  device must (``bpf_skb_set_tunnel_key`` sets ``TUNNEL_NOCACHE``).
* ``l2_external``: the same on a collect-metadata device with one fixed key:
  adds the metadata dst (per-CPU on transmit, allocated per packet on receive).

And one that goes the other way (``--encap``), the fan's transmit path for IPv4
since fangen encapsulates by itself:

* ``l2_encap``: ``l2_external`` whose program encapsulates IPv4 itself with fangen's
  code (:mod:`fangen.datapath.encap`: the outer headers written by the program, the
  packet handed to the underlay device with ``bpf_redirect_neigh``, the remote as next
  hop); ARP keeps the fixed key.  No route lookup, no metadata dst and no tunnel
  transmit path for IPv4, and no netfilter output hooks for the outer packet; receive
  is still the collect-metadata device's.  So ``fan / l2bpf`` is what the fan's
  decisions add to its transmit path, as ``fan / l2md`` was before.
* ``l2_encap_static``: the same program on the static tunnel's device, so receive is
  the plain device's (no metadata dst per packet): ``l2bpf / l2bpfs`` splits off what
  the collect-metadata receive costs.
"""

from __future__ import annotations

from ipaddress import IPv4Interface

from tests.harness import HarnessError
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


def l2_static(run: Run, hosts: list[tuple[str, str]], tag: str = "l2", vni: int = 4242,
              port: int = 4789, prefix: str = "10.99", program=None,
              external: bool = False) -> tuple[str, str, str]:
    """hosts = [(ns, underlay address)] x2 -> (container ns 1, container ns 2, address of 2).

    ``program(peer)``: a tc egress program for the VXLAN device (:func:`l2_nocache`);
    ``external``: a collect-metadata device instead of one with a static remote
    (:func:`l2_external`, whose program sets the remote)."""
    ends = []
    for n, ((ns, addr), (_, peer)) in enumerate(zip(hosts, reversed(hosts)), 1):
        kind = (["external", "nolearning"] if external else
                ["id", str(vni), "remote", peer, "local", addr, "dev", UPLINK])
        ip(ns, "link", "add", f"{tag}vx", "mtu", str(MTU), "type", "vxlan", *kind,
           "dstport", str(port))
        _bridge(ns, f"{tag}br")
        ip(ns, "link", "set", f"{tag}vx", "master", f"{tag}br", "up")
        if program is not None:
            egress_program(ns, f"{tag}vx", program(peer), f"{tag}_egress")
        c = _container(run, ns, f"{tag}c{n}", f"{tag}br", f"v{tag}")
        ip(c, "addr", "add", f"{prefix}.{n}.2/16", "dev", "eth0")
        ends.append(c)
    return ends[0], ends[1], f"{prefix}.2.2"


def mark_program() -> list:
    """A tc egress program that sets skb->mark = 1 and passes the packet."""
    from fangen.datapath import bpf as b
    return [
        b.mov64_imm(b.R2, 1),                   # 6.1 refuses BPF_ST into the context
        b.stx_mem(b.W, b.R1, b.R2, b.SKB_MARK),
        b.mov64_imm(b.R0, b.TC_ACT_OK),
        b.exit_(),
    ]


def l2_nocache(run: Run, hosts: list[tuple[str, str]]) -> tuple[str, str, str]:
    """:func:`l2_static` with every packet marked, so the device's route cache is not used
    and each packet pays a route lookup to the remote.  Same signature."""
    return l2_static(run, hosts, tag="nc", vni=4244, port=4791, prefix="10.95",
                     program=lambda peer: mark_program())


def egress_program(ns: str, dev: str, insns: list, name: str) -> None:
    """Load ``insns`` and attach it to ``dev``'s tc egress hook in namespace ``ns``."""
    import contextlib
    import os

    from fangen.datapath import bpf, upstream
    from tests.harness.ns import iproute_in
    with contextlib.closing(iproute_in(ns)) as ipr:
        index = ipr.link_lookup(ifname=dev)[0]
        ipr.tc("add", "clsact", index)
        try:
            fd = bpf.prog_load(bpf.assemble(insns), name=name)
        except bpf.BPFError as exc:
            raise HarnessError(f"{ns}: {exc}") from None
        try:
            ipr.tc("add-filter", "bpf", index, 0, fd=fd, name=name,
                   parent=upstream.PARENT["egress"], prio=1, protocol=upstream.ETH_P_ALL,
                   direct_action=True)
        finally:
            os.close(fd)


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
    from fangen.datapath import bpf as b
    return [*_static_key(vni, remote), b.mov64_imm(b.R0, b.TC_ACT_OK), b.exit_()]


def _static_key(vni: int, remote: str) -> list:
    """r6 = skb (r1 on entry); bpf_skb_set_tunnel_key with the fixed key."""
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
    ]


def l2_external(run: Run, hosts: list[tuple[str, str]]) -> tuple[str, str, str]:
    """:func:`l2_static` on a collect-metadata VXLAN device (``external``) whose remote is
    set by :func:`static_key_program`: the kernel's collect-metadata path with no fan
    logic (no per-packet decision, no ingress program).  Same signature."""
    return l2_static(run, hosts, tag="md", port=4790, prefix="10.97", external=True,
                     program=lambda peer: static_key_program(4243, peer))



def encap_program(vni: int, port: int, local: str, remote: str, ifindex: int,
                  connected: str, ipip: bool = False) -> list:
    """A tc egress program that sets the fixed tunnel key of :func:`static_key_program`
    on every frame and then, as the fan's egress program does, encapsulates every IPv4
    frame to ``remote`` with fangen's own code (:func:`fangen.datapath.encap.program`);
    the others (ARP) go on with the key.  ``ipip``: for an IPIP device
    (:func:`fangen.datapath.encap.program_ipip`; ``vni`` and ``port`` 0)."""
    import socket
    from ipaddress import IPv4Address, IPv4Network

    from fangen.datapath import bpf as b
    from fangen.datapath import encap
    enc = encap.Encap(IPv4Address(local), ifindex, port, IPv4Network(connected))
    return [
        *_static_key(vni, remote),
        b.ldx_mem(b.W, b.R0, b.R6, b.SKB_PROTOCOL),
        b.jmp_imm(b.JNE, b.R0, socket.htons(0x0800), "key"),        # skb->protocol
        *b.ld_imm64(b.R8, int(IPv4Address(remote))),
        *encap.program_for("ipip" if ipip else "vxlan", enc, vni, 64, "key"),
        b.Label("key"),
        b.mov64_imm(b.R0, b.TC_ACT_OK),
        b.exit_(),
        b.Label("drop"),
        b.mov64_imm(b.R0, b.TC_ACT_SHOT),
        b.exit_(),
    ]


def _uplink(ns: str, addr: str):
    """(index of the host's uplink, the prefix ``addr`` is connected to there)."""
    import json
    up = json.loads(ip(ns, "-j", "-4", "addr", "show", "dev", UPLINK).stdout)[0]
    own = next(a for a in up["addr_info"] if a["local"] == addr)
    return up["ifindex"], IPv4Interface(f"{addr}/{own['prefixlen']}").network


def _encap_programs(hosts: list[tuple[str, str]], vni: int, port: int) -> dict[str, list]:
    """{peer: the :func:`encap_program` of the host sending to it}."""
    progs = {}
    for (ns, addr), (_, peer) in zip(hosts, reversed(hosts)):
        index, net = _uplink(ns, addr)
        progs[peer] = encap_program(vni, port, addr, peer, index, str(net))
    return progs


def l2_encap(run: Run, hosts: list[tuple[str, str]]) -> tuple[str, str, str]:
    """:func:`l2_external` with the encapsulation of fangen's egress program for IPv4
    (:func:`encap_program`): the fan's transmit path with one fixed remote and no fan
    decision.  Same signature as :func:`l2_static`."""
    progs = _encap_programs(hosts, 4245, 4793)
    return l2_static(run, hosts, tag="bp", port=4793, prefix="10.94", external=True,
                     program=progs.__getitem__)


def l2_encap_static(run: Run, hosts: list[tuple[str, str]]) -> tuple[str, str, str]:
    """:func:`l2_encap`'s program on :func:`l2_static`'s device (a static remote, not
    collect-metadata): the same transmit path, but packets are received by a plain VXLAN
    device, which allocates no metadata dst per packet.  ``l2bpf / l2bpfs`` is what the
    collect-metadata receive costs.  Same signature."""
    progs = _encap_programs(hosts, 4246, 4794)
    return l2_static(run, hosts, tag="bs", vni=4246, port=4794, prefix="10.93",
                     program=progs.__getitem__)


MD_OVERLAY = "252.0.0.0/8"
MD_PORT = 4795


def fan_metadata(run: Run, hosts: list[tuple[str, str]]) -> tuple[str, str, str]:
    """The fan as it was before its tunnel became a plain device: the fan's own programs
    (:mod:`fangen.datapath.fanprog`, IPv4 encapsulated by the program, ARP with the
    tunnel key, the ingress program checking VNI and sender) on a *collect-metadata*
    VXLAN device, which allocates a metadata dst for every packet it receives.  Overlay
    :data:`MD_OVERLAY` over the hosts' /16 underlay, port :data:`MD_PORT`.  ``fan /
    fanmd`` is what the plain device changes.  Same signature as :func:`l2_static`."""
    import contextlib
    from dataclasses import replace
    from ipaddress import IPv4Address

    from fangen.datapath import encap, fanprog, upstream
    from fangen.fanmap import FanMap
    from tests.harness.ns import iproute_in
    fmap = FanMap.parse(MD_OVERLAY, "172.16.0.0/16")
    ends = []
    for n, (ns, addr) in enumerate(hosts, 1):
        index, net = _uplink(ns, addr)
        enc = encap.Encap(IPv4Address(addr), index, MD_PORT, net)
        params = replace(fanprog.FanParams.for_host(fmap, addr), encap=enc)
        ip(ns, "link", "add", "fmvx", "mtu", str(MTU), "type", "vxlan", "external",
           "dstport", str(MD_PORT), "nolearning")
        _bridge(ns, "fmbr")
        ip(ns, "link", "set", "fmvx", "master", "fmbr", "up")
        with contextlib.closing(iproute_in(ns)) as ipr:
            upstream.attach(ipr, ipr.link_lookup(ifname="fmvx")[0], params, "fanmd")
        c = _container(run, ns, f"fmc{n}", "fmbr", "vfm")
        ip(c, "addr", "add", f"{params.own_slice.network_address + 2}/8", "dev", "eth0")
        ends.append((c, str(params.own_slice.network_address + 2)))
    return ends[0][0], ends[1][0], ends[1][1]
