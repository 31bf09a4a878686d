"""kernelfan on a kernel without the fan patch (``make kernel-check-stock``, Debian's
stock kernel): IPIP works, the fan is reported absent, and maps are refused loudly
instead of being silently dropped with the unknown attribute."""

from __future__ import annotations

import errno
import os

import pytest

from fangen.datapath import kernelfan as kf
from fangen.datapath import rtnl
from tests.harness.ns import Run, ip

pytestmark = [
    pytest.mark.skipif(kf.present()["ipip"], reason="kernel with the IPIP fan"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.root,
]



@pytest.fixture
def ns():
    with Run("k") as net:
        name = net.netns("s")
        if ip(name, "link", "add", "probe", "type", "ipip", "local", "192.0.2.1",
              check=False).returncode != 0:
            pytest.skip("kernel without IPIP")
        ip(name, "link", "del", "probe")
        yield name


def test_fan_absent_and_maps_refused(ns):
    assert kf.present() == {"ipip": False, "vxlan": False}
    with rtnl.Rtnl(netns=ns) as nl:
        kf.create_ipip_fan(nl, "plain", "192.0.2.1", up=True)     # no maps: fine
        assert kf.get_maps(nl, "plain") == []
        with pytest.raises(rtnl.NetlinkError) as exc:
            kf.create_ipip_fan(nl, "fant", "192.0.2.2", [("250.0.0.0/8", "172.16.0.0/16")])
        assert exc.value.errno == errno.EOPNOTSUPP
        assert "fant" not in ip(ns, "-br", "link").stdout
        with pytest.raises(rtnl.NetlinkError) as exc:
            kf.add_map(nl, "plain", "250.0.0.0/8", "172.16.0.0/16")
        assert exc.value.errno == errno.EOPNOTSUPP


def test_vxlan_fan_maps_refused(ns):
    """The stock kernel ignores IFLA_VXLAN_FAN_MAP (beyond its IFLA_VXLAN_MAX): kernelfan
    notices and refuses, at creation and on a plain VXLAN device."""
    assert kf.present()["vxlan"] is False
    ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    ip(ns, "addr", "add", "192.0.2.1/24", "dev", "eth0")
    with rtnl.Rtnl(netns=ns) as nl:
        kf.create_vxlan_fan(nl, "plainvx", 0xFA0000, "192.0.2.1", dev="eth0")   # no maps
        assert kf.get_maps(nl, "plainvx") == []
        with pytest.raises(rtnl.NetlinkError) as exc:
            kf.create_vxlan_fan(nl, "fanvx", 0xFA0001, "192.0.2.1",
                                [("250.0.0.0/8", "192.0.2.0/24")], dev="eth0")
        assert exc.value.errno == errno.EOPNOTSUPP
        assert "fanvx" not in ip(ns, "-br", "link").stdout
        with pytest.raises(rtnl.NetlinkError) as exc:
            kf.add_map(nl, "plainvx", "250.0.0.0/8", "192.0.2.0/24")
        assert exc.value.errno == errno.EOPNOTSUPP
        assert kf.get_maps(nl, "plainvx") == []
