"""Serialised state changes and recovery, on real kernel objects in harness namespaces.

Needs root.  A harness :class:`~tests.harness.ns.Run` makes a "host" namespace with a
veth underlay (172.16.3.4/16) into a "switch" namespace; fangen runs there as
``ip netns exec HOST python3 -m fangen ... --root-dir ROOT``.  Every round starts two
fangen commands at once and compares the whole namespace (links, addresses, routes,
nft ruleset, tc filters, processes, ip_forward, files under the root) with a snapshot
taken from the same commands run one after the other.  The Run kills every process
left in its namespaces and deletes them, also on failure.

Rounds are bounded (ROUNDS); the test takes ~30 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from test_runtime_updown import FAN_YAML  # the same fan as the up/down tests

from tests.harness import cli, snapshot
from tests.harness.cli import PYTHON, REPO
from tests.harness.host import wait_for
from tests.harness.ns import Run, ip, nsexec, pids_in, underlay_host

pytestmark = [
    pytest.mark.root, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: netns, bpf(2), nft"),
]

ROUNDS = 3


class World:
    def __init__(self, run: Run):
        self.run = run
        self.h, self.sw = underlay_host(run)
        ip(self.sw, "addr", "add", "172.16.0.1/16", "dev", "p1")
        self.root = os.path.join(run.workdir, "root")
        cli.install(self.root, FAN_YAML)

    def argv(self, *args: str) -> list[str]:
        return cli.argv(self.h, self.root, *args)

    def fangen(self, *args: str, check: bool = True, **env):
        return cli.fangen(self.h, self.root, *args, check=check, environ=cli.env(**env))

    def together(self, *commands: tuple) -> list[subprocess.CompletedProcess]:
        """Start every command at once; wait for all of them."""
        procs = [subprocess.Popen(self.argv(*cmd), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=REPO, env=cli.env())
                 for cmd in commands]
        out = []
        for cmd, proc in zip(commands, procs, strict=True):
            stdout, stderr = proc.communicate(timeout=120)
            out.append(subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr))
        return out

    def files(self) -> set[str]:
        """Every file under the root but the fan.d input and dnsmasq's lease file (kept on
        purpose across down and up, as /var/lib/misc was); directories fangen made stay."""
        out = set()
        for directory, _, names in os.walk(self.root):
            for name in names:
                rel = os.path.relpath(os.path.join(directory, name), self.root)
                if not rel.startswith(("etc/netplan/", "var/lib/fangen/")):
                    out.add(rel)
        return out

    def processes(self) -> list[str]:
        out = []
        for pid in pids_in(self.h):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    out.append(" ".join(p.decode() for p in fh.read().split(b"\0") if p))
            except OSError:
                continue
        return sorted(out)

    def snap(self) -> dict:
        snap = snapshot.snapshot(self.h)
        snap["processes"] = self.processes()
        snap["ip_forward"] = nsexec(self.h, "cat", "/proc/sys/net/ipv4/ip_forward").stdout
        snap["files"] = self.files()
        return snap

    def state_path(self) -> str:
        return os.path.join(self.root, "run/fangen/fan250/state.json")


@pytest.fixture
def world():
    run = Run("lk")
    try:
        yield World(run)
    finally:
        run.close()


def _ok(results) -> None:
    for res in results:
        assert res.returncode == 0, f"{res.args}: {res.stdout}{res.stderr}"
        assert "Traceback" not in res.stderr


def test_concurrent_up_and_down_leak_nothing(world):
    w = world
    before = w.snap()
    assert before["processes"] == [] and before["ip_forward"] == "0\n"
    # the reference: the same commands one after the other
    w.fangen("up", "fan250")
    up = w.snap()
    assert [p for p in up["processes"] if "dnsmasq" in p] == [
        f"/usr/sbin/dnsmasq --conf-file={w.root}/run/fangen/fan250/dnsmasq.conf"]
    assert up["ip_forward"] == "1\n"
    w.fangen("down", "fan250")
    assert w.snap() == before

    for _ in range(ROUNDS):
        _ok(w.together(("up", "fan250"), ("up", "fan250")))
        assert w.snap() == up
        _ok(w.together(("down", "fan250"), ("down", "fan250")))
        assert w.snap() == before

    for start_up in [False, True] * ROUNDS:
        if start_up:
            w.fangen("up", "fan250")
        _ok(w.together(("up", "fan250"), ("down", "fan250")))
        after = w.snap()
        assert after in (up, before), snapshot.diff(up, after)
        w.fangen("down", "fan250")
        assert w.snap() == before


def test_a_second_command_waits_for_the_lock_and_gives_up_clearly(world):
    w = world
    lock_file = os.path.join(w.root, "run/fangen/.lock")
    # an `up` that cannot finish (no underlay yet) waits outside the lock ...
    ip(w.h, "addr", "del", "172.16.3.4/16", "dev", "ul0")
    waiting = cli.spawn(w.h, w.root, "up", "fan250", "--timeout", "30")
    try:
        time.sleep(1)
        assert not os.path.exists(lock_file)
        res = w.fangen("down", "fan250", FANGEN_LOCK_TIMEOUT="5")
        assert res.stdout == "fan250: not up\n"
    finally:
        ip(w.h, "addr", "add", "172.16.3.4/16", "dev", "ul0")
        out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    # ... and a held lock makes the second command give up with one line
    os.makedirs(os.path.dirname(lock_file), exist_ok=True)
    holder = subprocess.Popen([PYTHON, "-c", HOLD, lock_file])      # one process: kill ends it
    try:
        wait_for(lambda: os.path.exists(lock_file) and os.path.getsize(lock_file), 5, "flock")
        res = w.fangen("down", "fan250", check=False, FANGEN_LOCK_TIMEOUT="0.5")
    finally:
        holder.kill()
        holder.wait()
    assert res.returncode == 1
    assert res.stderr == (f"fangen: {lock_file}: another fangen command (pid 4242: fangen up "
                          "fan250) holds the lock; gave up after 0.5 s (try again when it has "
                          "finished; FANGEN_LOCK_TIMEOUT sets the wait)\n")
    assert os.path.exists(w.state_path())           # nothing was taken down
    w.fangen("down", "fan250")


def test_run_holds_the_lock_only_while_it_changes_the_fan(world):
    w = world
    before = w.snap()
    proc = w.run.spawn(w.h, [PYTHON, "-m", "fangen", "run", "fan250", "--root-dir", w.root,
                             "--no-systemd"], log=os.path.join(w.run.workdir, "run.log"),
                       env=cli.env())
    try:
        wait_for(lambda: os.path.exists(w.state_path()) and
                 json.load(open(w.state_path())).get("dnsmasq"), 20, "fangen run's up")
        time.sleep(0.5)
        assert not os.path.exists(os.path.join(w.root, "run/fangen/.lock"))
        res = w.fangen("up", "fan250", FANGEN_LOCK_TIMEOUT="5")
        assert "already up, nothing changed" in res.stdout
    finally:
        w.run.stop(proc, grace=5)
    w.fangen("down", "fan250")
    assert w.snap() == before


HOLD = """import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, b"4242 up fan250\\n")
time.sleep(30)
"""


def _foreign(w: World) -> None:
    """Things that look like fangen's but are not this fan's: down --force keeps them."""
    ip(w.h, "link", "add", "fan250x", "type", "bridge")
    ip(w.h, "link", "set", "fan250x", "alias", "fangen:fan2")          # another fan's mark
    ip(w.h, "link", "add", "fan250y", "type", "bridge")                # no mark at all
    ip(w.h, "addr", "add", "250.9.9.9/8", "dev", "fan250y")
    nsexec(w.h, "nft", "add table ip fangen-fan2; add table ip filter; "
           "add chain ip filter input { type filter hook input priority 0; }")


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_down_force_recovers_without_a_usable_state_file(world, damage):
    w = world
    _foreign(w)
    before = w.snap()
    w.fangen("up", "fan250")
    up = w.snap()
    assert ("fan250", "fangen:fan250") in _aliases(w.h)
    assert ("fan250-tun", "fangen:fan250") in _aliases(w.h)
    if damage == "missing":
        os.unlink(w.state_path())
        assert w.fangen("down", "fan250").stdout == "fan250: not up\n"
        assert w.snap()["links"] == up["links"]      # nothing to go by: nothing touched
    else:
        with open(w.state_path(), "w") as fh:
            fh.write('{"name": "fan250", "links": [')
        for cmd in (("down", "fan250"), ("up", "fan250")):
            res = w.fangen(*cmd, check=False)
            assert res.returncode == 1 and "Traceback" not in res.stderr
            assert len(res.stderr.splitlines()) == 1
            assert res.stderr.startswith(f"fangen: {w.state_path()}: unusable state file (")
            assert res.stderr.endswith("); 'fangen down --force fan250' removes the fan's "
                                       "objects without it\n")
        assert w.snap()["links"] == up["links"]
        rows = json.loads(w.fangen("show", "--json").stdout)
        assert [r["state"] for r in rows if r["name"] == "fan250"] == ["corrupt"]
    dry = w.fangen("down", "--force", "fan250", "--dry-run")
    assert "delete link fan250-tun (marked fangen:fan250)" in dry.stdout
    assert "fan250x" not in dry.stdout and "fan250y" not in dry.stdout
    assert w.snap()["links"] == up["links"]
    res = w.fangen("down", "--force", "fan250")
    assert res.stdout == "fan250: down\n"
    after = w.snap()
    # forwarding: its earlier value was in the state file, so it is left as it is
    assert after["ip_forward"] == "1\n"
    after["ip_forward"] = before["ip_forward"]
    assert after == before, snapshot.diff(before, after)
    assert w.fangen("down", "--force", "fan250").stdout == "fan250: not up\n"


def test_down_force_after_a_killed_up_and_with_a_good_state(world):
    """An up killed half-way (SIGKILL: no cleanup of its own), then down --force; and
    down --force on a fan whose state is fine does what down does (ip_forward too)."""
    w = world
    before = w.snap()
    proc = subprocess.Popen(w.argv("up", "fan250"), cwd=REPO, env=cli.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # (the kernel takes no alias at creation: the mark follows a netlink call later, a
    # window of one request that the kill must not hit for this test to be exact)
    wait_for(lambda: ("fan250-tun", "fangen:fan250") in _aliases(w.h), 30, "the marked tunnel")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert w.fangen("down", "--all", "--force").stdout == "fan250: down\n"
    after = w.snap()
    after["ip_forward"] = before["ip_forward"]         # possibly set, state possibly gone
    assert after == before, snapshot.diff(before, after)
    nsexec(w.h, "sysctl", "-qw", "net.ipv4.ip_forward=0")
    w.fangen("up", "fan250")
    w.fangen("down", "--force", "fan250")
    assert w.snap() == before


def _aliases(ns: str) -> set:
    data = json.loads(ip(ns, "-j", "link", "show").stdout)
    return {(link["ifname"], link.get("ifalias")) for link in data if link.get("ifalias")}
