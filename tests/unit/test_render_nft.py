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
# new connections into the bridge (or tunnel) only from the bridge, the fan's own tunnel
# or a DNAT the host made on purpose; replies always
FORWARD = (
    "\tchain forward {\n"
    "\t\ttype filter hook forward priority filter; policy accept;\n"
    '\t\tiifname "fan250" accept\n'
    '\t\toifname != { "fan250", "fan250-tun" } accept\n'
    '\t\toifname "fan250-tun" ip daddr != 250.0.0.0/8 accept\n'
    "\t\tct state established,related accept\n"
    '\t\tiifname "fan250-tun" oifname "fan250" accept\n'
    "\t\tct status dnat accept\n"
    "\t\tdrop\n"
    "\t}\n")


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
        '\t\tip daddr 250.3.4.1 iifname != { "fan250", "fan250-tun", "lo" } drop\n'
        "\t}\n"
        + FORWARD +
        "}\n")


def test_vxlan_port_without_nat():
    text = nft.ruleset(fan(type="vxlan", nat=False, vxlan={"port": 4789}), SLICE, UNDERLAY, LOCAL)
    assert text == (
        "table ip fangen-fan250 {\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy accept;\n"
        "\t\tudp dport 4789 ip daddr 172.16.3.4 ip saddr != 172.16.0.0/16 drop\n"
        '\t\tip daddr 250.3.4.1 iifname != { "fan250", "fan250-tun", "lo" } drop\n'
        "\t}\n"
        + FORWARD +
        "}\n")


def test_a_plain_device_checks_senders_to_any_local_address():
    # the plain VXLAN device takes in what arrives at any of the host's addresses, and
    # no program checks the sender there (fangen.runtime.plan.choose_plain)
    f = fan(type="vxlan", nat=False)
    text = nft.ruleset(f, SLICE, UNDERLAY, LOCAL, any_address=True)
    assert "\t\tudp dport 8472 ip saddr != 172.16.0.0/16 drop\n" in text
    assert text.replace("udp dport 8472 ip saddr", "udp dport 8472 ip daddr 172.16.3.4 ip saddr") \
        == nft.ruleset(f, SLICE, UNDERLAY, LOCAL)
    assert nft.replace_script(f, SLICE, UNDERLAY, LOCAL, any_address=True).endswith(text)


def test_forward_policy_names_the_device_the_fan_arrives_on():
    """A shared collect-metadata device (several fans) is passed in as ``tunnel``."""
    text = nft.ruleset(fan(type="vxlan", bridge="br-a"), SLICE, UNDERLAY, LOCAL, tunnel="fan-vx0")
    assert '\t\tip daddr 250.3.4.1 iifname != { "br-a", "fan-vx0", "lo" } drop\n' in text
    assert '\t\toifname != { "br-a", "fan-vx0" } accept\n' in text
    assert '\t\toifname "fan-vx0" ip daddr != 250.0.0.0/8 accept\n' in text
    assert '\t\tiifname "fan-vx0" oifname "br-a" accept\n' in text


def test_replace_script_is_one_transaction_that_tolerates_absence():
    script = nft.replace_script(fan(type="vxlan"), SLICE, UNDERLAY, LOCAL)
    assert script.startswith("table ip fangen-fan250\ndelete table ip fangen-fan250\n"
                             "table ip fangen-fan250 {\n")
    assert "ip6" not in script           # IPv4 only: no ip6 family (a kernel may lack it)
    assert nft.delete_script("fangen-x") == "table ip fangen-x\ndelete table ip fangen-x\n"
    assert nft.delete_script("fangen-x", ip6=True) == (
        "table ip fangen-x\ndelete table ip fangen-x\n"
        "table ip6 fangen-x\ndelete table ip6 fangen-x\n")
    assert nft.table_name("a.b") == "fangen-a.b"
