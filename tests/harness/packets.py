"""Crafted packets and small traffic helpers (TCP transfer, UDP listener) for the tests.

The one packet builder of the tests: Ethernet, ARP, IPv4, IPv6, UDP and VXLAN, each
a pure function returning bytes (the Internet checksum is fangen's own,
:func:`fangen.doctor.icmp.checksum`: the kernel checks what these build).

Sockets are created inside a namespace with :func:`~tests.harness.ns.in_netns` and
used from this process, so no helper processes are needed.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import socket
import struct
import threading

from fangen.doctor.icmp import checksum

from .ns import in_netns

VXLAN_FLAGS = 0x08000000            # the I flag: the VNI is valid
BROADCAST = "ff:ff:ff:ff:ff:ff"
SOURCE_MAC = "02:fa:00:00:00:01"
ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0800, 0x0806, 0x86DD


def mac_bytes(mac: str | bytes) -> bytes:
    if isinstance(mac, bytes):
        return mac
    return bytes(int(part, 16) for part in mac.split(":"))


def ethernet(ethertype: int, payload: bytes, dst: str | bytes = BROADCAST,
             src: str | bytes = SOURCE_MAC) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ethertype) + payload


def arp(sender: str, target: str, op: int = 1, htype: int = 1, ptype: int = ETH_P_IP,
        hlen: int = 6, plen: int = 4, src: str | bytes = SOURCE_MAC) -> bytes:
    """An ARP request (op 1) or reply (op 2) in a broadcast Ethernet frame."""
    body = struct.pack("!HHBBH6s4s6s4s", htype, ptype, hlen, plen, op, mac_bytes(src),
                       ipaddress.IPv4Address(sender).packed, bytes(6),
                       ipaddress.IPv4Address(target).packed)
    return ethernet(ETH_P_ARP, body, src=src)


def ipv4(src: str, dst: str, payload: bytes = b"", proto: int = 17, ttl: int = 64,
         version: int = 4) -> bytes:
    """An IPv4 packet: a 20-byte header (checksum set) and ``payload``.  ``version``
    other than 4 makes a malformed one."""
    header = struct.pack("!BBHHHBBH4s4s", (version << 4) | 5, 0, 20 + len(payload), 0, 0, ttl,
                         proto, 0, ipaddress.IPv4Address(src).packed,
                         ipaddress.IPv4Address(dst).packed)
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def ipv6(src: str, dst: str, payload: bytes = b"", next_header: int = 17,
         hop_limit: int = 64) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), next_header, hop_limit,
                       ipaddress.IPv6Address(src).packed,
                       ipaddress.IPv6Address(dst).packed) + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP datagram without a checksum (0: none, which IPv4 allows)."""
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes, ttl: int = 64) -> bytes:
    return ipv4(src, dst, udp(sport, dport, payload), ttl=ttl)


def vxlan_frame(vni: int, dst_mac: str, src_mac: str, inner_ip: bytes) -> bytes:
    """VXLAN header + inner Ethernet frame (IPv4): the payload of a VXLAN UDP datagram."""
    return struct.pack("!II", VXLAN_FLAGS, vni << 8) + ethernet(ETH_P_IP, inner_ip, dst_mac,
                                                                 src_mac)


def send_udp(ns: str, src: str, dst: str, dport: int, payload: bytes, sport: int = 0) -> None:
    with in_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.setsockopt(socket.SOL_IP, 15, 1)      # IP_FREEBIND: the source may be anywhere
        s.bind((src, sport))
        s.sendto(payload, (dst, dport))


class UdpListener:
    """A UDP socket inside a namespace that records what arrives."""

    def __init__(self, ns: str, addr: str, port: int) -> None:
        with in_netns(ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, port))
        self.sock.settimeout(0.1)

    def received(self, wait: float = 1.0) -> list[bytes]:
        got = []
        deadline = wait / 0.1
        for _ in range(int(deadline)):
            try:
                got.append(self.sock.recv(65535))
            except TimeoutError:
                if got:
                    break
        return got

    def close(self) -> None:
        self.sock.close()


def tcp_transfer(server_ns: str, server_addr: str, client_ns: str, size: int = 8 << 20,
                 port: int = 5201, timeout: float = 20) -> tuple[int, str, str]:
    """Send ``size`` random bytes over TCP; returns (bytes received, sha256 sent, sha256 got)."""
    data = os.urandom(size)
    with in_netns(server_ns):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((server_addr, port))
    srv.listen(1)
    srv.settimeout(timeout)
    result = {}

    def serve():
        digest, total = hashlib.sha256(), 0
        try:
            conn, _ = srv.accept()
            conn.settimeout(timeout)
            with conn:
                while chunk := conn.recv(1 << 16):
                    digest.update(chunk)
                    total += len(chunk)
        except OSError as exc:
            result["error"] = exc
        result["total"], result["digest"] = total, digest.hexdigest()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with in_netns(client_ns):
            cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with cli:
            cli.settimeout(timeout)
            cli.connect((server_addr, port))
            cli.sendall(data)
            cli.shutdown(socket.SHUT_WR)
            thread.join(timeout)
    finally:
        srv.close()
    return result.get("total", 0), hashlib.sha256(data).hexdigest(), result.get("digest", "")


class Whoami:
    """A TCP server inside a namespace that answers each connection with the peer address
    it saw (and remembers them in ``seen``): proves NAT, or its absence, from both ends."""

    def __init__(self, ns: str, addr: str, port: int) -> None:
        with in_netns(ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(16)
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            with conn:
                self.seen.append(peer[0])
                with contextlib.suppress(OSError):
                    conn.sendall(f"{peer[0]}\n".encode())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def whoami(ns: str, addr: str, port: int, timeout: float = 5) -> str:
    """Connect from ``ns`` and return what the server says it saw as our address."""
    with in_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with s:
        s.settimeout(timeout)
        s.connect((addr, port))
        return s.recv(64).decode().strip()
