"""Diagnostics as data, printed the way netplan prints them.

A Diagnostic is (file, line, col, path, message); line and column are 1-based,
as netplan prints them.  Formatting reads the source line back from the file so
the caret can point at the column.

Plain classes rather than dataclasses: every fangen command imports this module,
and ``dataclasses`` (with ``inspect``) costs more than the rest of a ``generate``
that finds nothing to do.
"""

from __future__ import annotations

MAX_SHOWN = 64       # characters of a user's value quoted in a message

EXIT_OK = 0
EXIT_ERROR = 1       # bad configuration or a failed operation
EXIT_USAGE = 2       # bad command line (argparse's own code)


class Diagnostic:
    """One problem at a place: immutable, compared and hashed by its fields."""

    __slots__ = ("file", "line", "col", "message", "path", "kind", "severity")

    def __init__(self, file: str | None, line: int, col: int, message: str,
                 path: tuple = (), kind: str = "Error in fan definition",
                 severity: str = "error"):          # severity: "error" or "warning"
        for name, value in zip(self.__slots__, (file, line, col, message, path, kind,
                                                severity)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot assign to field '{name}': a Diagnostic is immutable")

    def __delattr__(self, name):
        raise AttributeError(f"cannot delete field '{name}': a Diagnostic is immutable")

    def _fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self):
        return hash(self._fields())

    def __repr__(self):
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Diagnostic({inner})"

    def format(self, source: str | None = None) -> str:
        """The first line is the whole diagnostic (file, line, column, message); for an
        error with a line, the source line and a caret follow.  Nothing from the input
        reaches the terminal unescaped (no control characters, no line breaks)."""
        message = printable(self.message)
        if self.file is None:
            return f"{self.kind}: {message}" if self.severity == "error" else \
                f"Warning: {message}"
        head = f"{printable(self.file)}:"
        head += f"{self.line}:{self.col}: " if self.line > 0 else " "
        if self.severity == "warning":
            return head + f"Warning: {message}"
        text = head + f"{self.kind}: {message}"
        if self.line <= 0:
            return text
        if source is None:
            source = _source_line(self.file, self.line)
        if source is not None:
            text += "\n" + printable(source) + "\n" + " " * max(self.col - 1, 0) + "^"
        return text


def printable(text: str) -> str:
    """``text`` with control, format and line-separator characters escaped (\\n, \\x00,
    \\u202e): one line, and no terminal escape sequences."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable() or char == " ":
            out.append(char)
        elif char == "\t":
            out.append("\\t")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


def shown(value) -> str:
    """A user's value as a message quotes it: strings in single quotes, escaped, shortened."""
    if isinstance(value, str):
        text = value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "..."
        return f"'{printable(text)}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int) and abs(value) >= 10 ** MAX_SHOWN:
        return f"a number of {len(str(abs(value)))} digits"
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    return printable(text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "...")


def _source_line(path: str, line: int) -> str | None:
    """The line as YAML counts lines (\\n, \\r\\n, \\r, NEL, LS and PS end one), from the
    first megabyte of a regular file; None when it cannot be read."""
    import os
    import re
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        raw = os.read(fd, 1 << 20)
    except OSError:
        return None
    finally:
        os.close(fd)
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
    lines = re.split("[\n\r\x85\u2028\u2029]", text)
    return lines[line - 1] if 0 < line <= len(lines) else ""


class FangenError(Exception):
    """A user-facing failure: printed as one clear message, exit code 1, no traceback."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, diagnostics: list[Diagnostic] | None = None):
        super().__init__(message)
        self.diagnostics = diagnostics or []


def print_error(exc: FangenError) -> int:
    """A FangenError as the user sees it on stderr (its diagnostics and summary, or one
    line); returns its exit code.  The CLI and the runtime's children both print so."""
    import sys

    if exc.diagnostics:
        if not getattr(exc, "printed", False):
            for diag in exc.diagnostics:
                print(diag.format(), file=sys.stderr)
        summary = getattr(exc, "summary", None)
        if summary:
            print(printable(summary), file=sys.stderr)
    else:
        print(printable(f"fangen: {exc}"), file=sys.stderr)
    return exc.exit_code


class ConfigError(FangenError):
    """The configuration is invalid; ``diagnostics`` holds every problem found."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__(diagnostics[0].message if diagnostics else "invalid configuration",
                         diagnostics)


class Report:
    """Diagnostics collected while loading and validating, errors and warnings."""

    def __init__(self, items: list[Diagnostic] | None = None):
        self.items: list[Diagnostic] = [] if items is None else items

    def __repr__(self):
        return f"Report(items={self.items!r})"

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.items == other.items

    __hash__ = None

    def add(self, diag: Diagnostic) -> None:
        self.items.append(diag)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]
