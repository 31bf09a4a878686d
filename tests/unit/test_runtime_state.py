"""state.json round trip and the underlay resolution (pure over a NetView)."""

from ipaddress import IPv4Address, IPv4Network

import pytest

from fangen.config.model import Underlay
from fangen.runtime import state as st
from fangen.runtime.underlay import AddrRow, LinkRow, NetView, resolve_view


def test_round_trip(tmp_path):
    root = str(tmp_path)
    s = st.State("fan250", type="vxlan", datapath="upstream", bridge="fan250",
                 tunnel="fan250-tun", slice="250.3.4.0/24", gateway="250.3.4.1", mtu=1450,
                 links={"fan250": {"kind": "bridge", "created": True}},
                 nft_tables={"fangen-fan250": "table ip fangen-fan250 {\n}\n"},
                 tc={"fan250-tun": {"params": {"vni": 1}}},
                 files={"run/fangen/fan250/dnsmasq.conf": "x\n"},
                 dnsmasq={"mode": "process", "pid": 42, "cmdline": ["dnsmasq", "-x"]},
                 sysctls={"net/ipv4/ip_forward": "0"})
    s.add_address("fan250", "250.3.4.1/8")
    s.add_address("fan250", "250.3.4.1/8")
    s.add_route("250.0.0.0/8", "fan250-tun", "250.3.4.1")
    st.save(root, s)
    again = st.load(root, "fan250")
    assert again == s
    assert again.addresses == [{"dev": "fan250", "address": "250.3.4.1/8"}]
    assert st.names_with_state(root) == ["fan250"]
    st.remove(root, "fan250")
    st.remove(root, "fan250")                  # twice is fine
    assert st.load(root, "fan250") is None
    assert st.names_with_state(root) == []


def test_foreign_state_file_is_an_error(tmp_path):
    path = tmp_path / "run/fangen/a"
    path.mkdir(parents=True)
    (path / "state.json").write_text('{"name": "b"}')
    with pytest.raises(st.StateError, match="does not describe fan 'a'"):
        st.load(str(tmp_path), "a")


GOOD = {"name": "a", "bridge": "a", "tunnel": "a-tun",
        "links": {"a": {"kind": "bridge", "created": True}},
        "addresses": [{"dev": "a", "address": "250.3.4.1/8"}],
        "routes": [{"dst": "250.0.0.0/8", "dev": "a-tun", "src": "250.3.4.1"}],
        "files": {"run/fangen/a/dnsmasq.conf": "x", "run/fangen/a/cni/a.conflist": "x",
                  "run/systemd/network/10-fangen-a.network.d/50-slice.conf": "x"},
        "nft_tables": {"fangen-a": "table ip fangen-a {\n}\n"},
        "sysctls": {"net/ipv4/ip_forward": "0", "net/ipv4/udp_l3mdev_accept": "0"}}


@pytest.mark.parametrize("key, value, why", [
    ("files", {"../../etc/passwd": "x"}, "'files' names '../../etc/passwd'"),
    ("files", {"/etc/passwd": "x"}, "'files' names '/etc/passwd'"),
    ("files", {"run/fangen/a/../../../etc/shadow": "x"}, "which is not a file fangen writes"),
    ("files", {"run/fangen/b/dnsmasq.conf": "x"}, "'files' names 'run/fangen/b/dnsmasq.conf'"),
    ("files", {"run/systemd/network/50-eth0.network": "x"}, "not a file fangen writes"),
    ("nft_tables", {"docker": "x"}, "'nft_tables' names 'docker', which is not fangen's"),
    ("sysctls", {"kernel/panic": "0"}, "'sysctls' has 'kernel/panic'='0'"),
    ("sysctls", {"net/ipv4/ip_forward": "1\n0"}, "which fangen never sets"),
])
def test_a_state_naming_what_fangen_never_makes_is_refused(tmp_path, key, value, why):
    """down acts on what the state file lists: a damaged or forged one must not get
    the host's files, nftables tables or sysctls changed."""
    import json

    path = tmp_path / "run/fangen/a"
    path.mkdir(parents=True)
    (path / "state.json").write_text(json.dumps(GOOD))
    assert st.load(str(tmp_path), "a").files == GOOD["files"]
    (path / "state.json").write_text(json.dumps({**GOOD, key: value}))
    with pytest.raises(st.StateError) as exc:
        st.load(str(tmp_path), "a")
    assert why in str(exc.value) and "'fangen down --force a'" in str(exc.value)


def test_a_state_nested_too_deeply_is_one_line(tmp_path):
    path = tmp_path / "run/fangen/a"
    path.mkdir(parents=True)
    (path / "state.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(st.StateError, match="unusable state file"):
        st.load(str(tmp_path), "a")


VIEW = NetView(
    links=(LinkRow(1, "lo", 65536, True), LinkRow(2, "eth0", 1500, True),
           LinkRow(3, "eth1", 9000, True), LinkRow(4, "down0", 1500, False)),
    addresses=(AddrRow(1, IPv4Address("127.0.0.1"), 8),
               AddrRow(2, IPv4Address("10.1.2.3"), 24),
               AddrRow(3, IPv4Address("172.16.3.4"), 16),
               AddrRow(3, IPv4Address("172.16.9.9"), 16, secondary=True),
               AddrRow(4, IPv4Address("192.168.7.7"), 24)),
    defaults=((3, 200), (2, 100)))


@pytest.mark.parametrize("spec, ifname, address, network, mtu", [
    ("172.16.0.0/16", "eth1", "172.16.3.4", "172.16.0.0/16", 9000),
    ("172.16.9.9/16", "eth1", "172.16.9.9", "172.16.0.0/16", 9000),
    ("eth1/24", "eth1", "172.16.3.4", "172.16.3.0/24", 9000),
    ("eth1", "eth1", "172.16.3.4", "172.16.0.0/16", 9000),
    ("default", "eth0", "10.1.2.3", "10.1.0.0/16", 1500),
    ("default/24", "eth0", "10.1.2.3", "10.1.2.0/24", 1500),
])
def test_resolve(spec, ifname, address, network, mtu):
    found = resolve_view(Underlay.parse(spec), VIEW)
    assert (found.ifname, str(found.address), str(found.network), found.mtu) == \
        (ifname, address, network, mtu)


@pytest.mark.parametrize("spec", ["192.168.0.0/16", "192.168.7.7/24", "down0/24",
                                  "missing0", "172.17.0.0/16"])
def test_not_there(spec):
    assert resolve_view(Underlay.parse(spec), VIEW) is None


def test_no_default_route():
    view = NetView(VIEW.links, VIEW.addresses, ())
    assert resolve_view(Underlay.parse("default"), view) is None
    assert IPv4Network("10.0.0.0/8")


def test_remove_leaves_nothing_of_the_fan(tmp_path):
    """dnsmasq leaves its pid file behind; the fan's directory goes all the same."""
    fan = st.State("f")
    st.save(str(tmp_path), fan)
    fan_dir = tmp_path / "run/fangen/f"
    (fan_dir / "dnsmasq.pid").write_text("123\n")
    (fan_dir / "dnsmasq.conf").write_text("x\n")
    st.remove(str(tmp_path), "f")
    assert not fan_dir.exists()
    assert (tmp_path / "run/fangen").exists()           # other fans' directories stay
