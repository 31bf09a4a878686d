"""The nftables ruleset of one fan: a table fangen owns, rendered as nft text (pure).

One table per fan, ``table ip fangen-NAME``, so fans never touch each other's
rules and ``fangen down NAME`` deletes exactly one table:

* ``postrouting`` (nat): masquerade traffic from the slice that leaves the
  overlay (only when the fan has ``nat: true``);
* ``input`` (filter): encapsulated traffic for the fan -- IPIP (IP protocol 4)
  or UDP to the fan's VXLAN port, addressed to this host's underlay address -- is
  dropped unless it comes from the underlay network.  Matching the local address
  keeps two fans over different underlays from dropping each other's traffic.  A
  VXLAN fan on a plain device (``any_address``: the upstream datapath's, whose port
  no other fan shares) is matched on its port alone: the device takes in what
  arrives at any of the host's addresses, and nothing else checks the sender;
  Packets for the fan's own address (the bridge address: DNS, DHCP) are dropped
  unless they arrive on the bridge, the tunnel or ``lo``;
* ``forward`` (filter): the host is not a router into the overlay.  A packet
  forwarded to the bridge or the tunnel passes when it comes from the bridge
  (tested first: the bridge's own frames are most of what this hook sees), belongs
  to a known connection, comes from the fan's tunnel into the bridge,
  or was translated by the host on purpose (``ct status dnat``: a container
  engine's published port); anything else routed there (a neighbour that routes
  the overlay to this host) is dropped.  Only packets for this fan's overlay are
  judged on the tunnel, which several IPIP fans may share (``fangen-ipip``).  Forwarding out of the fan (to the
  overlay, to the world with NAT) is untouched.

The text is one atomic nft transaction that also replaces an older version of
the table (``table`` + ``delete table`` + the new definition), so applying it
twice leaves one table.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from fangen.config.model import Fan
from fangen.fanmap import Slice

TABLE_PREFIX = "fangen-"


def table_name(fan_name: str) -> str:
    return f"{TABLE_PREFIX}{fan_name}"


def ruleset(fan: Fan, slice_net: IPv4Network, underlay: IPv4Network,
            local: IPv4Address, tunnel: str | None = None, *,
            any_address: bool = False) -> str:
    """The table definition (what ``nft list table ip fangen-NAME`` would show).

    ``tunnel``: the device the fan's traffic arrives on (default: the fan's tunnel);
    ``any_address``: the sender check for encapsulated traffic to any local address.
    """
    tunnel = tunnel or fan.tunnel
    gateway = Slice(slice_net).gateway
    lines = [f"table ip {table_name(fan.name)} {{"]
    if fan.nat:
        lines += [
            "\tchain postrouting {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;",
            f"\t\tip saddr {slice_net} ip daddr != {fan.overlay} masquerade",
            "\t}",
        ]
    if fan.type == "vxlan":
        match = f"udp dport {fan.port}"
    else:
        # the number, not the name: nft resolves "ipip" through /etc/protocols, which a
        # minimal Debian (no netbase) lacks ("Could not resolve protocol name", boot-check)
        match = "ip protocol 4"
    lines += [
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy accept;",
        f"\t\t{match}{'' if any_address else f' ip daddr {local}'} "
        f"ip saddr != {underlay} drop",
        f'\t\tip daddr {gateway} iifname != {{ "{fan.bridge}", "{tunnel}", "lo" }} drop',
        "\t}",
        # the tunnel may be shared (upstream IPIP): what goes to another fan's overlay is
        # that fan's table's business, not this one's
        *_forward_chain(fan.bridge, tunnel, f"ip daddr != {fan.overlay}"),
        "}",
    ]
    return "\n".join(lines) + "\n" + ruleset6(fan, slice_net, tunnel)


def ruleset6(fan: Fan, slice_net: IPv4Network, tunnel: str) -> str:
    """A dual-stack fan's ``table ip6 fangen-NAME`` (empty without overlay6): the same
    NAT, input and forward rules for the IPv6 slice and overlay6.  It rides in the
    fan's one nft script after the ip table, and goes with it (:func:`delete_script`)."""
    sl6 = fan.slice6_of(slice_net)
    if sl6 is None:
        return ""
    lines = [f"table ip6 {table_name(fan.name)} {{"]
    if fan.nat:
        lines += [
            "\tchain postrouting {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;",
            f"\t\tip6 saddr {sl6.network} ip6 daddr != {fan.overlay6} masquerade",
            "\t}",
        ]
    lines += [
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy accept;",
        f'\t\tip6 daddr {sl6.gateway} iifname != {{ "{fan.bridge}", "{tunnel}", "lo" }} drop',
        "\t}",
        *_forward_chain(fan.bridge, tunnel),
        "}",
    ]
    return "\n".join(lines) + "\n"


def _forward_chain(bridge: str, tunnel: str, not_ours: str | None = None) -> list[str]:
    """The forward chain of either family; ``not_ours``: what on the (shared) tunnel
    belongs to another fan (IPv4: outside this fan's overlay)."""
    return [
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        # first: every rule below accepts, so the verdict for what comes from the bridge
        # is the same, and the bridge's own frames (br_netfilter sends them through this
        # hook, one per container packet) pass after one match
        f'\t\tiifname "{bridge}" accept',
        f'\t\toifname != {{ "{bridge}", "{tunnel}" }} accept',
        *([f'\t\toifname "{tunnel}" {not_ours} accept'] if not_ours else []),
        "\t\tct state established,related accept",
        f'\t\tiifname "{tunnel}" oifname "{bridge}" accept',
        "\t\tct status dnat accept",
        "\t\tdrop",
        "\t}",
    ]


def replace_script(fan: Fan, slice_net: IPv4Network, underlay: IPv4Network,
                   local: IPv4Address, tunnel: str | None = None, ip6: bool = False, *,
                   any_address: bool = False) -> str:
    """An nft script that atomically replaces (or creates) the fan's table (and a
    dual-stack fan's ip6 table; ``ip6``: also delete one left from when the fan had an
    overlay6).  An IPv4-only fan's script never names the ip6 family, which a kernel
    without IPv6 does not have."""
    name = table_name(fan.name)
    six = f"table ip6 {name}\ndelete table ip6 {name}\n" \
        if ip6 or fan.overlay6 is not None else ""
    return (f"table ip {name}\n"
            f"delete table ip {name}\n" + six
            + ruleset(fan, slice_net, underlay, local, tunnel, any_address=any_address))


def delete_script(table: str, ip6: bool = False) -> str:
    """An nft script that deletes the table if it exists (and is a no-op otherwise);
    ``ip6``: with the ip6 table of the same name (a dual-stack fan's)."""
    six = f"table ip6 {table}\ndelete table ip6 {table}\n" if ip6 else ""
    return f"table ip {table}\ndelete table ip {table}\n" + six
