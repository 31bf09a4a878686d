"""A host's own NICs keep their address and link whatever a fan.d file names its devices.

Real systemd-networkd (Debian 12's 252) in a host namespace of the harness, with the
host's own configuration: ``eth0`` (a veth) configured by ``20-eth0.network``
(192.0.2.10/24), ``ens5`` by a pattern file ``30-en.network`` (``Name=en*``,
198.51.100.10/24), a netplan file naming ``lan1`` (``match: name: lan*``,
``set-name: uplink``), and ``wan0``, a veth no configuration names.

Each attack is a fan.d file; ``fangen generate --host-interfaces`` must refuse it with
the exact error and write nothing, and after networkd reloads and reconfigures the NICs
each keeps its own file, its address and its carrier.  A name that only appears later
(``wan0`` before it exists) is accepted, and then our files still do not touch the NIC:
they match ``Kind=`` as well as ``Name=``.  The control: a hand-made
``10-fangen-*.network`` with ``Name=e*`` (what a pattern in a bridge name used to
produce) does take eth0 over, so the checks can fail.

Root: namespaces, networkd.
"""

from __future__ import annotations

import json
import os

import pytest

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, networkd")]

from tests.harness import Host, Run, Switch  # noqa: E402
from tests.harness.host import wait  # noqa: E402
from tests.harness.ns import ip  # noqa: E402

NICS = {"eth0": ("192.0.2.10/24", "20-eth0.network"),
        "ens5": ("198.51.100.10/24", "30-en.network")}
HOST_FILES = {
    "etc/systemd/network/20-eth0.network":
        "[Match]\nName=eth0\n\n[Link]\nRequiredForOnline=no\n\n[Network]\n"
        "Address=192.0.2.10/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
    "etc/systemd/network/30-en.network":
        "[Match]\nName=en*\n\n[Link]\nRequiredForOnline=no\n\n[Network]\n"
        "Address=198.51.100.10/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
    "etc/netplan/01-host.yaml":
        "network:\n  version: 2\n  ethernets:\n    lan1:\n      match:\n        name: lan*\n"
        "      set-name: uplink\n      dhcp4: true\n",
}
UNDERLAY = "      overlay: 251.0.0.0/8\n      underlay: 10.9.0.0/16\n"
E = "Error in fan definition"
USED = "fangen must not configure a device it did not create"


def fan_file(name: str, extra: str = "") -> str:
    return f"network:\n  fan:\n    {name}:\n{UNDERLAY}" + \
        "".join(f"      {line}\n" for line in extra.splitlines())


@pytest.fixture(scope="module")
def host():
    with Run("names") as run:
        h = Host(run, Switch(run), 1, fans={})
        for rel, text in HOST_FILES.items():
            path = os.path.join(h.root, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as fh:
                fh.write(text)
            os.chmod(path, 0o644 if rel.startswith("etc/systemd") else 0o600)
        for nic in ("eth0", "ens5", "wan0"):
            ip(h.ns, "link", "add", nic, "type", "veth", "peer", "name", f"{nic}p")
            ip(h.ns, "link", "set", f"{nic}p", "up")
            ip(h.ns, "link", "set", nic, "up")
        h.start()
        for nic in NICS:
            wait(lambda n=nic: intact(h, n), 30, f"{nic} configured by its own file")
        yield h


def state(host, nic: str) -> dict:
    index = json.loads(ip(host.ns, "-j", "link", "show", nic).stdout)[0]["ifindex"]
    path = os.path.join(host.root, f"run/systemd/netif/links/{index}")
    try:
        with open(path) as fh:
            return dict(line.rstrip("\n").split("=", 1) for line in fh if "=" in line)
    except FileNotFoundError:
        return {}


def link(host, nic: str) -> dict:
    return json.loads(ip(host.ns, "-j", "-d", "addr", "show", "dev", nic).stdout)[0]


def intact(host, nic: str) -> bool:
    address, own = NICS[nic]
    info = link(host, nic)
    addrs = [f"{a['local']}/{a['prefixlen']}" for a in info["addr_info"] if a["family"] == "inet"]
    st = state(host, nic)
    return (addrs == [address] and "UP" in info["flags"] and "LOWER_UP" in info["flags"]
            and info.get("master") is None and info["linkinfo"]["info_kind"] == "veth"
            and st.get("ADMIN_STATE") == "configured"
            and st.get("NETWORK_FILE") == f"/etc/systemd/network/{own}")


def reconfigure(host) -> None:
    """Reload networkd's files, reconfigure every NIC, and wait until it has."""
    paths = {}
    for nic in NICS:
        index = json.loads(ip(host.ns, "-j", "link", "show", nic).stdout)[0]["ifindex"]
        paths[nic] = os.path.join(host.root, f"run/systemd/netif/links/{index}")
    stamps = {nic: os.stat(p).st_mtime_ns for nic, p in paths.items()}
    host.networkctl("reload")
    host.networkctl("reconfigure", *NICS)
    for nic, path in paths.items():
        wait(lambda p=path, s=stamps[nic], n=nic: os.stat(p).st_mtime_ns != s and
             state(host, n).get("ADMIN_STATE") in ("configured", "unmanaged", "failed"),
             20, f"networkd to reconfigure {nic}")


def attempt(host, text: str, *extra: str):
    path = os.path.join(host.root, "etc/netplan/fan.d/50-harness.yaml")
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
    return path, host.fangen("generate", *extra, check=False)


def ours(host) -> list[str]:
    return sorted(os.listdir(os.path.join(host.root, "run/systemd/network")))


ATTACKS = [
    ("fan-named-like-the-nic", fan_file("eth0"), "3:5",
     "eth0: bridge name 'eth0' is already used on this host ({root}/etc/systemd/network/"
     "20-eth0.network:2: Match.Name=eth0): " + USED + "; set 'bridge:' to another name"),
    ("bridge-named-like-the-nic", fan_file("f", "bridge: eth0"), "6:15",
     "f: bridge name 'eth0' is already used on this host ({root}/etc/systemd/network/"
     "20-eth0.network:2: Match.Name=eth0): " + USED + "; choose another name"),
    ("tunnel-named-like-the-nic", fan_file("f", "tunnel: eth0"), "6:15",
     "f: tunnel name 'eth0' is already used on this host ({root}/etc/systemd/network/"
     "20-eth0.network:2: Match.Name=eth0): " + USED + "; choose another name"),
    ("bridge-matched-by-a-host-pattern", fan_file("f", "bridge: ens7"), "6:15",
     "f: bridge name 'ens7' is already used on this host ({root}/etc/systemd/network/"
     "30-en.network:2: Match.Name=en*): " + USED + "; choose another name"),
    ("fan-matched-by-a-host-pattern", fan_file("enfan"), "3:5",
     "enfan: bridge name 'enfan' is already used on this host ({root}/etc/systemd/network/"
     "30-en.network:2: Match.Name=en*): " + USED + "; set 'bridge:' to another name"),
    ("bridge-with-a-pattern", fan_file("f", "bridge: e*"), "6:15",
     "f: invalid bridge name 'e*': use only letters, digits, '_', '.' and '-'"),
    ("tunnel-with-a-class", fan_file("f", "tunnel: 'eth[0-9]'"), "6:15",
     "f: invalid tunnel name 'eth[0-9]': use only letters, digits, '_', '.' and '-'"),
    ("tunnel-negated", fan_file("f", "tunnel: '!x'"), "6:15",
     "f: invalid tunnel name '!x': use only letters, digits, '_', '.' and '-'"),
    ("netplan-match", fan_file("f", "bridge: lan7"), "6:15",
     "f: bridge name 'lan7' is already used on this host ({root}/etc/netplan/01-host.yaml:6:15:"
     " lan1: match: name: lan*): " + USED + "; choose another name"),
    ("netplan-set-name", fan_file("f", "tunnel: uplink"), "6:15",
     "f: tunnel name 'uplink' is already used on this host ({root}/etc/netplan/01-host.yaml:"
     "7:17: lan1: set-name): " + USED + "; choose another name"),
    ("netplan-id", fan_file("lan1"), "3:5",
     "lan1: bridge name 'lan1' is already used on this host ({root}/etc/netplan/01-host.yaml:"
     "4:5: ethernets.lan1): " + USED + "; set 'bridge:' to another name"),
    ("a-live-interface", fan_file("f", "bridge: wan0"), "6:15",
     "f: bridge name 'wan0' is already used on this host (interface wan0 of this host, not "
     "made by fangen): " + USED + "; choose another name"),
]


@pytest.mark.parametrize("name, text, where, message", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_is_refused_and_the_nics_keep_their_configuration(host, name, text, where,
                                                                  message):
    before = ours(host)
    path, res = attempt(host, text, "--host-interfaces")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert res.stderr.splitlines()[0] == \
        f"{path}:{where}: {E}: " + message.format(root=host.root)
    assert ours(host) == before
    reconfigure(host)
    for nic in NICS:
        assert intact(host, nic), (nic, link(host, nic), state(host, nic))


def test_without_the_flag_a_live_only_name_is_accepted_and_still_harmless(host):
    """wan0 exists, but no configuration names it: only --host-interfaces (or the real
    root) sees it.  Accepted, our files match Kind=bridge, so networkd leaves the veth
    wan0 alone, and the NICs keep their configuration."""
    _, res = attempt(host, fan_file("f", "bridge: wan0"))
    assert (res.returncode, res.stderr) == (0, "")
    assert "10-fangen-wan0.network" in ours(host)
    reconfigure(host)
    for nic in NICS:
        assert intact(host, nic), (nic, link(host, nic), state(host, nic))
    info = link(host, "wan0")
    assert info["linkinfo"]["info_kind"] == "veth" and info.get("master") is None
    assert [a for a in info["addr_info"] if a["family"] == "inet"] == []
    assert "NETWORK_FILE" not in state(host, "wan0")
    attempt(host, "network: {version: 2}\n")                # remove our files again
    assert not [f for f in ours(host) if f.startswith("10-fangen-")]


def test_control_a_pattern_in_our_file_does_take_the_nic(host):
    """What a bridge named 'e*' used to produce: the checks above would have seen it."""
    evil = os.path.join(host.root, "run/systemd/network/10-fangen-evil.network")
    with open(evil, "w") as fh:
        fh.write("[Match]\nName=e*\n\n[Network]\nAddress=203.0.113.99/24\n"
                 "LinkLocalAddressing=no\nIPv6AcceptRA=no\n")
    try:
        reconfigure(host)
        assert state(host, "eth0").get("NETWORK_FILE") == \
            "/run/systemd/network/10-fangen-evil.network"
        assert not intact(host, "eth0")
    finally:
        os.unlink(evil)
        reconfigure(host)
    assert intact(host, "eth0")
