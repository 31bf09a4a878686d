"""Links, addresses and routes through an injected pyroute2 ``IPRoute``.

Only calls that pyroute2 0.7.2 (Debian 12) and 0.9.x share are used.  EEXIST on
add and ENODEV/ESRCH/EADDRNOTAVAIL on delete are tolerated where idempotence
needs them; any other kernel error becomes a :class:`NetlinkFailed` that names
the operation.
"""

from __future__ import annotations

import errno
import socket
from ipaddress import IPv4Network, ip_interface

from fangen.errors import FangenError
from fangen.runtime.view import LinkView, RouteView

IFF_UP = 0x1
MAIN_TABLE = 254
SCOPE_LINK = 253
RTPROT_KERNEL = 2


class NetlinkFailed(FangenError):
    """The kernel refused a link, address or route change (``code``: its errno)."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


def _kernel_error():
    from pyroute2.netlink.exceptions import NetlinkError
    return NetlinkError


class Netlink:
    def __init__(self, ipr):
        self.ipr = ipr

    def _do(self, what: str, func, *args, tolerate=(), **kwargs):
        try:
            return func(*args, **kwargs)
        except _kernel_error() as exc:
            if exc.code in tolerate:
                return None
            raise NetlinkFailed(f"{what}: {_strerror(exc.code)}", exc.code) from None
        except OSError as exc:
            if exc.errno in tolerate:
                return None
            raise NetlinkFailed(f"{what}: {exc.strerror or exc}", exc.errno) from None

    # -- reading ---------------------------------------------------------------------------
    def links(self) -> dict:
        """name -> LinkView, with IPv4 addresses and the tunnel facts the plan compares."""
        rows = self._do("list links", self.ipr.get_links)
        by_index = {msg["index"]: msg.get_attr("IFLA_IFNAME") for msg in rows}
        addrs: dict[int, set] = {}
        for msg in self._do("list addresses", self.ipr.get_addr, family=socket.AF_INET):
            local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            if local:
                addrs.setdefault(msg["index"], set()).add(f"{local}/{msg['prefixlen']}")
        # IPv6 addresses too (a dual-stack fan's bridge addresses, global and link-local;
        # not the host scope of lo)
        for msg in self._do("list addresses", self.ipr.get_addr, family=socket.AF_INET6,
                            tolerate=(errno.EAFNOSUPPORT, errno.EOPNOTSUPP)) or ():
            local = msg.get_attr("IFA_ADDRESS")
            if local and msg["family"] == socket.AF_INET6 and msg["scope"] in (0, 253):
                addrs.setdefault(msg["index"], set()).add(f"{local}/{msg['prefixlen']}")
        out = {}
        for msg in rows:
            name = msg.get_attr("IFLA_IFNAME")
            kind, info = None, {}
            linkinfo = msg.get_attr("IFLA_LINKINFO")
            if linkinfo is not None:
                kind = linkinfo.get_attr("IFLA_INFO_KIND")
                data = linkinfo.get_attr("IFLA_INFO_DATA")
                if data is not None and not isinstance(data, (bytes, str)):
                    info = _tunnel_info(kind, data)
            master = msg.get_attr("IFLA_MASTER")
            out[name] = LinkView(name, msg["index"], kind, msg.get_attr("IFLA_MTU") or 0,
                                 bool(msg["flags"] & IFF_UP),
                                 by_index.get(master) if master else None,
                                 frozenset(addrs.get(msg["index"], ())),
                                 tuple(sorted(info.items())),
                                 msg.get_attr("IFLA_IFALIAS") or None)
        return out

    def routes(self, links: dict | None = None) -> frozenset:
        links = links if links is not None else self.links()
        names = {view.index: name for name, view in links.items()}
        out = set()
        for msg in self._do("list routes", self.ipr.get_routes, family=socket.AF_INET):
            table = msg.get_attr("RTA_TABLE") or msg["table"]
            oif = msg.get_attr("RTA_OIF")
            if table != MAIN_TABLE or oif not in names:
                continue
            dst = msg.get_attr("RTA_DST") or "0.0.0.0"
            out.add(RouteView(f"{dst}/{msg['dst_len']}", names[oif],
                              msg.get_attr("RTA_PREFSRC")))
        return frozenset(out)

    def aliases(self) -> dict:
        """name -> IFLA_IFALIAS of every link that has one (fangen marks its links)."""
        out = {}
        for msg in self._do("list links", self.ipr.get_links):
            alias = msg.get_attr("IFLA_IFALIAS")
            if alias:
                out[msg.get_attr("IFLA_IFNAME")] = alias
        return out

    def index(self, name: str) -> int | None:
        found = self._do(f"look up {name}", self.ipr.link_lookup, ifname=name)
        return found[0] if found else None

    def _need(self, name: str) -> int:
        idx = self.index(name)
        if idx is None:
            raise NetlinkFailed(f"device {name} does not exist")
        return idx

    # -- links -----------------------------------------------------------------------------
    def create_bridge(self, name: str, mtu: int) -> None:
        """Create the bridge, then set its MTU as a change: the kernel keeps an MTU set
        that way, while one given at creation follows the ports (a container's 1500-byte
        veth joining an IPIP fan's bridge would raise it past the fan's MTU)."""
        self._do(f"create bridge {name}", self.ipr.link, "add", ifname=name, kind="bridge",
                 tolerate=(errno.EEXIST,))
        self._do(f"set mtu of {name}", self.ipr.link, "set", index=self._need(name), mtu=mtu)

    def create_external_tunnel(self, name: str, kind: str, mtu: int, port: int = 0) -> None:
        if kind == "vxlan":
            self._do(f"create vxlan {name}", self.ipr.link, "add", ifname=name, kind="vxlan",
                     mtu=mtu, vxlan_collect_metadata=1, vxlan_port=port, vxlan_learning=0,
                     tolerate=(errno.EEXIST,))
        else:
            self._do(f"create ipip {name}", self.ipr.link, "add", ifname=name, kind="ipip",
                     mtu=mtu, ipip_collect_metadata=True, tolerate=(errno.EEXIST,))

    def create_plain_vxlan(self, name: str, vni: int, mtu: int, port: int) -> None:
        """A VXLAN device that is not collect-metadata: the fan's VNI and port, no
        remote, no learning, so it sends nothing by itself (the fan's egress program
        encapsulates every frame, fangen.datapath.fanprog ``plain``) and receives
        without a metadata dst per packet."""
        self._do(f"create vxlan {name}", self.ipr.link, "add", ifname=name, kind="vxlan",
                 mtu=mtu, vxlan_id=vni, vxlan_port=port, vxlan_learning=0,
                 tolerate=(errno.EEXIST,))

    def set_alias(self, name: str, alias: str) -> None:
        """Set IFLA_IFALIAS (the kernel takes it on a change, not at creation)."""
        idx = self.index(name)
        if idx is not None:
            self._do(f"mark {name}", self.ipr.link, "set", index=idx, ifalias=alias,
                     tolerate=(errno.ENODEV,))

    def delete_link(self, name: str) -> None:
        idx = self.index(name)
        if idx is not None:
            self._do(f"delete {name}", self.ipr.link, "del", index=idx,
                     tolerate=(errno.ENODEV,))

    def set_link(self, name: str, mtu: int | None = None, master: str | None = None,
                 up: bool = True) -> None:
        idx = self._need(name)
        if mtu is not None:
            self._do(f"set mtu of {name}", self.ipr.link, "set", index=idx, mtu=mtu)
        if master is not None:
            self._do(f"make {name} a port of {master}", self.ipr.link, "set", index=idx,
                     master=self._need(master))
        self._do(f"set {name} {'up' if up else 'down'}", self.ipr.link, "set", index=idx,
                 state="up" if up else "down")

    # -- addresses and routes --------------------------------------------------------------
    def add_address(self, dev: str, address: str) -> None:
        iface = ip_interface(address)
        kwargs = {}
        if iface.version == 4 and iface.network.prefixlen < 31:
            kwargs["broadcast"] = str(iface.network.broadcast_address)
        self._do(f"add {address} to {dev}", self.ipr.addr, "add", index=self._need(dev),
                 address=str(iface.ip), prefixlen=iface.network.prefixlen,
                 tolerate=(errno.EEXIST,), **kwargs)

    def del_address(self, dev: str, address: str) -> None:
        idx = self.index(dev)
        if idx is None:
            return
        iface = ip_interface(address)
        self._do(f"delete {address} from {dev}", self.ipr.addr, "del", index=idx,
                 address=str(iface.ip), prefixlen=iface.network.prefixlen,
                 tolerate=(errno.EADDRNOTAVAIL, errno.ENODEV, errno.ESRCH))

    def add_route(self, dst: str, dev: str, src: str, kernel: bool = False) -> None:
        """``kernel``: as the kernel makes it for an address (proto kernel), so it goes
        with that address again."""
        net = IPv4Network(dst)
        extra = {"proto": RTPROT_KERNEL} if kernel else {}
        self._do(f"add route {dst} dev {dev}", self.ipr.route, "replace",
                 dst=str(net.network_address), dst_len=net.prefixlen, oif=self._need(dev),
                 prefsrc=src, scope=SCOPE_LINK, table=MAIN_TABLE, **extra)

    def del_route(self, dst: str, dev: str, src: str) -> None:
        idx = self.index(dev)
        if idx is None:
            return
        net = IPv4Network(dst)
        self._do(f"delete route {dst} dev {dev}", self.ipr.route, "del",
                 dst=str(net.network_address), dst_len=net.prefixlen, oif=idx,
                 table=MAIN_TABLE, tolerate=(errno.ESRCH, errno.ENODEV))


def _tunnel_info(kind: str | None, data) -> dict:
    info: dict = {}
    if kind == "vxlan":
        info["external"] = bool(data.get_attr("IFLA_VXLAN_COLLECT_METADATA"))
        info["port"] = data.get_attr("IFLA_VXLAN_PORT")
        info["vni"] = data.get_attr("IFLA_VXLAN_ID")
        local = data.get_attr("IFLA_VXLAN_LOCAL")
        if local:
            info["local"] = local
    elif kind == "ipip":
        info["external"] = data.get_attr("IFLA_IPTUN_COLLECT_METADATA") is not None or \
            data.get_attr("IFLA_IPIP_COLLECT_METADATA") is not None
        local = data.get_attr("IFLA_IPTUN_LOCAL") or data.get_attr("IFLA_IPIP_LOCAL")
        if local:
            info["local"] = local
    return info


def _strerror(code: int) -> str:
    import os
    try:
        return os.strerror(code)
    except (ValueError, TypeError):
        return f"error {code}"
