#!/usr/bin/python3
"""boot-check: boot three Debian 12 guests (systemd, netplan, the fangen .deb) under
qemu (TCG) on a shared underlay inside a network namespace, and collect what their
scenario (boot/guest/usr/local/lib/fangen-boot/scenario.sh) reports.

    boot/check.py [--timeout SECS] [--keep-logs DIR] [--mem MB]

The underlay: tests/harness's Switch (a namespace with a bridge and dnsmasq giving
guest N the address 172.16.N.10 by its MAC), one tap per guest on that bridge; the
qemu processes run inside that namespace, so no guest packet reaches the root
namespace.  Every guest boots a copy-on-write qcow2 overlay of boot/image.sh's image.

Guests: a (pings the containers of b and c, then the netplan apply steps), b (a fan
host), c (boots with broken fan.d files beside a good one: every fan frozen until the
file that is not YAML is fixed), d (no fan.d: the
baseline).  Each reports CHECK, INFO, TIMING and DONE lines on its second serial
port.  Prints every line, then a PASS/FAIL summary and how much later the guests
with fans reached network.target and network-online.target than d, booted at the
same time (issue 11: the target is <= 5%; printed, never a failure, since TCG on a
shared host is noisy); exits 1 on any failed check.  Cleanup (qemu by PID, the namespace,
the overlays) runs on every exit path (harness Run.close, also from atexit).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.harness.ns import Run, ip  # noqa: E402
from tests.harness.switch import BRIDGE, Switch, host_address, host_mac  # noqa: E402

CACHE = os.environ.get("FANGEN_CACHE", "/var/cache/fangen")
ROLES = {"a": 1, "b": 2, "c": 3, "d": 4}
BASELINE = "d"                  # the guest without fans
TARGETS = ("network.target", "network-online.target")
# Checks each guest must report (a guest that dies early fails these, not silently).
REQUIRED = {
    "a": ["boot.system-running", "fan.bridge", "fan.container-lease",
          "fan.ping-container-on-b", "apply.host-reserve-live",
          "apply.second-fan-bridge", "restart.runtime-not-restarted",
          "restart.container-pings-bridge", "apply.removed-fan-250", "apply.removed-fan-251"],
    "b": ["boot.system-running", "fan.bridge", "fan.container-lease",
          "follow.bridge-address-put-back", "follow.one-resident-process"],
    "c": ["boot.system-running", "broken.journal-file-line-col", "broken.journal-frozen",
          "broken.frozen-no-fan", "broken.netplan-networking", "broken.no-failed-units",
          "broken.good-fan-up-after-fix", "broken.disable-dropin-frozen"],
    "d": ["boot.system-running", "boot.underlay-dhcp", "boot.network-waits-for-no-fangen",
          "nofan.no-fangen-units"],
}
TARGET_LINE = re.compile(r"target (\S+) (-?\d+) ms after systemd started, (-?\d+) ms after the "
                         r"kernel, (-?\d+) ms after systemd-networkd was up")


def log(msg: str) -> None:
    print(f"boot-check: {msg}", flush=True)


def build_image() -> tuple[str, str, str]:
    t0 = time.monotonic()
    res = subprocess.run([os.path.join(REPO, "boot", "image.sh")], stdout=subprocess.PIPE,
                         text=True)
    if res.returncode != 0:
        raise SystemExit("boot-check: FAIL: boot/image.sh failed")
    root, vmlinuz, initrd = res.stdout.split()[-3:]
    log(f"image ready in {time.monotonic() - t0:.0f} s: {root}")
    return root, vmlinuz, initrd


class Guest:
    def __init__(self, run: Run, switch: Switch, role: str, image: tuple, mem: int,
                 peers: str):
        self.role, self.index = role, ROLES[role]
        self.dir = run.path(f"guest-{role}", "x")[:-2]
        self.console = os.path.join(self.dir, "console.log")
        self.results = os.path.join(self.dir, "results.log")
        open(self.results, "w").close()
        root, vmlinuz, initrd = image
        self.mac = host_mac(self.index)
        switch.assign(self.mac, host_address(self.index))
        self.tap = f"tap{role}"
        ip(switch.ns, "tuntap", "add", self.tap, "mode", "tap")
        ip(switch.ns, "link", "set", self.tap, "master", BRIDGE, "up")
        append = (f"console=ttyS0 root=/dev/vda rw fangen.role={role} panic=-1 "
                  f"fangen.peers={peers.replace(role, '') or '-'} "
                  "net.ifnames=1 systemd.show_status=1 loglevel=4")
        cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", str(mem), "-smp", "1",
               "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
               "-no-reboot", "-kernel", vmlinuz, "-initrd", initrd, "-append", append,
               # copy-on-write: writes go to a temporary qcow2 in TMPDIR (the run's dir)
               "-drive", f"file={root},if=virtio,format=raw,snapshot=on,cache=unsafe",
               "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
               "-device", f"virtio-net-pci,netdev=n0,mac={self.mac}",
               "-chardev", f"file,id=con,path={self.console}", "-serial", "chardev:con",
               "-chardev", f"file,id=res,path={self.results}", "-serial", "chardev:res",
               "-device", "virtio-rng-pci"]
        self.started = time.monotonic()
        env = dict(os.environ, TMPDIR=self.dir)
        self.proc = run.spawn(switch.ns, cmd, log=os.path.join(self.dir, "qemu.log"), env=env)
        self.seen = 0
        self.checks: dict[str, tuple[str, str]] = {}
        self.timings: list[str] = []
        # target: ms after (systemd started, the kernel started, networkd was up)
        self.targets: dict[str, tuple[int, int, int]] = {}
        self.done: int | None = None

    def poll(self) -> None:
        with open(self.results, "rb") as fh:
            fh.seek(self.seen)
            data = fh.read()
        end = data.rfind(b"\n")
        if end < 0:
            return
        self.seen += end + 1
        for raw in data[:end + 1].decode(errors="replace").splitlines():
            line = raw.strip("\r")
            if not line:
                continue
            t = time.monotonic() - self.started
            print(f"[{self.role} {t:6.1f}s] {line}", flush=True)
            m = re.match(r"CHECK (\S+) (PASS|FAIL) ?(.*)", line)
            if m:
                self.checks[m.group(1)] = (m.group(2), m.group(3))
            elif line.startswith("TIMING "):
                self.timings.append(line[7:])
                t = TARGET_LINE.match(line[7:])
                if t:
                    self.targets[t.group(1)] = (int(t.group(2)), int(t.group(3)),
                                                int(t.group(4)))
            elif line.startswith("INFO systemd-analyze: "):
                self.timings.append(line[5:])
            elif line.startswith("DONE "):
                self.done = int(line.split()[1])

    def alive(self) -> bool:
        return self.proc.poll() is None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=float, default=1200, help="for all guests (s)")
    ap.add_argument("--mem", type=int, default=640, help="guest memory (MB)")
    ap.add_argument("--keep-logs", default=os.path.join(CACHE, "boot", "last-run"),
                    help="copy consoles and results here at the end")
    ap.add_argument("--roles", default="abcd")
    ap.add_argument("--first-report", type=float, default=420,
                    help="give up when a guest has said nothing after this long (s)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("boot-check: needs root (namespaces, taps)")

    # SIGTERM/SIGHUP (make killed, CI timeout) unwind like Ctrl-C: Run.close() runs
    def _stop(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    t0 = time.monotonic()
    image = build_image()
    guests: list[Guest] = []
    with Run(tag="bt") as run:
        switch = Switch(run, lease_time=600)
        # Switch.assign() sends dnsmasq SIGHUP: before dnsmasq has set up its handlers
        # that signal kills it, so wait until it has read its hosts file.
        ready = time.monotonic() + 10
        while time.monotonic() < ready and "read " not in open(switch.log).read():
            time.sleep(0.05)
        log(f"underlay: namespace {switch.ns}, bridge {BRIDGE}, dnsmasq 172.16.0.1")
        for role in args.roles:
            guests.append(Guest(run, switch, role, image, args.mem, args.roles))
            log(f"guest {role}: qemu pid {guests[-1].proc.pid}, "
                f"{guests[-1].mac} -> {host_address(ROLES[role])}")
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            for g in guests:
                g.poll()
            if all(g.done is not None or not g.alive() for g in guests):
                break
            silent = [g.role for g in guests if g.seen == 0 and
                      time.monotonic() - g.started > args.first_report]
            if silent:
                log(f"guest(s) {' '.join(silent)}: no report within {args.first_report:.0f} s")
                break
            time.sleep(1)
        for g in guests:
            g.poll()
        timed_out = time.monotonic() >= deadline
        # keep the logs (the run's directory is removed by close())
        if args.keep_logs:
            shutil.rmtree(args.keep_logs, ignore_errors=True)
            for g in guests:
                dest = os.path.join(args.keep_logs, g.role)
                os.makedirs(dest, exist_ok=True)
                for f in ("console.log", "results.log", "qemu.log"):
                    src = os.path.join(g.dir, f)
                    if os.path.exists(src):
                        shutil.copy(src, dest)
            shutil.copy(switch.log, args.keep_logs)
        for g in guests:
            run.stop(g.proc)
    # run.close() has removed the namespace, the taps, the overlays, every process

    print()
    print("=" * 72)
    print("boot-check summary (guests: Debian 12, systemd, netplan.io, fangen .deb; "
          "stock kernel, TCG)")
    failures = 0
    for g in guests:
        for name, (res, detail) in g.checks.items():
            if res == "FAIL":
                failures += 1
            print(f"  {res}  {g.role}: {name}  {detail[:110]}")
        for name in REQUIRED[g.role]:
            if name.startswith("fan.ping-container-on-") and name[-1] not in args.roles:
                continue
            if name not in g.checks:
                failures += 1
                print(f"  FAIL  {g.role}: {name}  (never reported)")
        if g.done is None:
            failures += 1
            with open(os.path.join(args.keep_logs, g.role, "console.log"), "rb") as fh:
                tail = fh.read().decode(errors="replace").splitlines()[-15:]
            print("\n".join(f"    console {g.role}: {line}" for line in tail))
            why = "timeout" if timed_out else "qemu exited"
            print(f"  FAIL  {g.role}: scenario did not finish ({why}); console: "
                  f"{os.path.join(args.keep_logs, g.role, 'console.log')}")
    print("timings (per guest):")
    for g in guests:
        for t in g.timings:
            print(f"  {g.role}: {t}")
    report_cost(guests)
    total = sum(len(g.checks) for g in guests)
    verdict = "PASS" if failures == 0 else "FAIL"
    print(f"boot-check: {verdict}: {total} checks, {failures} failed, "
          f"{time.monotonic() - t0:.0f} s; logs in {args.keep_logs}")
    return 0 if failures == 0 else 1


def report_cost(guests: list[Guest]) -> None:
    """How much later the guests with fans reached the network targets than the baseline
    (no fan.d), from systemd's monotonic timestamps in each guest.  Printed, not judged.

    Two views.  Since systemd started: what a user sees, but four TCG guests on a shared
    2-core host differ by 10-30% here by scheduling alone (the spread shows in the time
    networkd was up, before which no fangen unit runs: the scenario checks that).  After
    networkd was up: the only stretch in which fangen's processes run before the targets,
    so the difference there against the baseline is what fangen costs, relative to the
    baseline's boot to that target."""
    base = next((g for g in guests if g.role == BASELINE), None)
    fans = [g for g in guests if g.role != BASELINE and g.targets]
    if base is None or not fans:
        return
    print(f"fangen's cost at boot: guests with fans vs {BASELINE} (no fan.d), booted together "
          "(issue 11 target: <= 5%):")
    for target in TARGETS:
        if target not in base.targets:
            print(f"  {target}: not reached on {BASELINE}")
            continue
        ref_abs, _, ref_rel = base.targets[target]
        print(f"  {target}: {BASELINE} {ref_abs / 1000:.1f} s after systemd started, "
              f"{ref_rel / 1000:.1f} s after networkd was up")
        absolute, caused = [], []
        for g in fans:
            if target not in g.targets:
                print(f"    {g.role}: not reached")
                continue
            ms_abs, _, ms_rel = g.targets[target]
            absolute.append((ms_abs - ref_abs) / ref_abs * 100 if ref_abs else 0.0)
            caused.append((ms_rel - ref_rel) / ref_abs * 100 if ref_abs else 0.0)
            print(f"    {g.role}: {ms_abs / 1000:.1f} s ({absolute[-1]:+.1f}%, scheduling "
                  f"noise included); {ms_rel / 1000:.1f} s after networkd was up: "
                  f"{(ms_rel - ref_rel) / 1000:+.1f} s = {caused[-1]:+.1f}% of {BASELINE}'s "
                  f"{ref_abs / 1000:.1f} s")
        if caused:
            mean_abs, mean_caused = sum(absolute) / len(absolute), sum(caused) / len(caused)
            print(f"    mean over {len(caused)} guests with fans: {mean_abs:+.1f}% since systemd "
                  f"started; {mean_caused:+.1f}% from fangen (after networkd was up)")


if __name__ == "__main__":
    sys.exit(main())
