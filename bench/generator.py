#!/usr/bin/python3
"""Boot-path benchmark: fangen's generators vs. netplan's, side by side, on one root.

The root holds one plain netplan file and three fans.  Runs alternate (netplan,
fangen's systemd generator, `fangen generate`) so that machine noise hits all three
alike; prints the medians and the ratios against netplan's generator.  No timing is
asserted anywhere: this prints numbers.

    /usr/bin/python3 bench/generator.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETPLAN = "/usr/libexec/netplan/generate"
PYTHON = "/usr/bin/python3"

PLAIN = """network:
  version: 2
  ethernets:
    eth0:
      dhcp4: true
"""
FANS = """network:
  version: 2
  fan:
    fan-250:
      overlay: 250.0.0.0/8
      underlay: 172.16.0.0/16
    fan-240:
      overlay: 240.0.0.0/8
      underlay: 10.0.0.0/16
      type: vxlan
    fan-cgn:
      overlay: 100.64.0.0/10
      underlay: 10.224.220.7/24
      mtu: 1450
"""


def make_root(path: str) -> None:
    os.makedirs(os.path.join(path, "etc/netplan/fan.d"))
    for rel, text in (("etc/netplan/01-netcfg.yaml", PLAIN),
                      ("etc/netplan/fan.d/10-fans.yaml", FANS)):
        full = os.path.join(path, rel)
        with open(full, "w") as fh:
            fh.write(text)
        os.chmod(full, 0o600)


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {res.stderr.decode()}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs of each (default 30)")
    args = parser.parse_args()
    if not os.path.exists(NETPLAN):
        sys.exit(f"{NETPLAN} not found: apt-get install netplan.io")
    work = tempfile.mkdtemp(prefix="fangen-bench-")
    try:
        root = os.path.join(work, "root")
        make_root(root)
        out = os.path.join(work, "gen")
        env = dict(os.environ, PYTHONPATH=REPO)
        env.pop("PYTHONDONTWRITEBYTECODE", None)       # installed packages have .pyc files
        commands = {
            "netplan generate": [NETPLAN, "--root-dir", root],
            "fangen systemd generator": [PYTHON, "-I", "-S",
                                         os.path.join(REPO, "fangen/generator.py"),
                                         "--root-dir", root, out, out, out],
            "fangen generate": [PYTHON, "-m", "fangen", "generate", "--root-dir", root],
        }
        for cmd in commands.values():             # warm the page cache, check they work
            timed(cmd, env)
        samples = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                samples[name].append(timed(cmd, env))
        base = statistics.median(samples["netplan generate"])
        print(f"{args.runs} alternating runs each; root: 1 plain netplan file, 3 fans")
        for name, values in samples.items():
            med = statistics.median(values)
            print(f"  {name:26s} median {med * 1000:7.2f} ms   ratio {med / base:5.2f}x")
        gen = statistics.median(samples["fangen systemd generator"]) / base
        print(f"target: fangen's systemd generator <= 2.00x netplan's generator: "
              f"{'met' if gen <= 2.0 else 'NOT met'} ({gen:.2f}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
