"""fangen.datapath.rtnl: rtnetlink messages built and parsed by hand (root only for
Rtnl.of, which asks the kernel for a socket's namespace)."""

import os
import socket
import struct
import sys

import pytest

from fangen.datapath import rtnl

needs_le = pytest.mark.skipif(sys.byteorder != "little",
                              reason="expected bytes are written for little-endian hosts")


def test_nla_padding():
    assert rtnl.nla(3, b"ab\0") == bytes([7, 0, 3, 0]) + b"ab\0" + b"\0"
    assert rtnl.nla(3, b"abcd") == bytes([8, 0, 3, 0]) + b"abcd"
    assert rtnl.parse_nlas(rtnl.nla(3, b"ab\0") + rtnl.nla(4, b"\1\2\3\4")) == [
        (3, b"ab\0"), (4, b"\1\2\3\4")]
    with pytest.raises(ValueError):
        rtnl.parse_nlas(bytes([40, 0, 1, 0]))


@needs_le
def test_newlink_and_changelink_messages():
    data = [rtnl.nla(2, bytes([172, 16, 3, 4]))]
    msg = rtnl.newlink("t0", "ipip", data, seq=9, mtu=1480, up=True)
    length, mtype, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, mtype, seq, pid) == (len(msg), rtnl.RTM_NEWLINK, 9, 0)
    assert flags == rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK | rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    assert struct.unpack_from("=BxHiII", msg, 16)[3:] == (rtnl.IFF_UP, rtnl.IFF_UP)
    link = rtnl.parse_link(msg[16:])
    assert (link.name, link.kind, link.mtu, link.info_data) == ("t0", "ipip", 1480,
                                                                [(2, bytes([172, 16, 3, 4]))])
    change = rtnl.changelink(5, "ipip", data, seq=3)
    assert struct.unpack_from("=IHHII", change)[1:4] == (rtnl.RTM_NEWLINK,
                                                         rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK, 3)
    link = rtnl.parse_link(change[16:])
    assert (link.index, link.name, link.mtu, link.data_attr(2)) == (5, "", 0,
                                                                    bytes([172, 16, 3, 4]))
    assert link.data_attr(3) is None
    dellink = rtnl.dellink(5, seq=4)
    assert struct.unpack_from("=IHHII", dellink)[:4] == (
        32, rtnl.RTM_DELLINK, rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK, 4)


def test_parse_error_with_extack():
    # NLMSG_ERROR payload: -EINVAL, capped original header, NLMSGERR_ATTR_MSG.
    payload = struct.pack("=i", -22) + bytes(16) + rtnl.nla(rtnl.NLMSGERR_ATTR_MSG, b"bad map\0")
    assert rtnl.parse_error(payload, rtnl.NLM_F_CAPPED | rtnl.NLM_F_ACK_TLVS) == (22, "bad map")
    assert rtnl.parse_error(struct.pack("=i", 0) + bytes(16), rtnl.NLM_F_CAPPED) == (0, "")
    e = rtnl.NetlinkError(17, "Fan overlay already mapped", "change fan maps of t")
    assert e.errno == 17 and str(e) == ("[Errno 17] change fan maps of t: File exists "
                                        "(Fan overlay already mapped)")


def test_rtnl_getlink_loopback():
    """Reading a link works unprivileged in the caller's namespace."""
    link = rtnl.get_link(None, "lo")
    assert link.name == "lo" and link.index >= 1
    with pytest.raises(rtnl.NetlinkError) as exc:
        rtnl.get_link(None, "no-such-dev0")
    assert exc.value.errno == 19


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: SIOCGSKNS needs CAP_NET_ADMIN")
def test_rtnl_of_follows_the_handle_namespace():
    """Rtnl.of(handle) opens its socket in the namespace of the handle's socket."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as handle:
        nl = rtnl.Rtnl.of(handle)
        try:
            assert nl is not handle and rtnl.get_link(nl, "lo").name == "lo"
        finally:
            nl.close()
    with rtnl.Rtnl() as own:
        assert rtnl.Rtnl.of(own) is own
    with pytest.raises(TypeError):
        rtnl.Rtnl.of(object())
