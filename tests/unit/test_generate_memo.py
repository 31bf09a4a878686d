"""generate's memo (fangen.fingerprint): an unchanged tree is checked, not rebuilt; a
boot rewrites the last clean run's files; and every change is seen.

The oracle for "seen": after each change to a root that holds a memo, generate must
give exactly what a full run gives on a copy of the same root without the memo
(exit code, output, every file under run/ with its mode).  A spy on the full
pipeline (``generate._full``, called through) shows which way each run went, so the
fast path is known to have been taken where it should, and the oracle is not
vacuous.
"""

from __future__ import annotations

import os
import shutil

import pytest

from fangen import fingerprint
from fangen.cli import generate
from fangen.config import files
from fangen.render import names
from tests.hostile.test_config_hostile import fangen, install

FANS = b"""network:
  fan:
    fan-250:
      overlay: 250.0.0.0/8
      underlay: 172.16.0.0/16
    fan-cgn:
      overlay: 100.64.0.0/10
      underlay: 10.224.220.7/24
      mtu: 1450
"""
NETPLAN = "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n"
NETWORKD = "etc/systemd/network/80-other.network"
NET = names.NETWORKD_DIR


@pytest.fixture
def full_runs(monkeypatch):
    """The number of full runs (load, validate, render) since the test began."""
    calls = []
    real = generate._full

    def spy(root, *rest):
        calls.append(root)
        return real(root, *rest)

    monkeypatch.setattr(generate, "_full", spy)
    return calls


def write(root: str, rel: str, text: str, mode: int = 0o644) -> str:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def root(tmp_path, full_runs):
    """A root after one clean generate: the fans, a netplan file, a networkd file."""
    root = str(tmp_path / "root")
    install(root, "10-fans.yaml", FANS)
    write(root, "etc/netplan/01-netcfg.yaml", NETPLAN, 0o600)
    write(root, NETWORKD, "[Match]\nName=other0\n")
    assert fangen("generate", "--root-dir", root) == (0, "", "")
    assert os.stat(os.path.join(root, fingerprint.MEMO)).st_mode & 0o777 == 0o600
    full_runs.clear()
    return root


def outcome(root: str, result, also: str = "") -> tuple:
    """(code, stdout, stderr, {file under run/: (bytes, mode)}) with the root's path (and
    ``also``, the root a copy was made from) out."""
    found = {}
    for directory, _, names_ in os.walk(os.path.join(root, "run")):
        for name in names_:
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            data = os.readlink(path).encode() if os.path.islink(path) else \
                open(path, "rb").read()
            for path_ in filter(None, (root, also)):
                data = data.replace(path_.encode(), b"ROOT")
            found[rel] = (data, st.st_mode)
    code, out, err = result
    return code, out.replace(root, "ROOT"), err.replace(root, "ROOT"), found


def full_run_of(root: str, tmp_path) -> tuple:
    """What a full generate gives on a copy of ``root`` without the memo."""
    import subprocess

    copy = str(tmp_path / "reference")
    shutil.rmtree(copy, ignore_errors=True)
    subprocess.run(["cp", "-a", root, copy], check=True)       # FIFOs and links as they are
    fingerprint.forget(copy)
    return outcome(copy, fangen("generate", "--root-dir", copy), also=root)


def assert_like_a_full_run(root, tmp_path, full_runs, expect_full: bool):
    reference = full_run_of(root, tmp_path)
    full_runs.clear()
    got = outcome(root, fangen("generate", "--root-dir", root))
    assert got == reference
    assert full_runs == ([root] if expect_full else [])
    return got


# -- the fast path ---------------------------------------------------------------------------

def test_an_unchanged_tree_is_checked_not_rebuilt(root, full_runs):
    before = {p: os.stat(os.path.join(root, p)).st_mtime_ns
              for p in fingerprint.load(root).files}
    memo = open(os.path.join(root, fingerprint.MEMO), "rb").read()
    assert fangen("generate", "--root-dir", root) == (0, "", "")
    assert full_runs == []
    assert {p: os.stat(os.path.join(root, p)).st_mtime_ns for p in before} == before
    assert open(os.path.join(root, fingerprint.MEMO), "rb").read() == memo


def test_the_fast_path_loads_no_yaml_and_validates_nothing(root):
    import subprocess
    import sys

    import fangen

    # the fangen this process imported (the memo's code digest is of its modules)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(fangen.__file__)))
    code = ("import sys; from fangen.cli import main; rc = main(['generate', '--root-dir', "
            f"{root!r}]); print(rc, sorted(m for m in ('yaml', 'argparse', 'dataclasses', "
            "'fangen.config.validate', 'fangen.generate', 'fangen.runtime.lock') "
            "if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=repo), cwd=repo, timeout=60)
    assert (res.returncode, res.stdout, res.stderr) == (0, "0 []\n", "")


def test_at_boot_the_memo_writes_the_last_runs_files_again(root, tmp_path, full_runs):
    shutil.rmtree(os.path.join(root, "run"))            # /run is a fresh tmpfs
    got = assert_like_a_full_run(root, tmp_path, full_runs, expect_full=False)
    assert len(got[3]) == 8                             # 2 fans x 3 + dnsmasq + manifest


def test_verbose_lists_what_the_memo_wrote(root, full_runs):
    os.unlink(os.path.join(root, NET, "10-fangen-fan-250.netdev"))
    code, out, err = fangen("generate", "--root-dir", root, "-v")
    assert (code, out, full_runs) == (0, "", [])
    assert f"written: /{NET}/10-fangen-fan-250.netdev\n" in err
    assert f"unchanged: /{NET}/10-fangen-fan-cgn.netdev\n" in err


# -- every change is seen ---------------------------------------------------------------------

def _fan_d(root):
    return os.path.join(root, "etc/netplan/fan.d/10-fans.yaml")


def _replace(path, old, new):
    with open(path, "rb") as fh:
        data = fh.read()
    assert old in data
    mode = os.stat(path).st_mode
    with open(path, "wb") as fh:
        fh.write(data.replace(old, new))
    os.chmod(path, mode)


CHANGES = {
    # inputs: a full run
    "fan.d: one byte, same size": (True, lambda r: _replace(_fan_d(r), b"250.0.0.0/8",
                                                            b"251.0.0.0/8")),
    "fan.d: readable by others": (True, lambda r: os.chmod(_fan_d(r), 0o644)),
    "fan.d: removed": (True, lambda r: os.unlink(_fan_d(r))),
    "fan.d: another file": (True, lambda r: install(r, "20-more.yaml", b"network:\n  fan:\n"
                                                    b"    f3:\n      overlay: 240.0.0.0/8\n"
                                                    b"      underlay: 10.3.0.0/16\n")),
    "fan.d: a run/ file hides etc's": (True, lambda r: write(
        r, "run/netplan/fan.d/10-fans.yaml", FANS.decode().replace("1450", "1400"), 0o600)),
    "fan.d: a lib/ layer appears": (True, lambda r: write(
        r, "lib/netplan/fan.d/05-lib.yaml", "network:\n  fan:\n    fan-250:\n"
        "      mtu: 1300\n", 0o600)),
    "fan.d: a FIFO instead of the file": (True, lambda r: (os.unlink(_fan_d(r)),
                                                           os.mkfifo(_fan_d(r), 0o600))),
    "netplan: names the bridge": (True, lambda r: write(
        r, "etc/netplan/01-netcfg.yaml", NETPLAN.replace("eth0", "fan-250"), 0o600)),
    "netplan: another file": (True, lambda r: write(
        r, "run/netplan/90-x.yaml", "network:\n  bridges:\n    fan-cgn-tun: {}\n", 0o600)),
    "networkd: a file names the tunnel": (True, lambda r: _replace(
        os.path.join(r, NETWORKD), b"other0", b"fan-250-tun")),
    "networkd: netplan's output names the bridge": (True, lambda r: write(
        r, f"{NET}/10-netplan-x.network", "[Match]\nName=fan-cgn\n")),
    "networkd: a glob in another directory": (True, lambda r: write(
        r, "usr/lib/systemd/network/70-f.network", "[Match]\nName=fan-*\n")),
    "networkd: masked": (True, lambda r: (os.unlink(os.path.join(r, NETWORKD)), os.symlink(
        "/dev/null", os.path.join(r, NETWORKD)))),
    "memo: damaged": (True, lambda r: _replace(os.path.join(r, fingerprint.MEMO),
                                               b"10-fangen", b"10-fangeN")),
    "memo: truncated": (True, lambda r: os.truncate(os.path.join(r, fingerprint.MEMO), 100)),
    # outputs only: the memo's files again, no full run
    "output: changed": (False, lambda r: write(r, f"{NET}/10-fangen-fan-250.network", "x\n",
                                               0o640)),
    "output: removed": (False, lambda r: os.unlink(os.path.join(r, names.MANIFEST))),
    "output: a link instead": (False, lambda r: (
        os.rename(os.path.join(r, NET, "10-fangen-fan-cgn.netdev"), os.path.join(r, "x")),
        os.symlink(os.path.join(r, "x"), os.path.join(r, NET, "10-fangen-fan-cgn.netdev")))),
    "output: mode": (False, lambda r: os.chmod(os.path.join(r, "run/fangen/fan-cgn/"
                                                           "dnsmasq.conf"), 0o666)),
    "output: a stale file of ours": (False, lambda r: write(
        r, f"{NET}/10-fangen-gone.network", "[Match]\nName=gone\n")),
    "output: a gone fan's drop-ins": (False, lambda r: write(
        r, f"{NET}/10-fangen-gone.network.d/50-slice.conf", "[Network]\n")),
    "output: run/ emptied (boot)": (False, lambda r: shutil.rmtree(os.path.join(r, "run"))),
    # nothing that counts: the fast path
    "same bytes written again": (False, lambda r: _replace(_fan_d(r), b"fan-250",
                                                          b"fan-250")),
    "not a .yaml in fan.d": (False, lambda r: write(r, "etc/netplan/fan.d/README", "x\n")),
    "not networkd's in its directory": (False, lambda r: write(
        r, "etc/systemd/network/README", "x\n")),
    "a live fan's drop-ins": (False, lambda r: write(
        r, f"{NET}/10-fangen-fan-250.network.d/50-slice.conf", "[Network]\n")),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_every_change_gives_what_a_full_run_gives(root, tmp_path, full_runs, change):
    full, apply = CHANGES[change]
    apply(root)
    assert_like_a_full_run(root, tmp_path, full_runs, expect_full=full)
    if _clean(root):        # and the next run uses the memo that run left, and agrees
        assert_like_a_full_run(root, tmp_path, full_runs, expect_full=False)


def _clean(root) -> bool:
    code, out, err = fangen("validate", "--root-dir", root)
    return code == 0 and err == ""


def test_a_change_while_generate_reads_is_not_remembered_as_read(root, tmp_path, full_runs,
                                                                 monkeypatch):
    """The memo holds a digest of what the run read, not of what is there afterwards:
    a file changed between the read and the memo makes the next run a full one."""
    from fangen.config import loader

    real = loader.load
    _replace(_fan_d(root), b"mtu: 1450", b"mtu: 1440")     # a change: the next run is full

    def load_then_change(*args, **kwargs):
        loaded = real(*args, **kwargs)
        _replace(_fan_d(root), b"mtu: 1440", b"mtu: 1430")
        return loaded

    monkeypatch.setattr(loader, "load", load_then_change)
    assert fangen("generate", "--root-dir", root) == (0, "", "")
    assert len(full_runs) == 1
    monkeypatch.setattr(loader, "load", real)
    assert b"option:mtu,1440" in open(os.path.join(root, "run/fangen/fan-cgn/dnsmasq.conf"),
                                      "rb").read()
    assert_like_a_full_run(root, tmp_path, full_runs, expect_full=True)     # 1430 now
    assert b"option:mtu,1430" in open(os.path.join(root, "run/fangen/fan-cgn/dnsmasq.conf"),
                                      "rb").read()


def test_another_fangen_or_python_misses(root, monkeypatch, full_runs):
    memo = fingerprint.load(root)
    assert fingerprint.holds(root, False, memo)
    assert not fingerprint.holds(root, True, memo)              # the live host: other reads
    assert not fingerprint.holds(root + "/", False, memo)       # another root string
    monkeypatch.setattr(fingerprint.sys, "version", fingerprint.sys.version + "+")
    assert not fingerprint.holds(root, False, memo)


def test_a_changed_module_misses(tmp_path, monkeypatch):
    package = tmp_path / "fangen"
    (package / "config").mkdir(parents=True)
    module = package / "config" / "validate.py"
    module.write_text("A = 1\n")
    monkeypatch.setattr(fingerprint, "_PACKAGE", str(package))
    before = fingerprint.code("/x", False)
    assert fingerprint.code("/x", False) == before
    module.write_text("A = 2\n")                                  # same size
    os.utime(module, ns=(1, 1))
    assert fingerprint.code("/x", False) != before
    (package / "config" / "new.py").write_text("")
    assert fingerprint.code("/x", False) != before


def test_a_memo_never_names_a_path_outside_fangens_own(root):
    path = os.path.join(root, fingerprint.MEMO)
    good = open(path, "rb").read()
    assert fingerprint.parse(good) is not None
    body = good[:good.rindex(b"end ")]
    for bad in ("etc/passwd", "run/systemd/network/20-host.network", "run/fangen/../x",
                "run/systemd/network/10-fangen-a/b", "run/fangen/.lock/x", "/run/fangen/a/b"):
        forged = body + f"= {bad.encode().hex()} 2\nx\n\n".encode()
        forged += f"end {fingerprint._sha256(forged).hexdigest()}\n".encode()
        assert fingerprint.parse(forged) is None, bad
    flipped = b"1" if good[-2:-1] == b"0" else b"0"
    assert fingerprint.parse(good[:-2] + flipped + b"\n") is None     # the digest line


def test_the_memo_is_the_same_bytes_for_the_same_run(root):
    path = os.path.join(root, fingerprint.MEMO)
    memo = open(path, "rb").read()
    os.unlink(path)
    assert fangen("generate", "--root-dir", root) == (0, "", "")
    assert open(path, "rb").read() == memo


def test_no_memo_after_a_run_with_diagnostics(tmp_path):
    root = str(tmp_path)
    install(root, "10-fans.yaml", FANS)
    os.chmod(_fan_d(root), 0o644)                        # a warning
    code, _, err = fangen("generate", "--root-dir", root)
    assert code == 0 and "Warning: permissions are too open" in err
    assert fingerprint.load(root) is None


def test_an_unwritable_cache_only_costs_the_memo(tmp_path):
    root = str(tmp_path)
    install(root, "10-fans.yaml", FANS)
    write(root, "var/cache", "a file where a directory belongs\n")
    assert fangen("generate", "--root-dir", root) == (0, "", "")
    assert fingerprint.load(root) is None
    assert os.path.exists(os.path.join(root, names.MANIFEST))


def test_recorded_reads_are_the_reads_made():
    with files.recording() as tape:
        with pytest.raises(FileNotFoundError):
            files.read_limited("/nonexistent/x")
        files.listdir("/", "all")
        inner = None
        with files.recording() as nested:
            files.stat_mode("/")
            inner = list(nested.questions)
    assert inner == [("mode", "/", 0)]
    assert tape.questions == [("read", "/nonexistent/x", files.MAX_FILE_BYTES),
                              ("listdir-all", "/", 0)]
    assert tape.answers[0] == ("error", 2)
    assert files.replay("/", tape.questions) == tape.answers
    assert files._tape is None


def test_the_owned_prefix_is_the_renderers():
    assert files.OWNED_PREFIX == names.OWNED_PREFIX
