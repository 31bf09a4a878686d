"""fangen.runtime.dnsmasq: which process fangen may signal.

The process table is a directory laid out like /proc (the runner's ``proc``), and
``os.kill`` records its calls: what is under test is the decision, never a signal
to a real process.  The real dnsmasq is started and stopped in tests/netns.
"""

import os
import shutil
import signal

import pytest

from fangen.runtime import dnsmasq


@pytest.fixture
def world(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    proc.mkdir()
    killed = []

    def kill(pid, sig):
        killed.append((pid, sig))
        if sig == signal.SIGTERM:               # the process ends
            shutil.rmtree(proc / str(pid), ignore_errors=True)

    monkeypatch.setattr(os, "kill", kill)
    runner = dnsmasq.ProcessDnsmasq(str(tmp_path / "root"), "f1", "/usr/sbin/dnsmasq",
                                    str(proc))
    return runner, proc, killed


def process(proc, pid: int, cmd: list[str]) -> dict:
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "cmdline").write_bytes(b"".join(c.encode() + b"\0" for c in cmd))
    return {"mode": "process", "pid": pid, "cmdline": cmd}


def test_only_this_fans_dnsmasq_is_ever_signalled(world):
    """A state file names the process to stop by pid and command line.  A damaged or
    forged one (pid 1 with its real command line, another fan's dnsmasq, a dnsmasq
    with other options) is neither signalled nor taken for running."""
    runner, proc, killed = world
    root = runner.root
    for pid, cmd in [(1, ["/sbin/init", "splash"]),
                     (2, ["/usr/sbin/dnsmasq", f"--conf-file={dnsmasq.conf_path(root, 'f2')}"]),
                     (3, ["/usr/sbin/dnsmasq", "--conf-file=/etc/dnsmasq.conf"]),
                     (4, runner.cmdline() + ["--port=0"])]:
        record = process(proc, pid, cmd)
        assert not runner.running(record)
        runner.stop(record)
        assert killed == [], cmd
    ours = process(proc, 9, runner.cmdline())
    assert runner.running(ours)
    runner.stop(ours)
    assert killed == [(9, signal.SIGTERM)]
    # the binary may have moved since (an upgrade): still fangen's dnsmasq for f1
    moved = process(proc, 10, ["/usr/local/sbin/dnsmasq", runner.cmdline()[1]])
    runner.stop(moved)
    assert killed[-1] == (10, signal.SIGTERM)


def test_only_this_fans_unit_is_ever_stopped():
    """The systemd mode records the unit's name: a state file that names another unit
    does not get it stopped."""
    class Systemd:
        stopped: list = []

        def stop(self, unit):
            self.stopped.append(unit)

    systemd = Systemd()
    runner = dnsmasq.UnitDnsmasq(systemd, "f1")
    runner.stop({"mode": "systemd", "unit": "ssh.service"})
    assert systemd.stopped == []
    runner.stop({"mode": "systemd", "unit": "fangen-dnsmasq@f1.service"})
    runner.stop({"mode": "systemd"})
    assert systemd.stopped == ["fangen-dnsmasq@f1.service"] * 2
