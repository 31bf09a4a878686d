"""The heavy half of ``fangen run``: what a short-lived child of the follower does.

:mod:`fangen.runtime.follow` stays small (the standard library only) and forks a
child for every piece of work; the child imports pyroute2, the configuration
loader and the rest, does one job for every followed fan, hands back what must
survive it, and exits, so its memory goes with it.  The jobs:

* :func:`bring_up` (``fangen run NAME`` by hand): wait for the underlay as long as
  it takes (or ``--timeout``) and bring the fan up;
* :func:`reconcile` (a netlink event, dnsmasq ended): resolve the underlay again;
  a new address moves the slice, the same one puts back what someone else removed
  (:mod:`fangen.runtime.repairs`);
* :func:`reload` (SIGHUP): re-read the configuration; a fan removed or disabled is
  taken down and no longer followed.

What survives a child is a *memo* per fan (the configuration read at start or at
the last SIGHUP, the last underlay, the repair counts, the foreign addresses named)
and one per host (kernel fan datapath refusals), pickled: the follower keeps the
bytes without reading them, and a forked child has them in its memory.

A fan is followed only while it is up (its state file says so): under the lock,
before any change, a fan that ``fangen down`` (or ``fangen@NAME.service``'s
ExecStopPost) took down meanwhile is left down.  The root's lock
(:mod:`fangen.runtime.lock`) is held only while something changes.
"""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass, field

from fangen.errors import FangenError, print_error, printable
from fangen.runtime import announce, control, lock, repairs, underlay_route
from fangen.runtime import state as state_mod
from fangen.runtime import underlay as underlay_mod
from fangen.runtime.sdnotify import notify

EX_CONFIG = 78          # sysexits.h: not configured or broken; a restart cannot help


@dataclass
class Memo:
    """What one fan's following remembers between children."""
    fan: object                              # fangen.config.model.Fan
    last_underlay: object = None             # underlay.Resolved
    repairs: repairs.Repairs = field(default_factory=repairs.Repairs)
    foreign: list = field(default_factory=list)


class Job:
    """One child's work over the followed fans; ``out`` is the log stream."""

    def __init__(self, root: str, no_systemd: bool, memos: dict, host_memo: bytes | None,
                 out=None):
        from fangen.runtime.host import make_host

        self.out = out or sys.stderr
        self.host = make_host(root, no_systemd)
        if host_memo:
            self.host.kernel_refused.update(pickle.loads(host_memo))
        self.memos = {name: pickle.loads(blob) for name, blob in memos.items()}
        self.gone: list[str] = []
        self.status: str | None = None

    def log(self, name: str, text: str) -> None:
        print(printable(f"fangen[{name}]: {text}"), file=self.out, flush=True)

    def result(self) -> dict:
        """What the follower keeps: bytes it does not read, and plain values."""
        return {"memos": {n: pickle.dumps(m) for n, m in self.memos.items()},
                "host": pickle.dumps(dict(self.host.kernel_refused)),
                "gone": self.gone, "status": self.status}

    def memo(self, name: str) -> Memo | None:
        """The fan's memo; the first time, from the configuration (None: not configured
        or broken, said once)."""
        if name not in self.memos:
            from fangen.config.check import Frozen
            try:
                self.memos[name] = Memo(control.fan_named(self.host.root, name))
            except Frozen as exc:
                self.log(name, f"{exc.summary.removeprefix('fangen: ')}; not following it")
                return None
            except FangenError as exc:
                self.log(name, f"not following it: {_oneline(exc)}")
                self.gone.append(name)
                return None
        return self.memos[name]

    # -- the jobs ----------------------------------------------------------------------------
    def bring_up(self, names: list, timeout: float | None) -> int:
        for name in names:
            try:
                fan = control.fan_named(self.host.root, name)
            except FangenError as exc:
                exc.exit_code = EX_CONFIG        # not a fan, removed, or broken
                return print_error(exc)
            notify(f"STATUS=waiting for the underlay {fan.underlay.spec}")
            try:
                result = control.up(self.host, fan, timeout=timeout)
            except FangenError as exc:
                return print_error(exc)
            memo = self.memos[name] = Memo(fan, result.target.underlay)
            self.status = (f"slice {result.target.slice.network} on "
                           f"{memo.last_underlay.ifname} {memo.last_underlay.address} "
                           f"({result.target.datapath} datapath)")
            self.log(name, f"up: {self.status}")
            self._note_foreign(name, memo)
        return 0

    def reconcile(self, names: list, force: bool = False) -> int:
        for name in names:
            memo = self.memo(name)
            if memo is not None:
                self._reconcile(name, memo, force)
        return 0

    def reload(self, names: list) -> int:
        from fangen.config.check import Frozen

        try:
            fans, errors, _ = control.load_fans(self.host.root)
        except Frozen as exc:                  # a broken file: change nothing (fan.d(5))
            for name in names:
                self.log(name, f"{exc.summary.removeprefix('fangen: ')}; keeping the fan "
                               "as it is")
            return 0
        for name in names:
            fan = fans.get(name)
            if fan is None and any(len(d.path) >= 3 and d.path[2] == name for d in errors):
                self.log(name, "configuration has errors; keeping the running fan as it is")
                continue
            notes: list[str] = []
            if fan is None or not fan.enabled:
                self.log(name, "removed or disabled in the configuration; taking it down")
                control.down(self.host, name, notes=notes)
                for note in notes:
                    self.log(name, note)
                self.memos.pop(name, None)
                self.gone.append(name)
                continue
            old = self.memos.get(name)
            if old is not None and (fan.bridge, fan.tunnel) != (old.fan.bridge, old.fan.tunnel):
                self.log(name, "bridge or tunnel name changed; taking the old devices down")
                control.down(self.host, name, notes=notes)
                for note in notes:
                    self.log(name, note)
                # the fan stays followed and comes up with its new names
            memo = self.memos[name] = Memo(fan, old.last_underlay if old else None)
            self._reconcile(name, memo, force=True, renamed=old is not None and
                            (fan.bridge, fan.tunnel) != (old.fan.bridge, old.fan.tunnel))
        return 0

    # -- one fan -----------------------------------------------------------------------------
    def _reconcile(self, name: str, memo: Memo, force: bool, renamed: bool = False) -> None:
        try:
            st = state_mod.load(self.host.root, name)
            if not renamed and (st is None or st.is_stub()):
                return              # taken down (only a bridge kept for its ports): left so
            resolved = underlay_mod.resolve(self.host.ipr, memo.fan.underlay)
            if resolved is None:
                if memo.last_underlay is not None:
                    self.log(name, f"underlay {memo.fan.underlay.spec} is gone; keeping the "
                                   "slice until it comes back")
                    memo.last_underlay = None
                return
            moved = resolved != memo.last_underlay
            if moved:
                self.log(name, f"underlay now {resolved.ifname} {resolved.address} "
                               f"({resolved.network}, mtu {resolved.mtu})")
                memo.repairs.reset()
            if force:
                memo.repairs.reset()
            _, actions = control.plan_for(self.host, memo.fan, resolved)
            memo.last_underlay = resolved
            # the same underlay and configuration: whatever is to do repairs what someone
            # else changed; a repair undone again and again is given up (repairs.py)
            repairing = not moved and not force
            skip: frozenset = frozenset()
            if repairing:
                skip, given_up = memo.repairs.skip(actions)
                for line in given_up:
                    self.log(name, line)
            todo = [a for a in actions if a not in skip]
            if not todo:
                # the fan's own objects are right: only the multi-homed rule and routes
                # may need putting back (with work to do, apply_up below does it)
                underlay_route.reconcile(self.host, memo.fan, resolved, held=False,
                                         log=lambda line: self.log(name, line))
                if moved:           # back on an address with the fan as it was
                    announce.address(self.host, resolved)
                self._note_foreign(name, memo)
                return              # nothing to change: no lock taken
            if repairing:           # counted when tried: it may be undone before verify
                memo.repairs.note(todo)
            # the lock only while changing, and a fresh plan under it
            with lock.held(self.host.root, f"run {name}"):
                st = state_mod.load(self.host.root, name)
                if not renamed and (st is None or st.is_stub()):
                    self.log(name, "taken down meanwhile; left down")
                    return
                result = control.apply_up(self.host, memo.fan, resolved, skip)
            for note in result.notes:
                self.log(name, note)
            target, actions = result.target, result.actions
            if repairing:
                for action in actions:
                    if repairs.key(action) is not None:
                        self.log(name, f"put back: {repairs.key(action)}")
            else:
                self.log(name, f"reconciled: slice {target.slice.network} "
                               f"({len(actions)} actions)")
            self.status = (f"slice {target.slice.network} on {resolved.ifname} "
                           f"{resolved.address} ({target.datapath} datapath)")
            self._note_foreign(name, memo)
        except FangenError as exc:
            self.log(name, f"error: {_oneline(exc)}")

    def _note_foreign(self, name: str, memo: Memo) -> None:
        """Name, once, the bridge addresses fangen did not set (left alone: fighting an
        engine that set one would go on for ever)."""
        from fangen.runtime.netlink import Netlink

        st = state_mod.load(self.host.root, name)
        bridge = Netlink(self.host.ipr).links().get(memo.fan.bridge)
        if st is None or bridge is None:
            return
        ours = {a["address"] for a in st.addresses if a["dev"] == memo.fan.bridge}
        foreign = repairs.foreign_addresses(bridge.addresses, ours)
        if foreign and foreign != memo.foreign:
            self.log(name, f"bridge {memo.fan.bridge} also holds {', '.join(foreign)}, which "
                           "fangen did not set (an engine's network with the slice as its "
                           "subnet?): left as it is; once that network is gone, 'ip address "
                           f"del ADDRESS dev {memo.fan.bridge}' removes it")
        memo.foreign = foreign


def _oneline(exc: FangenError) -> str:
    if exc.diagnostics:
        return "; ".join(d.format().splitlines()[0] for d in exc.diagnostics)
    return str(exc)
