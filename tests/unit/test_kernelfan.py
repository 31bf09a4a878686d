"""fangen.datapath.kernelfan: the fan uAPI encoding, byte for byte (no root, no kernel)."""

import struct
import sys
from ipaddress import IPv4Address, IPv4Network

import pytest

from fangen.datapath import kernelfan as kf
from fangen.datapath import rtnl

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
    payload = rtnl.nla(0, b"") + rtnl.nla(1, kf.pack_fan_map(("250.0.0.0/8", "172.16.0.0/16")))
    assert kf.decode_fan_map(payload) == [kf.FanMapping.of("250.0.0.0/8", "172.16.0.0/16")]


@needs_le
def test_newlink_ipip_fan_message():
    msg = kf.newlink_ipip_fan("fan0", "172.16.3.4", [("250.0.0.0/8", "172.16.0.0/16")],
                              seq=7)
    length, mtype, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, mtype, seq, pid) == (len(msg), rtnl.RTM_NEWLINK, 7, 0)
    assert flags == rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK | rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
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
    link = rtnl.parse_link(msg[16:])
    assert link.name == "fan0" and link.kind == "ipip" and link.mtu == 1480
    assert link.data_attr(kf.IFLA_IPTUN_LOCAL) == bytes([172, 16, 3, 4])
    assert [str(m) for m in kf.fan_maps(link)] == ["250.0.0.0/8:172.16.0.0/16",
                                               "10.128.0.0/9:192.168.0.0/24"]


def test_changelink_keeps_params_and_replaces_fan_attr():
    keep = [(kf.IFLA_IPTUN_LOCAL, bytes([172, 16, 3, 4])), (kf.IFLA_IPTUN_TTL, b"\x40"),
            (kf.IFLA_IPTUN_FAN_MAP, b"old")]
    msg = kf.changelink_fan(5, "ipip", [kf.FLUSH], keep=keep, mtu=1480, seq=3)
    length, mtype, flags, seq, _ = struct.unpack_from("=IHHII", msg)
    assert mtype == rtnl.RTM_NEWLINK and flags == rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK
    assert struct.unpack_from("=i", msg, 20)[0] == 5
    link = rtnl.parse_link(msg[16:])
    assert link.mtu == 1480
    assert [t for t, _ in link.info_data] == [kf.IFLA_IPTUN_LOCAL, kf.IFLA_IPTUN_TTL,
                                              kf.IFLA_IPTUN_FAN_MAP]
    assert kf.fan_maps(link) == [kf.FLUSH]


@needs_le
def test_newlink_vxlan_fan_message():
    msg = kf.newlink_vxlan_fan("fan-vx", 0xFA0000, "172.16.3.4", ["250.0.0.0/8:172.16.0.0/16"],
                               dev=2)
    link = rtnl.parse_link(msg[16:])
    assert link.kind == "vxlan"
    assert link.data_attr(kf.IFLA_VXLAN_ID) == struct.pack("=I", 0xFA0000)
    assert link.data_attr(kf.IFLA_VXLAN_LINK) == struct.pack("=I", 2)
    assert link.data_attr(kf.IFLA_VXLAN_PORT) == b"\0\0"
    assert link.data_attr(kf.IFLA_VXLAN_LOCAL) == bytes([172, 16, 3, 4])
    assert [str(m) for m in kf.fan_maps(link)] == ["250.0.0.0/8:172.16.0.0/16"]


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


class _FakeRtnl(rtnl.Rtnl):
    """Answers RTM_GETLINK with one fixed link, records the other requests."""

    def __init__(self, link_msg: bytes):
        self.seq = 0
        self.link_payload = link_msg[16:]
        self.sent: list[bytes] = []

    def request(self, msg, what=""):
        mtype = struct.unpack_from("=IH", msg)[1]
        if mtype == rtnl.RTM_GETLINK:
            return [(rtnl.RTM_NEWLINK, 0, self.link_payload)]
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
    sent = rtnl.parse_link(msg[16:])
    assert sent.kind == "vxlan" and sent.mtu == 0          # no IFLA_MTU
    assert [t for t, _ in sent.info_data] == [kf.IFLA_VXLAN_FAN_MAP]
    assert [str(m) for m in kf.fan_maps(sent)] == ["250.0.0.0/8:172.16.0.0/16"]


def test_change_maps_ipip_keeps_params_and_mtu():
    link = kf.newlink_ipip_fan("fant", "172.16.3.4", ["250.0.0.0/8:172.16.0.0/16"], ttl=64,
                               mtu=1480)
    nl = _FakeRtnl(link)
    kf.change_maps(nl, "fant", ["250.0.0.0/8:172.16.0.0/16"])
    (msg,) = nl.sent
    sent = rtnl.parse_link(msg[16:])
    assert sent.mtu == 1480
    assert [t for t, _ in sent.info_data] == [kf.IFLA_IPTUN_LOCAL, kf.IFLA_IPTUN_TTL,
                                              kf.IFLA_IPTUN_FAN_MAP]


# --- attribute 33 where it means something else -------------------------------------------
# IFLA_INFO_DATA of a plain VXLAN device as Linux 6.18 dumps it (read on this project's
# machines: `ip link add vx0 type vxlan id 42 dstport 4789`).  Since 6.14 attribute 33 is
# IFLA_VXLAN_RESERVED_BITS: 8 bytes, always dumped, never a fan map nest.
VXLAN_6_14_DATA = [(t, bytes.fromhex(p)) for t, p in [
    (1, "2a000000"), (5, "00"), (28, "00"), (6, "00"), (29, "00"), (26, "00000000"),
    (32, "00000000"), (7, "01"), (11, "00"), (12, "00"), (13, "00"), (14, "00"), (25, "00"),
    (8, "2c010000"), (9, "00000000"), (15, "12b5"), (18, "01"), (19, "00"), (20, "00"),
    (21, "00"), (22, "00"), (31, "01"), (10, "00000000"), (33, "f7ffffff000000ff")]]
FAN_MAP = "250.0.0.0/8:172.16.0.0/16"


def _link_msg(name: str, kind: str, data: list) -> bytes:
    attrs = rtnl.nla(rtnl.IFLA_IFNAME, name.encode() + b"\0") + \
        rtnl.linkinfo(kind, [rtnl.nla(t, p) for t, p in data])
    return rtnl.nlmsg(rtnl.RTM_NEWLINK, 0, 1, rtnl.ifinfomsg(7) + attrs)


def test_reserved_bits_are_not_fan_maps():
    link = rtnl.parse_link(_link_msg("vx0", "vxlan", VXLAN_6_14_DATA)[16:])
    assert link.data_attr(kf.IFLA_VXLAN_FAN_MAP) == bytes.fromhex("f7ffffff000000ff")
    assert kf.fan_attr_meaning(link) == "foreign"
    assert kf.fan_maps(link) == []                      # and no ValueError out of a dump
    with pytest.raises(ValueError):
        kf.decode_fan_map_strict(kf.fan_attr(link))
    with pytest.raises(kf.NotFanKernel) as exc:
        kf._check_kept(link, [kf.FanMapping.of(*FAN_MAP.split(":"))], "create vxlan fan vx0")
    assert exc.value.errno == 95
    assert "IFLA_VXLAN_RESERVED_BITS" in str(exc.value)


def test_a_fan_kernel_reads_back_as_fan_maps():
    msg = kf.newlink_vxlan_fan("fan-vx", 0xFA0000, "172.16.3.4", [FAN_MAP], dev=2)
    link = rtnl.parse_link(msg[16:])
    assert kf.fan_attr_meaning(link) == "fan"
    kf._check_kept(link, [kf.FanMapping.of(*FAN_MAP.split(":"))], "create")   # no error
    plain = rtnl.parse_link(kf.newlink_vxlan_fan("vx", 1, "172.16.3.4")[16:])
    assert kf.fan_attr_meaning(plain) == "absent"


@pytest.mark.parametrize("payload", [
    bytes.fromhex("f7ffffff000000ff"),                       # RESERVED_BITS (default)
    bytes(8),                                                # RESERVED_BITS (all clear)
    rtnl.nla(kf.IFLA_FAN_UNSPEC, bytes(12)),                   # a child of another type
    rtnl.nla(kf.IFLA_FAN_MAPPING, bytes(8)),                   # a short map
    rtnl.nla(kf.IFLA_FAN_MAPPING, kf.pack_fan_map(FAN_MAP)) + b"\1\2",   # stray bytes
    rtnl.nla(kf.IFLA_FAN_MAPPING, struct.pack("=4s4sHH", bytes(4), bytes(4), 40, 8)),
])
def test_strict_decode_refuses_anything_but_fan_maps(payload):
    with pytest.raises(ValueError):
        kf.decode_fan_map_strict(payload)


def test_strict_decode_of_maps():
    nest = kf.encode_fan_map([FAN_MAP, "100.64.0.0/10:10.224.220.0/24"])
    assert [str(m) for m in kf.decode_fan_map_strict(nest[4:])] == [
        FAN_MAP, "100.64.0.0/10:10.224.220.0/24"]
    assert kf.decode_fan_map_strict(b"") == []


def test_creation_on_a_6_14_kernel_deletes_the_link_and_refuses():
    """The kernel kept attribute 33 as something else: the new link goes again."""
    nl = _FakeRtnl(_link_msg("fan-vx", "vxlan", VXLAN_6_14_DATA))
    with pytest.raises(kf.NotFanKernel):
        kf.create_vxlan_fan(nl, "fan-vx", 0xFA0000, "172.16.3.4", [FAN_MAP], dev=2)
    kinds = [struct.unpack_from("=IH", m)[1] for m in nl.sent]
    assert kinds == [rtnl.RTM_NEWLINK, rtnl.RTM_DELLINK]
    assert struct.unpack_from("=i", nl.sent[1], 16 + 4)[0] == 7      # the link it made


def test_a_kernel_that_ignores_the_attribute_is_no_fan_kernel():
    nl = _FakeRtnl(_link_msg("fant", "ipip", [(kf.IFLA_IPTUN_LOCAL, bytes([172, 16, 3, 4]))]))
    with pytest.raises(kf.NotFanKernel) as exc:
        kf.create_ipip_fan(nl, "fant", "172.16.3.4", [FAN_MAP])
    assert exc.value.errno == 95 and "ignored the fan map" in str(exc.value)
    assert [struct.unpack_from("=IH", m)[1] for m in nl.sent] == [rtnl.RTM_NEWLINK,
                                                                  rtnl.RTM_DELLINK]


# --- the runtime's decision ------------------------------------------------------------------

def _proc(tmp_path, ipip=None, vxlan=None) -> str:
    base = tmp_path / "proc"
    if ipip is not None or vxlan is not None:
        (base / "sys/net/fan").mkdir(parents=True)
        if ipip is not None:
            (base / "sys/net/fan/version").write_text(f"{ipip}\n")
        if vxlan is not None:
            (base / "sys/net/fan/vxlan").write_text(f"{vxlan}\n")
    else:
        base.mkdir()
    return str(base)


def _fan(kind="vxlan", datapath="auto"):
    from fangen.config.model import build
    return build("f", {"overlay": "250.0.0.0/8", "underlay": "172.16.0.0/16", "type": kind,
                       "datapath": datapath})


def test_datapath_on_a_kernel_without_the_fan(tmp_path):
    """6.14+ upstream: no /proc/sys/net/fan, attribute 33 is RESERVED_BITS: never kernel."""
    from fangen.runtime.host import DatapathError, choose_datapath
    proc = _proc(tmp_path)
    assert choose_datapath(_fan("vxlan"), proc) == "upstream"
    assert choose_datapath(_fan("ipip"), proc) == "upstream"
    assert choose_datapath(_fan("vxlan", "upstream"), proc) == "upstream"
    with pytest.raises(DatapathError) as exc:
        choose_datapath(_fan("vxlan", "kernel"), proc)
    assert str(exc.value) == ("f: datapath: kernel, but this kernel has no vxlan fan "
                              "(/proc/sys/net/fan/vxlan is missing); use datapath: auto or "
                              "upstream")


def test_datapath_on_a_fan_kernel(tmp_path):
    from fangen.runtime.host import DatapathError, choose_datapath
    proc = _proc(tmp_path, ipip=3, vxlan=4)
    assert choose_datapath(_fan("vxlan"), proc) == "kernel"
    assert choose_datapath(_fan("ipip", "kernel"), proc) == "kernel"
    assert choose_datapath(_fan("vxlan", "upstream"), proc) == "upstream"
    # IPIP fan only (an older Ubuntu kernel): VXLAN is upstream
    proc = _proc(tmp_path / "old", ipip=3)
    assert choose_datapath(_fan("ipip"), proc) == "kernel"
    assert choose_datapath(_fan("vxlan"), proc) == "upstream"
    # a version this code does not know is not the uAPI it speaks
    proc = _proc(tmp_path / "new", ipip=5, vxlan=5)
    assert choose_datapath(_fan("vxlan"), proc) == "upstream"
    with pytest.raises(DatapathError):
        choose_datapath(_fan("ipip", "kernel"), proc)


def test_datapath_after_a_failed_read_back(tmp_path):
    """/proc says fan, but attribute 33 read back as something else: auto falls back,
    kernel is an error that says why."""
    from fangen.runtime.host import DatapathError, choose_datapath
    proc = _proc(tmp_path, ipip=3, vxlan=4)
    refused = {"vxlan": "the kernel refused the fan map (attribute 33 ...)"}
    assert choose_datapath(_fan("vxlan"), proc, refused) == "upstream"
    assert choose_datapath(_fan("ipip"), proc, refused) == "kernel"
    with pytest.raises(DatapathError, match=r"^f: datapath: kernel, but the kernel refused "
                                            r"the fan map \(attribute 33 \.\.\.\); use"):
        choose_datapath(_fan("vxlan", "kernel"), proc, refused)
