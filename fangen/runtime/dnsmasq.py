"""Running dnsmasq for a fan: a systemd unit, or a plain process.

* ``UnitDnsmasq``: where systemd runs the show, (re)start or stop
  ``fangen-dnsmasq@NAME.service`` over D-Bus (the unit reads
  /run/fangen/NAME/dnsmasq.conf).
* ``ProcessDnsmasq``: elsewhere (tests, demo, hand use), dnsmasq daemonizes
  itself (it reports configuration and socket errors before it forks, so a bad
  start is an error here) and writes its pid file.  Stopping signals a PID only
  when the state records this fan's own command line (dnsmasq with our config
  file) and /proc/PID/cmdline is that still, so neither a recycled PID nor a
  damaged state file gets another process killed.

The config is rendered by :mod:`fangen.render.dnsmasq` (bridge only,
bind-dynamic, except-interface=lo).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

from fangen.errors import FangenError
from fangen.render import names
from fangen.runtime.dbus import unit_name


class DnsmasqFailed(FangenError):
    """dnsmasq did not start."""


def conf_path(root: str, name: str) -> str:
    return os.path.join(root, names.dnsmasq_conf(name))


def pid_path(root: str, name: str) -> str:
    return os.path.join(root, names.fan_dir(name), "dnsmasq.pid")


def read_cmdline(pid: int, proc: str = "/proc") -> list[str] | None:
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_ours(pid: int, cmdline: list[str], proc: str = "/proc") -> bool:
    return bool(pid) and read_cmdline(pid, proc) == list(cmdline)


def is_fans_command(cmd: list[str], root: str, name: str) -> bool:
    """``cmd`` is fangen's dnsmasq command line for fan ``name`` under ``root``:
    ``.../dnsmasq --conf-file=CONF`` (the binary may have moved since it started)."""
    conf = conf_path(root, name)
    return len(cmd) == 2 and os.path.basename(cmd[0]) == "dnsmasq" and \
        cmd[1] == f"--conf-file={conf}"


class ProcessDnsmasq:
    mode = "process"

    def __init__(self, root: str, name: str, binary: str | None = None, proc: str = "/proc"):
        self.root = root
        self.name = name
        self.binary = binary or shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        self.proc = proc

    def cmdline(self) -> list[str]:
        return [self.binary, f"--conf-file={conf_path(self.root, self.name)}"]

    def _recorded(self, record: dict) -> tuple[int, list]:
        """(pid, command line) of the record, or (0, []) unless it names this fan's
        dnsmasq: a damaged or forged state file never gets another process signalled."""
        pid, cmd = record.get("pid", 0), list(record.get("cmdline", []))
        if record.get("mode") != self.mode or not is_fans_command(cmd, self.root, self.name):
            return 0, []
        return pid, cmd

    def running(self, record: dict) -> bool:
        pid, cmd = self._recorded(record)
        return is_ours(pid, cmd, self.proc)

    def start(self, record: dict) -> dict:
        """(Re)start; returns the new record {"mode", "pid", "cmdline"}."""
        self.stop(record)
        os.makedirs(os.path.join(self.root, names.LEASE_DIR), exist_ok=True)
        pidfile = pid_path(self.root, self.name)
        try:
            os.unlink(pidfile)
        except FileNotFoundError:
            pass
        cmd = self.cmdline()
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                                 stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise DnsmasqFailed(f"cannot run {self.binary}: {exc.strerror}") from None
        if res.returncode != 0:
            msg = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
            raise DnsmasqFailed(f"dnsmasq for fan {self.name}: {msg}")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open(pidfile) as fh:
                    pid = int(fh.read().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and is_ours(pid, cmd, self.proc):
                return {"mode": self.mode, "pid": pid, "cmdline": cmd}
            time.sleep(0.02)
        raise DnsmasqFailed(f"dnsmasq for fan {self.name} did not write {pidfile}")

    def stop(self, record: dict) -> None:
        if record.get("mode") != self.mode:
            return
        self._end(*self._recorded(record))
        try:
            os.unlink(pid_path(self.root, self.name))   # dnsmasq, no longer root, cannot
        except FileNotFoundError:
            pass

    def _end(self, pid: int, cmd: list) -> None:
        if not is_ours(pid, cmd, self.proc):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if not is_ours(pid, cmd, self.proc) or _zombie(pid, self.proc):
                return
            time.sleep(0.02)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _zombie(pid: int, proc: str) -> bool:
    try:
        with open(f"{proc}/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


class UnitDnsmasq:
    mode = "systemd"

    def __init__(self, systemd, name: str):
        self.systemd = systemd
        self.name = name
        self.unit = unit_name("fangen-dnsmasq@", name)

    def running(self, record: dict) -> bool:
        if record.get("mode") != self.mode:
            return False
        return self.systemd.list_units(self.unit).get(self.unit) in ("active", "activating",
                                                                    "reloading")

    def start(self, record: dict) -> dict:
        self.systemd.restart(self.unit)
        return {"mode": self.mode, "unit": self.unit}

    def stop(self, record: dict) -> None:
        # this fan's unit only, whatever the state file says (it may be damaged)
        if record.get("mode") == self.mode and record.get("unit", self.unit) == self.unit:
            self.systemd.stop(self.unit)
