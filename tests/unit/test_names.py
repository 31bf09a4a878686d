"""Interface names: the one rule, and the names a host already uses (pure parsing, the
shell's collection from files, and validation refusing them at the right place)."""

import json
import os

import pytest

from fangen import hostnames
from fangen.config import foreign, loader, model, validate
from fangen.config.foreign import ForeignNames, networkd_matches
from fangen.errors import Report


@pytest.mark.parametrize("name", ["fan-250", "a", "_x", "br0.100", "x" * 15, "0x", "eth0-tun",
                                  "A_b.c-D"])
def test_valid_names(name):
    assert model.ifname_problem(name) is None


@pytest.mark.parametrize("name, reason", [
    ("", "it is empty"), ("x" * 16, "it is longer than 15 bytes"),
    ("\u00e9" * 8, "it is longer than 15 bytes"), ("lo", "'lo' is reserved"),
    ("all", "'all' is reserved"), ("default", "'default' is reserved"),
    ("007", "a name of digits only is refused by systemd"),
    (".", "it must start with a letter, a digit or '_'"),
    ("..", "it must start with a letter, a digit or '_'"),
    ("-x", "it must start with a letter, a digit or '_'"),
    ("eth0\n", "use only letters, digits, '_', '.' and '-'"),
    ("e*", "use only letters, digits, '_', '.' and '-'"),
    ("br\u00e4", "use only letters, digits, '_', '.' and '-'"),
    ("\u0661\u0662", "use only letters, digits, '_', '.' and '-'"),
])
def test_invalid_names(name, reason):
    assert model.ifname_problem(name) == reason


@pytest.mark.parametrize("words, name, expected", [
    (("eth0",), "eth0", True), (("eth0",), "eth1", False), (("en*",), "enp3s0", True),
    (("en*", "wl*"), "wlan0", True), (("!lo",), "fan", True), (("!lo",), "lo", False),
    (("!en*", "!lo"), "fan", True), (("!en*", "!lo"), "ens3", False),
    (("e*", "!eth0"), "eth0", False), (("e*", "!eth0"), "ens3", True),
    (("eth[0-9]",), "eth7", True), (("eth?",), "eth10", False),
])
def test_networkd_match_semantics(words, name, expected):
    assert networkd_matches(words, name) is expected


def test_networkd_files_parsed_as_networkd_reads_them():
    found = foreign.from_networkd(
        "# comment\n[Match]\nName=eth0 \\\n  eth1\n\n[Network]\nName=not-this\n", "F",
        ".network")
    assert found.literal == {"eth0": "F:3: Match.Name=eth0 eth1",
                             "eth1": "F:3: Match.Name=eth0 eth1"}
    found = foreign.from_networkd("[Match]\nName=en*\nName=\nName=wl*\n", "F", ".network")
    assert found.literal == {} and [r.words for r in found.rules] == [("wl*",)]
    assert foreign.from_networkd("[NetDev]\nName=br0\nKind=bridge\n", "F",
                                 ".netdev").literal == {"br0": "F:2: NetDev.Name=br0"}
    assert foreign.from_networkd("[Link]\nName=lan0\n", "F", ".link").literal == \
        {"lan0": "F:2: Link.Name=lan0"}
    assert foreign.from_networkd("[Match]\nType=ether\n", "F", ".network").literal == {}


def test_netplan_ids_set_name_and_match():
    doc = loader.parse_bytes(b"network:\n  ethernets:\n    lan:\n      match: {name: 'en*'}\n"
                             b"      set-name: uplink\n  bridges:\n    br0: {}\n", "N",
                             Report())
    found = foreign.from_netplan(doc.data, doc.positions, "N")
    assert found.literal == {"lan": "N:3:5: ethernets.lan", "uplink": "N:5:17: lan: set-name",
                             "br0": "N:7:5: bridges.br0"}
    assert found.use_of("ens3") == "N:4:21: lan: match: name: en*"
    assert found.use_of("fan") is None


def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    return path


def test_collect_masks_as_networkd_does_and_skips_our_files(tmp_path):
    root = str(tmp_path)
    write(root, "usr/lib/systemd/network/80-a.network", "[Match]\nName=shadowed\n")
    os.symlink("/dev/null", os.path.join(root, "usr/lib/systemd/network/81-masked.network"))
    write(root, "etc/systemd/network/80-a.network", "[Match]\nName=winner\n")
    write(root, "etc/systemd/network/81-masked.network", "[Match]\nName=masked\n")
    os.unlink(os.path.join(root, "etc/systemd/network/81-masked.network"))
    os.symlink("/dev/null", os.path.join(root, "etc/systemd/network/81-masked.network"))
    write(root, "usr/lib/systemd/network/81-masked.network.bak", "")
    write(root, "run/systemd/network/10-fangen-mine.network", "[Match]\nName=mine\n")
    write(root, "run/systemd/network/20-x.netdev", "[NetDev]\nName=vx0\n")
    found = hostnames.collect(root)
    assert sorted(found.literal) == ["vx0", "winner"]


def test_owned_devices_from_our_files_and_state(tmp_path):
    root = str(tmp_path)
    write(root, "run/systemd/network/10-fangen-br.netdev", "")
    write(root, "run/systemd/network/10-fangen-br-tun.network", "")
    os.makedirs(os.path.join(root, "run/systemd/network/10-fangen-old.network.d"))
    write(root, "run/fangen/f/state.json", json.dumps(
        {"name": "f", "bridge": "sb", "tunnel": "st", "links": {"shared0": {}}}))
    write(root, "run/fangen/g/state.json", "{corrupt")
    assert hostnames.owned_devices(root) == {"br", "br-tun", "old", "sb", "st", "shared0"}


GOOD = """network:
  fan:
    f:
      overlay: 250.0.0.0/8
      underlay: 10.1.0.0/16
"""


def check(fanroot, found):
    report = Report()
    result = validate.validate(loader.load(fanroot.path, report), report, found)
    return [d.format().splitlines()[0].replace(fanroot.path, "R") for d in report.errors], \
        result


def test_foreign_names_refused_at_the_key_or_the_fan_name(fanroot):
    fanroot.fan(GOOD + "      tunnel: wan0\n")
    found = ForeignNames()
    found.add_name("f", "interface f of this host, not made by fangen")
    found.add_rule(("wan*",), "X:3: Match.Name=wan*")
    errors, result = check(fanroot, found)
    assert errors == [
        "R/etc/netplan/fan.d/10-fan.yaml:3:5: Error in fan definition: f: bridge name 'f' is "
        "already used on this host (interface f of this host, not made by fangen): fangen must "
        "not configure a device it did not create; set 'bridge:' to another name",
        "R/etc/netplan/fan.d/10-fan.yaml:6:15: Error in fan definition: f: tunnel name 'wan0' "
        "is already used on this host (X:3: Match.Name=wan*): fangen must not configure a "
        "device it did not create; choose another name"]
    assert result.broken == {"f"} and result.frozen == []


def test_without_foreign_names_the_same_fan_is_fine(fanroot):
    fanroot.fan(GOOD)
    assert check(fanroot, ForeignNames()) == ([], check(fanroot, None)[1])


def test_live_interfaces_only_for_the_real_root_or_when_asked():
    assert hostnames.live_wanted("/") and hostnames.live_wanted("")
    assert not hostnames.live_wanted("/srv/root")
    assert hostnames.live_wanted("/srv/root", flag=True)
