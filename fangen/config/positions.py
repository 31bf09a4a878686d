"""Where each value came from: (file, line, column), kept beside the data, keyed by path."""

from __future__ import annotations

from dataclasses import dataclass, field


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
