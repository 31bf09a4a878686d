"""Validation: JSON Schema for shape and types, then semantic checks.

Every problem becomes a Diagnostic anchored at the file, line and column of the
offending key or value (positions come from the loader's side table).  A problem
inside one fan marks only that fan broken; the others are still built, so one
broken definition never stops the rest.  A problem outside any fan (and every file
the loader could not read or parse) freezes them all: ``Result.frozen``.

Integers are strict in both schema validators: JSON Schema counts 1450.0 as an
integer, fangen does not (it would reach dnsmasq's configuration as "1450.0").
Names already used on this host come in as data (``foreign``), collected by the
shell; nothing here looks at the system.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from fangen.config import model
from fangen.config.foreign import ForeignNames
from fangen.config.loader import Loaded, Positions
from fangen.datapath import tunnels
from fangen.errors import Diagnostic, Report, shown
from fangen.fanmap import SLICE6_PREFIX, FanMap, FanMapError

SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "schema.json")
_TYPE_NAMES = {"boolean": "a boolean (true or false)", "integer": "an integer",
               "object": "a mapping", "string": "a string", "array": "a list"}
_RESERVED_OVERLAYS = [ipaddress.IPv4Network(n) for n in
                      ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "255.255.255.255/32")]
_RESERVED_OVERLAYS6 = {ipaddress.IPv6Network(n): why for n, why in (
    ("::/8", "loopback, unspecified and IPv4-mapped addresses"), ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"))}

RESERVED_TABLES = (253, 254, 255)     # RT_TABLE_DEFAULT, RT_TABLE_MAIN, RT_TABLE_LOCAL


def load_schema() -> dict:
    import json

    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return json.load(fh)


def _strict_integer(_checker, instance) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


def reference_validator():
    """jsonschema's Draft 7 validator with fangen's one change: integers are strict."""
    import jsonschema

    base = jsonschema.Draft7Validator
    cls = jsonschema.validators.extend(
        base, type_checker=base.TYPE_CHECKER.redefine("integer", _strict_integer))
    return cls(load_schema())


@dataclass
class Result:
    fans: list = field(default_factory=list)          # valid model.Fan, in name order
    broken: set = field(default_factory=set)          # fan names with errors
    global_error: bool = False                        # an error outside any single fan
    # errors that freeze every fan: unreadable or unparsable files, wrong shapes,
    # anything outside a single fan.  Nothing may be started, changed or stopped.
    frozen: list = field(default_factory=list)


def _fan_of(path: tuple) -> str | None:
    if len(path) >= 3 and path[0] == "network" and path[1] == "fan":
        return path[2]
    return None


class _Checker:
    def __init__(self, loaded: Loaded, report: Report, foreign: ForeignNames | None = None):
        self.loaded = loaded
        self.positions: Positions = loaded.positions
        self.report = report
        self.foreign = foreign or ForeignNames()
        self.result = Result()

    def error(self, path: tuple, message: str, key: bool = False) -> None:
        pos = self.positions.of(path, key=key)
        name = _fan_of(path)
        if name is not None:
            message = f"{shown(name)[1:-1]}: {message}"
            self.result.broken.add(name)
        else:
            self.result.global_error = True
        if pos is None:
            diag = Diagnostic(None, 0, 0, message, path=path)
        else:
            diag = Diagnostic(pos.file, pos.line, pos.col, message, path=path)
        self.report.add(diag)
        if name is None:
            self.result.frozen.append(diag)

    # -- JSON Schema -------------------------------------------------------------------
    def schema(self) -> None:
        from fangen.config import _fastschema

        try:
            _fastschema.validate(self.loaded.data)
            return                            # valid: jsonschema's import is not paid at boot
        except _fastschema.JsonSchemaValueException as exc:
            fast = exc                        # invalid: jsonschema finds and anchors every error
        errors = sorted(reference_validator().iter_errors(self.loaded.data),
                        key=lambda e: (list(map(str, e.absolute_path)), e.validator))
        for err in errors:
            self.schema_error(err)
        if not errors:                        # the validators disagree: trust the stricter
            self.error((), f"schema check failed: {fast.message}")

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
                self.error(path + (extra,), f"unknown key {shown(extra)} (expected one of: {hint})",
                           key=True)
        elif kind == "required":
            missing = [r for r in err.validator_value if r not in value]
            for name in missing:
                self.error(path, f"missing required key '{name}'", key=True)
        elif kind == "type":
            expected = _TYPE_NAMES.get(err.validator_value, err.validator_value)
            self.error(path, f"'{key}' must be {expected}, not {shown(value)}")
        elif kind == "enum":
            choices = ", ".join(map(str, err.validator_value))
            self.error(path, f"invalid {key} {shown(value)} (expected one of: {choices})")
        elif kind == "const":
            self.error(path, f"'{key}' must be {err.validator_value}, not {shown(value)}")
        elif kind == "pattern" and "propertyNames" in err.schema_path:
            self.error(path + (value,), f"invalid fan name {shown(value)}: letters, digits, "
                                        "'.', '-' or '_', at most 64, not starting with "
                                        "'.' or '-'", key=True)
        elif kind == "pattern":
            if key in ("overlay",):
                self.error(path, f"invalid overlay {shown(value)}: expected an IPv4 network "
                                 "such as 250.0.0.0/8")
            elif key == "overlay6":
                self.error(path, f"invalid overlay6 {shown(value)}: expected an IPv6 network "
                                 "such as fd5a:fa00::/48")
            elif key == "underlay-gateway":
                self.error(path, f"invalid underlay-gateway {shown(value)}: expected an IPv4 "
                                 "address such as 10.20.1.1, or dhcp")
            elif key in ("bridge", "tunnel", "vrf"):
                self.error(path, f"invalid {key} name {shown(value)}: "
                                 f"{model.ifname_problem(value)}")
            else:
                self.error(path, f"invalid {key} {shown(value)}")
        elif kind in ("minimum", "maximum"):
            low = err.schema.get("minimum")
            high = err.schema.get("maximum")
            if low is not None and high is not None:
                self.error(path, f"{key} {shown(value)} out of range: must be {low}..{high}")
            elif low is not None:
                self.error(path, f"{key} must be at least {low}, not {shown(value)}")
            else:
                self.error(path, f"{key} must be at most {high}, not {shown(value)}")
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
        self.check_between6(built)
        self.check_tunnel_sharing(built)
        self.check_tables_between(built)
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
        try:
            slice_prefix = FanMap.check_prefixes(overlay.prefixlen, underlay.prefixlen)
        except FanMapError as exc:
            self.error(base + ("underlay",), f"{exc}: {exc.hint}" if exc.hint else str(exc))
            return None
        if underlay.network is not None and underlay.network.overlaps(overlay):
            self.error(base + ("overlay",), f"overlay {overlay} overlaps the underlay "
                                            f"{underlay.network}")
            ok = False
        fan_type = data.get("type", "ipip")
        if "vxlan" in data and fan_type != "vxlan":
            self.error(base + ("vxlan",), "'vxlan' settings need 'type: vxlan'", key=True)
            ok = False
        ok6 = self.check_overlay6(base, data, underlay)
        if ok6 is None:
            return None
        ok = ok6 and ok
        fan = model.build(name, data)
        slice_size = 1 << (32 - slice_prefix)
        usable = slice_size - 2
        if fan.host_reserve >= usable:
            self.error(base + ("host-reserve",),
                       f"host-reserve {shown(fan.host_reserve)} leaves no DHCP range in a "
                       f"/{slice_prefix} slice ({usable} usable addresses): use at most "
                       f"{usable - 1}")
            ok = False
        if fan.type == "vxlan" and "vni" not in (data.get("vxlan") or {}) and \
                not 1 <= fan.vni <= 0xFFFFFF:
            self.error(base + ("overlay",), f"default VNI {fan.vni} (overlay >> 8) is outside "
                                            "1..16777215: set vxlan: {vni: N}")
            ok = False
        for key in ("bridge", "tunnel"):
            ok = self.check_device(base, key, getattr(fan, key), key in data) and ok
        ok = self.check_underlay_route(base, fan, data) and ok
        if fan.bridge == fan.tunnel:
            self.error(base + ("tunnel",), "tunnel and bridge must have different names",
                       key="tunnel" not in data)
            ok = False
        return fan if ok else None

    def check_overlay6(self, base: tuple, data: dict, underlay: model.Underlay) -> bool | None:
        """The dual-stack keys of one fan: True when fine, False when refused, None when
        overlay6 is not an IPv6 network at all (the fan cannot be built)."""
        if "overlay6" not in data:
            if data.get("dhcp6"):
                self.error(base + ("dhcp6",), "'dhcp6' needs an IPv6 overlay: set "
                                              "'overlay6:' (e.g. fd5a:fa00::/48)", key=True)
                return False
            return True
        where = base + ("overlay6",)
        bad = data["overlay6"]
        try:
            overlay6 = ipaddress.IPv6Network(bad)
        except ValueError:
            try:
                fixed = ipaddress.IPv6Network(bad, strict=False)
            except ValueError:
                self.error(where, f"invalid overlay6 {shown(bad)}: expected an IPv6 network "
                                  "such as fd5a:fa00::/48")
                return None
            self.error(where, f"overlay6 {bad} has host bits set (did you mean {fixed}?)")
            return None
        ok = True
        reserved = [r for r in _RESERVED_OVERLAYS6 if overlay6.overlaps(r)]
        if reserved:
            self.error(where, f"overlay6 {overlay6} overlaps a reserved range "
                              f"({reserved[0]}, {_RESERVED_OVERLAYS6[reserved[0]]})")
            ok = False
        slice6 = overlay6.prefixlen + 32 - underlay.prefixlen
        if slice6 != SLICE6_PREFIX:
            want = SLICE6_PREFIX - (32 - underlay.prefixlen)
            self.error(where, f"overlay6 /{overlay6.prefixlen} with underlay "
                              f"/{underlay.prefixlen} gives /{slice6} IPv6 slices, and "
                              f"containers autoconfigure (SLAAC) only in a /{SLICE6_PREFIX}: "
                              f"use overlay6 /{want}")
            ok = False
        if data.get("type", "ipip") != "vxlan":
            self.error(where, "overlay6 needs 'type: vxlan': an IPIP tunnel carries IPv4 "
                              "only (the dual-stack fan bridges IPv6 across the fan and maps "
                              "neighbour solicitations as VXLAN maps ARP)")
            ok = False
        if data.get("datapath", "auto") == "kernel":
            self.error(base + ("datapath",), "overlay6 needs the upstream datapath: the Ubuntu "
                                             "kernel fan maps IPv4 only; set 'datapath: "
                                             "upstream' or 'auto' (auto picks upstream for "
                                             "a dual-stack fan)")
            ok = False
        return ok

    def check_between6(self, built: dict) -> None:
        """IPv6 overlays of two fans must not overlap (both are refused, as for IPv4)."""
        names = sorted(name for name in built if built[name].overlay6 is not None)
        for first in names:
            for second in names:
                a, b = built[first].overlay6, built[second].overlay6
                if second != first and a.overlaps(b):
                    self.error(("network", "fan", first, "overlay6"),
                               f"overlay6 {a} overlaps fan '{second}' ({b})")

    def check_device(self, base: tuple, key: str, device: str, explicit: bool) -> bool:
        """A name fangen gives a device: valid, and not used by anything else on the host."""
        where = base + (key,) if explicit else base
        problem = model.ifname_problem(device)
        if problem is not None and len(device.encode("utf-8", "surrogatepass")) > \
                model.IFNAMSIZ:
            self.error(where, f"{key} name {shown(device)} is longer than {model.IFNAMSIZ} "
                              f"bytes; set '{key}:' to a shorter name", key=not explicit)
            return False
        if problem is not None:
            hint = "" if explicit else f"; set '{key}:' to a valid name"
            self.error(where, f"invalid {key} name {shown(device)}: {problem}{hint}",
                       key=not explicit)
            return False
        use = self.foreign.use_of(device)
        if use is not None:
            hint = f"set '{key}:' to another name" if not explicit else "choose another name"
            self.error(where, f"{key} name {shown(device)} is already used on this host "
                              f"({use}): fangen must not configure a device it did not "
                              f"create; {hint}", key=not explicit)
            return False
        return True

    def check_between(self, built: dict) -> None:
        """Overlaps and shared device names between fans.  Both fans of a clash are
        refused (and so frozen as they were): which one was meant cannot be known, and
        a new definition must not take a working fan's devices or addresses."""
        names = sorted(built)
        for first in names:
            a = built[first]
            for second in names:
                if second == first:
                    continue
                b = built[second]
                base = ("network", "fan", first)
                if a.overlay.overlaps(b.overlay):
                    self.error(base + ("overlay",), f"overlay {a.overlay} overlaps fan "
                                                    f"'{second}' ({b.overlay})")
                for key in ("bridge", "tunnel"):
                    device = getattr(a, key)
                    if device in (b.bridge, b.tunnel):
                        explicit = key in self._data(first)
                        self.error(base + (key,) if explicit else base,
                                   f"{key} name '{device}' is also used by fan '{second}'",
                                   key=not explicit)
                net = b.underlay.network
                if net is not None and a.overlay.overlaps(net):
                    self.error(base + ("overlay",), f"overlay {a.overlay} overlaps the "
                                                    f"underlay of fan '{second}' ({net})")

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

    # -- multi-homed hosts: underlay-gateway, underlay-table ---------------------------
    def check_underlay_route(self, base: tuple, fan: model.Fan, data: dict) -> bool:
        """Both keys or neither; a table the kernel does not reserve; a gateway that can
        be a router on the underlay's own segment (fangen.runtime.underlay_route)."""
        gateway, table = fan.underlay_gateway, fan.underlay_table
        if fan.vrf is not None:
            return self.check_vrf(base, fan, data)
        if gateway is None and table is None:
            return True
        ok = True
        if table is None:
            self.error(base + ("underlay-gateway",), "underlay-gateway needs underlay-table: "
                       "a routing table of the fan's own for its encapsulated traffic "
                       "(e.g. underlay-table: 100)", key=True)
            ok = False
        elif table in RESERVED_TABLES:
            self.error(base + ("underlay-table",), f"underlay-table {table} is reserved by "
                       "the kernel (253 default, 254 main, 255 local): choose another "
                       "number, e.g. 100")
            ok = False
        if gateway is None:
            self.error(base + ("underlay-table",), "underlay-table needs underlay-gateway: "
                       "the router (ADDR, or dhcp) that reaches the rest of the underlay",
                       key=True)
            return False
        where = base + ("underlay-gateway",)
        if fan.underlay.kind == "default":
            self.error(where, "underlay-gateway is for an underlay that is not reached by "
                       "the default route, but 'underlay: default' follows it: name the "
                       "underlay network (NET/LEN) instead")
            return False
        if gateway == model.GATEWAY_DHCP:
            return ok
        if any(gateway in r for r in _RESERVED_OVERLAYS) or gateway.is_unspecified:
            self.error(where, f"underlay-gateway {gateway} cannot be a router's address")
            return False
        net = fan.underlay.network
        if net is None:
            return ok
        if gateway not in net:
            self.error(where, f"underlay-gateway {gateway} is outside the underlay {net}: "
                       "the gateway must be a router on this host's underlay segment")
            return False
        if net.prefixlen < 31 and gateway in (net.network_address, net.broadcast_address):
            self.error(where, f"underlay-gateway {gateway} is the underlay's "
                       f"{'network' if gateway == net.network_address else 'broadcast'} "
                       "address, not a router's")
            return False
        if gateway == fan.underlay.host:
            self.error(where, f"underlay-gateway {gateway} is this host's own underlay "
                       "address: name the router")
            return False
        return ok

    def check_vrf(self, base: tuple, fan: model.Fan, data: dict) -> bool:
        """A VRF netplan or networkd defines (fangen never enslaves a device it did not
        make): its table already routes the underlay, so no gateway or table here."""
        ok = True
        for key in ("underlay-gateway", "underlay-table"):
            if key in data:
                self.error(base + (key,), f"{key} does not go with vrf: the VRF's own "
                           "routing table routes the underlay; remove one of them", key=True)
                ok = False
        if fan.underlay.kind == "default":
            self.error(base + ("vrf",), "vrf is for an underlay that is not reached by the "
                       "default route, but 'underlay: default' follows it: name the "
                       "underlay network (NET/LEN) instead")
            ok = False
        if fan.vrf in (fan.bridge, fan.tunnel):
            self.error(base + ("vrf",), f"vrf '{fan.vrf}' is the name of the fan's own "
                       "bridge or tunnel: name the VRF that holds the underlay interface")
            ok = False
        return ok

    def check_tables_between(self, built: dict) -> None:
        """A fan's underlay-table is its own: down removes what fangen put in it."""
        first_with: dict[int, str] = {}
        for name in sorted(built):
            table = built[name].underlay_table
            if table is None:
                continue
            other = first_with.setdefault(table, name)
            if other != name:
                for mine, theirs in ((name, other), (other, name)):
                    self.error(("network", "fan", mine, "underlay-table"),
                               f"underlay-table {table} is also used by fan '{theirs}': "
                               "each fan needs a routing table of its own")
        # fans over one VRF: their rules must differ (down removes a fan's own)
        first_rule: dict[tuple, str] = {}
        for name in sorted(built):
            fan = built[name]
            if fan.vrf is None:
                continue
            key = (fan.vrf, fan.underlay.spec, fan.type, fan.port if fan.type == "vxlan" else 0)
            other = first_rule.setdefault(key, name)
            if other != name:
                hint = "give one of them another 'vxlan: {port: N}'" if fan.type == "vxlan" \
                    else "make one of them 'type: vxlan'"
                for mine, theirs in ((name, other), (other, name)):
                    self.error(("network", "fan", mine, "vrf"),
                               f"vrf '{fan.vrf}' carries fan '{theirs}' over the same underlay "
                               "with the same encapsulation: the two fans would share one "
                               f"policy rule; {hint}")

    def _data(self, name: str) -> dict:
        return self.loaded.data["network"]["fan"][name]


def validate(loaded: Loaded, report: Report, foreign: ForeignNames | None = None) -> Result:
    """Schema and semantic checks over the merged data of ``loaded``; ``foreign``: the
    names this host already uses for something fangen did not make."""
    checker = _Checker(loaded, report, foreign)
    checker.result.frozen.extend(loaded.freezing)
    if not loaded.data:
        return checker.result
    checker.schema()
    checker.semantics()
    return checker.result
