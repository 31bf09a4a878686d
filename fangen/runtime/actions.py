"""The actions a plan is made of, and what each does to the recorded state.

Every action is a small frozen dataclass.  ``str(action)`` is the line ``--dry-run``
prints (from the class's ``says`` template, or its own ``__str__`` where the line
depends on the values); ``action.record(state, outcome)`` is the bookkeeping: how
the action changes ``State`` once it was carried out.  ``record`` does no I/O: the
executor (``fangen.runtime.execute``) performs the action and hands its outcome
in (whether a link existed already, a sysctl's earlier value, the dnsmasq process
or unit it started); without one, the action is taken to have found a clean host.
"""

from __future__ import annotations

from dataclasses import dataclass

from fangen.runtime.state import State, mark


class Action:
    """Shared by every action: the dry-run line and a bookkeeping step that does nothing."""

    says = ""                       # str.format template over the fields

    def __str__(self) -> str:
        return self.says.format_map(vars(self))

    def record(self, st: State, outcome=None) -> None:
        """Change ``st`` as carrying out this action did; ``outcome``: what the I/O found."""


# -- links -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CreateBridge(Action):
    """outcome: the link existed already (then it is not fangen's)."""

    name: str
    mtu: int
    own_link_local: bool = False   # dual-stack: no kernel link-local (fangen adds its own)

    def __str__(self):
        extra = " addrgenmode none" if self.own_link_local else ""
        return f"create bridge {self.name} mtu {self.mtu}{extra}"

    def record(self, st, outcome=None):
        if not outcome:
            st.links[self.name] = {"kind": "bridge", "created": True, "mark": mark(st.name)}


@dataclass(frozen=True)
class CreateTunnel(Action):
    """outcome: the link existed already."""

    name: str
    type: str                      # ipip | vxlan
    datapath: str                  # kernel | upstream
    mtu: int
    port: int = 0
    vni: int = 0
    local: str = ""                # kernel datapath only
    underlay_dev: str = ""         # kernel vxlan only
    overlay: str = ""              # kernel fan map
    underlay: str = ""
    shared: bool = False           # the namespace's upstream IPIP device, for every fan
    plain: bool = False            # upstream VXLAN on a plain device (fanprog ``plain``)

    def __str__(self):
        if self.plain:
            return (f"create vxlan {self.name} id {self.vni} dstport {self.port} nolearning "
                    f"(no remote: the fan programs send) mtu {self.mtu}")
        if self.datapath == "upstream":
            extra = f" dstport {self.port}" if self.type == "vxlan" else ""
            shared = " (shared by the IPIP fans)" if self.shared else ""
            return f"create {self.type} {self.name} external{extra} mtu {self.mtu}{shared}"
        extra = f" id {self.vni} dev {self.underlay_dev} dstport {self.port}" \
            if self.type == "vxlan" else ""
        return (f"create {self.type} {self.name}{extra} local {self.local} "
                f"fan-map {self.overlay}:{self.underlay} mtu {self.mtu}")

    def spec_key(self) -> list:
        """What a kernel fan tunnel was made for (recorded; a change means a new device)."""
        return [self.type, self.datapath, self.port, self.vni, self.local, self.underlay_dev,
                self.overlay, self.underlay]

    def record(self, st, outcome=None):
        if self.shared:         # every user's; the last one to go deletes it (no one fan's mark)
            st.links[self.name] = {"kind": self.type, "created": False, "shared": True}
        elif not outcome:
            st.links[self.name] = {"kind": self.type, "created": True,
                                   "spec": self.spec_key(), "mark": mark(st.name)}


@dataclass(frozen=True)
class DeleteLink(Action):
    name: str

    says = "delete link {name}"

    def record(self, st, outcome=None):
        st.links.pop(self.name, None)
        st.tc.pop(self.name, None)
        st.addresses = [x for x in st.addresses if x["dev"] != self.name]
        st.routes = [r for r in st.routes if r["dev"] != self.name]


@dataclass(frozen=True)
class SetLink(Action):
    name: str
    mtu: int | None = None
    master: str | None = None
    up: bool = True
    mtu_before: int | None = None     # a link fangen did not make: its MTU, for down

    def __str__(self):
        parts = [f"set link {self.name}"]
        if self.mtu is not None:
            parts.append(f"mtu {self.mtu}")
        if self.master is not None:
            parts.append(f"master {self.master}")
        parts.append("up" if self.up else "down")
        return " ".join(parts)

    def record(self, st, outcome=None):
        link = st.links.setdefault(self.name, {"created": False})
        if self.mtu_before is not None and not link.get("created"):
            link.setdefault("mtu_before", self.mtu_before)     # the first value is the original


@dataclass(frozen=True)
class ReleaseTunnel(Action):
    """This fan stops using a shared tunnel device: delete it unless another fan's
    programs are on it (checked again when it runs)."""

    name: str
    others: tuple = ()             # the other users the plan saw

    def __str__(self):
        if self.others:
            return f"leave {self.name} to fan {', '.join(self.others)}"
        return f"delete link {self.name} (no other fan uses it)"

    def record(self, st, outcome=None):
        st.links.pop(self.name, None)
        st.tc.pop(self.name, None)
        st.routes = [r for r in st.routes if r["dev"] != self.name]


@dataclass(frozen=True)
class KeepBridge(Action):
    """down leaves a bridge with ports fangen did not make (containers): deleting it
    would detach them for good.  ``down --purge`` deletes it anyway."""

    name: str
    ports: tuple

    def __str__(self):
        return f"keep bridge {self.name} (ports {', '.join(self.ports)} still attached)"


# -- addresses and routes --------------------------------------------------------------------

@dataclass(frozen=True)
class _Address(Action):
    dev: str
    address: str


@dataclass(frozen=True)
class AddAddress(_Address):
    says = "add address {address} dev {dev}"

    def record(self, st, outcome=None):
        st.add_address(self.dev, self.address)


@dataclass(frozen=True)
class DelAddress(_Address):
    says = "delete address {address} dev {dev}"

    def record(self, st, outcome=None):
        st.drop_address(self.dev, self.address)


@dataclass(frozen=True)
class _Route(Action):
    dst: str
    dev: str
    src: str


@dataclass(frozen=True)
class AddRoute(_Route):
    says = "add route {dst} dev {dev} src {src}"

    def record(self, st, outcome=None):
        st.add_route(self.dst, self.dev, self.src)


@dataclass(frozen=True)
class DelRoute(_Route):
    says = "delete route {dst} dev {dev} src {src}"

    def record(self, st, outcome=None):
        st.drop_route(self.dst, self.dev, self.src)


@dataclass(frozen=True)
class RestoreRoute(_Route):
    """Put back the route the kernel made with the bridge address (someone deleted it:
    ``ip route del``, an engine); it stays the address's, so it is not recorded."""

    says = "restore route {dst} dev {dev} src {src} (of the bridge address)"


# -- the upstream datapath's programs --------------------------------------------------------

@dataclass(frozen=True)
class AttachPrograms(Action):
    dev: str
    mode: str
    overlay: str
    underlay: str
    slice: str
    vni: int
    fan: str = ""                  # whose programs (several fans may share the device)
    shared: bool = False
    overlay6: str = ""             # a dual-stack fan's (fangen.datapath.fanprog6)
    # where the program's own encapsulation sends (fangen.datapath.encap): the underlay
    # address, its interface (name, index) and connected prefix, VXLAN's port
    local: str = ""
    underlay_dev: str = ""
    underlay_index: int = 0
    connected: str = ""
    port: int = 0
    plain: bool = False            # every frame encapsulated (a plain VXLAN device)

    def __str__(self):
        six = f", overlay6 {self.overlay6}" if self.overlay6 else ""
        out = f", encapsulating {'every frame ' if self.plain else ''}to " \
            f"{self.underlay_dev}" if self.underlay_dev else ""
        return (f"attach tc programs to {self.dev} ({self.mode}, overlay {self.overlay}, "
                f"underlay {self.underlay}, own slice {self.slice}, vni {self.vni}{six}{out})")

    def params(self) -> dict:
        six = {"overlay6": self.overlay6} if self.overlay6 else {}
        encap = {"local": self.local, "underlay_dev": self.underlay_dev,
                 "underlay_index": self.underlay_index, "connected": self.connected,
                 "port": self.port} if self.underlay_dev else {}
        plain = {"plain": True} if self.plain else {}
        return {"mode": self.mode, "overlay": self.overlay, "underlay": self.underlay,
                "slice": self.slice, "vni": self.vni, **six, **encap, **plain}

    def record(self, st, outcome=None):
        if self.shared:
            st.links.setdefault(self.dev, {"kind": self.mode, "created": False})["shared"] = True
        st.tc[self.dev] = {"params": self.params()}


@dataclass(frozen=True)
class DetachPrograms(Action):
    dev: str
    fan: str = ""                  # only this fan's programs ("": all of fangen's)

    def __str__(self):
        whose = f" of fan {self.fan}" if self.fan else ""
        return f"detach tc programs{whose} from {self.dev}"

    def record(self, st, outcome=None):
        st.tc.pop(self.dev, None)


# -- sysctls, nftables, files ----------------------------------------------------------------

@dataclass(frozen=True)
class SetSysctl(Action):
    """outcome: the value before (None: it could not be read)."""

    key: str
    value: str
    restore: bool = False          # putting back the value found before up

    def __str__(self):
        return f"set sysctl {self.key.replace('/', '.')}={self.value}"

    def record(self, st, outcome=None):
        if self.restore:
            st.sysctls.pop(self.key, None)
        elif outcome is not None and outcome != self.value:
            st.sysctls.setdefault(self.key, outcome)


@dataclass(frozen=True)
class NftReplace(Action):
    table: str
    script: str
    text: str

    def __str__(self):
        body = "".join(f"    {line}\n" for line in self.text.rstrip("\n").split("\n"))
        return f"replace nft table ip {self.table}:\n" + body.rstrip("\n")

    def record(self, st, outcome=None):
        st.nft_tables[self.table] = self.text


@dataclass(frozen=True)
class NftDelete(Action):
    table: str
    ip6: bool = False              # and the ip6 table of that name (a dual-stack fan's)

    def __str__(self):
        return f"delete nft table ip{' and ip6' if self.ip6 else ''} {self.table}"

    def record(self, st, outcome=None):
        st.nft_tables.pop(self.table, None)


@dataclass(frozen=True)
class WriteFile(Action):
    path: str                       # relative to the root
    text: str

    says = "write {path}"

    def record(self, st, outcome=None):
        st.files[self.path] = self.text


@dataclass(frozen=True)
class RemoveFile(Action):
    path: str

    says = "remove {path}"

    def record(self, st, outcome=None):
        st.files.pop(self.path, None)


# -- daemons ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReloadNetworkd(Action):
    says = "reload systemd-networkd (if running)"


@dataclass(frozen=True)
class StartDnsmasq(Action):
    """outcome: the process or unit started ({"mode", "pid", "cmdline"} | {"mode", "unit"})."""

    conf: str                       # relative path of the config
    systemd: bool

    def __str__(self):
        how = "fangen-dnsmasq@ unit" if self.systemd else "process"
        return f"(re)start dnsmasq ({how}) with {self.conf}"

    def record(self, st, outcome=None):
        st.dnsmasq = dict(outcome or {})


@dataclass(frozen=True)
class StopDnsmasq(Action):
    says = "stop dnsmasq"

    def record(self, st, outcome=None):
        st.dnsmasq = {}


# -- the fan as a whole ----------------------------------------------------------------------

@dataclass(frozen=True)
class Record(Action):
    """Record the fan's description (datapath, slice, ...) in the state."""

    info: tuple

    def __str__(self):
        return "record state: " + ", ".join(f"{k} {v}" for k, v in self.info
                                            if k in ("datapath", "slice", "mtu"))

    def adopts(self) -> str | None:
        """The bridge networkd made that this fan takes as its own (it gets the mark)."""
        info = dict(self.info)
        return info["bridge"] if info.get("networkd_bridge") else None

    def record(self, st, outcome=None):
        info = dict(self.info)
        st.datapath, st.type, st.overlay = info["datapath"], info["type"], info["overlay"]
        st.bridge, st.tunnel = info["bridge"], info["tunnel"]
        if info.get("shared_tunnel"):
            st.links.setdefault(st.tunnel, {"kind": st.type, "created": False})["shared"] = True
        st.underlay = dict(info["underlay"])
        st.slice, st.gateway, st.mtu = info["slice"], info["gateway"], info["mtu"]
        st.kept = []                        # a bridge down kept is the fan's again
        if st.links.get(st.tunnel, {}).get("created"):
            st.links[st.tunnel]["spec"] = list(info["tunnel_spec"])
        if info.get("networkd_bridge"):
            link = st.links.setdefault(st.bridge, {"created": False})
            link["networkd"] = True
            link["mark"] = mark(st.name)
        for dev, address in info["own_addresses"]:
            st.add_address(dev, address)
        for dst, dev, src in info["own_routes"]:
            st.add_route(dst, dev, src)


@dataclass(frozen=True)
class Forget(Action):
    """The state goes (the executor removes or shrinks the file)."""

    keep: tuple = ()               # kept bridges: the state shrinks to them

    def __str__(self):
        if self.keep:
            return f"remove state, except the kept bridge {', '.join(self.keep)}"
        return "remove state"


ALL = (CreateBridge, CreateTunnel, DeleteLink, SetLink, ReleaseTunnel, KeepBridge,
       AddAddress, DelAddress, AddRoute, DelRoute, RestoreRoute, AttachPrograms,
       DetachPrograms, SetSysctl, NftReplace, NftDelete, WriteFile, RemoveFile,
       ReloadNetworkd, StartDnsmasq, StopDnsmasq, Record, Forget)
