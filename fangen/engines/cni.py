"""A CNI network for one fan on this host: podman's ``--network NAME`` on the fan bridge.  Pure.

The runtime writes it to ``run/fangen/NAME/cni/NAME.conflist`` (:func:`path`) whenever the
slice or the MTU changes (the slice follows the underlay address, often a DHCP lease) and
``down`` removes it with the rest of the fan.  Any CNI runtime can read it: podman 4 with
its CNI backend (Debian 12's default), containerd, nerdctl, ``cnitool``.  Link it into the
runtime's configuration directory once (``/etc/cni/net.d``) and ``podman run --network
NAME`` follows the fan from then on.

The list holds two plugins:

* ``bridge`` on the fan's bridge, with ``isGateway`` false: the bridge and its address are
  fangen's, the plugin only plugs a veth into it.  ``ipMasq`` false: fangen's ``nat``
  masquerades what leaves the overlay, and a second masquerade would hide container
  addresses from the other fan hosts.  ``mtu``: the fan's, which nothing else tells the
  veth (a container left at 1500 loses every full-size packet that crosses hosts).
* ``portmap``, so ``podman run -p`` publishes ports on this host's addresses.

Addresses (the ``ipam`` of the bridge plugin) follow the fan's ``dhcp`` setting:

* ``dhcp: true``: the CNI ``dhcp`` plugin asks fangen's dnsmasq, so podman's containers
  share one pool with every other DHCP client on the bridge (LXD's, say) and nothing is
  handed out twice.  It needs the CNI DHCP daemon (``cni-dhcp.socket``).
* ``dhcp: false``: ``host-local`` over the slice's DHCP range (after ``host-reserve``),
  within the subnet the bridge address holds (the whole overlay on a VXLAN fan, which is
  one layer-2 network across hosts; the slice on an IPIP fan), the bridge address as
  gateway and default route.
"""

from __future__ import annotations

import json

from fangen.config.model import Fan
from fangen.fanmap import Slice
from fangen.render import names

CNI_VERSION = "0.4.0"          # understood by podman 4's CNI backend and plugins >= 0.8


def path(name: str) -> str:
    """Where the runtime writes fan NAME's network list, relative to the root."""
    return f"{names.fan_dir(name)}/cni/{name}.conflist"


def ipam(fan: Fan, sl: Slice) -> dict | None:
    """The bridge plugin's ``ipam`` section; None when the slice has no address left."""
    if fan.dhcp:
        return {"type": "dhcp"}
    span = sl.dhcp_range
    if span is None:
        return None
    first, last = span
    subnet = fan.overlay if fan.type == "vxlan" else sl.network
    return {
        "type": "host-local",
        "ranges": [[{"subnet": str(subnet), "rangeStart": str(first), "rangeEnd": str(last),
                     "gateway": str(sl.gateway)}]],
        "routes": [{"dst": "0.0.0.0/0"}],
    }


def conflist(fan: Fan, sl: Slice, mtu: int) -> dict | None:
    """The network configuration list as data; None when the slice has no address left."""
    addresses = ipam(fan, sl)
    if addresses is None:
        return None
    bridge = {"type": "bridge", "bridge": fan.bridge, "isGateway": False,
              "isDefaultGateway": False, "ipMasq": False, "hairpinMode": False,
              "mtu": mtu, "ipam": addresses}
    portmap = {"type": "portmap", "capabilities": {"portMappings": True}}
    return {"cniVersion": CNI_VERSION, "name": fan.name, "plugins": [bridge, portmap]}


def render(fan: Fan, sl: Slice, mtu: int) -> str | None:
    """The file's text (JSON, stable key order), or None when there is nothing to hand out."""
    data = conflist(fan, sl, mtu)
    if data is None:
        return None
    return json.dumps(data, indent=2) + "\n"
