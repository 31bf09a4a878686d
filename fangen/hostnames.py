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
  (``run/fangen/NAME/state.json``).  These are asked about one name at a time
  (``LiveInterfaces``): validation only ever asks about a fan's bridge and tunnel.

Unreadable or broken files are skipped: their owners report them.

Every read goes through ``fangen.config.files`` (so generate's memo knows what
the names came from); the YAML, networkd and JSON parsers are imported only when
there is something to parse.
"""

from __future__ import annotations

import os

from fangen.config import files
from fangen.render import names

NETWORKD_DIRS = ("etc/systemd/network", "run/systemd/network",
                 "usr/local/lib/systemd/network", "usr/lib/systemd/network",
                 "lib/systemd/network")
NETWORKD_SUFFIXES = files.NETWORKD_SUFFIXES
MAX_BYTES = 1 << 20


def live_wanted(root: str, flag: bool = False) -> bool:
    """Read this namespace's interfaces only for the real root, or when asked to."""
    return flag or root in ("", "/")


def collect(root: str, live: bool = False):
    """A ForeignNames of everything above."""
    from fangen.config.foreign import ForeignNames

    found = ForeignNames()
    found.update(netplan_names(root))
    found.update(networkd_names(root))
    if live:
        found.interfaces = LiveInterfaces(root)
    return found


class LiveInterfaces:
    """This namespace's interfaces that fangen did not make, asked about one name at a
    time (each question and its answer go on generate's tape: fangen.config.files)."""

    def __init__(self, root: str):
        self.root = root
        self._names: set | None = None
        self._by_files: set | None = None
        self._owned: set | None = None

    def where(self, name: str) -> str | None:
        if files.ask("foreign-interface", name, self._foreign, name):
            return f"interface {name} of this host, not made by fangen"
        return None

    def _foreign(self, name: str) -> bool:
        if self._names is None:
            self._names = set(interface_names())
        if name not in self._names:
            return False
        if self._by_files is None:           # the cheap half of owned_devices first
            self._by_files = _named_by_our_files(self.root)
        if name in self._by_files:
            return False
        if self._owned is None:
            self._owned = owned_devices(self.root)
        return name not in self._owned


def foreign_interface(root: str, name: str) -> bool:
    """``name`` is an interface of this namespace that fangen did not make."""
    return LiveInterfaces(root)._foreign(name)


def interface_names() -> list[str]:
    import _socket                      # socket's C half: the names without socket.py

    try:
        return [name for _, name in _socket.if_nameindex()]
    except OSError:
        return []


def netplan_files(root: str) -> list[str]:
    return files.layered_files(root, files.NETPLAN_DIR)


def netplan_names(root: str):
    from fangen.config import foreign, loader
    from fangen.config.foreign import ForeignNames
    from fangen.errors import Report

    found = ForeignNames()
    for path in netplan_files(root):
        try:
            raw = files.read_limited(path)
        except OSError:
            continue
        if len(raw) > files.MAX_FILE_BYTES:
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
            entries = files.listdir(directory, "networkd")   # fangen's own are left out
        except OSError:
            continue
        for entry in entries:
            if entry not in chosen:
                chosen[entry] = os.path.join(directory, entry)
    return [path for _, path in sorted(chosen.items())]


def networkd_names(root: str):
    from fangen.config import foreign
    from fangen.config.foreign import ForeignNames

    found = ForeignNames()
    for path in networkd_files(root):
        try:
            raw = files.read_limited(path, MAX_BYTES)     # /dev/null (masked) is refused
        except OSError:
            continue
        text = raw[:MAX_BYTES].decode("utf-8", errors="replace")
        found.update(foreign.from_networkd(text, path, os.path.splitext(path)[1]))
    return found


def _named_by_our_files(root: str) -> set[str]:
    owned: set[str] = set()
    try:
        entries = files.listdir(os.path.join(root, names.NETWORKD_DIR))
    except OSError:
        entries = []
    for entry in entries:
        if entry.startswith(names.OWNED_PREFIX):
            device = entry[len(names.OWNED_PREFIX):]
            for suffix in (".network.d", ".network", ".netdev"):
                if device.endswith(suffix):
                    owned.add(device[:-len(suffix)])
    return owned


def owned_devices(root: str) -> set[str]:
    """Devices fangen made: named by its networkd files or by a fan's runtime state."""
    import json

    owned = _named_by_our_files(root)
    base = os.path.join(root, names.STATE_DIR)
    try:
        fans = files.listdir(base)
    except OSError:
        fans = []
    for fan in fans:
        try:
            raw = files.read_limited(os.path.join(base, fan, "state.json"), MAX_BYTES)
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
