"""What the runtime made for one fan, kept in ROOT/run/fangen/NAME/state.json.

``down`` works from this file alone (also after the fan left the configuration):
links fangen created (and links it only used, such as a bridge networkd made),
addresses, routes, nft tables, tc filters, files, the dnsmasq process or unit,
and a sysctl's earlier value.  Written atomically after every change.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field

from fangen import writer
from fangen.errors import FangenError
from fangen.render import names

STATE_FILE = "state.json"
VERSION = 1


class StateError(FangenError):
    """state.json exists but cannot be read."""


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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> State:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def state_dir(root: str, name: str) -> str:
    return os.path.join(root, names.fan_dir(name))


def state_path(root: str, name: str) -> str:
    return os.path.join(state_dir(root, name), STATE_FILE)


def load(root: str, name: str) -> State | None:
    path = state_path(root, name)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("name") != name:
        raise StateError(f"{path} does not describe fan '{name}'")
    return State.from_dict(data)


def save(root: str, state: State) -> None:
    writer.write_file(state_path(root, state.name), state.to_json(), 0o644)


def remove(root: str, name: str) -> None:
    """Forget the fan: its whole directory is fangen's (state, dnsmasq's config and pid
    file, which dnsmasq leaves behind), so nothing of a removed fan stays in /run."""
    shutil.rmtree(state_dir(root, name), ignore_errors=True)


def names_with_state(root: str) -> list[str]:
    """Every fan that has a state file under ``root``."""
    base = os.path.join(root, names.STATE_DIR)
    try:
        entries = os.listdir(base)
    except OSError:
        return []
    return sorted(e for e in entries if os.path.isfile(os.path.join(base, e, STATE_FILE)))
