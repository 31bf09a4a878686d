"""The nft ruleset renderer: exact text."""

from ipaddress import IPv4Address, IPv4Network

from fangen.config.model import build
from fangen.render import nft


def fan(**extra):
    data = {"overlay": "250.0.0.0/8", "underlay": "172.16.0.0/16"}
    data.update(extra)
    return build("fan250", data)


SLICE = IPv4Network("250.3.4.0/24")
UNDERLAY = IPv4Network("172.16.0.0/16")
LOCAL = IPv4Address("172.16.3.4")


def test_ipip_with_nat():
    assert nft.ruleset(fan(), SLICE, UNDERLAY, LOCAL) == (
        "table ip fangen-fan250 {\n"
        "\tchain postrouting {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        "\t\tip saddr 250.3.4.0/24 ip daddr != 250.0.0.0/8 masquerade\n"
        "\t}\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy accept;\n"
        "\t\tip protocol 4 ip daddr 172.16.3.4 ip saddr != 172.16.0.0/16 drop\n"
        "\t}\n"
        "}\n")


def test_vxlan_port_without_nat():
    text = nft.ruleset(fan(type="vxlan", nat=False, vxlan={"port": 4789}), SLICE, UNDERLAY, LOCAL)
    assert text == (
        "table ip fangen-fan250 {\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy accept;\n"
        "\t\tudp dport 4789 ip daddr 172.16.3.4 ip saddr != 172.16.0.0/16 drop\n"
        "\t}\n"
        "}\n")


def test_replace_script_is_one_transaction_that_tolerates_absence():
    script = nft.replace_script(fan(type="vxlan"), SLICE, UNDERLAY, LOCAL)
    assert script.startswith("table ip fangen-fan250\ndelete table ip fangen-fan250\n"
                             "table ip fangen-fan250 {\n")
    assert nft.delete_script("fangen-x") == "table ip fangen-x\ndelete table ip fangen-x\n"
    assert nft.table_name("a.b") == "fangen-a.b"
