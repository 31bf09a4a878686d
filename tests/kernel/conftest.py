"""Fixtures of the kernel fan tests (run inside the qemu guest by make kernel-check)."""

import pytest

from fangen.datapath import rtnl
from tests.harness.ns import Run, ip


@pytest.fixture
def net():
    """Namespaces of one test, removed again afterwards (also on failure)."""
    with Run("k") as run:
        yield run


@pytest.fixture
def ns(net):
    """One namespace with an underlay address, and an Rtnl in it."""
    name = net.netns("n")
    ip(name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    ip(name, "addr", "add", "172.16.3.4/16", "dev", "eth0")
    ip(name, "link", "set", "eth0", "up")
    ip(name, "link", "set", "eth1", "up")
    with rtnl.Rtnl(netns=name) as nl:
        yield name, nl
