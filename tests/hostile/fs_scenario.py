"""One filesystem fault under a generate, run inside a private mount namespace.

    unshare -m --propagation private python3 -m tests.hostile.fs_scenario MODE ROOT OUT

ROOT/run becomes a small tmpfs (mounted on a directory the test made, inside this
process's own mount namespace, so nothing outside sees it and it goes when the
process ends).  A first ``generate`` writes a good fan's files; then the fault
(MODE: ``enospc`` fills the tmpfs, ``erofs`` remounts it read-only, ``enotdir`` puts
a file where ``run/fangen`` belongs), then a changed configuration (the good fan
changed, a second fan added) and a second ``generate``.  OUT (outside ROOT/run) gets
JSON: both snapshots (path -> sha256 and mode), the exit code and stderr of the
second generate, and any temporary files left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys

from fangen import cli

FIRST = b"""network:
  version: 2
  fan:
    good:
      overlay: 250.0.0.0/8
      underlay: 172.16.3.4/16
      mtu: 1450
"""
SECOND = FIRST + b"""      host-reserve: 9
    more:
      overlay: 240.0.0.0/8
      underlay: 10.1.2.3/16
      mtu: 1400
"""


def snapshot(root: str) -> dict:
    found = {}
    for directory, dirs, files in os.walk(os.path.join(root, "run")):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(directory, d))]:
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, root)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as fh:
                    found[rel] = [hashlib.sha256(fh.read()).hexdigest(),
                                  oct(os.stat(path).st_mode)]
            else:
                found[rel] = ["not a regular file", oct(os.lstat(path).st_mode)]
    return found


def generate(root: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli.main(["generate", "--root-dir", root])
    return code, err.getvalue()


def install(root: str, data: bytes) -> None:
    path = os.path.join(root, "etc/netplan/fan.d/10-fan.yaml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def fill(directory: str) -> None:
    """Fill the filesystem of ``directory`` to the last byte."""
    with open(os.path.join(directory, "filler"), "wb", buffering=0) as fh:
        chunk = b"\0" * 4096
        while True:
            try:
                fh.write(chunk)
            except OSError:
                break
        while True:
            try:
                fh.write(b"\0")
            except OSError:
                break


def main(mode: str, root: str, out: str) -> int:
    run = os.path.join(root, "run")
    os.makedirs(run, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", run],
                   check=True)
    install(root, FIRST)
    first = generate(root)
    before = snapshot(root)
    if mode == "enospc":
        fill(run)
        before = snapshot(root)
    elif mode == "erofs":
        subprocess.run(["mount", "-o", "remount,ro", run], check=True)
    elif mode == "enotdir":
        fan_dir = os.path.join(run, "fangen", "more")
        with open(fan_dir, "w") as fh:                 # a file where a directory belongs
            fh.write("in the way\n")
        before = snapshot(root)
    install(root, SECOND)
    code, stderr = generate(root)
    after = snapshot(root)
    leftovers = [os.path.relpath(os.path.join(d, n), root)
                 for d, dirs, files in os.walk(run) for n in files + dirs
                 if n.startswith(".fangen-")]
    with open(out, "w") as fh:
        json.dump({"first": first, "before": before, "after": after, "code": code,
                   "stderr": stderr, "leftovers": leftovers}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
