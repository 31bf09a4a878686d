"""The runtime's netlink layer on real kernel objects (root; a namespace the test makes)."""

from __future__ import annotations

import json
import os

import pytest

from fangen.runtime.netlink import Netlink
from tests.harness.ns import Run, ip

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")


@pytest.fixture
def ns():
    with Run("nl") as run:
        yield run, run.netns("h")


def mtu(ns_name: str, dev: str) -> int:
    return json.loads(ip(ns_name, "-j", "link", "show", "dev", dev).stdout)[0]["mtu"]


def test_bridge_keeps_the_fan_mtu_when_a_1500_byte_port_joins(ns):
    """An IPIP fan's bridge has only container ports; their veths are 1500 bytes."""
    run, name = ns
    Netlink(run.ipr(name)).create_bridge("fanbr", 1480)
    assert mtu(name, "fanbr") == 1480
    ip(name, "link", "add", "c0", "type", "veth", "peer", "name", "c1")
    ip(name, "link", "set", "c0", "master", "fanbr")
    assert mtu(name, "fanbr") == 1480


def test_the_kernel_behaviour_this_guards_against(ns):
    """The oracle: an MTU given at creation follows the ports."""
    _, name = ns
    ip(name, "link", "add", "name", "br0", "mtu", "1480", "type", "bridge")
    ip(name, "link", "add", "c0", "type", "veth", "peer", "name", "c1")
    ip(name, "link", "set", "c0", "master", "br0")
    assert mtu(name, "br0") == 1500
