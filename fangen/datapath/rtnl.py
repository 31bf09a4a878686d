"""A small rtnetlink client: link messages built and parsed by hand, and a socket.

Nothing here knows about the fan: :mod:`fangen.datapath.kernelfan` builds the fan
uAPI on top.  The messages are built here (not by pyroute2) so that what is sent
does not depend on how a given pyroute2 release models IPIP and VXLAN attributes.

The first half is pure (bytes in, bytes out).  The second half talks to the
kernel through a NETLINK_ROUTE socket of its own (:class:`Rtnl`), opened in the
network namespace of a pyroute2 handle, of a named namespace, or of the caller.
:func:`setns` is the one way into a network namespace, for the product and the
tests alike (tests/harness/ns.py uses it).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as _errno
import fcntl
import os
import socket
import struct
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

# <linux/if_link.h>
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2

# <linux/rtnetlink.h>, <linux/netlink.h>
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF
IFF_UP = 0x1
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NLMSGERR_ATTR_MSG = 1
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200

SIOCGSKNS = 0x894C
CLONE_NEWNET = 0x40000000

NLMSGHDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")
RTATTR = struct.Struct("=HH")


class NetlinkError(OSError):
    """A netlink request failed: errno, strerror and the kernel's extack text."""

    def __init__(self, err: int, message: str = "", request: str = ""):
        text = os.strerror(err)
        if message:
            text += f" ({message})"
        if request:
            text = f"{request}: {text}"
        super().__init__(err, text)
        self.extack = message


# --- pure: attributes and messages ------------------------------------------------

def align(n: int) -> int:
    return (n + 3) & ~3


def nla(attr_type: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = RTATTR.size + len(payload)
    return RTATTR.pack(length, attr_type) + payload + b"\0" * (align(length) - length)


def nla_nested(attr_type: int, children: Iterable[bytes]) -> bytes:
    return nla(attr_type | NLA_F_NESTED, b"".join(children))


def parse_nlas(data: bytes) -> list[tuple[int, bytes]]:
    """[(type without flags, payload)] of a run of attributes."""
    out = []
    off = 0
    while off + RTATTR.size <= len(data):
        length, attr_type = RTATTR.unpack_from(data, off)
        if length < RTATTR.size or off + length > len(data):
            raise ValueError(f"bad attribute length {length} at offset {off}")
        out.append((attr_type & NLA_TYPE_MASK, bytes(data[off + RTATTR.size:off + length])))
        off += align(length)
    return out


def u8(v: int) -> bytes:
    return struct.pack("=B", v)


def u32(v: int) -> bytes:
    return struct.pack("=I", v)


def addr(a) -> bytes:
    return IPv4Address(a).packed


def nlmsg(msg_type: int, flags: int, seq: int, payload: bytes) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(payload), msg_type, flags, seq, 0) + payload


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)


def linkinfo(kind: str, info_data: Sequence[bytes]) -> bytes:
    return nla_nested(IFLA_LINKINFO, [nla(IFLA_INFO_KIND, kind.encode()),
                                      nla_nested(IFLA_INFO_DATA, info_data)])


def newlink(name: str, kind: str, info_data: Sequence[bytes], *, seq: int = 1,
            mtu: int | None = None, up: bool = False) -> bytes:
    """RTM_NEWLINK creating ``ip link add NAME [mtu MTU] type KIND ...`` (exclusive)."""
    attrs = [nla(IFLA_IFNAME, name.encode() + b"\0")]
    if mtu:
        attrs.append(nla(IFLA_MTU, u32(mtu)))
    attrs.append(linkinfo(kind, info_data))
    flags = IFF_UP if up else 0
    return nlmsg(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq,
                 ifinfomsg(0, flags, flags) + b"".join(attrs))


def changelink(index: int, kind: str, info_data: Sequence[bytes], *, seq: int = 1,
               mtu: int | None = None) -> bytes:
    """RTM_NEWLINK changing the IFLA_INFO_DATA (and the MTU) of an existing link."""
    attrs = []
    if mtu:
        attrs.append(nla(IFLA_MTU, u32(mtu)))
    attrs.append(linkinfo(kind, info_data))
    return nlmsg(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, ifinfomsg(index) + b"".join(attrs))


def getlink(index: int = 0, name: str | None = None, *, seq: int = 1) -> bytes:
    attrs = nla(IFLA_IFNAME, name.encode() + b"\0") if name else b""
    return nlmsg(RTM_GETLINK, NLM_F_REQUEST, seq, ifinfomsg(index) + attrs)


def dellink(index: int, *, seq: int = 1) -> bytes:
    return nlmsg(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, seq, ifinfomsg(index))


@dataclass
class Link:
    """What a link dump says about one link: its kind and raw IFLA_INFO_DATA."""

    index: int
    name: str
    flags: int
    mtu: int
    kind: str | None
    info_data: list[tuple[int, bytes]]

    def data_attr(self, attr_type: int) -> bytes | None:
        for t, p in self.info_data:
            if t == attr_type:
                return p
        return None


def parse_link(payload: bytes) -> Link:
    """An RTM_NEWLINK payload (ifinfomsg + attributes) from a dump."""
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(payload)
    name, mtu, kind, data = "", 0, None, []
    for t, p in parse_nlas(payload[IFINFOMSG.size:]):
        if t == IFLA_IFNAME:
            name = p.rstrip(b"\0").decode()
        elif t == IFLA_MTU:
            mtu = struct.unpack("=I", p[:4])[0]
        elif t == IFLA_LINKINFO:
            for it, ip in parse_nlas(p):
                if it == IFLA_INFO_KIND:
                    kind = ip.rstrip(b"\0").decode()
                elif it == IFLA_INFO_DATA:
                    data = parse_nlas(ip)
    return Link(index, name, flags, mtu, kind, data)


def parse_error(payload: bytes, flags: int) -> tuple[int, str]:
    """(errno, extack message) from an NLMSG_ERROR payload (0 = ACK)."""
    err = -struct.unpack_from("=i", payload)[0]
    msg = ""
    if flags & NLM_F_ACK_TLVS:
        if flags & NLM_F_CAPPED:
            off = 4 + NLMSGHDR.size
        else:
            off = 4 + NLMSGHDR.unpack_from(payload, 4)[0]
        try:
            for t, p in parse_nlas(payload[align(off):]):
                if t == NLMSGERR_ATTR_MSG:
                    msg = p.rstrip(b"\0").decode(errors="replace")
        except ValueError:
            pass
    return err, msg


# --- namespaces ------------------------------------------------------------------------

_libc = None


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """setns(2) of the calling thread (os.setns from Python 3.12, libc before)."""
    global _libc
    if sys.version_info >= (3, 12):
        os.setns(fd, nstype)
        return
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _socket_in_netns(ns_fd: int) -> socket.socket:
    """A NETLINK_ROUTE socket created in the network namespace ns_fd.

    setns() changes the calling thread only, so a short-lived thread does it.
    """
    box: dict = {}

    def run() -> None:
        try:
            setns(ns_fd, CLONE_NEWNET)
            box["sock"] = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                        socket.NETLINK_ROUTE)
        except OSError as exc:
            box["exc"] = exc

    t = threading.Thread(target=run, name="rtnl-setns")
    t.start()
    t.join()
    if "exc" in box:
        raise box["exc"]
    return box["sock"]


# --- the socket ------------------------------------------------------------------------

class Rtnl:
    """A minimal rtnetlink request/response socket.

    ``Rtnl()`` works in the caller's namespace, ``Rtnl(netns="NAME")`` in
    /run/netns/NAME, ``Rtnl(netns_fd=FD)`` in the namespace of an open
    namespace file, ``Rtnl.of(handle)`` in the namespace of a pyroute2
    IPRoute (or any socket-like object with fileno()).
    """

    def __init__(self, netns: str | None = None, netns_fd: int | None = None):
        if netns is not None:
            path = netns if "/" in netns else os.path.join("/run/netns", netns)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                self.sock = _socket_in_netns(fd)
            finally:
                os.close(fd)
        elif netns_fd is not None:
            self.sock = _socket_in_netns(netns_fd)
        else:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            try:
                self.sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:
                pass
        self.sock.bind((0, 0))
        self.seq = 0

    @classmethod
    def of(cls, handle) -> Rtnl:
        if isinstance(handle, Rtnl):
            return handle
        if handle is None:
            return cls()
        try:
            fd = handle.fileno()
        except (AttributeError, OSError) as exc:
            raise TypeError(f"cannot find the network namespace of {handle!r}") from exc
        ns_fd = fcntl.ioctl(fd, SIOCGSKNS)
        try:
            return cls(netns_fd=ns_fd)
        finally:
            os.close(ns_fd)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def request(self, msg: bytes, what: str = "") -> list[tuple[int, int, bytes]]:
        """Send one message (its seq field is used as is), collect the answer.

        Returns [(type, flags, payload)] of the data messages; raises
        NetlinkError on an error answer.
        """
        seq = NLMSGHDR.unpack_from(msg)[3]
        self.sock.send(msg)
        out = []
        while True:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + NLMSGHDR.size <= len(data):
                length, mtype, flags, mseq, _pid = NLMSGHDR.unpack_from(data, off)
                if length < NLMSGHDR.size:
                    raise NetlinkError(_errno.EPROTO, "bad netlink message", what)
                payload = data[off + NLMSGHDR.size:off + length]
                off += align(length)
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    err, text = parse_error(payload, flags)
                    if err:
                        raise NetlinkError(err, text, what)
                    return out
                if mtype == NLMSG_DONE:
                    return out
                out.append((mtype, flags, payload))
                if not flags & NLM_F_MULTI:
                    return out


@contextlib.contextmanager
def using(handle) -> Iterator[Rtnl]:
    """The Rtnl of ``handle`` (an Rtnl, a pyroute2 IPRoute, or None for the caller's
    namespace), closed afterwards unless it was the handle itself."""
    nl = Rtnl.of(handle)
    try:
        yield nl
    finally:
        if nl is not handle:
            nl.close()


def index_of(nl: Rtnl, dev) -> int:
    if isinstance(dev, int):
        return dev
    return get_link(nl, dev).index


def get_link(handle, dev) -> Link:
    """The link ``dev`` (name or index), with its kind and IFLA_INFO_DATA."""
    with using(handle) as nl:
        if isinstance(dev, int):
            msg = getlink(dev, seq=nl.next_seq())
        else:
            msg = getlink(0, dev, seq=nl.next_seq())
        answer = nl.request(msg, f"get link {dev}")
        if not answer:
            raise NetlinkError(_errno.ENODEV, "", f"get link {dev}")
        return parse_link(answer[0][2])


def delete_link(handle, dev) -> None:
    with using(handle) as nl:
        nl.request(dellink(index_of(nl, dev), seq=nl.next_seq()), f"delete link {dev}")
