"""fangen.datapath.kernelfan: the fan uAPI encoding, byte for byte (no root, no kernel)."""

import struct
import sys
from ipaddress import IPv4Address, IPv4Network

import pytest

from fangen.datapath import kernelfan as kf

LE = sys.byteorder == "little"
needs_le = pytest.mark.skipif(not LE, reason="expected bytes are written for little-endian hosts")


def test_constants():
    assert kf.IFLA_IPTUN_FAN_MAP == 33
    assert kf.IFLA_VXLAN_FAN_MAP == 33
    assert kf.IFLA_FAN_UNSPEC == 0
    assert kf.IFLA_FAN_MAPPING == 1
    assert kf.FAN_MAP_STRUCT.size == 12


@needs_le
def test_pack_fan_map_bytes():
    b = kf.pack_fan_map(("250.0.0.0/8", "172.16.0.0/16"))
    assert b == bytes([172, 16, 0, 0, 250, 0, 0, 0, 16, 0, 8, 0])
    b = kf.pack_fan_map("100.64.0.0/10:10.224.220.0/24")
    assert b == bytes([10, 224, 220, 0, 100, 64, 0, 0, 24, 0, 10, 0])


@needs_le
def test_pack_delete_and_flush():
    assert kf.pack_fan_map(kf.FanMapping.of("250.0.0.0/8")) == bytes(
        [0, 0, 0, 0, 250, 0, 0, 0, 0, 0, 8, 0])
    assert kf.pack_fan_map(("250.0.0.0/8", "0.0.0.0/0")) == bytes(
        [0, 0, 0, 0, 250, 0, 0, 0, 0, 0, 8, 0])
    assert kf.pack_fan_map(kf.FLUSH) == bytes(12)


def test_pack_accepts_fanmap_objects():
    from fangen.fanmap import FanMap
    fm = FanMap.parse("250.0.0.0/8", "172.16.0.0/16")
    assert kf.pack_fan_map(fm) == kf.pack_fan_map(("250.0.0.0/8", "172.16.0.0/16"))


def test_unpack_roundtrip():
    m = kf.unpack_fan_map(kf.pack_fan_map(("99.0.0.0/8", "10.88.0.0/16")))
    assert m == kf.FanMapping(IPv4Address("99.0.0.0"), 8, IPv4Address("10.88.0.0"), 16)
    assert m.overlay_net == IPv4Network("99.0.0.0/8")
    assert m.underlay_net == IPv4Network("10.88.0.0/16")
    assert str(m) == "99.0.0.0/8:10.88.0.0/16"
    with pytest.raises(ValueError):
        kf.unpack_fan_map(bytes(11))


@needs_le
def test_encode_fan_map_nest_bytes():
    got = kf.encode_fan_map([("250.0.0.0/8", "172.16.0.0/16")])
    want = (bytes([20, 0, 33, 0x80])            # nest: len 20, type 33 | NLA_F_NESTED
            + bytes([16, 0, 1, 0])              # IFLA_FAN_MAPPING, len 16
            + bytes([172, 16, 0, 0, 250, 0, 0, 0, 16, 0, 8, 0]))
    assert got == want


@needs_le
def test_encode_two_maps_and_vxlan():
    got = kf.encode_vxlan_fan_map(["250.0.0.0/8:172.16.0.0/16", "240.0.0.0/8:10.0.0.0/16"])
    assert got[:4] == bytes([36, 0, 33, 0x80])
    assert got[4:8] == bytes([16, 0, 1, 0])
    assert got[20:24] == bytes([16, 0, 1, 0])
    assert got[24:] == bytes([10, 0, 0, 0, 240, 0, 0, 0, 16, 0, 8, 0])
    assert kf.decode_fan_map(got[4:]) == [kf.FanMapping.of("250.0.0.0/8", "172.16.0.0/16"),
                                          kf.FanMapping.of("240.0.0.0/8", "10.0.0.0/16")]


def test_decode_skips_other_children():
    payload = kf.nla(0, b"") + kf.nla(1, kf.pack_fan_map(("250.0.0.0/8", "172.16.0.0/16")))
    assert kf.decode_fan_map(payload) == [kf.FanMapping.of("250.0.0.0/8", "172.16.0.0/16")]


def test_nla_padding():
    assert kf.nla(3, b"ab\0") == bytes([7, 0, 3, 0]) + b"ab\0" + b"\0"
    assert kf.nla(3, b"abcd") == bytes([8, 0, 3, 0]) + b"abcd"
    assert kf.parse_nlas(kf.nla(3, b"ab\0") + kf.nla(4, b"\1\2\3\4")) == [
        (3, b"ab\0"), (4, b"\1\2\3\4")]
    with pytest.raises(ValueError):
        kf.parse_nlas(bytes([40, 0, 1, 0]))


@needs_le
def test_newlink_ipip_fan_message():
    msg = kf.newlink_ipip_fan("fan0", "172.16.3.4", [("250.0.0.0/8", "172.16.0.0/16")],
                              seq=7)
    length, mtype, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, mtype, seq, pid) == (len(msg), kf.RTM_NEWLINK, 7, 0)
    assert flags == kf.NLM_F_REQUEST | kf.NLM_F_ACK | kf.NLM_F_CREATE | kf.NLM_F_EXCL
    assert msg[16:32] == bytes(16)                      # ifinfomsg: all zero
    body = msg[32:]
    ifname = bytes([9, 0, 3, 0]) + b"fan0\0" + bytes(3)
    local = bytes([8, 0, 2, 0, 172, 16, 3, 4])
    fan = kf.encode_fan_map([("250.0.0.0/8", "172.16.0.0/16")])
    kind = bytes([8, 0, 1, 0]) + b"ipip"
    data = bytes([4 + len(local) + len(fan), 0, 2, 0x80]) + local + fan
    info = bytes([4 + len(kind) + len(data), 0, 18, 0x80]) + kind + data
    assert body == ifname + info


def test_parse_link_roundtrip():
    msg = kf.newlink_ipip_fan("fan0", "172.16.3.4", ["250.0.0.0/8:172.16.0.0/16",
                                                     "10.128.0.0/9:192.168.0.0/24"], mtu=1480)
    link = kf.parse_link(msg[16:])
    assert link.name == "fan0" and link.kind == "ipip" and link.mtu == 1480
    assert link.data_attr(kf.IFLA_IPTUN_LOCAL) == bytes([172, 16, 3, 4])
    assert [str(m) for m in link.fan_maps] == ["250.0.0.0/8:172.16.0.0/16",
                                               "10.128.0.0/9:192.168.0.0/24"]


def test_changelink_keeps_params_and_replaces_fan_attr():
    keep = [(kf.IFLA_IPTUN_LOCAL, bytes([172, 16, 3, 4])), (kf.IFLA_IPTUN_TTL, b"\x40"),
            (kf.IFLA_IPTUN_FAN_MAP, b"old")]
    msg = kf.changelink_fan(5, "ipip", [kf.FLUSH], keep=keep, mtu=1480, seq=3)
    length, mtype, flags, seq, _ = struct.unpack_from("=IHHII", msg)
    assert mtype == kf.RTM_NEWLINK and flags == kf.NLM_F_REQUEST | kf.NLM_F_ACK
    assert struct.unpack_from("=i", msg, 20)[0] == 5
    link = kf.parse_link(msg[16:])
    assert link.mtu == 1480
    assert [t for t, _ in link.info_data] == [kf.IFLA_IPTUN_LOCAL, kf.IFLA_IPTUN_TTL,
                                              kf.IFLA_IPTUN_FAN_MAP]
    assert link.fan_maps == [kf.FLUSH]


@needs_le
def test_newlink_vxlan_fan_message():
    msg = kf.newlink_vxlan_fan("fan-vx", 0xFA0000, "172.16.3.4", ["250.0.0.0/8:172.16.0.0/16"],
                               dev=2)
    link = kf.parse_link(msg[16:])
    assert link.kind == "vxlan"
    assert link.data_attr(kf.IFLA_VXLAN_ID) == struct.pack("=I", 0xFA0000)
    assert link.data_attr(kf.IFLA_VXLAN_LINK) == struct.pack("=I", 2)
    assert link.data_attr(kf.IFLA_VXLAN_PORT) == b"\0\0"
    assert link.data_attr(kf.IFLA_VXLAN_LOCAL) == bytes([172, 16, 3, 4])
    assert [str(m) for m in link.fan_maps] == ["250.0.0.0/8:172.16.0.0/16"]


def test_parse_error_with_extack():
    # NLMSG_ERROR payload: -EINVAL, capped original header, NLMSGERR_ATTR_MSG.
    payload = struct.pack("=i", -22) + bytes(16) + kf.nla(kf.NLMSGERR_ATTR_MSG, b"bad map\0")
    assert kf.parse_error(payload, kf.NLM_F_CAPPED | kf.NLM_F_ACK_TLVS) == (22, "bad map")
    assert kf.parse_error(struct.pack("=i", 0) + bytes(16), kf.NLM_F_CAPPED) == (0, "")
    e = kf.KernelFanError(17, "Fan overlay already mapped", "change fan maps of t")
    assert e.errno == 17 and "already mapped" in str(e)


def test_present(tmp_path):
    assert kf.present(str(tmp_path)) == {"ipip": False, "vxlan": False}
    d = tmp_path / "sys" / "net" / "fan"
    d.mkdir(parents=True)
    (d / "version").write_text("3\n")
    assert kf.present(str(tmp_path)) == {"ipip": True, "vxlan": False}
    (d / "vxlan").write_text("4\n")
    assert kf.present(str(tmp_path)) == {"ipip": True, "vxlan": True}
    (d / "version").write_text("2\n")
    assert kf.present(str(tmp_path))["ipip"] is False


def test_rtnl_getlink_loopback():
    """Reading a link works unprivileged in the caller's namespace."""
    link = kf.get_link(None, "lo")
    assert link.name == "lo" and link.index >= 1
    assert link.fan_maps == []
    with pytest.raises(kf.KernelFanError) as exc:
        kf.get_link(None, "no-such-dev0")
    assert exc.value.errno == 19


class _FakeRtnl(kf.Rtnl):
    """Answers RTM_GETLINK with one fixed link, records the other requests."""

    def __init__(self, link_msg: bytes):
        self.seq = 0
        self.link_payload = link_msg[16:]
        self.sent: list[bytes] = []

    def request(self, msg, what=""):
        mtype = struct.unpack_from("=IH", msg)[1]
        if mtype == kf.RTM_GETLINK:
            return [(kf.RTM_NEWLINK, 0, self.link_payload)]
        self.sent.append(msg)
        return []

    def close(self):
        pass


def test_change_maps_vxlan_sends_only_the_maps():
    """A VXLAN changelink refuses IFLA_MTU, IFLA_VXLAN_PORT, ... even unchanged."""
    link = kf.newlink_vxlan_fan("fan-vx", 0xFA0000, "172.16.3.4", ["250.0.0.0/8:172.16.0.0/16"],
                                dev=2, mtu=1450)
    nl = _FakeRtnl(link)
    kf.change_maps(nl, "fan-vx", ["250.0.0.0/8:172.16.0.0/16"])
    (msg,) = nl.sent
    sent = kf.parse_link(msg[16:])
    assert sent.kind == "vxlan" and sent.mtu == 0          # no IFLA_MTU
    assert [t for t, _ in sent.info_data] == [kf.IFLA_VXLAN_FAN_MAP]
    assert [str(m) for m in sent.fan_maps] == ["250.0.0.0/8:172.16.0.0/16"]


def test_change_maps_ipip_keeps_params_and_mtu():
    link = kf.newlink_ipip_fan("fant", "172.16.3.4", ["250.0.0.0/8:172.16.0.0/16"], ttl=64,
                               mtu=1480)
    nl = _FakeRtnl(link)
    kf.change_maps(nl, "fant", ["250.0.0.0/8:172.16.0.0/16"])
    (msg,) = nl.sent
    sent = kf.parse_link(msg[16:])
    assert sent.mtu == 1480
    assert [t for t, _ in sent.info_data] == [kf.IFLA_IPTUN_LOCAL, kf.IFLA_IPTUN_TTL,
                                              kf.IFLA_IPTUN_FAN_MAP]
