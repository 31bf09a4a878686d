"""Diagnostics as data, printed the way netplan prints them.

A Diagnostic is (file, line, col, path, message); line and column are 1-based,
as netplan prints them.  Formatting reads the source line back from the file so
the caret can point at the column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EXIT_OK = 0
EXIT_ERROR = 1       # bad configuration or a failed operation
EXIT_USAGE = 2       # bad command line (argparse's own code)


@dataclass(frozen=True)
class Diagnostic:
    file: str | None
    line: int
    col: int
    message: str
    path: tuple = ()
    kind: str = "Error in fan definition"
    severity: str = "error"          # "error" or "warning"

    def format(self, source: str | None = None) -> str:
        if self.file is None:
            return f"{self.kind}: {self.message}" if self.severity == "error" else \
                f"Warning: {self.message}"
        head = f"{self.file}:{self.line}:{self.col}: "
        if self.severity == "warning":
            return head + f"Warning: {self.message}"
        text = head + f"{self.kind}: {self.message}"
        if source is None:
            source = _source_line(self.file, self.line)
        if source is not None:
            text += "\n" + source + "\n" + " " * max(self.col - 1, 0) + "^"
        return text


def _source_line(path: str, line: int) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for number, text in enumerate(fh, 1):
                if number == line:
                    return text.rstrip("\n")
    except OSError:
        return None
    return ""


class FangenError(Exception):
    """A user-facing failure: printed as one clear message, exit code 1, no traceback."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, diagnostics: list[Diagnostic] | None = None):
        super().__init__(message)
        self.diagnostics = diagnostics or []


class ConfigError(FangenError):
    """The configuration is invalid; ``diagnostics`` holds every problem found."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__(diagnostics[0].message if diagnostics else "invalid configuration",
                         diagnostics)


@dataclass
class Report:
    """Diagnostics collected while loading and validating, errors and warnings."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, diag: Diagnostic) -> None:
        self.items.append(diag)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]
