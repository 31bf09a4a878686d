"""Announce the underlay address (a gratuitous ARP) when fangen brings a fan up on it.

Why: a peer that sent fan traffic to this host while its underlay address was absent
(a lease not yet there, the cable out) holds a neighbour entry for that address in
INCOMPLETE or FAILED state.  When the address appears, nothing tells the peer: the
kernel adds an address without a word (``net.ipv4.conf.*.arp_notify`` speaks only when a
device comes up or changes its hardware address, not when an address is added, and
systemd-networkd with ``DHCP=ipv4`` sent nothing in ``bench/convergence.py``),
and the peer asks again only when its ARP retransmit timer fires
(``net.ipv4.neigh.*.retrans_time_ms``, 1 s by default).  ``bench/convergence.py
--ping-early`` measured that second as the whole convergence time.

When: ``control.apply_up`` announces before it plans and executes the fan's steps (and
``follow`` when the same address comes back to a fan left as it was).  Measured on a
loaded 2-core machine (bench/convergence.py, 9 alternated rounds, lease -> remote
container answers, median and IQR): announcing after the steps came 200-650 ms after
the lease (the steps' own time: tc programs, nft, dnsmasq) and gave 344 ms (282-427);
announcing before them, 174 ms (147-196); no announcement, 811 ms (388-914).  The
price: what the peer had queued on its entry reaches this host before the fan is up
and is lost, as it is today when the peer's own retry comes before the fan is up; the
peer's next packets go through once the fan is up.

Kernel behaviour relied on (net/ipv4/arp.c, ``arp_process``; Documentation/networking/
ip-sysctl.rst, ``arp_accept``: "If the ARP table already contains the IP address of the
gratuitous arp frame, the arp table will be updated regardless if this setting is on or
off"): an ARP request or reply whose sender IP has an entry in the receiver's neighbour
table updates that entry whatever its state (INCOMPLETE, FAILED, STALE, ...) with the
sender's hardware address; a broadcast frame or a request leaves it STALE, a usable
state: the packets queued on an INCOMPLETE entry go out at once.  With ``arp_accept=0``
(the default) an unsolicited ARP creates no entry, so the announcement changes only
the peers that were already trying.  A frame whose sender and target IP are equal is
gratuitous and overrides an entry even inside ``locktime`` (since Linux 4.13, commit
7d472a59 "arp: always override existing neigh entries with gratuitous ARP").  A peer
with ``net.ipv4.conf.*.drop_gratuitous_arp=1`` drops it and waits for its own retry, as
without this module.  tests/netns/test_announce.py shows the update on the running
kernel with the peer's own probing switched off.

The frame is the one RFC 5227 calls an ARP Announcement (section 2.3) and the kernel
itself sends for ``arp_notify``: an ARP request, broadcast, sender and target protocol
address both the announced address, target hardware address zero (``arping -U`` sends
such a request too).  RFC 5227 wants an address probed before it is announced; fangen
announces only an address the host already holds and answers ARP for (someone else, DHCP
or the administrator, put it there, and the kernel answers every request for it
already), and only to speed up the peers that are asking.  RFC 5227 spaces its two
announcements 2 s apart, longer than the retry they are meant to beat here, so the first
frame goes at once and two more (``SCHEDULE``) cover a lost frame well inside the peer's
1 s retry.

Scope: only on the underlay interface fangen resolved (its name and index checked again
in this namespace), only for the address the fan runs over, only on an Ethernet device
that does ARP (any other is skipped without a word: no peer there caches the address by
ARP); nothing on the device is changed.  When the socket cannot be opened or a send
fails, one line is logged (once per reason and process) and nothing else happens: the
peers then wait for their own retry, as without this module.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import sys
import threading
import time
from ipaddress import IPv4Address

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
BROADCAST = b"\xff" * 6
ETH_ZLEN = 60                   # shortest Ethernet frame without its FCS: padded to it
SIOCGIFFLAGS = 0x8913
IFF_NOARP = 0x80
SCHEDULE = (0.0, 0.05, 0.25)    # seconds after the fan is up: now, then two repeats

_said: set = set()              # reasons already logged by this process


def frame(mac: bytes, address: IPv4Address) -> bytes:
    """The ARP Announcement of ``address`` from ``mac`` as an Ethernet broadcast frame."""
    if len(mac) != 6:
        raise ValueError(f"an Ethernet address has 6 bytes, not {len(mac)}")
    ip = IPv4Address(address).packed
    arp = struct.pack("!HHBBH", ARPHRD_ETHER, ETH_P_IP, 6, 4, ARPOP_REQUEST)
    arp += mac + ip + b"\x00" * 6 + ip
    data = BROADCAST + mac + struct.pack("!H", ETH_P_ARP) + arp
    return data + b"\x00" * (ETH_ZLEN - len(data))


def address(host, resolved, schedule: tuple = SCHEDULE) -> threading.Thread | None:
    """Announce ``resolved.address`` on ``resolved.ifname`` (a ``underlay.Resolved``).

    The first frame is sent before returning; the repeats come from a short-lived thread
    (returned, so a test can join it), which keeps a one-shot ``fangen up`` alive for at
    most the last delay of ``schedule``.  Never raises."""
    try:
        sock, data = _open(resolved)
    except _NoArp:
        return None             # nothing there caches addresses by ARP: nothing to say
    except _Skip as exc:
        _once(host, f"{resolved.ifname}: {resolved.address} not announced: {exc}")
        return None
    delays = [b - a for a, b in zip(schedule, schedule[1:])]
    if not _send(host, sock, data, resolved) or not delays:
        sock.close()
        return None
    thread = threading.Thread(target=_repeat, args=(host, sock, data, resolved, delays),
                              name="fangen-announce")
    thread.start()
    return thread


class _Skip(Exception):
    pass


class _NoArp(_Skip):
    """Not an Ethernet device, or one without ARP (NOARP: dummy, point-to-point)."""


def _open(resolved) -> tuple[socket.socket, bytes]:
    """A packet socket bound to the underlay interface, and the frame to send on it."""
    name = resolved.ifname
    try:
        index = socket.if_nametoindex(name)
    except OSError:
        raise _Skip("no such interface in this namespace") from None
    if index != resolved.ifindex:
        raise _Skip(f"it is index {index} here, not {resolved.ifindex}")
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)   # protocol 0: sends only
    except OSError as exc:
        raise _Skip(f"cannot open a packet socket ({exc.strerror})") from None
    try:
        sock.bind((name, 0))
        hatype, mac = sock.getsockname()[3:5]
        if hatype != ARPHRD_ETHER or len(mac) != 6:
            raise _NoArp(f"not an Ethernet device (hardware type {hatype})")
        flags = struct.unpack_from("H", fcntl.ioctl(
            sock.fileno(), SIOCGIFFLAGS, struct.pack("16s24x", name.encode())), 16)[0]
        if flags & IFF_NOARP:
            raise _NoArp("the device does not use ARP (NOARP)")
        return sock, frame(mac, resolved.address)
    except OSError as exc:
        sock.close()
        raise _Skip(f"cannot use the interface ({exc.strerror})") from None
    except _Skip:
        sock.close()
        raise


def _send(host, sock: socket.socket, data: bytes, resolved) -> bool:
    try:
        sock.sendto(data, (resolved.ifname, ETH_P_ARP))
        return True
    except OSError as exc:
        _once(host, f"{resolved.ifname}: {resolved.address} not announced: "
                    f"cannot send ({exc.strerror})")
        return False


def _repeat(host, sock: socket.socket, data: bytes, resolved, delays: list) -> None:
    try:
        for delay in delays:
            time.sleep(delay)
            if not _send(host, sock, data, resolved):
                return
    finally:
        sock.close()


def _once(host, text: str) -> None:
    if text in _said:
        return
    _said.add(text)
    log = getattr(host, "log", None)
    if log is not None:
        log(text)
    else:
        print(f"fangen: {text}", file=sys.stderr, flush=True)
