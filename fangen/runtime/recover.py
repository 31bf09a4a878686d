"""``fangen down --force NAME``: find the fan's objects by their marks, not by state.json.

Used when the state file is missing, corrupt or out of date (a command killed
half-way).  Only what carries one of fangen's marks for NAME is touched:

* links whose IFLA_IFALIAS is ``fangen:NAME`` (fangen sets it on every link it
  creates, and on a bridge networkd made from fangen's own ``.netdev``).  They
  are deleted, ports before bridges -- except a bridge whose fangen ``.netdev``
  is still configured (networkd owns that one) and a bridge with ports that do
  not carry the mark (containers; unless ``--purge``): only their IPv4 addresses
  (the fan's) go;
* the nft table ``ip fangen-NAME``;
* dnsmasq processes in this network namespace whose command line is fangen's for
  NAME under this root (``--conf-file=ROOT/run/fangen/NAME/dnsmasq.conf``), and
  the ``fangen-dnsmasq@NAME`` unit where systemd runs;
* networkd drop-ins ``10-fangen-*.network.d/50-slice.conf`` whose header names
  the fan, and the fan's directory ``ROOT/run/fangen/NAME``.

``net.ipv4.ip_forward`` is left as it is: its earlier value was in the state file.
tc filters go with the tunnel they sit on.  Pure planning (:func:`plan`) is kept
apart from doing (:func:`apply`) so ``--dry-run`` can print the list.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from fangen import writer
from fangen.render import names
from fangen.render import nft as render_nft
from fangen.runtime import dnsmasq as dnsmasq_mod
from fangen.runtime.nft import NftFailed
from fangen.runtime import state as state_mod
from fangen.runtime.view import kernel_link_local


@dataclass(frozen=True)
class Step:
    kind: str           # link | address | nft | process | unit | file | dir | reload | keep
    target: str
    extra: str = ""

    def __str__(self):
        return {
            "link": f"delete link {self.target} (marked {self.extra})",
            "address": f"delete address {self.extra} dev {self.target}",
            "nft": f"delete nft table ip {self.target}",
            "process": f"stop dnsmasq pid {self.target}",
            "unit": f"stop {self.target}",
            "file": f"remove {self.target}",
            "dir": f"remove {self.target}/",
            "keep": f"kept bridge {self.target}: {self.extra} still attached (containers); "
                    "'down --force --purge' deletes it and detaches them",
            "reload": "reload systemd-networkd (if running)",
            "underlay-route": f"delete {self.target}",
        }[self.kind]


def slice_header(name: str) -> str:
    """The first line of the runtime's networkd drop-ins for fan ``name``."""
    return names.HEADER.format(sources=f"the underlay address of fan {name}").rstrip("\n")


def plan(host, name: str, purge: bool = False) -> list[Step]:
    from fangen.runtime.netlink import Netlink

    state_mod.check_name(name)
    nl = Netlink(host.ipr)
    steps: list[Step] = []
    steps += [Step("unit", unit) for unit in _units(host, name)]
    steps += [Step("process", str(pid)) for pid in dnsmasq_pids(host, name)]
    table = render_nft.table_name(name)
    if table in host.nft.tables():
        steps.append(Step("nft", table))
    mark = state_mod.mark(name)
    links = nl.links()
    marked = sorted((n for n, alias in nl.aliases().items() if alias == mark and n in links),
                    key=lambda n: (links[n].kind == "bridge", n))
    for link in marked:
        netdev = os.path.join(host.root, names.networkd_file(link, "netdev"))
        # ports without the mark: containers (kept unless --purge, as by down)
        ports = sorted(n for n, view in links.items()
                       if view.master == link and n not in marked)
        if links[link].kind == "bridge" and (os.path.exists(netdev) or (ports and not purge)):
            steps += [Step("address", link, a) for a in sorted(links[link].addresses)
                      if not kernel_link_local(a)]      # the kernel's, not ours
            if ports and not os.path.exists(netdev):
                steps.append(Step("keep", link, ", ".join(ports)))
        else:
            steps.append(Step("link", link, mark))
    from fangen.runtime import underlay_route     # multi-homed hosts (issue 15)
    rules, routes = underlay_route.owned(host.ipr, underlay_route.read_record(host.root, name))
    steps += [Step("underlay-route", obj.text()) for obj in rules + routes]
    dropins = _dropins(host.root, name)
    steps += [Step("file", rel) for rel in dropins]
    if os.path.isdir(state_mod.state_dir(host.root, name)):
        steps.append(Step("dir", names.fan_dir(name)))
    if dropins:
        steps.append(Step("reload", ""))
    return steps


def apply(host, name: str, steps: list[Step]) -> None:
    from fangen.runtime.dbus import Systemd
    from fangen.runtime.netlink import Netlink

    nl = Netlink(host.ipr)
    runner = dnsmasq_mod.ProcessDnsmasq(host.root, name, proc=host.proc)
    for step in steps:
        host.say(str(step))
        if step.kind == "unit":
            Systemd(host.bus).stop(step.target)
        elif step.kind == "process":
            pid = int(step.target)
            cmd = dnsmasq_mod.read_cmdline(pid, host.proc)
            if cmd is not None and dnsmasq_mod.is_fans_command(cmd, host.root, name):
                runner._end(pid, cmd)
        elif step.kind == "nft":
            try:            # with a dual-stack fan's ip6 table, where the kernel has one
                host.nft.apply(render_nft.delete_script(step.target, ip6=True),
                               f"delete nft table {step.target}")
            except NftFailed:
                host.nft.apply(render_nft.delete_script(step.target),
                               f"delete nft table {step.target}")
        elif step.kind == "link":
            nl.delete_link(step.target)
        elif step.kind == "address":
            nl.del_address(step.target, step.extra)
        elif step.kind == "file":
            writer.remove_file(os.path.join(host.root, step.target))
        elif step.kind == "dir":
            shutil.rmtree(state_mod.state_dir(host.root, name), ignore_errors=True)
        elif step.kind == "keep":
            pass
        elif step.kind == "underlay-route":
            from fangen.runtime import underlay_route
            underlay_route.remove(host, name)   # every object of the record, once
        elif step.kind == "reload":
            networkd = host.networkd()
            if networkd is not None:
                networkd.reload()


def _units(host, name: str) -> list[str]:
    if host.bus is None:
        return []
    from fangen.runtime.dbus import Systemd, unit_name

    systemd = Systemd(host.bus)
    if not systemd.present():
        return []
    unit = unit_name("fangen-dnsmasq@", name)
    state = systemd.list_units(unit).get(unit)
    return [unit] if state in ("active", "activating", "reloading") else []


def dnsmasq_pids(host, name: str) -> list[int]:
    """fangen's dnsmasq processes for ``name`` in this network namespace."""
    try:
        here = os.stat(os.path.join(host.proc, "self", "ns", "net")).st_ino
        entries = os.listdir(host.proc)
    except OSError:
        return []
    found = []
    for entry in entries:
        if not entry.isdigit():
            continue
        cmd = dnsmasq_mod.read_cmdline(int(entry), host.proc)
        if not cmd or not dnsmasq_mod.is_fans_command(cmd, host.root, name):
            continue
        try:
            if os.stat(os.path.join(host.proc, entry, "ns", "net")).st_ino != here:
                continue
        except OSError:
            continue
        found.append(int(entry))
    return sorted(found)


def _dropins(root: str, name: str) -> list[str]:
    """The runtime's drop-ins for this fan (recognised by their header)."""
    base = os.path.join(root, names.NETWORKD_DIR)
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return []
    header = slice_header(name)
    out = []
    for entry in entries:
        if not (entry.startswith(names.OWNED_PREFIX) and entry.endswith(".network.d")):
            continue
        rel = f"{names.NETWORKD_DIR}/{entry}/50-slice.conf"
        try:
            with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as fh:
                first = fh.readline().rstrip("\n")
        except OSError:
            continue
        if first == header:
            out.append(rel)
    return out
