"""``fangen run``: one small resident process follows every fan of a host.

Why this shape.  A resident Python process that has imported pyroute2, the
configuration loader (yaml, jsonschema) and D-Bus holds ~40 MB RSS, and one per
fan multiplies that (``bench/footprint.py``).  The interpreter alone is ~10 MB.
So the process that stays is this module, which imports only the standard
library: a raw ``AF_NETLINK`` socket subscribed to link, IPv4 address and IPv4
route changes, the signal wake-up pipe, pidfds of dnsmasq processes, and
``sd_notify`` over a unix socket (:mod:`fangen.runtime.sdnotify`).  Every piece
of real work (resolve the underlay, plan, execute, verify: pyroute2, nft,
dnsmasq, D-Bus) runs in a short-lived forked child
(:mod:`fangen.runtime.reconcile`) whose memory goes when it exits.  One process
for all fans, because per-fan processes would each pay the interpreter's ~10 MB
for nothing: the work is the same for every fan and one child does it for all.
The price is a child's start on every change: the fork, and imports of pyroute2
and the runtime (~250 ms on an idle host).  A moved slice (a new underlay address
on a fan that is up) took ~100 ms with the previous in-process loop and takes
~360 ms (median of 6, side by side).  The first ``up``, where a peer waits for
the fan (``bench/convergence.py``), runs in a child that was started before the
underlay appeared, so it does not pay that.

One ``select()`` loop, no polling and no timeout: idle, it costs no CPU.

* netlink events: a child reconciles every followed fan (a new underlay address
  moves the slice; with the same one, what someone else removed is put back, and
  a repair undone again and again is given up: :mod:`fangen.runtime.repairs`).
  Events that arrive once a child has looked are handled by one more child after
  it (the child's own changes cause one such round, which finds nothing to do);
* a dnsmasq process ending (a pidfd, when dnsmasq runs as a plain process): a
  child reconciles, which starts it again;
* SIGHUP: a child re-reads the configuration and reconciles (a fan removed or
  disabled is taken down and no longer followed); SIGTERM/SIGINT: end the loop
  once a running child is done, leaving the fans up.

Which fans.  ``fangen run NAME...`` (by hand, no systemd) first brings the named
fans up in a child (waiting for the underlay as long as it takes, or
``--timeout``), then follows them.  ``fangen run`` without names
(``fangen-follow.service``) follows every fan that is up on the root (has a
state file, :mod:`fangen.runtime.state`), picking up fans that come up later
(their bridge's netlink events wake it) and dropping fans taken down; the
``fangen@NAME.service`` oneshots bring the fans up and take them down.

What must outlive a child (each fan's configuration as read at start or at the
last SIGHUP, its last underlay, repair counts) comes back from it pickled; this
process keeps the bytes without reading them, so it never imports the classes.
The root's lock (:mod:`fangen.runtime.lock`) is taken by the children only while
they change something, never while waiting.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import select
import signal
import socket
import struct
import sys
import traceback

from fangen.runtime.sdnotify import notify

NETLINK_ROUTE = 0
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x1, 0x10, 0x40
GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE
RTMGRP_IPV4_RULE = 0x80       # fangen.runtime.underlay_route puts back a removed rule
GROUPS |= RTMGRP_IPV4_RULE
RTM_NEWLINK, RTM_DELLINK = 16, 17
AF_BRIDGE = 7
STATE_DIR = "run/fangen"                      # fangen.render.names.STATE_DIR
FAN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")     # fangen.runtime.state
LOOKED = b"L"                                 # a child's first byte: it reads the kernel now
EX_SOFTWARE = 70


def events_socket() -> socket.socket:
    """A netlink socket that wakes up on link, IPv4 address, route and rule changes."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK |
                         socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, GROUPS))
    return sock


def relevant(data: bytes) -> bool:
    """Whether a datagram of rtnetlink messages holds one that can matter: every one but
    the bridge's own port notifications (RTM_NEWLINK/DELLINK of family AF_BRIDGE, such as
    a port moving to forwarding 15 s after it was added), which carry nothing the
    underlay or a fan's devices depend on that the AF_UNSPEC ones do not also carry."""
    off = 0
    while off + 17 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16:
            return True                       # malformed: look rather than miss it
        if not (kind in (RTM_NEWLINK, RTM_DELLINK) and data[off + 16] == AF_BRIDGE):
            return True
        off += (length + 3) & ~3
    return False


def drain(sock: socket.socket) -> bool:
    """Read every queued message; True when any can matter (an overrun counts)."""
    got = False
    while True:
        try:
            data = sock.recv(65536)
            if not data:
                return got
            got = got or relevant(data)
        except BlockingIOError:
            return got
        except OSError:                       # ENOBUFS: events were lost; look again
            got = True


def names_with_state(root: str) -> list[str]:
    """The fans that are up under ``root`` (as fangen.runtime.state.names_with_state)."""
    base = os.path.join(root, STATE_DIR)
    try:
        entries = os.listdir(base)
    except OSError:
        return []
    return sorted(e for e in entries if FAN_NAME.fullmatch(e)
                  and os.path.isfile(os.path.join(base, e, "state.json")))


def dnsmasq_pid(root: str, name: str) -> int | None:
    """The pid of the fan's dnsmasq when it runs as a plain process (not a unit)."""
    try:
        with open(os.path.join(root, STATE_DIR, name, "state.json"), encoding="utf-8") as fh:
            record = json.load(fh).get("dnsmasq") or {}
    except (OSError, ValueError, AttributeError):
        return None
    pid = record.get("pid") if record.get("mode") == "process" else None
    return pid if isinstance(pid, int) and pid > 0 else None


class Child:
    """A forked worker and the pipe it answers on."""

    def __init__(self, pid: int, fd: int, kind: str, names: list):
        self.pid, self.fd, self.kind, self.names = pid, fd, kind, names
        self.data = b""

    def read(self) -> bool:
        """Take what is there; True at end of file."""
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return False
        self.data += chunk
        return not chunk

    def finish(self) -> tuple[int, dict | None]:
        os.close(self.fd)
        _, status = os.waitpid(self.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        body = self.data[len(LOOKED):] if self.data.startswith(LOOKED) else b""
        try:
            return code, (pickle.loads(body) if body else None)
        except Exception:                      # noqa: BLE001 - a broken child's answer
            return code, None


class Follower:
    def __init__(self, root: str, names: list | None = None, no_systemd: bool = False,
                 timeout: float | None = None, out=None):
        self.root = root or "/"
        self.names = list(names) if names else None     # None: every fan that is up
        self.no_systemd = no_systemd
        self.timeout = timeout
        self.out = out or sys.stderr
        self.memos: dict[str, bytes] = {}
        self.host_memo: bytes | None = None
        self.ignored: set = set()               # up, but not configured: said once
        self.flags: set = set()
        self.child: Child | None = None
        self.ended: set = set()                 # dnsmasq pids already seen ending
        self.status = ""                        # the last change, for systemctl status

    def log(self, text: str, name: str | None = None) -> None:
        print(f"fangen[{name}]: {text}" if name else f"fangen: {text}", file=self.out,
              flush=True)

    def followed(self) -> list[str]:
        names = self.names if self.names is not None else names_with_state(self.root)
        return [n for n in names if n not in self.ignored]

    # -- children ----------------------------------------------------------------------------
    def spawn(self, kind: str, names: list) -> Child:
        rfd, wfd = os.pipe2(os.O_CLOEXEC)
        self.out.flush()
        pid = os.fork()
        if pid == 0:                                            # the child
            code = EX_SOFTWARE
            try:
                os.close(rfd)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                signal.set_wakeup_fd(-1)
                code = self._work(wfd, kind, names)
            except BaseException:                               # noqa: BLE001
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        os.close(wfd)
        os.set_blocking(rfd, False)
        self.child = Child(pid, rfd, kind, names)
        return self.child

    def _work(self, wfd: int, kind: str, names: list) -> int:
        from fangen.runtime.reconcile import Job

        job = Job(self.root, self.no_systemd, {n: self.memos[n] for n in names
                                               if n in self.memos}, self.host_memo,
                  out=self.out)
        os.write(wfd, LOOKED)
        if kind == "up":
            code = job.bring_up(names, self.timeout)
        elif kind == "reload":
            code = job.reload(names)
        else:
            code = job.reconcile(names)
        data = pickle.dumps(job.result())
        with os.fdopen(wfd, "wb") as fh:
            fh.write(data)
        return code

    def _take(self, child: Child) -> int:
        code, result = child.finish()
        self.child = None
        if result is None:                      # it crashed (its traceback is above)
            if "term" not in self.flags:
                self.log(f"the {child.kind} child ended with {code} and no answer; "
                         "waiting for the next change")
            return code or EX_SOFTWARE
        self.memos = {n: b for n, b in result["memos"].items()}
        self.host_memo = result["host"]
        if child.kind != "up":
            for name in result["gone"]:
                if self.names is None:
                    self.ignored.add(name)
                elif name in self.names:
                    self.names.remove(name)
        if result["status"]:
            self.status = result["status"]
            if child.kind != "up":
                notify(f"STATUS={self.status}")
        return code

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> int:
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        signal.signal(signal.SIGHUP, lambda _s, _f: self.flags.add("hup"))
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _s, _f: self.flags.add("term"))
        events = events_socket()             # before anything is read: no change is missed
        try:
            return self._loop(events, rfd)
        finally:
            signal.set_wakeup_fd(-1)
            for fd in (rfd, wfd):
                os.close(fd)
            events.close()
            if self.child is not None:       # only on an error in this process
                os.kill(self.child.pid, signal.SIGTERM)
                self.child.finish()

    def _loop(self, events: socket.socket, rfd: int) -> int:
        if self.names is not None:
            self.spawn("up", list(self.names))
            dirty = False
        else:
            dirty = True                     # whatever changed while no one followed
        if self.names is None:
            notify("READY=1\nSTATUS=following the fans that are up")
            self.log(f"following the fans that are up under {self.root}")
        pidfds: dict[int, int] = {}
        while True:
            if self.child is None and "term" not in self.flags:
                names = self.followed()
                if self.names is not None and not names:
                    self.log("no fan left to follow; exiting")
                    return 0
                if "hup" in self.flags:
                    self.flags.discard("hup")
                    self.ignored.clear()
                    if self.followed():
                        self.spawn("reload", self.followed())
                        dirty = False
                elif dirty and names:
                    self.spawn("reconcile", names)
                    dirty = False
            if "term" in self.flags and self.child is None:
                break
            pidfds = self._watch_dnsmasq(pidfds)
            fds = [events.fileno(), rfd, *pidfds]
            if self.child is not None:
                fds.append(self.child.fd)
            ready, _, _ = select.select(fds, [], [])
            _drain_pipe(rfd)
            if "term" in self.flags and self.child is not None and self.child.kind == "up":
                os.kill(self.child.pid, signal.SIGTERM)     # still waiting: stop at once
            # the child's pipe before the events: an event read after the child said it
            # looks may have come after it looked, so it must count
            child = self.child
            if child is not None and child.fd in ready:
                was_looking = not child.data
                end = child.read()
                if was_looking and child.data[:1] == LOOKED:
                    dirty = False            # what came before, the child sees
                if end:
                    code = self._take(child)
                    if child.kind == "up":
                        if "term" in self.flags:
                            break
                        if code != 0:
                            return code
                        notify(f"READY=1\nSTATUS={self.status}")
            if drain(events):
                dirty = True
            for fd in [fd for fd in ready if fd in pidfds]:
                pid = pidfds.pop(fd)
                os.close(fd)
                self.ended.add(pid)
                self.log("dnsmasq ended; starting it again")
                dirty = True
        for fd in pidfds:
            os.close(fd)
        for name in self.followed():
            self.log("exiting; the fan stays up", name)
        if not self.followed():
            self.log("exiting")
        notify("STOPPING=1")
        return 0

    def _watch_dnsmasq(self, pidfds: dict) -> dict:
        """pidfds of the followed fans' dnsmasq processes (those run as plain processes)."""
        wanted = {}
        for name in self.followed():
            pid = dnsmasq_pid(self.root, name)
            if pid is not None and pid not in self.ended:
                wanted[pid] = name
        keep = {}
        for fd, pid in pidfds.items():
            if pid in wanted:
                keep[fd] = pid
                del wanted[pid]
            else:
                os.close(fd)
        for pid in wanted:
            try:
                keep[os.pidfd_open(pid)] = pid
            except (OSError, AttributeError):
                pass
        return keep


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
