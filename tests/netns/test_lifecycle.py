"""The fan's life cycle on real kernel objects: containers stay attached.

Needs root.  The world of tests/netns/test_runtime_updown.py (a host namespace with a
veth underlay, a "container" namespace whose veth c0 is a port of the fan bridge, no
networkd: fangen makes the bridge itself, the case where a restart used to delete it).

* A restart of fangen@NAME.service, step by step as systemd does it: SIGTERM to
  ``fangen run``, then the unit's own ExecStopPost= (read from systemd/fangen@.service),
  then ``fangen run`` again.  ``ip monitor`` watches the whole time: the bridge and its
  address are never deleted, the container keeps its port and its traffic.
* The fan removed or disabled: the same stop command takes it down, keeping a bridge
  that still has a container on it (and saying so) until ``down --purge``.
* ``run`` puts back a deleted overlay route and a replaced bridge address, names the
  foreign address once, and gives up a fight with something that keeps deleting the
  address (once), until SIGHUP.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: netns, bpf(2), nft")

from test_runtime_updown import (  # noqa: E402,F401  (world: the same fixture)
    FAN_YAML, World, dhcp, snapshot, world)

from tests.harness import ns  # noqa: E402
from tests.harness.cli import PYTHON, REPO, fangen  # noqa: E402
from tests.harness.cli import env as _env  # noqa: E402
from tests.harness.ns import ip, nsexec  # noqa: E402

from fangen.runtime import repairs  # noqa: E402
from tests.engines.lifecycle import stop_post_argv  # noqa: E402
from tests.harness.host import wait_for  # noqa: E402

FAN = "fan250"


class Runtime:
    """``fangen run`` as fangen@NAME.service runs it: Type=notify, SIGTERM to stop."""

    def __init__(self, w: World, tmp_path) -> None:
        self.w = w
        self.sock_path = str(tmp_path / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)
        self.sock.settimeout(30)
        self.log = str(tmp_path / "run.log")
        self.proc = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.w.h, PYTHON, "-m", "fangen", "run", FAN,
                 "--root-dir", self.w.root], cwd=REPO,
                env=dict(_env(), NOTIFY_SOCKET=self.sock_path), stdout=out,
                stderr=subprocess.STDOUT)
        self.w.run.procs.append(self.proc)
        while "READY=1" not in self.sock.recv(4096).decode():
            pass

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=20) == 0

    def stop_post(self):
        """The unit's stop command, after the main process has exited."""
        return fangen(self.w.h, self.w.root, *stop_post_argv(FAN))

    def text(self) -> str:
        with open(self.log, encoding="utf-8") as fh:
            return fh.read()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


@pytest.fixture
def runtime(world, tmp_path):
    rt = Runtime(world, tmp_path)
    try:
        yield rt
    finally:
        rt.close()


class Monitor:
    """``ip monitor link address`` in the host namespace: what was deleted meanwhile."""

    def __init__(self, w: World, tmp_path) -> None:
        self.out = str(tmp_path / "monitor.log")
        with open(self.out, "wb") as fh:
            self.proc = subprocess.Popen(["ip", "-n", w.h, "-o", "monitor", "link",
                                          "address"], stdout=fh, stderr=subprocess.STDOUT)
        w.run.procs.append(self.proc)
        # changes of our own show that it listens (nothing the test asserts about)
        mtu = iter([65535, 65536] * 100)
        wait_for(lambda: ip(w.h, "link", "set", "lo", "mtu", str(next(mtu))) and
                 " lo:" in self.lines_(), 20, "ip monitor to listen", interval=0.1)
        ip(w.h, "link", "set", "lo", "mtu", "65536")

    def lines_(self) -> str:
        with open(self.out, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def deleted(self) -> list[str]:
        self.proc.terminate()
        self.proc.wait(timeout=5)
        return [line for line in self.lines_().splitlines() if line.startswith("Deleted")]


def link(w: World, dev: str) -> dict:
    return json.loads(ip(w.h, "-j", "link", "show", "dev", dev).stdout)[0]


def ports(w: World) -> list[str]:
    out = ip(w.h, "-j", "link", "show", "master", FAN, check=False).stdout
    return sorted(entry["ifname"] for entry in json.loads(out or "[]"))


def container_pings(w: World, addr: str = "250.3.4.1") -> bool:
    return ns.ping(w.c, addr, count=1, wait=2) or ns.ping(w.c, addr, count=1, wait=2)


def write_fan(w: World, text: str) -> None:
    with open(os.path.join(w.root, "etc/netplan/fan.d/fan.yaml"), "w") as fh:
        fh.write(text)


def test_a_restart_of_the_unit_keeps_the_bridge_and_its_containers(world, runtime, tmp_path):
    w, rt = world, runtime
    rt.start()
    ip(w.h, "link", "set", "c0", "master", FAN)
    addr = dhcp(w, tmp_path)[0]
    ip(w.c, "addr", "add", f"{addr}/8", "dev", "eth0")
    assert container_pings(w)
    bridge_index = link(w, FAN)["ifindex"]

    monitor = Monitor(w, tmp_path)
    rt.stop()
    res = rt.stop_post()
    assert res.stderr == (f"fangen: {FAN}: left up: still configured and enabled ('fangen "
                          f"down {FAN}' takes it down)\n")
    assert res.stdout == ""
    assert container_pings(w)                   # between the two: still carried
    rt.start()
    deleted = monitor.deleted()
    assert [line for line in deleted if FAN in line] == [], deleted
    assert link(w, FAN)["ifindex"] == bridge_index
    assert ports(w) == ["c0", f"{FAN}-tun"]
    assert w.bridge_addrs() == ["250.3.4.1/8"]
    assert container_pings(w)
    show = json.loads(fangen(w.h, w.root, "show", "--json").stdout)[0]
    assert (show["state"], show["problems"]) == ("up", [])

    # a new underlay address: the slice moves, the bridge and the container's port stay
    ip(w.h, "addr", "del", "172.16.3.4/16", "dev", "ul0")
    ip(w.h, "addr", "add", "172.16.5.6/16", "dev", "ul0")
    wait_for(lambda: w.bridge_addrs() == ["250.5.6.1/8"], 20, "the new slice")
    assert link(w, FAN)["ifindex"] == bridge_index
    assert ports(w) == ["c0", f"{FAN}-tun"]
    assert container_pings(w, "250.5.6.1")
    rt.stop()
    rt.stop_post()
    fangen(w.h, w.root, "down", FAN, "--purge")


def test_the_stop_command_takes_a_removed_or_disabled_fan_down(world, runtime, tmp_path):
    w, rt = world, runtime
    before = snapshot(w.h)
    # disabled: down, nothing left
    rt.start()
    rt.stop()
    write_fan(w, FAN_YAML + "      enabled: false\n")
    res = rt.stop_post()
    assert res.stdout == f"{FAN}: down\n"
    assert snapshot(w.h) == before
    assert not os.path.exists(os.path.join(w.root, "run/fangen", FAN))

    # removed, with a container on the bridge: kept (without its address) and said
    write_fan(w, FAN_YAML)
    rt.start()
    ip(w.h, "link", "set", "c0", "master", FAN)
    rt.stop()
    os.unlink(os.path.join(w.root, "etc/netplan/fan.d/fan.yaml"))
    res = rt.stop_post()
    assert res.stderr == (f"fangen: {FAN}: kept bridge {FAN}: c0 still attached "
                          f"(containers); 'fangen down --purge {FAN}' deletes it and "
                          "detaches them\n")
    assert ports(w) == ["c0"] and w.bridge_addrs() == []
    assert f"{FAN}-tun" not in snapshot(w.h)["links"]
    assert "fangen-" not in nsexec(w.h, "nft", "list", "tables").stdout
    [row] = json.loads(fangen(w.h, w.root, "show", "--json").stdout)
    assert (row["state"], row["problems"]) == ("removed", [
        f"bridge {FAN} kept by down for its ports (c0); 'fangen down --purge {FAN}' "
        "deletes it"])
    # down again: still kept; --purge: gone, as before the fan came up
    assert "kept bridge" in fangen(w.h, w.root, "down", FAN).stderr
    res = fangen(w.h, w.root, "down", FAN, "--purge")
    assert "detached" in res.stderr
    assert snapshot(w.h) == before
    assert fangen(w.h, w.root, "show", "--json").stdout.strip() == "[]"


def test_a_kept_bridge_is_taken_back_by_up(world, tmp_path):
    w = world
    fangen(w.h, w.root, "up", FAN, "--no-systemd")
    ip(w.h, "link", "set", "c0", "master", FAN)
    index = link(w, FAN)["ifindex"]
    assert "kept bridge" in fangen(w.h, w.root, "down", FAN).stderr
    [row] = json.loads(fangen(w.h, w.root, "show", "--json").stdout)
    assert row["state"] == "down" and row["problems"]
    fangen(w.h, w.root, "up", FAN, "--no-systemd")
    assert link(w, FAN)["ifindex"] == index and ports(w) == ["c0", f"{FAN}-tun"]
    assert dhcp(w, tmp_path)[0].startswith("250.3.4.")
    # the container left: plain down deletes the bridge again
    ip(w.h, "link", "set", "c0", "nomaster")
    fangen(w.h, w.root, "down", FAN)
    assert ip(w.h, "link", "show", "dev", FAN, check=False).returncode != 0


def test_up_puts_back_a_deleted_overlay_route(world):
    """The VXLAN overlay route is the bridge address's own; `up` said "nothing to do"."""
    w = world
    fangen(w.h, w.root, "up", FAN, "--no-systemd")
    ip(w.h, "route", "del", "250.0.0.0/8", "dev", FAN)
    assert json.loads(fangen(w.h, w.root, "show", "--json").stdout)[0]["state"] == "broken"
    dry = fangen(w.h, w.root, "up", FAN, "--dry-run").stdout
    assert "restore route 250.0.0.0/8 dev fan250 src 250.3.4.1 (of the bridge address)" in dry
    fangen(w.h, w.root, "up", FAN, "--no-systemd")
    routes = ip(w.h, "route", "show", "dev", FAN).stdout
    assert "250.0.0.0/8 proto kernel scope link src 250.3.4.1" in routes
    assert json.loads(fangen(w.h, w.root, "show", "--json").stdout)[0]["state"] == "up"
    assert "# nothing to do" in fangen(w.h, w.root, "up", FAN, "--dry-run").stdout
    # the restored route goes with the address, as the kernel's own would
    fangen(w.h, w.root, "down", FAN)
    assert ip(w.h, "route", "show", "250.0.0.0/8").stdout == ""


def test_run_repairs_and_stops_fighting(world, runtime, tmp_path):
    w, rt = world, runtime
    rt.start()
    # a deleted route comes back
    ip(w.h, "route", "del", "250.0.0.0/8", "dev", FAN)
    wait_for(lambda: "put back: restore route 250.0.0.0/8 dev fan250 src 250.3.4.1" in
             rt.text(), 20, "the overlay route put back")
    assert "250.0.0.0/8 proto kernel" in ip(w.h, "route", "show", "dev", FAN).stdout

    # an engine replaces the address (Docker's --subnet SLICE): ours comes back, theirs
    # stays and is named once
    ip(w.h, "addr", "del", "250.3.4.1/8", "dev", FAN)
    ip(w.h, "addr", "add", "250.3.4.1/24", "dev", FAN)
    wait_for(lambda: "also holds" in rt.text(), 20, "the foreign address named")
    assert sorted(w.bridge_addrs()) == ["250.3.4.1/24", "250.3.4.1/8"]
    ip(w.h, "link", "set", "c0", "up")          # more events: not named again
    assert rt.text().count("bridge fan250 also holds 250.3.4.1/24, which fangen did not "
                           "set") == 1
    # the kernel's own IPv6 link-local address on the bridge (IPv6 is on) is not named
    assert "fe80" not in rt.text()
    ip(w.h, "addr", "del", "250.3.4.1/24", "dev", FAN)

    # something deletes our address whenever it appears: tried at most LIMIT times, then
    # given up, said once; the fan shows as broken
    fighter = subprocess.Popen(
        ["sh", "-c", f"ip -n {w.h} monitor address | while read -r line; do "
                     f"ip -n {w.h} addr del 250.3.4.1/8 dev {FAN} 2>/dev/null; done"],
        start_new_session=True)
    w.run.procs.append(fighter)
    try:
        ip(w.h, "addr", "del", "250.3.4.1/8", "dev", FAN)
        wait_for(lambda: "something keeps undoing" in rt.text(), 60, "run to give up")
        ip(w.h, "link", "set", "c0", "down")         # more events
        ip(w.h, "link", "set", "c0", "up")
    finally:
        os.killpg(fighter.pid, signal.SIGKILL)
        fighter.wait()
    text = rt.text()
    assert text.count("something keeps undoing 'add address 250.3.4.1/8 dev fan250'") == 1
    # at most LIMIT tries in all (the one after the engine above counts), none after
    assert 1 <= text.count("put back: add address 250.3.4.1/8 dev fan250") <= repairs.LIMIT
    assert "put back" not in text.split("something keeps undoing")[1]
    row = json.loads(fangen(w.h, w.root, "show", "--json").stdout)[0]
    assert row["state"] == "broken"
    assert "bridge fan250 lost its address 250.3.4.1/8 (it has no address)" in row["problems"]
    # SIGHUP starts over: the address is back
    rt.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: w.bridge_addrs() == ["250.3.4.1/8"], 20, "the address after SIGHUP")
    rt.stop()
    rt.stop_post()
    fangen(w.h, w.root, "down", FAN)


def test_the_stop_command_leaves_a_broken_or_frozen_configuration_alone(world):
    """fan.d(5) SAFETY: a fan whose definition has errors, or every fan while a file
    cannot be parsed, stays as it is; --all does the same for every fan."""
    w = world
    fangen(w.h, w.root, "up", FAN, "--no-systemd")
    up = snapshot(w.h)
    write_fan(w, FAN_YAML.replace("type: vxlan", "type: gre"))
    res = fangen(w.h, w.root, *stop_post_argv(FAN))
    assert res.stderr == (f"fangen: {FAN}: left up: its definition has errors, so it stays "
                          f"as it is ('fangen down {FAN}' takes it down)\n")
    write_fan(w, "network: {version: 2, fan: [\n")
    res = fangen(w.h, w.root, "down", "--all", "--if-unconfigured")
    assert res.stderr == (f"fangen: {FAN}: left up: a fan.d file cannot be read or parsed, "
                          f"so everything stays as it is ('fangen down {FAN}' takes it "
                          "down)\n")
    assert snapshot(w.h) == up
    res = fangen(w.h, w.root, "down", FAN, "--force", "--if-unconfigured", check=False)
    assert (res.returncode, res.stderr) == (
        1, "fangen: --force and --if-unconfigured do not go together\n")
    fangen(w.h, w.root, "down", FAN)


def test_down_force_keeps_a_bridge_with_containers_too(world):
    """Without a state file, by the marks: the same rule as down."""
    w = world
    before = snapshot(w.h)
    fangen(w.h, w.root, "up", FAN, "--no-systemd")
    ip(w.h, "link", "set", "c0", "master", FAN)
    os.unlink(os.path.join(w.root, "run/fangen", FAN, "state.json"))
    res = fangen(w.h, w.root, "down", FAN, "--force")
    assert f"fangen: {FAN}: kept bridge {FAN}: c0 still attached (containers); 'down " \
        "--force --purge' deletes it and detaches them" in res.stderr
    assert ports(w) == ["c0"] and w.bridge_addrs() == []
    fangen(w.h, w.root, "down", FAN, "--force", "--purge")
    assert snapshot(w.h) == before


def test_the_stop_command_of_a_fan_that_never_came_up(world):
    """fangen run stopped while it waited for the underlay: nothing to keep or remove."""
    w = world
    res = fangen(w.h, w.root, *stop_post_argv(FAN))
    assert (res.stdout, res.stderr) == (f"{FAN}: not up\n", "")


def test_a_renamed_bridge_is_not_kept_by_the_stop_command(world, runtime):
    w, rt = world, runtime
    rt.start()
    rt.stop()
    write_fan(w, FAN_YAML + "      bridge: fanbr0\n")
    res = rt.stop_post()
    assert res.stdout == f"{FAN}: down\n"
    assert ip(w.h, "link", "show", "dev", FAN, check=False).returncode != 0
    rt.start()
    assert link(w, "fanbr0")["ifindex"]
    rt.stop()
    fangen(w.h, w.root, "down", FAN)


def test_apply_without_systemd_says_what_it_kept(world):
    w = world
    fangen(w.h, w.root, "apply", "--no-systemd")
    ip(w.h, "link", "set", "c0", "master", FAN)
    os.unlink(os.path.join(w.root, "etc/netplan/fan.d/fan.yaml"))
    res = fangen(w.h, w.root, "apply", "--no-systemd")
    assert res.stdout == f"{FAN}: down\n"
    assert f"fangen: {FAN}: kept bridge {FAN}: c0 still attached" in res.stderr
    assert ports(w) == ["c0"]
    fangen(w.h, w.root, "down", FAN, "--purge")
