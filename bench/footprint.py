#!/usr/bin/python3
"""Footprint of the runtime that follows the fans: memory for 1, 2 and 4 fans, and the
CPU an idle follower uses.

One host namespace on a switch (tests/harness), four VXLAN fans (each on its own UDP
port) over the same underlay, dnsmasq as plain processes (``--no-systemd``; real
networkd is not needed: the follower's cost does not depend on it).  For N in 1, 2, 4:

* new layout: ``fangen up`` brings N fans up, then ONE ``fangen run`` (no names)
  follows every fan that is up: its RSS is read once it is idle (its first
  reconciliation child has ended);
* old layout (``--old REF``, default the last commit with one resident ``fangen run
  NAME`` per fan, taken with ``git archive``): N processes ``fangen run NAME`` of that
  tree; their RSS is summed.

Both layouts run side by side on the same fans, which leader changes every round;
then both idle for ``--idle`` seconds (default 60) and the CPU time they use
(utime + stime of the processes and the children they reaped, from /proc/PID/stat)
is read.  Printed per N: VmRSS and, from /proc/PID/smaps_rollup, Pss and
Private (Private_Clean + Private_Dirty), as median [min..max] over the rounds; the
increment per extra fan; the idle CPU.  Asserts nothing.

Run as root: /usr/bin/python3 bench/footprint.py [--rounds 2] [--idle 60] [--old REF|none]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.stats import rotated, summary  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD_REF = "ee2f778"        # main before the one-follower layout: fangen run NAME per fan
COUNTS = (1, 2, 4)
FANS = [f"fan{250 + i}" for i in range(4)]


# -- pure ---------------------------------------------------------------------------------
def fan_yaml(count: int = 4) -> str:
    """``count`` VXLAN fans over 172.16.0.0/16, overlays 250/8.., UDP ports 8472.."""
    lines = ["network:", "  version: 2", "  fan:"]
    for i in range(count):
        lines += [f"    fan{250 + i}:", f"      overlay: {250 + i}.0.0.0/8",
                  "      underlay: 172.16.0.0/16", "      type: vxlan",
                  f"      vxlan: {{port: {8472 + i}}}"]
    return "\n".join(lines) + "\n"


def status_kb(text: str, key: str) -> int:
    """A ``Key:   123 kB`` line of /proc/PID/status or smaps_rollup, in kB (0: absent)."""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def memory(status: str, rollup: str) -> dict:
    """{rss, pss, private} in kB from /proc/PID/status and /proc/PID/smaps_rollup."""
    return {"rss": status_kb(status, "VmRSS"), "pss": status_kb(rollup, "Pss"),
            "private": status_kb(rollup, "Private_Clean") + status_kb(rollup, "Private_Dirty")}


def cpu_ticks(stat: str) -> int:
    """utime + stime + cutime + cstime (clock ticks) from /proc/PID/stat (the command
    name, in parentheses, may hold spaces)."""
    fields = stat[stat.rindex(")") + 2:].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14))


def per_extra_fan(rss_by_count: dict) -> float:
    """(RSS at the most fans - RSS at one fan) / (extra fans), in the unit given."""
    most = max(rss_by_count)
    return (rss_by_count[most] - rss_by_count[1]) / (most - 1)


def spread(values: list[float], unit: str = "", scale: float = 1.0) -> str:
    s = summary([v * scale for v in values])
    return f"{s.median:.1f}{unit} [{s.low:.1f}..{s.high:.1f}]"


# -- the lab ------------------------------------------------------------------------------
def read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


def measure(pids: list[int]) -> dict:
    """Summed memory of ``pids`` (kB)."""
    total = {"rss": 0, "pss": 0, "private": 0}
    for pid in pids:
        mem = memory(read(f"/proc/{pid}/status"), read(f"/proc/{pid}/smaps_rollup"))
        for key in total:
            total[key] += mem[key]
    return total


def ticks(pids: list[int]) -> int:
    return sum(cpu_ticks(read(f"/proc/{pid}/stat")) for pid in pids if read(f"/proc/{pid}/stat"))


def children(pid: int) -> list[int]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
        out += [int(c) for c in read(f"/proc/{pid}/task/{tid}/children").split()]
    return out


def settle(pids: list[int], timeout: float = 60.0) -> None:
    """Wait until the followers have no child (their first reconciliation is over) and
    their CPU stands still for a second."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        busy = any(children(p) for p in pids)
        now = ticks(pids)
        if not busy and now == last:
            return
        last = now
        time.sleep(1.0)
    raise SystemExit(f"footprint: the followers did not settle within {timeout:g} s")


def ports_forwarding(ns: str, timeout: float = 60.0) -> None:
    """Wait until every bridge port is forwarding: a new port moves there after the
    bridge's forward delay (15 s), a netlink event every follower wakes up for."""
    import json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = subprocess.run(["bridge", "-n", ns, "-j", "link", "show"], capture_output=True,
                             text=True)
        ports = json.loads(res.stdout or "[]") if res.returncode == 0 else []
        if ports and all(p.get("state") == "forwarding" for p in ports):
            return
        time.sleep(0.5)
    raise SystemExit(f"footprint: bridge ports not forwarding within {timeout:g} s")


def export_old(ref: str, into: str) -> str:
    """The fangen package of ``ref`` (git archive) under ``into``; returns its root."""
    archive = subprocess.run(["git", "-C", REPO, "archive", ref, "fangen"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return into


def env(cli, tree: str) -> dict:
    """The harness's environment with ``tree`` (and nothing from the working directory:
    ``python3 -P``) as the fangen to run."""
    out = cli.env()
    out["PYTHONPATH"] = tree
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--idle", type=float, default=60.0, metavar="SEC",
                        help="idle window for the CPU time (default 60)")
    parser.add_argument("--old", default=OLD_REF, metavar="REF",
                        help=f"git ref of the per-fan layout (default {OLD_REF}; none: skip)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the logs of the followers (their directory is printed)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("footprint: run as root (network namespaces)", file=sys.stderr)
        return 2

    from tests.harness import cli
    from tests.harness.cli import PYTHON
    from tests.harness.ns import Run, ip, underlay_host

    hz = os.sysconf("SC_CLK_TCK")
    run = Run("fp", keep_workdir=args.keep)
    if args.keep:
        print(f"footprint: logs in {run.workdir}")
    tmp = tempfile.mkdtemp(prefix="fangen-footprint-")
    old_tree = None
    if args.old != "none":
        os.makedirs(os.path.join(tmp, "old"))
        old_tree = export_old(args.old, os.path.join(tmp, "old"))
    h = None
    root = os.path.join(tmp, "root")
    results: dict = {layout: {n: {"rss": [], "pss": [], "private": [], "cpu": []}
                              for n in COUNTS} for layout in ("one follower", "per fan")}
    try:
        h, sw = underlay_host(run)
        ip(sw, "addr", "add", "172.16.0.1/16", "dev", "p1")
        cli.install(root, fan_yaml(len(FANS)))
        layouts = ["one follower"] + (["per fan"] if old_tree else [])
        for rnd in range(args.rounds):
            for n in COUNTS:
                for name in FANS[:n]:
                    cli.fangen(h, root, "up", name, "--no-systemd")
                ports_forwarding(h)
                procs = {}
                for layout in rotated(layouts, rnd):
                    if layout == "one follower":
                        procs[layout] = [run.spawn(h, [PYTHON, "-P", "-m", "fangen", "run",
                                                       "--no-systemd", "--root-dir", root],
                                                   log=run.path(f"follow-{rnd}-{n}.log"),
                                                   env=env(cli, REPO))]
                    else:
                        procs[layout] = [run.spawn(
                            h, [PYTHON, "-P", "-m", "fangen", "run", name, "--no-systemd",
                                "--root-dir", root],
                            log=run.path(f"old-{rnd}-{n}-{name}.log"),
                            env=env(cli, old_tree)) for name in FANS[:n]]
                # ip netns exec execs the command in place: the pids are the pythons'
                pids = {layout: [p.pid for p in ps] for layout, ps in procs.items()}
                settle([pid for ps in pids.values() for pid in ps])
                time.sleep(2.0)
                before = {layout: ticks(ps) for layout, ps in pids.items()}
                mem = {layout: measure(ps) for layout, ps in pids.items()}
                time.sleep(args.idle)
                for layout, ps in pids.items():
                    cpu_ms = (ticks(ps) - before[layout]) * 1000.0 / hz
                    row = results[layout][n]
                    for key in ("rss", "pss", "private"):
                        row[key].append(mem[layout][key])
                    row["cpu"].append(cpu_ms)
                    print(f"round {rnd + 1} {layout:12s} {n} fan(s): VmRSS {mem[layout]['rss']} kB "
                          f"Pss {mem[layout]['pss']} kB Private {mem[layout]['private']} kB "
                          f"({len(ps)} process{'es' if len(ps) > 1 else ''}); CPU over "
                          f"{args.idle:g} s idle: {cpu_ms:.0f} ms", flush=True)
                for ps in procs.values():
                    for proc in ps:
                        run.stop(proc, grace=10.0)
        print()
        print(f"{'layout':14s}{'fans':>5s}  {'VmRSS MB':22s}{'Pss MB':22s}{'Private MB':22s}"
              f"idle CPU ms / {args.idle:g} s")
        for layout in layouts:
            for n in COUNTS:
                row = results[layout][n]
                print(f"{layout:14s}{n:5d}  {spread(row['rss'], '', 1 / 1024):22s}"
                      f"{spread(row['pss'], '', 1 / 1024):22s}"
                      f"{spread(row['private'], '', 1 / 1024):22s}{spread(row['cpu'])}")
            med = {n: summary(results[layout][n]["rss"]).median / 1024 for n in COUNTS}
            pss = {n: summary(results[layout][n]["pss"]).median / 1024 for n in COUNTS}
            print(f"{layout:14s} first fan {med[1]:.1f} MB RSS; per extra fan "
                  f"{per_extra_fan(med):+.2f} MB RSS, {per_extra_fan(pss):+.2f} MB Pss "
                  "(target: <= 20 MB, <= 2 MB)")
        if old_tree:
            new, old = (summary(results[lay][4]["rss"]).median
                        for lay in ("one follower", "per fan"))
            print(f"4 fans: the per-fan layout holds {old / new:.1f}x the one follower's RSS")
    finally:
        try:
            if h is not None and os.path.isdir(os.path.join(root, "run/fangen")):
                cli.fangen(h, root, "down", "--all", check=False)
        finally:
            run.close()
            subprocess.run(["rm", "-rf", tmp], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
