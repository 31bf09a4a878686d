"""Fixtures of the kernel fan tests (run inside the qemu guest by make kernel-check)."""

import kutil
import pytest
from kutil import ip

from fangen.datapath import rtnl


@pytest.fixture
def net():
    """Namespaces of one test, removed again afterwards (also on failure)."""
    n = kutil.Net()
    yield n
    n.close()


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
