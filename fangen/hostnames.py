"""The shell's look at the names this host already uses (validation gets them as data).

``collect(root, live)`` reads, under ``root``:

* netplan's YAML (``{lib,etc,run}/netplan/*.yaml``): device ids, ``set-name``,
  ``match: name:``;
* networkd's configuration (``{etc,run,usr/local/lib,usr/lib,lib}/systemd/network``,
  a name in an earlier directory masking the same name in a later one, as networkd
  does): ``.network`` ``[Match] Name=``, ``.netdev`` ``[NetDev] Name=``, ``.link``
  ``[Link] Name=``, except fangen's own ``10-fangen-*`` files;
* with ``live``, the interfaces of the network namespace this process runs in
  (``socket.if_nameindex()``), except the devices fangen made: those named by an
  earlier ``generate`` (its ``10-fangen-*`` files) or by a fan's runtime state
  (``run/fangen/NAME/state.json``).

Unreadable or broken files are skipped: their owners report them.
"""

from __future__ import annotations

import json
import os
import socket

from fangen.config import foreign, loader
from fangen.config.foreign import ForeignNames
from fangen.errors import Report
from fangen.render import names

NETWORKD_DIRS = ("etc/systemd/network", "run/systemd/network",
                 "usr/local/lib/systemd/network", "usr/lib/systemd/network",
                 "lib/systemd/network")
NETWORKD_SUFFIXES = (".network", ".netdev", ".link")
MAX_BYTES = 1 << 20


def live_wanted(root: str, flag: bool = False) -> bool:
    """Read this namespace's interfaces only for the real root, or when asked to."""
    return flag or root in ("", "/")


def collect(root: str, live: bool = False) -> ForeignNames:
    found = ForeignNames()
    found.update(netplan_names(root))
    found.update(networkd_names(root))
    if live:
        mine = owned_devices(root)
        for name in interface_names():
            if name not in mine:
                found.add_name(name, f"interface {name} of this host, not made by fangen")
    return found


def interface_names() -> list[str]:
    try:
        return [name for _, name in socket.if_nameindex()]
    except OSError:
        return []


def netplan_names(root: str) -> ForeignNames:
    found = ForeignNames()
    for path in loader.layered_files(root, loader.NETPLAN_DIR):
        try:
            raw = loader.read_limited(path)
        except OSError:
            continue
        if len(raw) > loader.MAX_FILE_BYTES:
            continue
        doc = loader.parse_bytes(raw, path, Report())
        if doc is not None:
            found.update(foreign.from_netplan(doc.data, doc.positions, path))
    return found


def networkd_files(root: str) -> list[str]:
    """Paths of the host's networkd files, masked as networkd masks them, ours left out."""
    chosen: dict[str, str] = {}
    for sub in NETWORKD_DIRS:
        directory = os.path.join(root, sub)
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        for entry in entries:
            if entry.endswith(NETWORKD_SUFFIXES) and entry not in chosen:
                chosen[entry] = os.path.join(directory, entry)
    return [path for entry, path in sorted(chosen.items())
            if not entry.startswith(names.OWNED_PREFIX)]


def networkd_names(root: str) -> ForeignNames:
    found = ForeignNames()
    for path in networkd_files(root):
        try:
            raw = loader.read_limited(path, MAX_BYTES)     # /dev/null (masked) is refused
        except OSError:
            continue
        text = raw[:MAX_BYTES].decode("utf-8", errors="replace")
        found.update(foreign.from_networkd(text, path, os.path.splitext(path)[1]))
    return found


def owned_devices(root: str) -> set[str]:
    """Devices fangen made: named by its networkd files or by a fan's runtime state."""
    owned: set[str] = set()
    directory = os.path.join(root, names.NETWORKD_DIR)
    try:
        entries = os.listdir(directory)
    except OSError:
        entries = []
    for entry in entries:
        if entry.startswith(names.OWNED_PREFIX):
            device = entry[len(names.OWNED_PREFIX):]
            for suffix in (".network.d", ".network", ".netdev"):
                if device.endswith(suffix):
                    owned.add(device[:-len(suffix)])
    base = os.path.join(root, names.STATE_DIR)
    try:
        fans = os.listdir(base)
    except OSError:
        fans = []
    for fan in fans:
        try:
            raw = loader.read_limited(os.path.join(base, fan, "state.json"), MAX_BYTES)
            state = json.loads(raw.decode("utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(state, dict):
            continue
        for key in ("bridge", "tunnel"):
            if isinstance(state.get(key), str):
                owned.add(state[key])
        if isinstance(state.get("links"), dict):
            owned.update(k for k in state["links"] if isinstance(k, str))
    return owned
