"""Inputs that used to kill the process itself (libyaml's composer recursed in C for
every nesting level), run by a real ``fangen`` process: it must print one diagnostic
and exit 1, not crash.  The same inputs in a plain netplan file, which fangen reads for
misplaced fan stanzas and for the names the host uses, must not crash it either."""

import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEEP = [
    ("flow-lists", b"network: " + b"[" * 200000 + b"]" * 200000, "1:41"),
    ("flow-maps", b"network: " + b"{a: " * 100000 + b"}" * 100000, "1:134"),
    ("block-maps", b"".join(b" " * i + b"a:\n" for i in range(1400)), "33:33"),
    ("block-lists", b"- " * 200000 + b"x\n", "1:65"),
]


def fangen(*args):
    return subprocess.run(["/usr/bin/python3", "-m", "fangen", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120,
                          env=dict(os.environ, PYTHONPATH=REPO))


def write(path, data: bytes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


@pytest.mark.parametrize("name, data, where", DEEP, ids=[d[0] for d in DEEP])
def test_deep_nesting_in_fan_d_is_one_line_not_a_crash(tmp_path, name, data, where):
    path = str(tmp_path / "etc/netplan/fan.d/10-deep.yaml")
    write(path, data)
    res = fangen("validate", "--root-dir", str(tmp_path))
    assert res.returncode == 1, res
    lines = res.stderr.splitlines()
    assert lines[0] == f"{path}:{where}: Invalid YAML: document nested deeper than 32 levels"
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("name, data, where", DEEP, ids=[d[0] for d in DEEP])
def test_deep_nesting_in_a_netplan_file_does_not_crash(tmp_path, name, data, where):
    write(str(tmp_path / "etc/netplan/01-deep.yaml"), data + b"\nfan: x\n")
    write(str(tmp_path / "etc/netplan/fan.d/10-fan.yaml"),
          b"network:\n  fan:\n    f: {overlay: 250.0.0.0/8, underlay: 10.0.0.0/16}\n")
    res = fangen("generate", "--root-dir", str(tmp_path))
    assert (res.returncode, res.stderr) == (0, "")      # netplan reports its own file


def test_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = [b"a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 30):
        lines.append(f"a{i}: &a{i} [".encode() + b", ".join([f"*a{i-1}".encode()] * 9) + b"]")
    path = str(tmp_path / "etc/netplan/fan.d/10-bomb.yaml")
    write(path, b"\n".join(lines) + b"\n")
    res = fangen("validate", "--root-dir", str(tmp_path))
    assert res.returncode == 1
    assert res.stderr.splitlines()[0] == (f"{path}:5:15: Invalid YAML: document too large: "
                                          "more than 20000 values (after expanding aliases)")
