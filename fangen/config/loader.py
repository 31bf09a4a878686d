"""Find the fan.d files, load them as YAML with positions, merge them.

The only module of the configuration pipeline that reads files.  Positions live
in a side table keyed by the path of each value (``("network", "fan", "fan-250",
"overlay")``), never inside the data, so the data can go straight to JSON Schema.

Layering follows netplan: ``run`` hides a same-named file in ``etc``, which hides
``lib``; the surviving files are read in lexical order of their names; for the same
fan, a later file's keys override an earlier one's (mappings merge key by key).
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field

from fangen.config.files import FAN_DIR, LAYERS, MAX_FILE_BYTES, NETPLAN_DIR, read_limited
from fangen.config.files import layered_files as _layered_files
from fangen.config.files import stat_mode
from fangen.config.positions import Pos, Positions
from fangen.errors import Diagnostic, Report, shown

_FAN_KEY = re.compile(rb"(^|[\s{,])fan\s*:", re.MULTILINE)

__all__ = ["FAN_DIR", "LAYERS", "MAX_FILE_BYTES", "NETPLAN_DIR", "Document", "Loaded", "Pos",
           "Positions", "layered_files", "load", "load_file", "parse_bytes", "read_limited"]


@dataclass
class Document:
    """One file's data and its positions."""

    file: str
    data: object
    positions: Positions


def layered_files(root: str, subdir: str, report: Report | None = None) -> list[str]:
    """``*.yaml`` under root/{lib,etc,run}/subdir, later layers hiding earlier, sorted by name.

    A directory that exists but cannot be listed is reported (when ``report`` is given):
    its files might hide or change others, so what was read is not the whole truth."""
    def unlisted(directory: str, exc: OSError) -> None:
        if report is not None:
            report.add(Diagnostic(directory, 0, 0, f"cannot list the directory: "
                                  f"{exc.strerror}", kind="Error"))

    return _layered_files(root, subdir, unlisted)


def load_file(path: str, report: Report, display: str | None = None) -> Document | None:
    """Parse one YAML file; problems go to ``report`` and give None."""
    display = display or path
    try:
        raw = read_limited(path)
    except OSError as exc:
        report.add(Diagnostic(display, 0, 0, f"cannot read: {exc.strerror or exc}",
                              kind="Error"))
        return None
    if len(raw) > MAX_FILE_BYTES:
        report.add(Diagnostic(display, 1, 1, f"file larger than {MAX_FILE_BYTES} bytes; "
                              "a fan definition is a few lines", kind="Invalid YAML"))
        return None
    return parse_bytes(raw, display, report)


def parse_bytes(raw: bytes, display: str, report: Report) -> Document | None:
    """YAML with positions, every limit checked before it could be exceeded."""
    import yaml                         # here, not at the top: an unchanged generate skips it

    from fangen.config import yamltree

    try:
        data, positions = yamltree.build(raw, display)
    except yamltree.TreeError as exc:
        mark = exc.mark
        report.add(Diagnostic(display, mark.line + 1, mark.column + 1, str(exc),
                              kind="Invalid YAML"))
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "syntax error"
        report.add(Diagnostic(display, line, col, problem, kind="Invalid YAML"))
        return None
    except yaml.YAMLError as exc:
        line, col = _offset_to_line_col(raw, getattr(exc, "position", None))
        problem = getattr(exc, "reason", None) or str(exc).splitlines()[0]
        if getattr(exc, "character", None) is not None:
            character = exc.character
            code = character if isinstance(character, int) else ord(character)
            problem = f"unacceptable character #x{code:04x}: {problem}"
        report.add(Diagnostic(display, line, col, problem, kind="Invalid YAML"))
        return None
    return Document(display, data, positions)


def _offset_to_line_col(raw: bytes, offset) -> tuple[int, int]:
    if not isinstance(offset, int) or offset < 0:
        return 1, 1
    before = raw[:offset]
    line = before.count(b"\n") + 1
    return line, offset - (before.rfind(b"\n") + 1) + 1


def check_permissions(path: str, display: str, report: Report) -> None:
    """Warn, as netplan does, when a configuration file is readable by others."""
    try:
        mode = stat_mode(path)
    except OSError:
        return
    if stat.S_ISREG(mode) and mode & stat.S_IROTH:
        report.add(Diagnostic(display, 1, 1, "permissions are too open: fan configuration "
                              f"should not be readable by others (chmod 600 {display})",
                              severity="warning"))


def misplaced_fans(root: str, report: Report) -> None:
    """A plain netplan file holding ``network: fan:`` is an error: netplan rejects it."""
    for path in layered_files(root, NETPLAN_DIR):
        try:
            raw = read_limited(path)
        except OSError:
            continue                       # netplan reports what it cannot read
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
    # the errors of files (or directories) that could not be read or parsed, or whose top
    # level has the wrong shape: what they meant is unknown, so every fan is frozen
    freezing: list = field(default_factory=list)


def load(root: str = "/", report: Report | None = None) -> Loaded:
    """Load and merge every fan.d file under ``root``."""
    report = report if report is not None else Report()
    merged: dict = {}
    positions = Positions()
    files: list[str] = []
    fan_files: dict = {}
    broken: list[str] = []
    listing = Report()
    paths = layered_files(root, FAN_DIR, listing)
    freezing = list(listing.errors)
    report.items.extend(listing.items)
    for path in paths:
        display = path
        files.append(display)
        mine = Report()
        check_permissions(path, display, mine)
        doc = load_file(path, mine, display)
        ok = doc is not None and (doc.data is None or
                                  _merge_document(doc, merged, positions, fan_files, mine))
        if not ok:
            broken.append(display)
            freezing.extend(mine.errors)
        report.items.extend(mine.items)
    misplaced_fans(root, report)
    return Loaded(merged, positions, files, fan_files, broken, freezing)


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
    if "fan" in (data.get("network") or {}) and not isinstance(fans, dict):
        # merged, a list or null here would replace every fan of the earlier files
        _shape_error(doc, ("network", "fan"),
                     f"'fan' must be a mapping of fans by name, not {_kind(fans)}", report)
        return False
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
        return f"the text {shown(value)}"
    return "nothing (null)" if value is None else f"the value {shown(value)}"


def _shape_error(doc: Document, path: tuple, message: str, report: Report) -> None:
    pos = doc.positions.of(path) or Pos(doc.file, 1, 1)
    report.add(Diagnostic(doc.file, pos.line, pos.col, message, path=path))


def _deep_merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value
