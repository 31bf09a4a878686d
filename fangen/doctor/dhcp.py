"""Ask the fan's dnsmasq for an offer on the bridge: one DHCP DISCOVER, read the OFFER.

Why a DISCOVER and not a DNS query or a look at dnsmasq's socket: DHCP is what fangen
runs dnsmasq for (with ``dns: false`` it answers no DNS at all), and a socket only
shows that dnsmasq opened it, not that it answers on the bridge with the right router
and MTU.  A DISCOVER changes nothing: dnsmasq records a lease only when a client sends
a REQUEST, which the doctor never does.  The DISCOVER is broadcast on the bridge with
the broadcast flag set, so the OFFER comes back as a broadcast, which the kernel also
delivers to local sockets.

:func:`discover` and :func:`parse_offer` are pure; :func:`probe` does the I/O.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from ipaddress import IPv4Address

MAGIC = b"\x63\x82\x53\x63"
CLIENT_PORT, SERVER_PORT = 68, 67
BOOTREQUEST, BOOTREPLY = 1, 2
DHCPDISCOVER, DHCPOFFER = 1, 2
OPT_MASK, OPT_ROUTER, OPT_MTU, OPT_SERVER, OPT_TYPE, OPT_PARAMS, OPT_END = 1, 3, 26, 54, 53, 55, 255
SO_BINDTODEVICE = 25


class ProbeError(OSError):
    pass


def discover(xid: int, mac: bytes) -> bytes:
    """A BOOTP/DHCP DISCOVER asking for mask, router and MTU, broadcast flag set."""
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", BOOTREQUEST, 1, 6, 0, xid, 0, 0x8000,
                       b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, mac.ljust(16, b"\0"),
                       b"\0" * 64, b"\0" * 128)
    options = bytes([OPT_TYPE, 1, DHCPDISCOVER, OPT_PARAMS, 4, OPT_MASK, OPT_ROUTER, OPT_MTU,
                     OPT_SERVER, OPT_END])
    return head + MAGIC + options


def parse_offer(data: bytes, xid: int) -> dict | None:
    """{"address", "router", "mtu", "mask", "server"} of an OFFER for ``xid``, else None."""
    if len(data) < 240 or data[236:240] != MAGIC:
        return None
    op, _, _, _, got_xid = struct.unpack("!BBBBI", data[:8])
    if op != BOOTREPLY or got_xid != xid:
        return None
    options = _options(data[240:])
    if options.get(OPT_TYPE) != bytes([DHCPOFFER]):
        return None

    def addr(code):
        value = options.get(code)
        return str(IPv4Address(value[:4])) if value and len(value) >= 4 else None
    mtu = options.get(OPT_MTU)
    return {"address": str(IPv4Address(data[16:20])), "router": addr(OPT_ROUTER),
            "mask": addr(OPT_MASK), "server": addr(OPT_SERVER),
            "mtu": struct.unpack("!H", mtu[:2])[0] if mtu and len(mtu) >= 2 else None}


def _options(blob: bytes) -> dict:
    out, i = {}, 0
    while i < len(blob):
        code = blob[i]
        if code == OPT_END:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(blob):
            break
        length = blob[i + 1]
        out.setdefault(code, blob[i + 2:i + 2 + length])
        i += 2 + length
    return out


def probe(bridge: str, timeout: float = 2.0, attempts: int = 2) -> dict:
    """Send a DISCOVER on ``bridge`` and return the OFFER; ProbeError when none comes."""
    xid = int.from_bytes(os.urandom(4), "big")
    mac = b"\x02\xfa\x6e" + os.urandom(3)           # locally administered, not a real NIC
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, bridge.encode())
        sock.bind(("0.0.0.0", CLIENT_PORT))
        packet = discover(xid, mac)
        for _ in range(attempts):
            sock.sendto(packet, ("255.255.255.255", SERVER_PORT))
            deadline = time.monotonic() + timeout / attempts
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    break
                offer = parse_offer(data, xid)
                if offer is not None:
                    return offer
    except OSError as exc:
        raise ProbeError(exc.errno, f"{exc.strerror or exc}") from None
    finally:
        sock.close()
    raise ProbeError(0, f"no DHCP offer on {bridge} within {timeout:g} s")
