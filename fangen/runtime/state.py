"""What the runtime made for one fan, kept in ROOT/run/fangen/NAME/state.json.

``down`` works from this file alone (also after the fan left the configuration):
links fangen created (and links it only used, such as a bridge networkd made),
addresses, routes, nft tables, tc filters, files, the dnsmasq process or unit,
and a sysctl's earlier value.  Written atomically after every change.

A fan name becomes a path here (``run/fangen/NAME``), so every name is checked
first (:func:`check_name`, the pattern fan.d uses): ``../x`` never reaches the
file system.  A state file that cannot be read, or does not have the shape
fangen writes, is an error that names the file and points to ``fangen down
--force NAME``, which finds the fan's objects by their marks instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field

from fangen import writer
from fangen.errors import FangenError, shown
from fangen.render import names
from fangen.runtime.view import SYSCTLS

STATE_FILE = "state.json"
VERSION = 1
# the pattern of fan names in fan.d (schema.json's propertyNames), matched whole
FAN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


class StateError(FangenError):
    """state.json exists but cannot be read."""


class BadName(FangenError):
    """A NAME argument that is not a fan name."""


MARK_PREFIX = "fangen:"


def mark(name: str) -> str:
    """The IFLA_IFALIAS fangen gives the links it makes or adopts for fan ``name``, so
    ``fangen down --force`` finds them without this file."""
    return f"{MARK_PREFIX}{name}"


def check_name(name) -> str:
    """``name`` when it is a valid fan name, else BadName (one line, nothing touched)."""
    if isinstance(name, str) and FAN_NAME.fullmatch(name) and name not in (".", ".."):
        return name
    shown = repr(name) if isinstance(name, str) else type(name).__name__
    raise BadName(f"invalid fan name {shown}: a fan name is 1 to 64 letters, digits, "
                  "'_', '.' or '-', and does not start with '.' or '-'")


@dataclass
class State:
    name: str
    version: int = VERSION
    type: str = ""
    datapath: str = ""
    overlay: str = ""
    bridge: str = ""
    tunnel: str = ""
    underlay: dict = field(default_factory=dict)     # ifname, address, network, mtu
    slice: str = ""
    gateway: str = ""
    mtu: int = 0
    links: dict = field(default_factory=dict)        # name -> {"kind":..., "created": bool}
    addresses: list = field(default_factory=list)    # [{"dev":..., "address": "A/LEN"}]
    routes: list = field(default_factory=list)       # [{"dst":..., "dev":..., "src":...}]
    nft_tables: dict = field(default_factory=dict)   # table -> rendered text
    tc: dict = field(default_factory=dict)           # dev -> {"params": {...}}
    files: dict = field(default_factory=dict)        # relpath -> text written
    dnsmasq: dict = field(default_factory=dict)      # {"mode", "pid", "cmdline"} | {"mode","unit"}
    sysctls: dict = field(default_factory=dict)     # key -> value before we changed it
    kept: list = field(default_factory=list)        # bridges down kept for their ports

    # -- bookkeeping used by the executor ------------------------------------------------
    def add_address(self, dev: str, address: str) -> None:
        entry = {"dev": dev, "address": address}
        if entry not in self.addresses:
            self.addresses.append(entry)

    def drop_address(self, dev: str, address: str) -> None:
        self.addresses = [a for a in self.addresses
                          if not (a["dev"] == dev and a["address"] == address)]

    def add_route(self, dst: str, dev: str, src: str) -> None:
        entry = {"dst": dst, "dev": dev, "src": src}
        if entry not in self.routes:
            self.routes.append(entry)

    def drop_route(self, dst: str, dev: str, src: str) -> None:
        self.routes = [r for r in self.routes if r != {"dst": dst, "dev": dev, "src": src}]

    def created(self, link: str) -> bool:
        return bool(self.links.get(link, {}).get("created"))

    def is_stub(self) -> bool:
        """What ``down`` left: only a bridge kept for the containers on it."""
        return bool(self.kept) and not self.slice

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> State:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def state_dir(root: str, name: str) -> str:
    return os.path.join(root, names.fan_dir(check_name(name)))


def state_path(root: str, name: str) -> str:
    return os.path.join(state_dir(root, name), STATE_FILE)


# fangen's own state files are a few KiB; one far larger is not one of them
MAX_STATE_BYTES = 4 << 20


def load(root: str, name: str) -> State | None:
    path = state_path(root, name)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_STATE_BYTES + 1)
        if len(raw) > MAX_STATE_BYTES:
            raise ValueError(f"larger than {MAX_STATE_BYTES} bytes")
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        return None
    except RecursionError:
        raise StateError(_corrupt(path, name, "nested too deeply")) from None
    except (OSError, ValueError) as exc:
        raise StateError(_corrupt(path, name, getattr(exc, "strerror", None) or exc)) \
            from None
    if not isinstance(data, dict) or data.get("name") != name:
        raise StateError(_corrupt(path, name, f"it does not describe fan '{name}'"))
    problem = _shape_problem(data) or _value_problem(data, name)
    if problem:
        raise StateError(_corrupt(path, name, problem))
    return State.from_dict(data)


def _corrupt(path: str, name: str, why) -> str:
    return (f"{path}: unusable state file ({why}); 'fangen down --force {name}' removes "
            "the fan's objects without it")


_ENTRY_KEYS = {"addresses": ("dev", "address"), "routes": ("dst", "dev")}


def _shape_problem(data: dict) -> str | None:
    """What makes ``data`` unlike a state fangen wrote, or None (types, not values)."""
    defaults = State("x")
    for key, default in vars(defaults).items():
        if key not in data:
            continue
        value = data[key]
        want = type(default)
        if want is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, want)
        if not ok:
            return f"'{key}' is not {want.__name__}"
    for key in ("links", "tc"):
        if any(not isinstance(v, dict) for v in data.get(key, {}).values()):
            return f"'{key}' has an entry that is not an object"
    for key in ("nft_tables", "files", "sysctls"):
        if any(not isinstance(v, str) for v in data.get(key, {}).values()):
            return f"'{key}' has an entry that is not a string"
    for key, fields in _ENTRY_KEYS.items():
        for entry in data.get(key, []):
            if not isinstance(entry, dict) or \
                    any(not isinstance(entry.get(f), str) for f in fields):
                return f"'{key}' has an entry without {' and '.join(fields)}"
    dnsmasq = data.get("dnsmasq", {})
    pid, cmdline = dnsmasq.get("pid", 0), dnsmasq.get("cmdline", [])
    if not isinstance(pid, int) or isinstance(pid, bool) or not isinstance(cmdline, list) or \
            any(not isinstance(part, str) for part in cmdline):
        return "'dnsmasq' has a bad pid or command line"
    return None


def _value_problem(data: dict, name: str) -> str | None:
    """What in ``data`` names something fangen never makes, or None.  ``down`` acts on
    what the state lists: a damaged (or forged) file must not get a file outside
    fangen's own, another program's nftables table or a sysctl fangen never changes
    removed or set.  (Addresses and routes are not checked here: a state saved half-way
    through an up may list them on a device before the record that names the fan's
    devices.)"""
    for rel in data.get("files", {}):
        parts = rel.split("/")
        ours = rel.startswith(f"{names.fan_dir(name)}/") or \
            rel.startswith(f"{names.NETWORKD_DIR}/{names.OWNED_PREFIX}")
        if not ours or ".." in parts or "" in parts or "." in parts:
            return f"'files' names {shown(rel)}, which is not a file fangen writes"
    from fangen.render.nft import table_name

    for table in data.get("nft_tables", {}):
        if table != table_name(name):           # a fan has its one table
            return f"'nft_tables' names {shown(table)}, which is not fangen's"
    for key, value in data.get("sysctls", {}).items():
        if key not in SYSCTLS or not value.isdigit():
            return f"'sysctls' has {shown(key)}={shown(value)}, which fangen never sets"
    return None


def save(root: str, state: State) -> None:
    path = state_path(root, state.name)
    try:
        writer.write_file(path, state.to_json(), 0o644)
    except OSError as exc:
        raise StateError(f"cannot write {path}: {exc.strerror or exc}") from None


def remove(root: str, name: str) -> None:
    """Forget the fan: its whole directory is fangen's (state, dnsmasq's config and pid
    file, which dnsmasq leaves behind), so nothing of a removed fan stays in /run."""
    shutil.rmtree(state_dir(root, name), ignore_errors=True)


def shrink(root: str, state: State, keep) -> State:
    """Forget the fan except the bridges ``keep`` (down kept them for their ports): the
    run directory goes, a state naming only them stays, so a later ``down`` or ``up``
    knows they are fangen's."""
    stub = State(state.name, bridge=state.bridge, tunnel=state.tunnel,
                 links={name: state.links[name] for name in keep if name in state.links},
                 kept=sorted(keep))
    remove(root, state.name)
    save(root, stub)
    return stub


def names_with_state(root: str) -> list[str]:
    """Every fan that has a state file under ``root``."""
    base = os.path.join(root, names.STATE_DIR)
    try:
        entries = os.listdir(base)
    except OSError:
        return []
    return sorted(e for e in entries if FAN_NAME.fullmatch(e)
                  and os.path.isfile(os.path.join(base, e, STATE_FILE)))
