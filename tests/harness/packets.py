"""Crafted packets and small traffic helpers (TCP transfer, UDP listener) for the tests.

Sockets are created inside a namespace with :func:`~tests.harness.ns.in_netns` and
used from this process, so no helper processes are needed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import struct
import threading

from .ns import in_netns

VXLAN_FLAGS = 0x08000000            # the I flag: the VNI is valid


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes, ttl: int = 64) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload   # checksum 0: none
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0x1234, 0, ttl, 17, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


def vxlan_frame(vni: int, dst_mac: str, src_mac: str, inner_ip: bytes) -> bytes:
    """VXLAN header + inner Ethernet frame (IPv4): the UDP payload sent to port 8472."""
    eth = mac_bytes(dst_mac) + mac_bytes(src_mac) + struct.pack("!H", 0x0800)
    return struct.pack("!II", VXLAN_FLAGS, vni << 8) + eth + inner_ip


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


def whoami(ns: str, addr: str, port: int, timeout: float = 5) -> str:
    """Connect from ``ns`` and return what the server says it saw as our address."""
    with in_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with s:
        s.settimeout(timeout)
        s.connect((addr, port))
        return s.recv(64).decode().strip()
