"""The handles of one host (namespace + root directory), passed to everything else.

A ``Host`` holds an IPRoute bound to the network namespace fangen runs in, the
nft handle, an optional D-Bus connection, the root directory (``--root-dir``)
and whether dnsmasq runs as a systemd unit.  Nothing is global: tests build one
per namespace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from fangen.errors import FangenError
from fangen.runtime import dnsmasq as dnsmasq_mod
from fangen.runtime.dbus import Networkd, Systemd, try_connect


class DatapathError(FangenError):
    """The chosen datapath cannot run here."""


class KernelFanRefused(DatapathError):
    """The kernel did not take the fan map attribute as fan maps (read back)."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


@dataclass
class Host:
    ipr: object
    nft: object
    root: str = "/"
    bus: object | None = None
    systemd: bool = False
    proc: str = "/proc"
    log: object = field(default=None, repr=False)   # callable(str) or None
    new_ipr: object = field(default=None, repr=False)   # () -> IPRoute in this namespace
    # kind -> why: the kernel fan datapath failed its read-back check here (see
    # choose_datapath); kept for the life of this process
    kernel_refused: dict = field(default_factory=dict, repr=False)

    def say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    def networkd(self) -> Networkd | None:
        if self.bus is None:
            return None
        nd = Networkd(self.bus)
        return nd if nd.present() else None

    def dnsmasq(self, name: str):
        if self.systemd:
            return dnsmasq_mod.UnitDnsmasq(Systemd(self.bus), name)
        return dnsmasq_mod.ProcessDnsmasq(self.root, name, proc=self.proc)

    def sysctl_path(self, key: str) -> str:
        return os.path.join(self.proc, "sys", key)

    def read_sysctl(self, key: str) -> str | None:
        try:
            with open(self.sysctl_path(key)) as fh:
                return fh.read().strip()
        except OSError:
            return None

    def write_sysctl(self, key: str, value: str) -> None:
        try:
            with open(self.sysctl_path(key), "w") as fh:
                fh.write(value)
        except OSError as exc:
            raise FangenError(f"cannot set {key.replace('/', '.')}={value}: "
                              f"{exc.strerror}") from None


def systemd_available(bus) -> bool:
    """systemd is PID 1 (``/run/systemd/system`` exists) and answers on the bus."""
    if not os.path.isdir("/run/systemd/system") or bus is None:
        return False
    return Systemd(bus).present()


def make_host(root: str = "/", no_systemd: bool = False, log=None) -> Host:
    """The host fangen runs on, in the current network namespace."""
    from pyroute2 import IPRoute

    from fangen.runtime.nft import Nft

    bus = try_connect()
    systemd = not no_systemd and root in ("", "/") and systemd_available(bus)
    return Host(IPRoute(), Nft(), root=root or "/", bus=bus, systemd=systemd, log=log,
                new_ipr=IPRoute)


def choose_datapath(fan, proc: str = "/proc", refused: dict | None = None) -> str:
    """The datapath ``fan`` gets on this kernel.

    kernel only where the kernel announces the Ubuntu fan for the fan's type
    (``/proc/sys/net/fan/version`` reads 3 for IPIP, ``/proc/sys/net/fan/vxlan``
    reads 4 for VXLAN) and the fan map attribute has not failed its read-back here
    (``refused``: kind -> why, from :class:`KernelFanRefused`): attribute 33 is sent
    to no other kernel.  ``auto`` falls back to upstream; ``datapath: kernel``
    where the kernel fan is not there is an error that says why.
    """
    from fangen.datapath import kernelfan

    where = "/proc/sys/net/fan/version" if fan.type == "ipip" else "/proc/sys/net/fan/vxlan"
    if not kernelfan.present(proc).get(fan.type, False):
        why = f"this kernel has no {fan.type} fan ({where} is missing)"
    elif refused and fan.type in refused:
        why = refused[fan.type]
    elif fan.overlay6 is not None:
        why = "the kernel fan maps IPv4 only (overlay6)"
    else:
        why = ""
    if fan.datapath == "kernel":
        if why:
            raise DatapathError(f"{fan.name}: datapath: kernel, but {why}; use datapath: "
                                "auto or upstream")
        return "kernel"
    if fan.datapath == "upstream" or why:
        return "upstream"
    return "kernel"
