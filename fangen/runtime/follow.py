"""``fangen run``: bring the fan up, then follow the underlay until SIGTERM.

One select() loop over three kinds of wake-up, no polling:

* netlink events (links, IPv4 addresses, IPv4 routes): resolve the underlay
  again and reconcile; a new underlay address moves the slice (the plan removes
  the old bridge address, route, programs, nft table contents and dnsmasq
  config, and makes the new ones); with the same underlay, what someone else
  removed (the bridge address, its route, the overlay route) is put back, and a
  repair undone again and again is given up (:mod:`fangen.runtime.repairs`);
* the dnsmasq process ending (a pidfd, when dnsmasq runs as a plain process):
  reconcile, which starts it again;
* signals: SIGHUP re-reads the configuration and reconciles (a fan removed or
  disabled is taken down and the loop ends); SIGTERM/SIGINT end the loop and
  leave the fan up (the unit's ExecStopPost, ``fangen down --if-unconfigured``,
  takes it down only when it left the configuration: a restart keeps the bridge
  and the containers on it).

While the underlay is missing (a lease lost, the link down) the fan is left as
it is; when an address comes back the slice follows it.

The root's lock (:mod:`fangen.runtime.lock`) is held only while something
changes (the first ``up``, a reconciliation with actions, a ``down``), never
while waiting, so ``fangen up``/``down`` by hand wait at most for one change.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

from fangen.errors import FangenError
from fangen.runtime import control, lock, repairs
from fangen.runtime import state as state_mod
from fangen.runtime import underlay as underlay_mod
from fangen.runtime import underlay_route
from fangen.runtime.sdnotify import notify

SETTLE = 0.05          # let a burst of netlink events finish before reconciling


class Follower:
    def __init__(self, host, name: str, out=None):
        self.host = host
        self.name = name
        self.out = out or sys.stderr
        self.fan = None
        self.events = None
        self.flags: set = set()
        self.last_underlay = None
        self.repairs = repairs.Repairs()
        self.foreign: list = []              # bridge addresses not fangen's, named once

    def log(self, text: str) -> None:
        print(f"fangen[{self.name}]: {text}", file=self.out, flush=True)

    # -- signals ---------------------------------------------------------------------------
    def _install_signals(self):
        """SIGHUP is noted from the start; SIGTERM keeps its default (exit at once) until
        the fan is up, so a stop while waiting for the underlay is not delayed."""
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        signal.signal(signal.SIGHUP, lambda _s, _f: self.flags.add("hup"))
        return rfd, wfd

    def _catch_term(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _s, _f: self.flags.add("term"))

    # -- the loop --------------------------------------------------------------------------
    def run(self, timeout: float | None = None) -> int:
        rfd, wfd = self._install_signals()
        self.events = underlay_mod.Events(self.host.new_ipr)
        try:
            self.fan = control.fan_named(self.host.root, self.name)
            notify(f"STATUS=waiting for the underlay {self.fan.underlay.spec}")
            result = control.up(self.host, self.fan, timeout=timeout, events=self.events)
            self.last_underlay = result.target.underlay
            self._catch_term()
            status = (f"slice {result.target.slice.network} on {self.last_underlay.ifname} "
                      f"{self.last_underlay.address} ({result.target.datapath} datapath)")
            self.log(f"up: {status}")
            notify(f"READY=1\nSTATUS={status}")
            self._note_foreign()
            while "term" not in self.flags:
                pidfd = self._dnsmasq_pidfd()
                fds = [self.events.fileno(), rfd] + ([pidfd] if pidfd is not None else [])
                try:
                    ready, _, _ = select.select(fds, [], [])
                finally:
                    if pidfd is not None:
                        os.close(pidfd)
                _drain_pipe(rfd)
                if "term" in self.flags:
                    break
                if "hup" in self.flags:
                    self.flags.discard("hup")
                    if not self._reload():
                        return 0
                    continue
                if self.events.fileno() in ready:
                    self.events.drain()
                    time.sleep(SETTLE)
                    self.events.drain()
                elif pidfd is not None and pidfd in ready:
                    self.log("dnsmasq ended; starting it again")
                self._reconcile()
            self.log("exiting; the fan stays up")
            notify("STOPPING=1")
            return 0
        finally:
            signal.set_wakeup_fd(-1)
            os.close(rfd)
            os.close(wfd)
            self.events.close()

    def _dnsmasq_pidfd(self):
        st = state_mod.load(self.host.root, self.name)
        if st is None or st.dnsmasq.get("mode") != "process" or not hasattr(os, "pidfd_open"):
            return None
        try:
            return os.pidfd_open(st.dnsmasq["pid"])
        except OSError:
            return None

    def _reload(self) -> bool:
        """SIGHUP: re-read the configuration; False when the fan is gone."""
        from fangen.config.check import Frozen

        try:
            fans, errors, _ = control.load_fans(self.host.root)
        except Frozen as exc:                  # a broken file: change nothing (fan.d(5))
            self.log(f"{exc.summary.removeprefix('fangen: ')}; keeping the fan as it is")
            return True
        fan = fans.get(self.name)
        if fan is None and any(len(d.path) >= 3 and d.path[2] == self.name for d in errors):
            self.log("configuration has errors; keeping the running fan as it is")
            return True
        notes: list[str] = []
        if fan is None or not fan.enabled:
            self.log("removed or disabled in the configuration; taking it down")
            control.down(self.host, self.name, notes=notes)
            for note in notes:
                self.log(note)
            return False
        if self.fan is not None and (fan.bridge, fan.tunnel) != (self.fan.bridge,
                                                                 self.fan.tunnel):
            self.log("bridge or tunnel name changed; taking the old devices down")
            control.down(self.host, self.name, notes=notes)
            for note in notes:
                self.log(note)
        self.fan = fan
        self.repairs.reset()
        self._reconcile(force=True)
        return True

    def _reconcile(self, force: bool = False) -> None:
        try:
            resolved = underlay_mod.resolve(self.host.ipr, self.fan.underlay)
            if resolved is None:
                if self.last_underlay is not None:
                    self.log(f"underlay {self.fan.underlay.spec} is gone; keeping the "
                             "slice until it comes back")
                    self.last_underlay = None
                return
            underlay_route.reconcile(self.host, self.fan, resolved, held=False,
                                     log=self.log)          # multi-homed hosts (issue 15)
            moved = resolved != self.last_underlay
            if moved:
                self.log(f"underlay now {resolved.ifname} {resolved.address} "
                         f"({resolved.network}, mtu {resolved.mtu})")
                self.repairs.reset()
            _, actions = control.plan_for(self.host, self.fan, resolved)
            self.last_underlay = resolved
            # the same underlay and configuration: whatever is to do repairs what someone
            # else changed; a repair undone again and again is given up (repairs.py)
            repairing = not moved and not force
            skip: frozenset = frozenset()
            if repairing:
                skip, given_up = self.repairs.skip(actions)
                for line in given_up:
                    self.log(line)
            todo = [a for a in actions if a not in skip]
            if not todo:
                self._note_foreign()
                return              # nothing to change: no lock taken
            if repairing:           # counted when tried: it may be undone before verify
                self.repairs.note(todo)
            # the lock only while changing, and a fresh plan under it
            with lock.held(self.host.root, f"run {self.name}"):
                result = control.apply_up(self.host, self.fan, resolved, skip)
            for note in result.notes:
                self.log(note)
            target, actions = result.target, result.actions
            if repairing:
                for action in actions:
                    if repairs.key(action) is not None:
                        self.log(f"put back: {repairs.key(action)}")
            else:
                self.log(f"reconciled: slice {target.slice.network} ({len(actions)} actions)")
            notify(f"STATUS=slice {target.slice.network} on {resolved.ifname} "
                   f"{resolved.address} ({target.datapath} datapath)")
            self._note_foreign()
        except FangenError as exc:
            self.log(f"error: {exc}")

    def _note_foreign(self) -> None:
        """Name, once, the bridge addresses fangen did not set (left alone: fighting an
        engine that set one would go on for ever)."""
        from fangen.runtime.netlink import Netlink

        st = state_mod.load(self.host.root, self.name)
        bridge = Netlink(self.host.ipr).links().get(self.fan.bridge)
        if st is None or bridge is None:
            return
        ours = {a["address"] for a in st.addresses if a["dev"] == self.fan.bridge}
        foreign = repairs.foreign_addresses(bridge.addresses, ours)
        if foreign and foreign != self.foreign:
            self.log(f"bridge {self.fan.bridge} also holds {', '.join(foreign)}, which "
                     "fangen did not set (an engine's network with the slice as its "
                     "subnet?): left as it is; once that network is gone, 'ip address "
                     f"del ADDRESS dev {self.fan.bridge}' removes it")
        self.foreign = foreign


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
