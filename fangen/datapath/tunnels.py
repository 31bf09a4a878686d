"""Which tunnel device carries a fan on this host (pure: names and rules, no kernel access).

The kernel allows one collect-metadata ("external") IPIP device per network
namespace, and one collect-metadata VXLAN device per UDP port (a second gives
EEXIST).  So on the upstream datapath:

* IPIP fans share one device, :data:`SHARED_IPIP`.  The first fan that comes up
  creates it, each fan attaches its own tc programs to it (they handle the inner
  destinations of that fan's overlay and hand everything else to the next
  filter, see :mod:`fangen.datapath.upstream`), each fan routes its overlay via
  it, and the last fan to go down deletes it: the fans whose programs are on the
  device are its users.  networkd leaves it alone (no ``.network`` matches it).
* A VXLAN fan's device is a port of that fan's bridge, so one device cannot serve
  two fans: each VXLAN fan has its own device (``tunnel:``) on its own UDP port,
  and validation refuses two VXLAN fans on one port unless both use the kernel
  datapath (``fangen.config.validate``).  For an IPv4 fan it is a plain VXLAN device
  rather than a collect-metadata one where the kernel takes the programs for it
  (``fangen.runtime.plan.choose_plain``).

On the kernel datapath (the fan patch) every fan has its own device (``tunnel:``).
"""

from __future__ import annotations

SHARED_IPIP = "fangen-ipip"


def is_shared(fan_type: str, datapath: str) -> bool:
    """The fan's tunnel is the namespace's shared device (upstream IPIP)."""
    return fan_type == "ipip" and datapath == "upstream"


def device_for(fan_type: str, datapath: str, tunnel: str) -> str:
    """The name of the device that carries the fan (``tunnel`` is the fan's own name)."""
    return SHARED_IPIP if is_shared(fan_type, datapath) else tunnel


def reserved_names() -> frozenset:
    """Device names fangen keeps for itself: no fan's bridge or tunnel may take them."""
    return frozenset({SHARED_IPIP})
