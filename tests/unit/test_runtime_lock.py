"""The root's lock, NAME checks and unusable state files (no root needed).

The lock is real flock(2) between real processes: a child holds it, the test
waits for it or gives up, and the exact one-line message is asserted.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

import pytest

from fangen.runtime import lock
from fangen.runtime import state as st

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _hold(root: str, ready, release) -> None:
    with lock.held(root, "up fan250"):
        ready.set()
        release.wait(30)


@pytest.fixture
def holder(tmp_path):
    """Another process holding the root's lock until ``release`` is set."""
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(str(tmp_path), ready, release))
    proc.start()
    assert ready.wait(10)
    try:
        yield proc, release
    finally:
        release.set()
        proc.join(10)
        if proc.is_alive():
            proc.kill()


def test_a_second_holder_gives_up_with_one_line(tmp_path, holder):
    proc, _ = holder
    path = lock.lock_path(str(tmp_path))
    with pytest.raises(lock.LockTimeout) as exc:
        with lock.held(str(tmp_path), "down fan250", timeout=0.2):
            pytest.fail("got a lock another process holds")
    assert str(exc.value) == (
        f"{path}: another fangen command (pid {proc.pid}: fangen up fan250) holds the lock; "
        "gave up after 0.2 s (try again when it has finished; FANGEN_LOCK_TIMEOUT sets the "
        "wait)")


def test_a_waiter_gets_the_lock_when_it_is_released(tmp_path, holder):
    proc, release = holder
    path = lock.lock_path(str(tmp_path))
    assert os.path.exists(path)
    release.set()
    with lock.held(str(tmp_path), "down fan250", timeout=10):
        with open(path) as fh:
            assert fh.read() == f"{os.getpid()} down fan250\n"
    proc.join(10)
    assert not os.path.exists(path)          # the last holder removes it


def test_reentrant_in_one_process(tmp_path):
    root = str(tmp_path)
    with lock.held(root, "apply"):
        with lock.held(root, "generate", timeout=0):
            assert os.path.exists(lock.lock_path(root))
        assert os.path.exists(lock.lock_path(root))    # still held by the outer one
    assert not os.path.exists(lock.lock_path(root))


def test_unwritable_root_is_an_error_unless_optional(tmp_path):
    (tmp_path / "run").write_text("a file where a directory belongs\n")
    with pytest.raises(lock.FangenError, match=r"cannot take the lock .*/run/fangen/.lock: "
                                               r"Not a directory$"):
        with lock.held(str(tmp_path), "up x"):
            pass
    ran = []
    with lock.held(str(tmp_path), "generate", required=False):
        ran.append(True)
    assert ran == [True]


def test_timeout_from_the_environment(monkeypatch):
    monkeypatch.setenv(lock.TIMEOUT_ENV, "2.5")
    assert lock.timeout_from_env() == 2.5
    for bad in ("", "soon", "-1"):
        monkeypatch.setenv(lock.TIMEOUT_ENV, bad)
        assert lock.timeout_from_env() == lock.DEFAULT_TIMEOUT


def fangen(root: str, *args: str, env: dict | None = None):
    full = dict(os.environ, PYTHONPATH=REPO, PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    full.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "fangen", *args, "--root-dir", root],
                          capture_output=True, text=True, cwd=REPO, env=full, timeout=60)


def test_generate_waits_for_the_lock_and_says_who_holds_it(tmp_path, holder):
    proc, _ = holder
    res = fangen(str(tmp_path), "generate", env={lock.TIMEOUT_ENV: "0.3"})
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr == (f"fangen: {lock.lock_path(str(tmp_path))}: another fangen command "
                          f"(pid {proc.pid}: fangen up fan250) holds the lock; gave up after "
                          "0.3 s (try again when it has finished; FANGEN_LOCK_TIMEOUT sets "
                          "the wait)\n")


def _tree(root) -> set:
    return {os.path.relpath(os.path.join(d, f), root) for d, dirs, files in os.walk(root)
            for f in files + dirs}


# ("-x" too, but on a command line argparse takes that for an option: exit 2, usage)
BAD_NAMES = ["../x", "..", ".", "a/b", "/etc", "x\n", ".hidden", "a" * 65, "fan 250",
             "fan\x00", "é"]


ARGV_NAMES = [n for n in BAD_NAMES if "\x00" not in n]      # argv cannot carry a NUL
CASES = [(["down"], n) for n in ARGV_NAMES] + [
    (command, n) for command in (["down", "--force"], ["up"], ["run"],
                                 ["map", "250.1.2.3", "--fan"])
    for n in ("../x", "..", "x\n")]


@pytest.mark.parametrize("command, name", CASES)
def test_a_name_that_is_not_a_fan_name_is_refused_and_nothing_is_touched(tmp_path, command,
                                                                          name):
    victim = tmp_path / "run" / "x"
    victim.mkdir(parents=True)
    (victim / "state.json").write_text("{}")
    root = tmp_path / "root"
    root.mkdir()
    before = _tree(tmp_path)
    res = fangen(str(root), *command, name)
    assert res.returncode == (78 if command == ["run"] else 1)
    assert res.stdout == ""
    assert res.stderr == f"fangen: invalid fan name {name!r}: a fan name is 1 to 64 letters, " \
                         "digits, '_', '.' or '-', and does not start with '.' or '-'\n"
    assert _tree(tmp_path) == before


def test_check_name():
    assert st.check_name("fan-250.a_b") == "fan-250.a_b"
    assert st.check_name("a" * 64) == "a" * 64
    for bad in BAD_NAMES + ["-x", "", None, 7]:
        with pytest.raises(st.BadName):
            st.check_name(bad)
    with pytest.raises(st.BadName):
        st.state_dir("/", "../../etc")
    assert st.names_with_state("/nonexistent") == []


@pytest.mark.parametrize("text, why", [
    ("", "Expecting value: line 1 column 1 (char 0)"),
    ("{\"name\": \"f\", ", "Expecting property name enclosed in double quotes: line 1 column "
                          "15 (char 14)"),
    ("[]", "it does not describe fan 'f'"),
    ('{"name": "g"}', "it does not describe fan 'f'"),
    ('{"name": "f", "links": []}', "'links' is not dict"),
    ('{"name": "f", "mtu": "1450"}', "'mtu' is not int"),
    ('{"name": "f", "mtu": true}', "'mtu' is not int"),
    ('{"name": "f", "links": {"f": 1}}', "'links' has an entry that is not an object"),
    ('{"name": "f", "files": {"a": 1}}', "'files' has an entry that is not a string"),
    ('{"name": "f", "addresses": [1]}', "'addresses' has an entry without dev and address"),
    ('{"name": "f", "routes": [{"dst": "x"}]}', "'routes' has an entry without dst and dev"),
    ('{"name": "f", "dnsmasq": {"pid": "12"}}', "'dnsmasq' has a bad pid or command line"),
    (b"\xff\xfe", "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
])
def test_an_unusable_state_file_is_one_line_naming_it(tmp_path, text, why):
    path = tmp_path / "run/fangen/f/state.json"
    path.parent.mkdir(parents=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(st.StateError) as exc:
        st.load(str(tmp_path), "f")
    assert str(exc.value) == (f"{path}: unusable state file ({why}); 'fangen down --force f' "
                              "removes the fan's objects without it")


def test_a_state_file_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run/fangen").write_text("not a directory\n")
    with pytest.raises(st.StateError, match=r"^cannot write .*/run/fangen/f/state.json: "):
        st.save(str(tmp_path), st.State("f"))


def test_corrupt_state_makes_down_and_up_say_so(tmp_path):
    """The CLI shape of it: one line, exit 1 (down needs no namespace to get there)."""
    root = tmp_path
    (root / "run/fangen/fan250").mkdir(parents=True)
    (root / "run/fangen/fan250/state.json").write_text("{garbage")
    res = fangen(str(root), "down", "fan250")
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr == (f"fangen: {root}/run/fangen/fan250/state.json: unusable state file "
                          "(Expecting property name enclosed in double quotes: line 1 column 2 "
                          "(char 1)); 'fangen down --force fan250' removes the fan's objects "
                          "without it\n")


FANS_YAML = """network:
  version: 2
  fan:
    fan250:
      overlay: 250.0.0.0/8
      underlay: 172.16.3.4/16
      mtu: 1450
    lab:
      overlay: 10.128.0.0/9
      underlay: eth0
      type: vxlan
"""
STALE = 150          # stale files per round: a wide window for two removers to collide


def _files(root) -> dict:
    out = {}
    for directory, _, names in os.walk(root):
        for name in names:
            rel = os.path.relpath(os.path.join(directory, name), root)
            if not rel.startswith("etc/"):
                with open(os.path.join(directory, name), "rb") as fh:
                    out[rel] = fh.read()
    return out


def _spoil(root) -> None:
    """Stale files of fans that are gone, a rendered file missing, one changed."""
    net = os.path.join(root, "run/systemd/network")
    for i in range(STALE):
        with open(os.path.join(net, f"10-fangen-old{i}.netdev"), "w") as fh:
            fh.write("[NetDev]\n")
    os.makedirs(os.path.join(net, "10-fangen-gone.network.d"), exist_ok=True)
    with open(os.path.join(net, "10-fangen-gone.network.d/50-slice.conf"), "w") as fh:
        fh.write("[Network]\n")
    os.unlink(os.path.join(net, "10-fangen-lab.netdev"))
    with open(os.path.join(net, "10-fangen-fan250.network"), "w") as fh:
        fh.write("changed\n")


def test_concurrent_generate_with_stale_files_writes_one_complete_set(tmp_path):
    root = str(tmp_path)
    fan_d = tmp_path / "etc/netplan/fan.d"
    fan_d.mkdir(parents=True)
    (fan_d / "fans.yaml").write_text(FANS_YAML)
    (fan_d / "fans.yaml").chmod(0o600)
    first = fangen(root, "generate")
    assert first.returncode == 0, first.stderr
    reference = _files(root)
    assert "run/systemd/network/10-fangen-lab.netdev" in reference
    for _ in range(4):
        _spoil(root)
        env = dict(os.environ, PYTHONPATH=REPO, PYTHONDONTWRITEBYTECODE="1")
        procs = [subprocess.Popen([sys.executable, "-m", "fangen", "generate", "--root-dir",
                                   root], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert (proc.returncode, out, err) == (0, "", "")
        assert _files(root) == reference
        assert not os.path.exists(os.path.join(root, "run/systemd/network/10-fangen-gone"
                                                     ".network.d"))
