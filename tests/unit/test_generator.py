"""The systemd generator: only links in its output directory, nothing when there are no fans."""

import os
import subprocess
import sys

import pytest

from fangen import generator

GEN = os.path.join(os.path.dirname(generator.__file__), "generator.py")


def tree(path):
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, path)
            out[rel] = os.readlink(full) if os.path.islink(full) else "dir"
    return out


def run_generator(*args):
    return subprocess.run(["/usr/bin/python3", "-I", "-S", GEN, *args], capture_output=True,
                          text=True)


def test_links_when_fan_files_exist(tmp_path):
    root = tmp_path / "root"
    (root / "lib/netplan/fan.d").mkdir(parents=True)
    (root / "lib/netplan/fan.d/10-fan.yaml").write_text("network: {}\n")
    out = tmp_path / "out"
    res = run_generator("--root-dir", str(root), str(out), str(tmp_path / "e"),
                        str(tmp_path / "l"))
    assert res.returncode == 0 and res.stderr == ""
    assert tree(out) == {
        "multi-user.target.wants": "dir",
        "multi-user.target.wants/fangen.service": "/usr/lib/systemd/system/fangen.service",
    }
    assert not (tmp_path / "e").exists() and not (tmp_path / "l").exists()


def test_links_nothing_in_front_of_the_network(tmp_path):
    """Issue 11: the host's own networking must not wait for fangen.  No link into a
    .wants/.requires of networkd, network-pre/network/network-online.target, and no
    drop-in or unit file (which could add Before=) anywhere in the output."""
    (tmp_path / "root/etc/netplan/fan.d").mkdir(parents=True)
    (tmp_path / "root/etc/netplan/fan.d/10-fan.yaml").write_text("")
    outs = [tmp_path / n for n in ("normal", "early", "late")]
    assert run_generator("--root-dir", str(tmp_path / "root"), *map(str, outs)).returncode == 0
    made = {}
    for out in outs:
        made.update({f"{out.name}/{k}": v for k, v in tree(out).items()})
    assert made, "the generator linked nothing at all"
    for rel, target in made.items():
        if target == "dir":
            continue
        directory = rel.split("/")[-2]
        assert directory.endswith(".wants"), f"{rel}: only .wants links are expected"
        assert not directory.startswith(("network", "systemd-networkd")), rel
        assert target.endswith("/fangen.service"), rel


def test_runs_through_its_own_shebang_line(tmp_path):
    """As systemd runs it: the file itself, executed.  Linux hands everything after the
    interpreter to it as one argument, so the flags must be combined (-IS, not -I -S)."""
    root = tmp_path / "root"
    (root / "etc/netplan/fan.d").mkdir(parents=True)
    (root / "etc/netplan/fan.d/10-fan.yaml").write_text("")
    copy = tmp_path / "fangen"
    copy.write_bytes(open(GEN, "rb").read())
    copy.chmod(0o755)
    res = subprocess.run([str(copy), "--root-dir", str(root), str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert (res.returncode, res.stderr) == (0, "")
    assert (tmp_path / "out/multi-user.target.wants/fangen.service").is_symlink()


def test_nothing_without_fan_files(tmp_path):
    (tmp_path / "root/etc/netplan/fan.d").mkdir(parents=True)
    (tmp_path / "root/etc/netplan/fan.d/README").write_text("not yaml")
    res = run_generator("--root-dir", str(tmp_path / "root"), str(tmp_path / "out"))
    assert res.returncode == 0
    assert not (tmp_path / "out").exists()


def test_rerun_is_idempotent(tmp_path):
    (tmp_path / "root/run/netplan/fan.d").mkdir(parents=True)
    (tmp_path / "root/run/netplan/fan.d/a.yaml").write_text("")
    for _ in range(2):
        assert run_generator("--root-dir", str(tmp_path / "root"),
                             str(tmp_path / "out")).returncode == 0
    assert len(tree(tmp_path / "out")) == 2


def test_wrong_argument_count(tmp_path):
    res = run_generator(str(tmp_path / "a"), str(tmp_path / "b"))
    assert res.returncode == 2 and "usage" in res.stderr


def test_imports_nothing_heavy():
    """The boot path: the generator must not import yaml, jsonschema, pyroute2 or fangen."""
    code = ("import sys, runpy; sys.argv=['fangen', '/nonexistent-out']; "
            "sys.modules_before=set(sys.modules)\n"
            f"try:\n    runpy.run_path({GEN!r}, run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "new = set(sys.modules) - sys.modules_before\n"
            "print(sorted(m for m in new if m.split('.')[0] in "
            "('yaml','jsonschema','pyroute2','dbus','fangen')))")
    res = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    assert res.stdout.strip() == "[]", res.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for unshare (CI runs as root)")
def test_runs_in_a_sandbox_that_allows_writing_only_its_output(tmp_path):
    """Read-only root (private mount namespace); only the output directories are writable."""
    root = tmp_path / "root"
    (root / "etc/netplan/fan.d").mkdir(parents=True)
    (root / "etc/netplan/fan.d/10-fan.yaml").write_text("network: {}\n")
    outs = [tmp_path / n for n in ("normal", "early", "late")]
    for out in outs:
        out.mkdir()
    binds = " ".join(f"mount --bind {o} {o};" for o in outs)
    script = (f"set -e; {binds} mount -o remount,bind,ro /; "
              f"/usr/bin/python3 -I -S {GEN} --root-dir {root} " + " ".join(map(str, outs))
              + f"; if touch {root}/probe 2>/dev/null; then echo root-writable; exit 1; fi")
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert os.path.islink(outs[0] / "multi-user.target.wants/fangen.service")
