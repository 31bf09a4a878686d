"""What ``fangen run`` puts back, and when it stops fighting over it.

While the underlay and the configuration stay the same, every action of a
reconciliation repairs something another program changed: an address or route
deleted (``ip route del``, Docker's ``network create --subnet SLICE``), a link
set down, dnsmasq ended.  ``run`` puts it back.  When the same repair has been
needed :data:`LIMIT` times within :data:`WINDOW` seconds, something keeps
undoing it: ``run`` stops repeating that one (it says so once), the fan is left
to show as broken in ``fangen show``, and a new underlay address or SIGHUP starts
over.  Addresses on the bridge that fangen did not set are left alone and named
once (:func:`foreign_addresses`).

Pure apart from the clock, which is injected.
"""

from __future__ import annotations

import time

from fangen.runtime.view import kernel_link_local

LIMIT = 3               # repairs of one thing ...
WINDOW = 60.0           # ... within this many seconds: someone keeps undoing it


def key(action) -> str | None:
    """What an action repairs (its text), or None for bookkeeping."""
    from fangen.runtime.actions import Forget, Record

    if isinstance(action, (Record, Forget)):
        return None
    return str(action).split("\n")[0]


class Repairs:
    def __init__(self, clock=time.monotonic, limit: int = LIMIT, window: float = WINDOW):
        self.clock, self.limit, self.window = clock, limit, window
        self.done: dict[str, list[float]] = {}
        self.given_up: set[str] = set()

    def reset(self) -> None:
        """A new underlay address, or SIGHUP: every repair is allowed again."""
        self.done.clear()
        self.given_up.clear()

    def skip(self, actions: list) -> tuple[frozenset, list]:
        """(actions not to take now, lines to log once: the repairs given up just now)."""
        now = self.clock()
        skip, newly = set(), []
        for action in actions:
            k = key(action)
            if k is None:
                continue
            recent = [t for t in self.done.get(k, []) if now - t < self.window]
            self.done[k] = recent
            if k in self.given_up:
                skip.add(action)
            elif len(recent) >= self.limit:
                self.given_up.add(k)
                skip.add(action)
                newly.append(f"something keeps undoing '{k}' (tried {len(recent)} times "
                             f"in {self.window:g} s): not doing it again until the underlay "
                             "changes or SIGHUP; 'fangen show' reports what is broken")
        return frozenset(skip), newly

    def note(self, actions: list) -> None:
        """These actions were taken (as repairs)."""
        now = self.clock()
        for action in actions:
            k = key(action)
            if k is not None:
                self.done.setdefault(k, []).append(now)


def foreign_addresses(bridge_addresses, ours: set) -> list[str]:
    """The bridge's addresses fangen did not set (sorted), but for the kernel's own
    IPv6 link-local one."""
    return sorted(a for a in set(bridge_addresses) - set(ours) if not kernel_link_local(a))
