"""YAML bytes -> plain data and a positions table, built from the parser's event stream.

PyYAML's composers recurse once per nesting level (libyaml's in C, below Python's
recursion limit), so a file of a few thousand brackets can crash the process before
any limit is checked.  Here nothing composes: the parser's events (``yaml.parse``,
a state machine with its own heap stacks) are read one by one and the data is built
with an explicit stack, and every limit -- size in events and values (aliases
counted as what they expand to), nesting depth, one document -- is checked as the
events arrive, before anything is built past it.

Scalars are resolved and constructed as the safe loader does (``yes`` is true,
``0x10`` is 16, ``~`` is null); mapping keys are kept as the text they look like
when they would be a boolean or null (``on:`` stays the key ``on``).  Not
supported, with an error at the node: merge keys (``<<``), tagged collections
(``!!set``, ``!!omap``, local tags), non-scalar keys, duplicate keys.
"""

from __future__ import annotations

import copy

import yaml

from fangen.config.positions import Pos, Positions

MAX_NODES = 20000               # values after alias expansion (alias bombs stop here)
MAX_DEPTH = 32                  # nesting depth of collections
MAX_EVENTS = 2 * MAX_NODES + 16  # every node is at most two events

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MAP_TAGS = (None, "!", "tag:yaml.org,2002:map")
_SEQ_TAGS = (None, "!", "tag:yaml.org,2002:seq")
_MERGE = "tag:yaml.org,2002:merge"
_KEY = object()                 # a mapping frame waiting for its next key


class TreeError(Exception):
    """A problem at a place in the document (``mark``: a yaml Mark)."""

    def __init__(self, mark, message: str):
        super().__init__(message)
        self.mark = mark


class _Frame:
    __slots__ = ("value", "path", "anchor", "start", "entries", "key", "key_mark", "mark")

    def __init__(self, value, path, anchor, start, entries, mark):
        self.value = value          # the dict or list being filled
        self.path = path
        self.anchor = anchor
        self.start = start          # node count when the collection started
        self.entries = entries      # index into the entries log when it started
        self.key = _KEY             # mapping: the key whose value comes next
        self.key_mark = None
        self.mark = mark


class _Builder:
    def __init__(self, file: str):
        self.file = file
        self.positions = Positions()
        self.entries: list = []     # (is_key, path, Pos) in order, for alias expansion
        self.nodes = 0
        self.anchors: dict = {}     # name -> (value, path, node count, entries)
        self.constructor = yaml.SafeLoader("")

    # -- positions -------------------------------------------------------------------
    def pos(self, mark) -> Pos:
        return Pos(self.file, mark.line + 1, mark.column + 1)

    def note(self, is_key: bool, path: tuple, pos: Pos) -> None:
        (self.positions.keys if is_key else self.positions.values)[path] = pos
        self.entries.append((is_key, path, pos))

    def count(self, mark, amount: int = 1) -> None:
        self.nodes += amount
        if self.nodes > MAX_NODES:
            raise TreeError(mark, f"document too large: more than {MAX_NODES} values "
                                  "(after expanding aliases)")

    # -- the event loop --------------------------------------------------------------
    def build(self, raw: bytes):
        stack: list[_Frame] = []
        result = None
        documents = 0
        for number, event in enumerate(yaml.parse(raw, Loader=_Loader)):
            if number > MAX_EVENTS:
                raise TreeError(event.start_mark, f"document too large: more than "
                                                  f"{MAX_NODES} values")
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise TreeError(event.start_mark, "expected a single document, found "
                                                      "another one ('---')")
                continue
            if isinstance(event, (yaml.StreamStartEvent, yaml.StreamEndEvent,
                                  yaml.DocumentEndEvent)):
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frame = stack.pop()
                if frame.anchor is not None:
                    self.remember(frame.anchor, frame.value, frame.path,
                                  self.nodes - frame.start, frame.entries)
                done = frame.value
                if not stack:
                    result = done
                else:
                    self.attach(stack[-1], done)
                continue
            parent = stack[-1] if stack else None
            if parent is not None and isinstance(parent.value, dict) and parent.key is _KEY:
                self.take_key(parent, event)
                continue
            path = self.child_path(parent)
            if isinstance(event, yaml.AliasEvent):
                value = self.expand(event, path)
            elif isinstance(event, yaml.ScalarEvent):
                self.count(event.start_mark)
                self.note(False, path, self.pos(event.start_mark))
                value = self.scalar(event)
                if event.anchor is not None:
                    self.remember(event.anchor, value, path, 1, len(self.entries) - 1)
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                self.open(stack, event, path)
                continue
            else:                                   # pragma: no cover - no other events
                raise TreeError(event.start_mark, f"unexpected {type(event).__name__}")
            if parent is None:
                result = value
            else:
                self.attach(parent, value)
        return result

    def open(self, stack: list, event, path: tuple) -> None:
        mapping = isinstance(event, yaml.MappingStartEvent)
        if len(stack) + 1 > MAX_DEPTH:
            raise TreeError(event.start_mark, f"document nested deeper than {MAX_DEPTH} "
                                              "levels")
        if event.tag not in (_MAP_TAGS if mapping else _SEQ_TAGS):
            raise TreeError(event.start_mark, f"unsupported tag '{event.tag}' on a "
                                              f"{'mapping' if mapping else 'list'}")
        self.count(event.start_mark)
        self.note(False, path, self.pos(event.start_mark))
        stack.append(_Frame({} if mapping else [], path, event.anchor, self.nodes - 1,
                            len(self.entries) - 1, event.start_mark))

    @staticmethod
    def child_path(parent: _Frame | None) -> tuple:
        if parent is None:
            return ()
        if isinstance(parent.value, dict):
            return parent.path + (parent.key,)
        return parent.path + (len(parent.value),)

    @staticmethod
    def attach(parent: _Frame, value) -> None:
        if isinstance(parent.value, dict):
            parent.value[parent.key] = value
            parent.key = _KEY
        else:
            parent.value.append(value)

    # -- keys, scalars, aliases ------------------------------------------------------
    def take_key(self, frame: _Frame, event) -> None:
        if not isinstance(event, yaml.ScalarEvent):
            raise TreeError(event.start_mark, "mapping keys must be scalars")
        tag = self.tag_of(event)
        if tag == _MERGE:
            raise TreeError(event.start_mark, "merge keys ('<<') are not supported")
        self.count(event.start_mark)
        key = self.scalar(event, tag)
        if isinstance(key, bool) or key is None:
            key = event.value              # 'on:'/'yes:' keys stay the names they look like
        key = str(key)
        if key in frame.value:
            raise TreeError(event.start_mark, f"duplicate key '{key}'")
        frame.key = key
        self.note(True, frame.path + (key,), self.pos(event.start_mark))

    def tag_of(self, event) -> str:
        if event.tag is None or event.tag == "!":
            return self.constructor.resolve(yaml.ScalarNode, event.value, event.implicit)
        return event.tag

    def scalar(self, event, tag: str | None = None):
        node = yaml.ScalarNode(tag or self.tag_of(event), event.value, event.start_mark,
                               event.end_mark, style=event.style)
        try:
            return self.constructor.construct_object(node)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:
            if "integer string conversion" in str(exc):     # Python's int() digit limit
                raise TreeError(event.start_mark, "number too large") from None
            raise TreeError(event.start_mark, f"invalid value: {exc}") from None
        finally:
            self.constructor.constructed_objects.clear()

    def remember(self, anchor: str, value, path: tuple, nodes: int, start: int) -> None:
        self.anchors[anchor] = (value, path, nodes, self.entries[start:])

    def expand(self, event, path: tuple):
        try:
            value, origin, nodes, entries = self.anchors[event.anchor]
        except KeyError:
            raise TreeError(event.start_mark, f"unknown alias '*{event.anchor}' (not defined "
                                              "before, or inside itself)") from None
        self.count(event.start_mark, nodes)
        cut = len(origin)
        for is_key, old, pos in entries:
            self.note(is_key, path + old[cut:], pos)
        return copy.deepcopy(value)


def build(raw: bytes, file: str) -> tuple[object, Positions]:
    """(data, positions) of one YAML document; raises TreeError or yaml.YAMLError."""
    builder = _Builder(file)
    data = builder.build(raw)
    return data, builder.positions
