"""The network a container engine attaches containers to on one fan bridge.  Pure.

An engine that hands out container addresses itself (Docker's IPAM, a CNI ``host-local``
range, LXD with a static range) must agree with the fan on four things:

* ``subnet``: the network the bridge's address holds.  For ``ipip`` that is this host's
  slice (the overlay is routed through the tunnel); for ``vxlan`` it is the whole
  overlay (one layer-2 segment across hosts).  An engine told a different subnet for
  the same bridge (Docker's ``--subnet SLICE`` on a VXLAN fan) replaces the bridge's
  address and the overlay route goes with it.
* ``ip_range``: this host's slice, the only addresses a container here may take
  (another host's slice is that host's);
* ``gateway``: the bridge's address, the slice's first address;
* ``mtu``: the fan's MTU (the underlay's minus the encapsulation), which no engine learns
  from the bridge.

``excluded`` lists the addresses inside ``ip_range`` that the engine must not hand
out besides the gateway: the slice's first and last address where the subnet is
larger than the slice (on a VXLAN fan 250.1.10.0 is an ordinary address of the /8,
but other tools take it for a network address), and the host-reserve addresses that
fangen's DHCP range also leaves free.

Build one with :meth:`EngineNetwork.from_state` (a fan that is up: its recorded
slice and MTU) or :meth:`EngineNetwork.from_fan` (a fan and a slice you know).
The public API is :class:`EngineNetwork` and :class:`NotUp`; keep it small.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from fangen.errors import FangenError
from fangen.fanmap import Slice


class NotUp(FangenError):
    """The fan has no slice on this host yet (it is not up)."""


@dataclass(frozen=True)
class EngineNetwork:
    fan: str                     # the fan's name
    type: str                    # "ipip" | "vxlan"
    bridge: str
    overlay: IPv4Network
    slice: IPv4Network
    mtu: int
    host_reserve: int = 1
    dhcp: bool = False           # fangen's dnsmasq hands out addresses on this bridge

    # -- constructors -----------------------------------------------------------------------
    @classmethod
    def from_fan(cls, fan, slice_net: IPv4Network | str, mtu: int) -> EngineNetwork:
        """From a :class:`fangen.config.model.Fan` and this host's slice and MTU."""
        return cls(fan.name, fan.type, fan.bridge, IPv4Network(fan.overlay),
                   IPv4Network(slice_net), int(mtu), fan.host_reserve, fan.dhcp)

    @classmethod
    def from_state(cls, state, fan=None) -> EngineNetwork:
        """From a fan's recorded state (``fangen.runtime.state.State``); ``fan``, the
        configured definition when there is one, adds host-reserve and dhcp."""
        if state is None or not state.slice or not state.mtu:
            name = getattr(state, "name", None) or getattr(fan, "name", "?")
            raise NotUp(f"{name} is not up on this host: its slice comes from the "
                        f"underlay address, which fangen learns when it brings the fan up "
                        f"(fangen up {name}, or systemctl start fangen@{name})")
        return cls(state.name, state.type or (fan.type if fan else "ipip"),
                   state.bridge or (fan.bridge if fan else state.name),
                   IPv4Network(state.overlay), IPv4Network(state.slice), int(state.mtu),
                   fan.host_reserve if fan is not None else 1,
                   fan.dhcp if fan is not None else bool(state.dnsmasq))

    # -- what engines need ------------------------------------------------------------------
    @property
    def gateway(self) -> IPv4Address:
        return Slice(self.slice).gateway

    @property
    def bridge_prefix(self) -> int:
        return self.overlay.prefixlen if self.type == "vxlan" else self.slice.prefixlen

    @property
    def subnet(self) -> IPv4Network:
        """The network the bridge's address holds."""
        return IPv4Network((self.gateway, self.bridge_prefix), strict=False)

    @property
    def bridge_address(self) -> str:
        return f"{self.gateway}/{self.bridge_prefix}"

    @property
    def ip_range(self) -> IPv4Network:
        return self.slice

    @property
    def excluded(self) -> tuple[IPv4Address, ...]:
        """Addresses of the slice, other than the gateway, that no container may take."""
        out = []
        if self.subnet != self.slice:
            out.append(self.slice.network_address)
        out.extend(self.gateway + i for i in range(1, self.host_reserve))
        if self.subnet != self.slice:
            out.append(self.slice.broadcast_address)
        return tuple(a for a in out if a in self.slice and a != self.gateway)

    def as_dict(self) -> dict:
        return {"fan": self.fan, "type": self.type, "bridge": self.bridge,
                "overlay": str(self.overlay), "slice": str(self.slice),
                "subnet": str(self.subnet), "ip_range": str(self.ip_range),
                "gateway": str(self.gateway), "bridge_address": self.bridge_address,
                "mtu": self.mtu, "excluded": [str(a) for a in self.excluded]}
