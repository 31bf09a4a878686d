#!/usr/bin/python3
"""Boot-path benchmark: fangen's generators vs. netplan's, side by side, on one root.

The root holds one plain netplan file and three fans.  Every command runs once per
round and the rounds alternate (the order rotates from round to round), so machine
noise hits all of them alike; it prints medians, the spread (quartiles, minimum)
and the ratios against netplan's generator (wall clock; the CPU time of the
process, less disturbed by a busy machine, beside it).  No timing is asserted anywhere: this
prints numbers.

Three states of the root are measured:

* warm: the root keeps what the previous run wrote -- the state of every
  ``fangen generate`` after the first (``netplan apply``, ``fangen apply``, a
  daemon-reload): fangen's memo of its last clean run holds and its files are in
  place, so it checks and exits;
* boot: the root's run/ is removed before each run (outside the timing; for fangen,
  netplan's generator then writes its files, as systemd's generators do before any
  service starts), as at boot when /run is a fresh tmpfs; fangen's memo (in
  var/cache) is from its last clean run, so it writes that run's files again;
* first: the same, and fangen's memo removed too: a full run (load, validate,
  render, write), as on the first boot after the configuration or fangen changed.
  netplan has no memo: its row for this state is the boot one.

And two ways of starting ``fangen generate``:

* installed: /usr/sbin/fangen as the .deb lays it out (debian/sbin-fangen, a
  ``python3 -IS`` launcher, with the package byte-compiled in a dist-packages
  directory, as py3compile leaves it); here in a temporary prefix, the launcher's
  ``SITE_DIRS`` given that prefix's dist-packages first;
* ``python3 -m fangen`` from the checkout (PYTHONPATH), with site.py's start-up.

For scale, two more rows: ``python3 -IS -c pass`` and ``python3 -c pass``, the
interpreter starting and doing nothing, as the launcher and as ``python3 -m`` start
it.  At the end the output trees of all fangen runs are compared (they must be the
same files with the same bytes and modes).

    /usr/bin/python3 bench/generator.py [--runs N]
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETPLAN = "/usr/libexec/netplan/generate"
PYTHON = "/usr/bin/python3"
LAUNCHER = os.path.join(REPO, "debian/sbin-fangen")
SITE_LINE = "SITE_DIRS = site.getsitepackages()"
MEMO = "var/cache/fangen/generate.memo"

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


def install(prefix: str) -> str:
    """The package and /usr/sbin/fangen under ``prefix`` as the .deb lays them out;
    the launcher's path."""
    lib = os.path.join(prefix, "usr/lib/python3/dist-packages")
    shutil.copytree(os.path.join(REPO, "fangen"), os.path.join(lib, "fangen"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if not compileall.compile_dir(os.path.join(lib, "fangen"), quiet=1):
        sys.exit("byte-compiling the package failed")
    with open(LAUNCHER) as fh:
        text = fh.read()
    if text.count(SITE_LINE) != 1:
        sys.exit(f"{LAUNCHER}: no single line '{SITE_LINE}' to point at the prefix")
    text = text.replace(SITE_LINE, f"SITE_DIRS = [{lib!r}] + site.getsitepackages()")
    sbin = os.path.join(prefix, "usr/sbin/fangen")
    os.makedirs(os.path.dirname(sbin))
    with open(sbin, "w") as fh:
        fh.write(text)
    os.chmod(sbin, 0o755)
    return sbin


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict, before=None) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of ``cmd`` (``before`` runs first, untimed)."""
    if before is not None:
        before()
    cpu = _cpu()
    start = time.perf_counter()
    res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    cpu = _cpu() - cpu
    if res.returncode != 0 or res.stderr:
        sys.exit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.decode()}")
    return elapsed, cpu


def work_dir() -> tuple[str, str]:
    """A fresh directory for the roots, on a tmpfs (as /run is) when /dev/shm is one."""
    try:
        with open("/proc/self/mounts") as fh:
            tmpfs = any(line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in fh)
    except OSError:
        tmpfs = False
    if tmpfs and os.access("/dev/shm", os.W_OK):
        return tempfile.mkdtemp(prefix="fangen-bench-", dir="/dev/shm"), "tmpfs (/dev/shm)"
    path = tempfile.mkdtemp(prefix="fangen-bench-")
    return path, f"{os.path.dirname(path)} (not a tmpfs: file creation costs more than in /run)"


def tree(root: str) -> dict:
    """fangen's files under root/run (not netplan's, not the memo): bytes and mode,
    with the root's own path taken out of the text."""
    found = {}
    prefix = root.rstrip("/").encode() + b"/"
    for top in ("run/systemd/network", "run/fangen"):
        for directory, _, names in os.walk(os.path.join(root, top)):
            for name in names:
                path = os.path.join(directory, name)
                rel = os.path.relpath(path, root)
                if rel == MEMO or not (name.startswith("10-fangen-") or top == "run/fangen"):
                    continue
                with open(path, "rb") as fh:
                    found[rel] = (fh.read().replace(prefix, b"/"), os.lstat(path).st_mode)
    return found


def spread(values: list[float]) -> str:
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"IQR {q1 * 1000:6.2f}-{q3 * 1000:6.2f}, min {min(values) * 1000:6.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="rounds (default 30, at least 7)")
    args = parser.parse_args()
    if args.runs < 7:
        parser.error("--runs: at least 7 rounds")
    if not os.path.exists(NETPLAN):
        sys.exit(f"{NETPLAN} not found: apt-get install netplan.io")
    work, where = work_dir()
    load_before = os.getloadavg()
    try:
        roots = {}
        for name in ("warm-netplan", "warm-installed", "warm-m", "boot-netplan",
                     "boot-installed", "boot-m", "first-installed", "first-m", "generator"):
            roots[name] = os.path.join(work, name)
            make_root(roots[name])
        sbin = install(os.path.join(work, "prefix"))
        out = os.path.join(work, "gen")
        env = dict(os.environ, PYTHONPATH=REPO)
        env.pop("PYTHONDONTWRITEBYTECODE", None)       # installed packages have .pyc files

        def emptied(root, netplan_too=False, memo_too=False):
            """run/ emptied, as at boot; for fangen, netplan's generator has run since
            (systemd runs the generators before any service), so its files are there."""
            def before():
                shutil.rmtree(os.path.join(root, "run"), ignore_errors=True)
                if memo_too and os.path.exists(os.path.join(root, MEMO)):
                    os.unlink(os.path.join(root, MEMO))
                if netplan_too:
                    subprocess.run([NETPLAN, "--root-dir", root], check=True)
            return before

        for name in ("warm-installed", "warm-m"):     # netplan's files beside fangen's
            subprocess.run([NETPLAN, "--root-dir", roots[name]], check=True)
        installed = [sbin, "generate", "--root-dir"]
        module = [PYTHON, "-m", "fangen", "generate", "--root-dir"]
        warm, boot = "warm  netplan generate", "boot  netplan generate"
        # name: (command, run before each (untimed), the netplan row it is compared with)
        commands = {
            warm: ([NETPLAN, "--root-dir", roots["warm-netplan"]], None, None),
            "warm  fangen systemd generator": (
                [PYTHON, "-I", "-S", os.path.join(REPO, "fangen/generator.py"),
                 "--root-dir", roots["generator"], out, out, out], None, warm),
            "warm  fangen generate, installed": (
                installed + [roots["warm-installed"]], None, warm),
            "warm  fangen generate, python3 -m": (module + [roots["warm-m"]], None, warm),
            # for scale: the interpreter starting and doing nothing, as the launcher starts
            # it, and with site.py (as python3 -m starts it)
            "warm  (python3 -IS -c pass)": ([PYTHON, "-IS", "-c", "pass"], None, warm),
            "warm  (python3 -c pass)": ([PYTHON, "-c", "pass"], None, warm),
            boot: ([NETPLAN, "--root-dir", roots["boot-netplan"]],
                   emptied(roots["boot-netplan"]), None),
            "boot  fangen generate, installed": (
                installed + [roots["boot-installed"]],
                emptied(roots["boot-installed"], True), boot),
            "boot  fangen generate, python3 -m": (
                module + [roots["boot-m"]], emptied(roots["boot-m"], True), boot),
            "first fangen generate, installed": (
                installed + [roots["first-installed"]],
                emptied(roots["first-installed"], True, True), boot),
            "first fangen generate, python3 -m": (
                module + [roots["first-m"]], emptied(roots["first-m"], True, True), boot),
        }
        for cmd, before, _ in commands.values():     # warm the page cache, check they work
            timed(cmd, env, before)
            timed(cmd, env, before)          # the warm and boot roots now hold a memo
        samples = {name: [] for name in commands}
        cpu = {name: [] for name in commands}
        names = list(commands)
        for round_ in range(args.runs):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                cmd, before, _ = commands[name]
                wall, used = timed(cmd, env, before)
                samples[name].append(wall)
                cpu[name].append(used)
        load_after = os.getloadavg()
        print(f"{args.runs} alternating rounds; root: 1 plain netplan file, 3 fans, on "
              f"{where}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
        print("warm: the previous run's output and fangen's memo in place; boot: run/ "
              "emptied before each run (fangen's memo kept); first: run/ and the memo removed")
        ratios = {}
        for name, values in samples.items():
            med = statistics.median(values)
            base = commands[name][2]
            ratio = ""
            used = statistics.median(cpu[name])
            if base is not None:
                ratios[name] = med / statistics.median(samples[base])
                ratio = (f"ratio {ratios[name]:5.2f}x (CPU "
                         f"{used / statistics.median(cpu[base]):4.2f}x)")
            print(f"  {name:34s} median {med * 1000:7.2f} ms ({spread(values)}; CPU "
                  f"{used * 1000:6.2f})  {ratio}")
        for name, ratio in ratios.items():
            if "(" in name:
                continue
            print(f"target <= 2.00x netplan's generator: {name[6:]:33s} "
                  f"({name.split()[0]}): {'met' if ratio <= 2.0 else 'NOT met'} "
                  f"({ratio:.2f}x)")
        trees = {name: tree(roots[name]) for name in ("warm-installed", "warm-m",
                                                      "boot-installed", "boot-m",
                                                      "first-installed", "first-m")}
        reference = trees["first-m"]
        if not reference or any(t != reference for t in trees.values()):
            sys.exit("output differs between the fangen runs: "
                     + ", ".join(f"{n}: {sorted(t)}" for n, t in trees.items()))
        for name in ("warm-installed", "warm-m", "boot-installed", "boot-m"):
            if not os.path.exists(os.path.join(roots[name], MEMO)):
                sys.exit(f"the {name} root holds no memo: its fast path was never taken")
        print(f"output: the same {len(reference)} files (bytes and modes) from every "
              "fangen run, in every state, installed and python3 -m")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
