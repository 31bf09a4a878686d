"""Broken files fail safe (fan.d(5), SAFETY), with a real runtime.

A fan runs (real networkd, ``fangen run`` in a host namespace of the harness).  Then a
drop-in meant to disable it arrives with a syntax error: ``generate`` writes and removes
nothing, ``apply`` starts and stops nothing, ``up`` refuses naming the file, and the
running ``fangen run`` keeps the fan as it is when told to reload (SIGHUP).  The same
drop-in, fixed, takes the fan down: the test's proof that the drop-in does matter.
A fan whose own definition breaks is frozen alone in the same way.  At boot (no earlier
output) a broken file keeps every fan down.

Root: namespaces, networkd, nft, tc.  Without root, the refusals that touch nothing
(apply, generate) still run.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.hostile.test_config_hostile import assert_clean, fangen, install, tree

GOOD = b"""network:
  version: 2
  fan:
    fan250:
      overlay: 250.0.0.0/8
      underlay: 172.16.0.0/16
      type: vxlan
      datapath: upstream
"""
OFF_BROKEN = b"""network:
  fan:
    fan250:
      enabled: false
    oops
"""
OFF = b"""network:
  fan:
    fan250:
      enabled: false
"""
SEMANTIC = b"""network:
  fan:
    fan250:
      dhcp: maybe
"""
FROZEN_TAIL = ("cannot be used: every fan is frozen (nothing is started, changed or stopped) "
               "until it is fixed")


def test_apply_refuses_before_touching_anything(tmp_path):
    root = str(tmp_path)
    install(root, "10-fan.yaml", GOOD)
    assert fangen("generate", "--root-dir", root)[0] == 0
    before = tree(root)
    path = install(root, "90-off.yaml", OFF_BROKEN)
    code, out, err = fangen("apply", "--no-systemd", "--root-dir", root)
    assert_clean(err)
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"{path}:6:1: Invalid YAML: could not find expected ':'", "", "^",
        f"fangen: {path} {FROZEN_TAIL}"]
    assert tree(root) == before


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, networkd")


@pytest.fixture(scope="module")
def running():
    from tests.harness import Host, Run, Switch
    from tests.harness.host import wait

    with Run("safe") as run:
        switch = Switch(run)
        host = Host(run, switch, 1, fans={})
        install(host.root, "50-harness.yaml", GOOD)
        host.start()
        host.wait_address(timeout=60)
        host.start_fangen_run("fan250")
        log = host.log("fangen-run")
        wait(lambda: "fangen[fan250]: up: " in open(log).read(), 60, "fan250 up")
        wait(lambda: os.path.exists(os.path.join(host.root, "run/fangen/fan250/dnsmasq.pid")),
             10, "dnsmasq's pid file")
        yield host


def namespace(host) -> dict:
    from tests.harness import snapshot

    return {"snapshot": snapshot.snapshot(host.ns), "files": tree(host.root)}


def reload_and_wait(host, needle: str) -> None:
    from tests.harness.host import wait

    log = host.log("fangen-run")
    seen = open(log).read().count(needle)
    os.kill(host.fangen_run.pid, signal.SIGHUP)
    wait(lambda: open(log).read().count(needle) > seen, 20, f"'{needle}' in {log}")


@needs_root
def test_broken_disabling_drop_in_changes_nothing(running):
    host = running
    before = namespace(host)
    path = install(host.root, "90-off.yaml", OFF_BROKEN)
    try:
        res = host.fangen("generate", check=False)
        assert res.returncode == 1 and res.stderr.splitlines()[-1] == \
            f"fangen: {path} {FROZEN_TAIL}"
        res = host.fangen("apply", "--no-systemd", check=False)
        assert res.returncode == 1 and res.stderr.splitlines()[-1] == \
            f"fangen: {path} {FROZEN_TAIL}"
        res = host.fangen("up", "fan250", "--no-systemd", check=False)
        assert res.returncode == 1
        assert res.stderr.splitlines()[0] == \
            f"{path}:6:1: Invalid YAML: could not find expected ':'"
        reload_and_wait(host, "keeping the fan as it is")
        assert host.fangen_run.poll() is None               # still running
        res = host.fangen("show", check=False)              # what runs, marked frozen
        assert res.returncode == 1 and res.stderr.splitlines()[-1] == \
            f"fangen: {path} {FROZEN_TAIL}"
        assert [line.split()[0] for line in res.stdout.splitlines()] == ["Bridge", "fan250"]
        assert res.stdout.splitlines()[1].split()[-1] == "frozen"
        assert namespace(host) == before
    finally:
        os.unlink(path)


@needs_root
def test_the_fans_own_file_broken_does_not_take_it_down(running):
    """Before: the broken file was skipped, the fan looked removed, and a reload or an
    apply took it down."""
    host = running
    before = namespace(host)
    path = install(host.root, "50-harness.yaml", GOOD + b"  oops: [\n")
    try:
        res = host.fangen("apply", "--no-systemd", check=False)
        assert res.returncode == 1 and res.stderr.splitlines()[-1] == \
            f"fangen: {path} {FROZEN_TAIL}"
        reload_and_wait(host, "keeping the fan as it is")
        assert host.fangen_run.poll() is None
        assert namespace(host) == before
    finally:
        install(host.root, "50-harness.yaml", GOOD)


@needs_root
def test_a_fan_with_its_own_error_is_frozen_alone(running):
    host = running
    before = namespace(host)
    path = install(host.root, "90-semantic.yaml", SEMANTIC)
    try:
        res = host.fangen("generate", check=False)
        assert res.returncode == 1
        assert res.stderr.splitlines()[0] == (
            f"{path}:4:13: Error in fan definition: fan250: 'dhcp' must be a boolean (true or "
            "false), not 'maybe'")
        reload_and_wait(host, "configuration has errors; keeping the running fan as it is")
        assert host.fangen_run.poll() is None
        assert namespace(host) == before
    finally:
        os.unlink(path)


@needs_root
def test_the_same_drop_in_fixed_does_disable_the_fan(running):
    """The control: the drop-in matters, so the frozen runs above proved something."""
    from tests.harness.host import wait

    host = running
    path = install(host.root, "90-off.yaml", OFF)
    try:
        os.kill(host.fangen_run.pid, signal.SIGHUP)
        wait(lambda: host.fangen_run.poll() is not None, 30, "fangen run to end")
        wait(lambda: not any(a.startswith("250.") for a in host.addresses("fan250")), 10,
             "the slice address gone")
    finally:
        os.unlink(path)


@needs_root
def test_at_boot_a_broken_file_keeps_every_fan_down():
    from tests.harness import Host, Run, Switch
    from tests.harness.ns import ip

    with Run("boot") as run:
        host = Host(run, Switch(run), 1, fans={})
        install(host.root, "50-harness.yaml", GOOD)
        path = install(host.root, "90-off.yaml", OFF_BROKEN)
        res = host.fangen("generate", check=False)
        assert res.returncode == 1 and res.stderr.splitlines()[-1] == \
            f"fangen: {path} {FROZEN_TAIL}"
        assert os.listdir(os.path.join(host.root, "run/systemd/network")) == []
        host.start(generate=False)
        host.wait_address(timeout=60)
        res = host.fangen("apply", "--no-systemd", check=False)
        assert res.returncode == 1
        res = host.fangen("run", "fan250", "--no-systemd", check=False)
        assert res.returncode == 78                         # EX_CONFIG: no restart loop
        assert res.stderr.splitlines()[-1] == f"fangen: {path} {FROZEN_TAIL}"
        assert ip(host.ns, "link", "show", "fan250", check=False).returncode != 0
        assert os.listdir(os.path.join(host.root, "run/fangen")) == []
