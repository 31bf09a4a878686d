"""Validation: JSON Schema for shape and types, then semantic checks.

Every problem becomes a Diagnostic anchored at the file, line and column of the
offending key or value (positions come from the loader's side table).  A problem
inside one fan marks only that fan broken; the others are still built, so one
broken definition never stops the rest.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field

from fangen.config import model
from fangen.config.loader import Loaded, Positions
from fangen.datapath import tunnels
from fangen.errors import Diagnostic, Report
from fangen.fanmap import MAX_SLICE_PREFIX

SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "schema.json")
_TYPE_NAMES = {"boolean": "a boolean (true or false)", "integer": "an integer",
               "object": "a mapping", "string": "a string", "array": "a list"}
_RESERVED_OVERLAYS = [ipaddress.IPv4Network(n) for n in
                      ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "255.255.255.255/32")]


def load_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return json.load(fh)


@dataclass
class Result:
    fans: list = field(default_factory=list)          # valid model.Fan, in name order
    broken: set = field(default_factory=set)          # fan names with errors
    global_error: bool = False                        # an error outside any single fan


def _fan_of(path: tuple) -> str | None:
    if len(path) >= 3 and path[0] == "network" and path[1] == "fan":
        return path[2]
    return None


class _Checker:
    def __init__(self, loaded: Loaded, report: Report):
        self.loaded = loaded
        self.positions: Positions = loaded.positions
        self.report = report
        self.result = Result()

    def error(self, path: tuple, message: str, key: bool = False) -> None:
        pos = self.positions.of(path, key=key)
        name = _fan_of(path)
        if name is not None:
            message = f"{name}: {message}"
            self.result.broken.add(name)
        else:
            self.result.global_error = True
        if pos is None:
            self.report.add(Diagnostic(None, 0, 0, message, path=path))
        else:
            self.report.add(Diagnostic(pos.file, pos.line, pos.col, message, path=path))

    # -- JSON Schema -------------------------------------------------------------------
    def schema(self) -> None:
        from fangen.config import _fastschema

        try:
            _fastschema.validate(self.loaded.data)
            return                            # valid: jsonschema's import is not paid at boot
        except _fastschema.JsonSchemaValueException:
            pass                              # invalid: jsonschema finds and anchors every error
        import jsonschema

        validator = jsonschema.Draft7Validator(load_schema())
        errors = sorted(validator.iter_errors(self.loaded.data),
                        key=lambda e: (list(map(str, e.absolute_path)), e.validator))
        for err in errors:
            self.schema_error(err)

    def schema_error(self, err) -> None:
        path = tuple(err.absolute_path)
        key = path[-1] if path else None
        kind = err.validator
        value = err.instance
        if kind == "additionalProperties":
            allowed = set(err.schema.get("properties", {}))
            pattern_props = err.schema.get("additionalProperties")
            extras = sorted(k for k in value if k not in allowed) if pattern_props is False else []
            for extra in extras:
                hint = ", ".join(sorted(allowed))
                self.error(path + (extra,), f"unknown key '{extra}' (expected one of: {hint})",
                           key=True)
        elif kind == "required":
            missing = [r for r in err.validator_value if r not in value]
            for name in missing:
                self.error(path, f"missing required key '{name}'", key=True)
        elif kind == "type":
            expected = _TYPE_NAMES.get(err.validator_value, err.validator_value)
            self.error(path, f"'{key}' must be {expected}, not {_show(value)}")
        elif kind == "enum":
            choices = ", ".join(map(str, err.validator_value))
            self.error(path, f"invalid {key} {_show(value)} (expected one of: {choices})")
        elif kind == "const":
            self.error(path, f"'{key}' must be {err.validator_value}, not {_show(value)}")
        elif kind == "pattern" and "propertyNames" in err.schema_path:
            self.error(path + (value,), f"invalid fan name '{value}': letters, digits, "
                                        "'.', '-' or '_', at most 64", key=True)
        elif kind == "pattern":
            if key in ("overlay",):
                self.error(path, f"invalid overlay {_show(value)}: expected an IPv4 network "
                                 "such as 250.0.0.0/8")
            elif key in ("bridge", "tunnel"):
                self.error(path, f"invalid {key} name {_show(value)}: 1-15 characters, "
                                 "no '/', ':' or spaces")
            else:
                self.error(path, f"invalid {key} {_show(value)}")
        elif kind in ("minimum", "maximum"):
            low = err.schema.get("minimum")
            high = err.schema.get("maximum")
            if low is not None and high is not None:
                self.error(path, f"{key} {value} out of range: must be {low}..{high}")
            elif low is not None:
                self.error(path, f"{key} must be at least {low}, not {value}")
            else:
                self.error(path, f"{key} must be at most {high}, not {value}")
        else:
            self.error(path, err.message)

    # -- semantic checks -------------------------------------------------------------------
    def semantics(self) -> None:
        fans = (self.loaded.data.get("network") or {}).get("fan") or {}
        if not isinstance(fans, dict):
            return
        built: dict[str, model.Fan] = {}
        for name in sorted(fans):
            if name in self.result.broken or not isinstance(fans[name], dict):
                continue
            fan = self.check_fan(name, fans[name])
            if fan is not None:
                built[name] = fan
        self.check_between(built)
        self.check_tunnel_sharing(built)
        self.result.fans = [fan for name, fan in sorted(built.items())
                            if name not in self.result.broken]

    def check_fan(self, name: str, data: dict) -> model.Fan | None:
        base = ("network", "fan", name)
        ok = True
        try:
            overlay = ipaddress.IPv4Network(data["overlay"])
        except ValueError:
            bad = data["overlay"]
            fixed = ipaddress.IPv4Network(bad, strict=False)
            self.error(base + ("overlay",), f"overlay {bad} has host bits set "
                                            f"(did you mean {fixed}?)")
            return None
        if any(overlay.subnet_of(r) or r.subnet_of(overlay) for r in _RESERVED_OVERLAYS):
            self.error(base + ("overlay",), f"overlay {overlay} overlaps a reserved range "
                                            "(0/8, 127/8, multicast or broadcast)")
            ok = False
        try:
            underlay = model.Underlay.parse(data["underlay"])
        except model.UnderlayError as exc:
            self.error(base + ("underlay",), f"invalid underlay: {exc}")
            return None
        slice_prefix = overlay.prefixlen + 32 - underlay.prefixlen
        if slice_prefix > MAX_SLICE_PREFIX:
            self.error(base + ("underlay",),
                       f"slice prefix /{slice_prefix} (overlay /{overlay.prefixlen} + 32 - "
                       f"underlay /{underlay.prefixlen}) is longer than /{MAX_SLICE_PREFIX}: "
                       "use a larger overlay or a smaller underlay")
            return None
        if slice_prefix <= overlay.prefixlen:
            self.error(base + ("underlay",), f"underlay /{underlay.prefixlen} leaves no host "
                                             "bits: the overlay cannot be divided into slices")
            return None
        if underlay.network is not None and underlay.network.overlaps(overlay):
            self.error(base + ("overlay",), f"overlay {overlay} overlaps the underlay "
                                            f"{underlay.network}")
            ok = False
        fan_type = data.get("type", "ipip")
        if "vxlan" in data and fan_type != "vxlan":
            self.error(base + ("vxlan",), "'vxlan' settings need 'type: vxlan'", key=True)
            ok = False
        fan = model.build(name, data)
        slice_size = 1 << (32 - slice_prefix)
        usable = slice_size - 2
        if fan.host_reserve >= usable:
            self.error(base + ("host-reserve",),
                       f"host-reserve {fan.host_reserve} leaves no DHCP range in a "
                       f"/{slice_prefix} slice ({usable} usable addresses): use at most "
                       f"{usable - 1}")
            ok = False
        if fan.type == "vxlan" and "vni" not in (data.get("vxlan") or {}) and \
                not 1 <= fan.vni <= 0xFFFFFF:
            self.error(base + ("overlay",), f"default VNI {fan.vni} (overlay >> 8) is outside "
                                            "1..16777215: set vxlan: {vni: N}")
            ok = False
        for key in ("bridge", "tunnel"):
            device = getattr(fan, key)
            where = base + (key,) if key in data else base
            if len(device) > model.IFNAMSIZ:
                self.error(where, f"{key} name '{device}' is longer than {model.IFNAMSIZ} "
                                  f"characters; set '{key}:' to a shorter name",
                           key=key not in data)
                ok = False
            elif device in (".", "..") or not model._IFNAME.match(device):
                self.error(where, f"invalid {key} name '{device}'", key=key not in data)
                ok = False
        if fan.bridge == fan.tunnel:
            self.error(base + ("tunnel",), "tunnel and bridge must have different names",
                       key="tunnel" not in data)
            ok = False
        return fan if ok else None

    def check_between(self, built: dict) -> None:
        names = sorted(built)
        for i, first in enumerate(names):
            for second in names[i + 1:]:
                a, b = built[first], built[second]
                base = ("network", "fan", second)
                if a.overlay.overlaps(b.overlay):
                    self.error(base + ("overlay",), f"overlay {b.overlay} overlaps fan "
                                                    f"'{first}' ({a.overlay})")
                devices_a = {a.bridge, a.tunnel}
                for key in ("bridge", "tunnel"):
                    device = getattr(b, key)
                    if device in devices_a:
                        self.error(base + (key,) if key in self._data(second) else base,
                                   f"{key} name '{device}' is already used by fan '{first}'",
                                   key=key not in self._data(second))
            for other in names:
                a = built[first]
                net = built[other].underlay.network
                if other != first and net is not None and a.overlay.overlaps(net):
                    self.error(("network", "fan", first, "overlay"),
                               f"overlay {a.overlay} overlaps the underlay of fan "
                               f"'{other}' ({net})")

    def check_tunnel_sharing(self, built: dict) -> None:
        """What the kernel's one collect-metadata device per VXLAN port (and per namespace
        for IPIP) allows (fangen.datapath.tunnels): IPIP fans share fangen's device, whose
        name no fan may take; VXLAN fans need a port each unless all use the kernel fan."""
        reserved = tunnels.reserved_names()
        for name in sorted(built):
            data = self._data(name)
            for key in ("bridge", "tunnel"):
                device = getattr(built[name], key)
                if device in reserved:
                    self.error(("network", "fan", name) + ((key,) if key in data else ()),
                               f"{key} name '{device}' is reserved for the device fangen's "
                               "IPIP fans share; choose another name", key=key not in data)
        first_on: dict[int, str] = {}
        for name in sorted(built):
            fan = built[name]
            if fan.type != "vxlan":     # a disabled fan counts, as its names do
                continue
            other = first_on.setdefault(fan.port, name)
            if other == name or (fan.datapath == "kernel" and built[other].datapath == "kernel"):
                continue
            base = ("network", "fan", name)
            where = base + ("vxlan", "port") if "port" in (self._data(name).get("vxlan") or {}) \
                else base + ("type",)
            self.error(where, f"vxlan port {fan.port} is also used by fan '{other}': the "
                              "upstream datapath needs a UDP port of its own for each VXLAN fan; "
                              "set 'vxlan: {port: N}' to another port (or 'datapath: kernel' on "
                              "both fans, with the kernel fan patch)")

    def _data(self, name: str) -> dict:
        return self.loaded.data["network"]["fan"][name]


def _show(value) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def validate(loaded: Loaded, report: Report) -> Result:
    """Schema and semantic checks over the merged data of ``loaded``."""
    checker = _Checker(loaded, report)
    if not loaded.data:
        return checker.result
    checker.schema()
    checker.semantics()
    return checker.result
