"""An LXD profile that puts containers on a fan's bridge.  Pure.

LXD (5.0, Debian 12's) treats a bridge it did not create as unmanaged: a ``bridged`` NIC
plugs the container's veth into it, and LXD runs no DHCP server and adds no firewall rules
for it.  The container asks fangen's dnsmasq for its address, router and MTU, like any
other client on the bridge.  LXD gives the veth the bridge's MTU, which fangen sets, so
the profile carries no MTU and stays right when the underlay's MTU or the fan's type
changes; nothing in it depends on this host's slice either, so one profile serves every
host of the fan.

    lxc profile create fan-250
    lxc profile edit fan-250 < profile.yaml
    lxc launch IMAGE c1 --profile default --profile fan-250

The device is called ``eth0`` so it replaces the ``default`` profile's NIC.
"""

from __future__ import annotations

import yaml

from fangen.config.model import Fan

DEVICE = "eth0"


def profile(fan: Fan) -> dict:
    """The profile as LXD's API and ``lxc profile edit`` take it (option values are strings)."""
    nic = {"type": "nic", "nictype": "bridged", "parent": fan.bridge, "name": DEVICE}
    return {"name": fan.name,
            "description": f"Containers on the fan bridge {fan.bridge} (fangen)",
            "config": {},
            "devices": {DEVICE: nic}}


def render(fan: Fan) -> str:
    """``profile.yaml`` text with a comment saying how to load it."""
    head = (f"# LXD profile {fan.name}: the container's {DEVICE} on fangen's fan bridge "
            f"{fan.bridge}.\n"
            f"#   lxc profile create {fan.name}\n"
            f"#   lxc profile edit {fan.name} < profile.yaml\n"
            f"#   lxc launch IMAGE c1 --profile default --profile {fan.name}\n"
            "# Address, router and MTU come from fangen's dnsmasq (DHCP); the veth takes the\n"
            "# bridge's MTU.  Written by fangen (fangen.engines.lxd).\n")
    return head + yaml.safe_dump(profile(fan), sort_keys=False, default_flow_style=False)
