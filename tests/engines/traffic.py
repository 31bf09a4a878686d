"""Traffic checks shared by the engine tests: ping, a full-MTU datagram with DF set."""

from __future__ import annotations

import errno
import json
import socket

from tests.harness.ns import in_netns, ip
from tests.harness.ns import ping as ns_ping
from tests.harness.packets import UdpListener

IP_MTU_DISCOVER = 10
IP_PMTUDISC_DO = 2
IPV4_UDP_HEADERS = 28


def ping(ns: str, addr: str, tries: int = 3) -> bool:
    return any(ns_ping(ns, addr, count=1, wait=1) for _ in range(tries))


def iface(ns: str, dev: str = "eth0") -> dict:
    """{'mtu': int, 'address': 'a.b.c.d', 'prefixlen': int} of ``dev`` in ``ns``."""
    link = json.loads(ip(ns, "-j", "-4", "addr", "show", "dev", dev).stdout)[0]
    addr = link["addr_info"][0]
    return {"mtu": link["mtu"], "address": addr["local"], "prefixlen": addr["prefixlen"]}


def default_gateway(ns: str) -> str | None:
    routes = json.loads(ip(ns, "-j", "-4", "route", "show", "default").stdout or "[]")
    return routes[0].get("gateway") if routes else None


def df_datagram(src_ns: str, dst_ns: str, dst: str, size: int, port: int = 9998) -> str:
    """Send one UDP datagram of ``size`` bytes on the wire (IPv4 + UDP headers included)
    with DF set from ``src_ns`` to ``dst``: 'delivered', 'lost', or 'EMSGSIZE' when the
    sender's own route MTU refuses it."""
    listener = UdpListener(dst_ns, dst, port)
    try:
        with in_netns(src_ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
            payload = b"f" * (size - IPV4_UDP_HEADERS)
            for _ in range(3):               # the first may wait for ARP across the fan
                try:
                    s.sendto(payload, (dst, port))
                except OSError as exc:
                    if exc.errno == errno.EMSGSIZE:
                        return "EMSGSIZE"
                    raise
                got = listener.received(wait=1.0)
                if payload in got:
                    return "delivered"
        return "lost"
    finally:
        listener.close()
