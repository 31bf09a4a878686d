"""The ARP Announcement frame (fangen.runtime.announce.frame), field by field, and the
refusals of announce.address that need no namespace (pure or read-only)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Network

import pytest

from fangen.runtime import announce
from fangen.runtime.underlay import Resolved
from tests.harness import packets

MAC = bytes.fromhex("02fa00000a07")
ADDR = IPv4Address("172.16.3.4")


def test_ethernet_header_is_a_broadcast_from_the_interface():
    data = announce.frame(MAC, ADDR)
    assert data[0:6] == b"\xff" * 6                      # destination: broadcast
    assert data[6:12] == MAC                             # source: the interface's address
    assert data[12:14] == b"\x08\x06"                    # EtherType ARP


def test_arp_fields_are_an_rfc5227_announcement():
    arp = announce.frame(MAC, ADDR)[14:42]
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", arp[:8])
    assert (htype, ptype, hlen, plen) == (1, 0x0800, 6, 4)   # Ethernet, IPv4, 6, 4
    assert op == 1                                           # a request, not a reply
    assert arp[8:14] == MAC                                  # sender hardware address
    assert arp[14:18] == bytes([172, 16, 3, 4])              # sender IP: the address
    assert arp[18:24] == bytes(6)                            # target hardware: zero
    assert arp[24:28] == bytes([172, 16, 3, 4])              # target IP: the same address


def test_padded_to_the_shortest_ethernet_frame():
    data = announce.frame(MAC, ADDR)
    assert len(data) == 60
    assert data[42:] == bytes(18)


def test_same_bytes_as_the_tests_own_packet_builder():
    """An independent builder (tests/harness/packets.py) agrees on the 42 meaningful bytes."""
    assert announce.frame(MAC, ADDR)[:42] == packets.arp(str(ADDR), str(ADDR), op=1, src=MAC)


def test_the_address_is_taken_as_text_too():
    assert announce.frame(MAC, "10.0.0.1")[28:32] == bytes([10, 0, 0, 1])   # sender IP


@pytest.mark.parametrize("mac", [b"", bytes(5), bytes(8)])
def test_only_ethernet_addresses(mac):
    with pytest.raises(ValueError, match="6 bytes"):
        announce.frame(mac, ADDR)


def test_an_interface_missing_here_is_logged_once_and_nothing_is_sent():
    """The name and index fangen resolved must be the same in this namespace; a missing
    interface is a logged skip, never an exception (no socket is even opened)."""
    said = []

    class Host:
        log = staticmethod(said.append)

    gone = Resolved("fangen-nonexistent0", 4242, ADDR, IPv4Network("172.16.0.0/16"), 1500)
    assert announce.address(Host(), gone) is None
    assert announce.address(Host(), gone) is None
    assert said == ["fangen-nonexistent0: 172.16.3.4 not announced: no such interface in "
                    "this namespace"]


def test_an_index_that_does_not_match_the_name_is_refused():
    said = []

    class Host:
        log = staticmethod(said.append)

    wrong = Resolved("lo", 4243, ADDR, IPv4Network("172.16.0.0/16"), 65536)
    assert announce.address(Host(), wrong) is None
    assert said == ["lo: 172.16.3.4 not announced: it is index 1 here, not 4243"]
