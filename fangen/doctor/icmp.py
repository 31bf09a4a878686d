"""ICMP echo from one local address, with Don't Fragment: does the peer answer, and does a
packet of the fan's full MTU get through?  :func:`echo_request` and :func:`parse_reply` are
pure; :func:`ping` does the I/O (a raw socket, so it needs CAP_NET_RAW)."""

from __future__ import annotations

import errno
import os
import socket
import struct
import time

IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2
ECHO_REQUEST, ECHO_REPLY = 8, 0
HEADERS = 28                              # IPv4 (20) + ICMP (8)


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, size: int) -> bytes:
    """An ICMP echo request whose IPv4 packet is ``size`` bytes long."""
    payload = bytes(i & 0xFF for i in range(max(size - HEADERS, 0)))
    head = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(head + payload), ident, seq) + \
        payload


def parse_reply(packet: bytes, ident: int, seq: int, source: str) -> bool:
    """Is ``packet`` (as a raw socket returns it, IPv4 header first) our echo reply?"""
    if len(packet) < 20:
        return False
    ihl = (packet[0] & 0x0F) * 4
    if len(packet) < ihl + 8 or socket.inet_ntoa(packet[12:16]) != source:
        return False
    kind, _, _, got_id, got_seq = struct.unpack("!BBHHH", packet[ihl:ihl + 8])
    return kind == ECHO_REPLY and got_id == ident and got_seq == seq


def ping(source: str, target: str, size: int, timeout: float = 1.0, attempts: int = 3) -> str:
    """"ok", "timeout" or "too big" (the local route's MTU is below ``size``)."""
    ident = int.from_bytes(os.urandom(2), "big")
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        sock.bind((source, 0))
        for seq in range(1, attempts + 1):
            try:
                sock.sendto(echo_request(ident, seq, size), (target, 0))
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    return "too big"
                raise
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    packet = sock.recv(65535)
                except TimeoutError:
                    break
                if parse_reply(packet, ident, seq, target):
                    return "ok"
        return "timeout"
    finally:
        sock.close()
