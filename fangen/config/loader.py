"""Find the fan.d files, load them as YAML with positions, merge them.

The only module of the configuration pipeline that reads files.  Positions live
in a side table keyed by the path of each value (``("network", "fan", "fan-250",
"overlay")``), never inside the data, so the data can go straight to JSON Schema.

Layering follows netplan: ``run`` hides a same-named file in ``etc``, which hides
``lib``; the surviving files are read in lexical order of their names; for the same
fan, a later file's keys override an earlier one's (mappings merge key by key).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field

import yaml

from fangen.errors import Diagnostic, Report

LAYERS = ("lib", "etc", "run")
FAN_DIR = "netplan/fan.d"
NETPLAN_DIR = "netplan"

MAX_FILE_BYTES = 1 << 20        # a fan.d file is a few hundred bytes; refuse megabytes
MAX_NODES = 20000               # values after alias expansion (alias bombs stop here)
MAX_DEPTH = 32                  # nesting depth of collections

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_FAN_KEY = re.compile(rb"(^|[\s{,])fan\s*:", re.MULTILINE)


@dataclass(frozen=True)
class Pos:
    file: str
    line: int      # 1-based
    col: int       # 1-based


@dataclass
class Positions:
    """Where each value (and each mapping key) came from, keyed by path."""

    values: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)

    def of(self, path: tuple, key: bool = False) -> Pos | None:
        """Position of ``path``'s value (or of its key), else of the nearest ancestor."""
        table = self.keys if key else self.values
        if path in table:
            return table[path]
        while path:
            path = path[:-1]
            if path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
        return None

    def update(self, other: Positions) -> None:
        self.values.update(other.values)
        self.keys.update(other.keys)


@dataclass
class Document:
    """One file's data and its positions."""

    file: str
    data: object
    positions: Positions


def layered_files(root: str, subdir: str) -> list[str]:
    """``*.yaml`` under root/{lib,etc,run}/subdir, later layers hiding earlier, sorted by name."""
    chosen: dict[str, str] = {}
    for layer in LAYERS:
        directory = os.path.join(root, layer, subdir)
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if name.endswith(".yaml"):
                path = os.path.join(directory, name)
                if os.path.isfile(path):
                    chosen[name] = path
    return [chosen[name] for name in sorted(chosen)]


class _Converter:
    """Turns a composed YAML node tree into plain data plus a Positions table."""

    def __init__(self, file: str):
        self.file = file
        self.positions = Positions()
        self.count = 0
        self.constructor = yaml.SafeLoader("")

    def pos(self, node) -> Pos:
        return Pos(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def convert(self, node, path: tuple = (), depth: int = 0):
        self.count += 1
        if self.count > MAX_NODES:
            raise _LoadError(node, f"document too large: more than {MAX_NODES} values "
                                   "(after expanding aliases)")
        if depth > MAX_DEPTH:
            raise _LoadError(node, f"document nested deeper than {MAX_DEPTH} levels")
        self.positions.values[path] = self.pos(node)
        if isinstance(node, yaml.MappingNode):
            result = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _LoadError(key_node, "mapping keys must be scalars")
                key = self.constructor.construct_object(key_node)
                if isinstance(key, bool) or key is None:
                    key = key_node.value        # 'on:'/'yes:' keys stay the names they look like
                key = str(key)
                if key in result:
                    raise _LoadError(key_node, f"duplicate key '{key}'")
                self.positions.keys[path + (key,)] = self.pos(key_node)
                result[key] = self.convert(value_node, path + (key,), depth + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, path + (index,), depth + 1)
                    for index, item in enumerate(node.value)]
        return self.constructor.construct_object(node)


class _LoadError(Exception):
    def __init__(self, node, message: str):
        super().__init__(message)
        self.node = node


def load_file(path: str, report: Report, display: str | None = None) -> Document | None:
    """Parse one YAML file; problems go to ``report`` and give None."""
    display = display or path
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        report.add(Diagnostic(display, 0, 0, f"cannot read: {exc.strerror}", kind="Error"))
        return None
    if len(raw) > MAX_FILE_BYTES:
        report.add(Diagnostic(display, 1, 1, f"file larger than {MAX_FILE_BYTES} bytes; "
                              "a fan definition is a few lines", kind="Invalid YAML"))
        return None
    return parse_bytes(raw, display, report)


def parse_bytes(raw: bytes, display: str, report: Report) -> Document | None:
    try:
        node = yaml.compose(raw, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "syntax error"
        report.add(Diagnostic(display, line, col, problem, kind="Invalid YAML"))
        return None
    except yaml.YAMLError as exc:
        report.add(Diagnostic(display, 1, 1, str(exc).splitlines()[0], kind="Invalid YAML"))
        return None
    except RecursionError:
        report.add(Diagnostic(display, 1, 1, f"document nested deeper than {MAX_DEPTH} levels",
                              kind="Invalid YAML"))
        return None
    converter = _Converter(display)
    if node is None:
        return Document(display, None, converter.positions)
    try:
        data = converter.convert(node)
    except _LoadError as exc:
        mark = exc.node.start_mark
        report.add(Diagnostic(display, mark.line + 1, mark.column + 1, str(exc),
                              kind="Invalid YAML"))
        return None
    except (yaml.YAMLError, ValueError) as exc:
        report.add(Diagnostic(display, 1, 1, str(exc).splitlines()[0], kind="Invalid YAML"))
        return None
    return Document(display, data, converter.positions)


def check_permissions(path: str, display: str, report: Report) -> None:
    """Warn, as netplan does, when a configuration file is readable by others."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & stat.S_IROTH:
        report.add(Diagnostic(display, 1, 1, "permissions are too open: fan configuration "
                              f"should not be readable by others (chmod 600 {display})",
                              severity="warning"))


def misplaced_fans(root: str, report: Report) -> None:
    """A plain netplan file holding ``network: fan:`` is an error: netplan rejects it."""
    for path in layered_files(root, NETPLAN_DIR):
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_FILE_BYTES + 1)
        except OSError:
            continue
        if len(raw) > MAX_FILE_BYTES or not _FAN_KEY.search(raw):
            continue                       # cheap pre-check: most netplan files never say 'fan:'
        display = path
        doc = parse_bytes(raw, display, Report())   # netplan reports its own syntax errors
        if doc is None or not isinstance(doc.data, dict):
            continue
        network = doc.data.get("network")
        if isinstance(network, dict) and "fan" in network:
            pos = doc.positions.keys[("network", "fan")]
            fan_dir = "/" + "/".join(("etc", FAN_DIR))
            report.add(Diagnostic(
                display, pos.line, pos.col,
                "'fan' does not belong in a plain netplan file: netplan rejects it "
                "(unknown key 'fan') and its generator skips this whole file; move the "
                f"fan stanza to a file in {fan_dir}/", path=("network", "fan")))


@dataclass
class Loaded:
    """Everything the loader found: merged data, positions and per-file results."""

    data: dict
    positions: Positions
    files: list[str]
    fan_files: dict          # fan name -> list of files that define it
    broken_files: list[str]


def load(root: str = "/", report: Report | None = None) -> Loaded:
    """Load and merge every fan.d file under ``root``."""
    report = report if report is not None else Report()
    merged: dict = {}
    positions = Positions()
    files: list[str] = []
    fan_files: dict = {}
    broken: list[str] = []
    for path in layered_files(root, FAN_DIR):
        display = path
        files.append(display)
        check_permissions(path, display, report)
        doc = load_file(path, report, display)
        if doc is None:
            broken.append(display)
            continue
        if doc.data is None:
            continue
        if not _merge_document(doc, merged, positions, fan_files, report):
            broken.append(display)
    misplaced_fans(root, report)
    return Loaded(merged, positions, files, fan_files, broken)


def _merge_document(doc: Document, merged: dict, positions: Positions, fan_files: dict,
                    report: Report) -> bool:
    """Merge one file's document; False (reported) when its top level has the wrong shape."""
    data = doc.data
    if not isinstance(data, dict):
        _shape_error(doc, (), "a fan.d file holds a mapping with 'network:' at the top, "
                              f"not {_kind(data)}", report)
        return False
    if "network" in data and not isinstance(data["network"], dict):
        _shape_error(doc, ("network",),
                     f"'network' must be a mapping, not {_kind(data['network'])}", report)
        return False
    fans = (data.get("network") or {}).get("fan")
    if isinstance(fans, dict):
        for name in fans:
            fan_files.setdefault(name, []).append(doc.file)
    _deep_merge(merged, data)
    positions.update(doc.positions)
    return True


def _kind(value) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text '{value}'"
    return "nothing (null)" if value is None else f"the value {value}"


def _shape_error(doc: Document, path: tuple, message: str, report: Report) -> None:
    pos = doc.positions.of(path) or Pos(doc.file, 1, 1)
    report.add(Diagnostic(doc.file, pos.line, pos.col, message, path=path))


def _deep_merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value
