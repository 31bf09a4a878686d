#!/usr/bin/python3
"""Scale, simulated: N fan hosts in namespaces on one /24 underlay, each with `fangen up`.

Topology: one switch namespace holding a bridge, one veth port per host (``up0`` in
the host, 172.16.0.<i>/24, set statically: no DHCP on the underlay, no networkd and
no D-Bus per host, so a host costs one namespace and the processes fangen starts).
Each host gets a fan.d file (VXLAN fan 250.0.0.0/8 over 172.16.0.0/24: host i owns
250.i.0.0/16; upstream datapath) under a private root, and the real CLI brings it
up: ``ip netns exec HOST python3 -m fangen up fan250 --root-dir ROOT --no-systemd``
(fangen creates the bridge and the tunnel itself, attaches its tc programs, installs
its nft table and starts dnsmasq as a plain process).  The fan has ``dns: false``
unless ``--dns``: a dnsmasq serving DNS watches resolv.conf with an inotify instance,
and the kernel allows one user (root here, for every dnsmasq of every host) 128 of
them (fs.inotify.max_user_instances), so DNS-serving hosts stop at ~120 on one
kernel; a real host runs one dnsmasq per fan.  Each host then gets one
container: a namespace with a veth on the fan bridge, addressed by DHCP from that
host's dnsmasq (busybox ``udhcpc -q``, one-shot, broadcast replies).

Hosts are added in steps (10, then up to 50, then up to 200, ...), and after each
step it prints for that N:

* kernel objects per host that fangen made (``up`` minus before, on up to 3 sampled
  hosts: links, addresses, routes, neighbours, FDB entries, tc filters, nft rules),
  and what the reachability sample then made the kernel learn, summed over all hosts
  (bridge FDB entries on the tunnel ports, underlay and container neighbours);
* the wall time of one host's ``fangen up`` (hosts of this step, one at a time):
  median, min..max, IQR; and its CPU time (the process tree's user + system time),
  which a busy machine inflates much less;
* memory per host: dnsmasq's RSS, PSS (PSS divides shared pages among the N
  dnsmasq processes: the honest marginal cost) and page tables; the memory the
  kernel charges for the two tc programs (bpftool ``bytes_memlock``); and the
  machine-wide growth of unreclaimable kernel memory (meminfo SUnreclaim + Percpu +
  VmallocUsed + KernelStack + PageTables) from before the step's first ``fangen up``
  to after its last, divided by the hosts brought up (also the median and IQR of
  the same delta across single ups).  Other work on this shared machine lands in
  those deltas too (about +-1 MiB within seconds): trust the large steps;
* reachability: a random sample of container pairs on different hosts (``ping``,
  up to 3 tries each); all must answer.  The neighbour entries the sample made are
  flushed afterwards: the kernel has one IPv4 neighbour table for all namespaces
  (and all engineers) of the machine, which forces GC past 512 entries.

It writes a PNG of those figures against N (``--plot``, default docs/scale.png).
Everything is removed at the end, also on Ctrl-C, SIGTERM and failure (the harness's
Run owns a unique namespace prefix and kills by PID).  Asserts nothing about time;
exits non-zero when a sampled pair does not answer.

Run as root: /usr/bin/python3 bench/scale.py [--sizes 10,50,200,250] [--pairs 40]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import resource
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import cycles, scaleplot  # noqa: E402
from bench.stats import parse_sizes, summary  # noqa: E402
from tests.harness import HarnessError, snapshot  # noqa: E402
from tests.harness.container import SCRIPT  # noqa: E402
from tests.harness.ns import Run, ip, nsexec  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAN = "fan250"
MTU = 1500
DEFAULT_PLOT = os.path.join(REPO, "docs", "scale.png")


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def meminfo() -> dict[str, int]:
    return scaleplot.parse_meminfo(_read("/proc/meminfo"))


class Sim:
    """The switch, the hosts and their containers of one run."""

    def __init__(self, run: Run, dns: bool = False) -> None:
        self.run = run
        self.dns = dns
        self.sw = run.netns("sw")
        ip(self.sw, "link", "add", "br0", "mtu", str(MTU), "type", "bridge", "forward_delay",
           "0", "stp_state", "0")
        ip(self.sw, "link", "set", "br0", "up")
        self.hosts: dict[int, str] = {}          # index -> namespace
        self.containers: dict[int, str] = {}     # host index -> namespace
        self.addresses: dict[int, str] = {}      # host index -> container address
        self.up_times: dict[int, float] = {}
        self.up_cpu: dict[int, float] = {}

    def root(self, i: int) -> str:
        return os.path.join(self.run.workdir, f"h{i}")

    def env(self, i: int) -> dict:
        env = dict(os.environ)
        # no D-Bus: a socket that does not exist, so fangen never talks to this machine's
        # real networkd or systemd
        env.update({"PYTHONPATH": REPO, "PYTHONDONTWRITEBYTECODE": "1",
                    "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={self.root(i)}/no-bus"})
        return env

    def add_host(self, i: int) -> None:
        ns = self.run.netns(f"h{i}")
        self.hosts[i] = ns
        ip(self.sw, "link", "add", f"p{i}", "mtu", str(MTU), "type", "veth", "peer", "name",
           "up0", "netns", ns)
        ip(self.sw, "link", "set", f"p{i}", "master", "br0", "up")
        ip(ns, "addr", "add", f"{scaleplot.host_address(i)}/24", "dev", "up0")
        ip(ns, "link", "set", "up0", "up")
        root = self.root(i)
        for sub in ("etc/netplan/fan.d", "run", "var/lib"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        path = os.path.join(root, "etc/netplan/fan.d/50-scale.yaml")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            fh.write("network:\n  version: 2\n  fan:\n"
                     f"    {FAN}:\n      overlay: {scaleplot.OVERLAY}\n"
                     f"      underlay: {scaleplot.UNDERLAY}\n"
                     "      type: vxlan\n      datapath: upstream\n"
                     f"      dns: {'true' if self.dns else 'false'}\n")

    def up(self, i: int) -> float:
        """``fangen up`` in host i; returns its wall time in seconds and records its CPU
        time (user + system of the process tree, which depends less on the machine's load)."""
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        res = nsexec(self.hosts[i], "/usr/bin/python3", "-m", "fangen", "up", FAN,
                     "--root-dir", self.root(i), "--no-systemd", "--timeout", "10",
                     check=False, timeout=120, env=self.env(i))
        took = time.monotonic() - start
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.up_cpu[i] = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        if res.returncode != 0:
            raise HarnessError(f"h{i}: fangen up -> {res.returncode}: "
                               f"{(res.stderr or res.stdout).strip()}")
        self.up_times[i] = took
        return took

    def add_container(self, i: int) -> None:
        ns = self.run.netns(f"c{i}")
        self.containers[i] = ns
        ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"vc{i}", "netns",
           self.hosts[i])
        mtu = json.loads(ip(self.hosts[i], "-j", "link", "show", "dev", FAN).stdout)[0]["mtu"]
        ip(self.hosts[i], "link", "set", f"vc{i}", "mtu", str(mtu), "master", FAN, "up")
        ip(ns, "link", "set", "eth0", "up")

    def lease(self, i: int) -> str:
        """One DHCP exchange with host i's dnsmasq (udhcpc -q: quit once bound)."""
        lease_file = os.path.join(self.root(i), "container-lease.env")
        env = dict(os.environ, LEASE_FILE=lease_file)
        res = nsexec(self.containers[i], "busybox", "udhcpc", "-f", "-q", "-n", "-B", "-i",
                     "eth0", "-s", SCRIPT, "-O", "mtu", "-t", "10", "-T", "1", "-A", "1",
                     check=False, timeout=60, env=env)
        try:
            lease = dict(line.strip().split("=", 1) for line in _read(lease_file).splitlines()
                         if "=" in line)
        except OSError:
            raise HarnessError(f"c{i}: no DHCP lease from h{i}'s dnsmasq: "
                               f"{(res.stderr or res.stdout).strip()[-300:]}") from None
        self.addresses[i] = lease["ip"]
        return lease["ip"]

    def ping(self, a: int, b: int, tries: int = 3) -> bool:
        for _ in range(tries):
            res = nsexec(self.containers[a], "busybox", "ping", "-c", "1", "-W", "1",
                         self.addresses[b], check=False, timeout=15)
            if res.returncode == 0:
                return True
        return False

    def dnsmasq(self, i: int) -> dict[str, int]:
        """RSS, PSS and page tables (kB) of host i's dnsmasq."""
        pid = int(_read(os.path.join(self.root(i), "run/fangen", FAN, "dnsmasq.pid")).strip())
        status = {line.split(":")[0]: line.split()[1] for line in
                  _read(f"/proc/{pid}/status").splitlines() if line.startswith("Vm")}
        pss = next(int(line.split()[1]) for line in
                   _read(f"/proc/{pid}/smaps_rollup").splitlines() if line.startswith("Pss:"))
        return {"rss": int(status["VmRSS"]), "pss": pss, "pte": int(status["VmPTE"])}

    def bpf_kb(self, i: int) -> float:
        """Memory the kernel charges for host i's two tc programs (bpftool bytes_memlock)."""
        total = 0
        for prog_id in cycles.fan_programs(self.hosts[i]).values():
            data = json.loads(nsexec_root("bpftool", "-j", "prog", "show", "id", str(prog_id))
                              or "{}")
            total += data.get("bytes_memlock", 0)
        return total / 1024


def arp_entries() -> int | None:
    """The kernel's IPv4 neighbour table size (one table for all namespaces)."""
    out = nsexec_root("ip", "-s", "ntable", "show", "name", "arp_cache")
    for token, value in zip(out.split(), out.split()[1:]):
        if token == "entries":
            return int(value)
    return None


def nsexec_root(*args: str) -> str:
    from tests.harness.ns import sh
    return sh(*args, check=False).stdout


def learned(sim: Sim) -> dict[str, int]:
    """Entries the kernel learned from traffic, summed over every host and container:
    bridge FDB entries on the fan's tunnel port, underlay neighbours on up0, and the
    containers' neighbours."""
    fdb = neigh = cneigh = 0
    for i, ns in sim.hosts.items():
        out = nsexec_root("bridge", "-n", ns, "fdb", "show", "dev", f"{FAN}-tun")
        fdb += sum(1 for line in out.splitlines() if "permanent" not in line and line.strip())
        neigh += len(ip(ns, "-4", "neigh", "show", "dev", "up0", check=False).stdout.splitlines())
        if i in sim.containers:
            cneigh += len(ip(sim.containers[i], "-4", "neigh", "show", check=False)
                          .stdout.splitlines())
    return {"fdb": fdb, "underlay_neigh": neigh, "container_neigh": cneigh}


def forget(sim: Sim) -> None:
    """Flush what the ping sample made the kernel learn in our namespaces: the IPv4
    neighbour table is one for the whole machine (gc_thresh2 = 512 entries, then forced
    GC of everyone's entries), so a step leaves it as small as it found it."""
    for ns in sim.hosts.values():
        ip(ns, "neigh", "flush", "dev", "up0", check=False)
    for ns in sim.containers.values():
        ip(ns, "neigh", "flush", "all", check=False)


def step(sim: Sim, n: int, rng: random.Random, pairs: int, workers: int) -> dict:
    """Grow the simulation to n hosts and measure."""
    new = [i for i in range(1, n + 1) if i not in sim.hosts]
    t0 = time.monotonic()
    for i in new:
        sim.add_host(i)
    sampled = sorted(rng.sample(new, min(3, len(new))))
    before = {i: snapshot.count(sim.hosts[i]) for i in sampled}
    kernel = []
    step0 = scaleplot.kernel_kb(meminfo())
    for k, i in enumerate(new, 1):
        mem0 = scaleplot.kernel_kb(meminfo())
        sim.up(i)
        kernel.append(scaleplot.kernel_kb(meminfo()) - mem0)
        if k % 25 == 0:
            print(f"    {k}/{len(new)} hosts up", flush=True)
    step_kb = (scaleplot.kernel_kb(meminfo()) - step0) / len(new)
    made = {i: {kind: v - before[i][kind] for kind, v in snapshot.count(sim.hosts[i]).items()}
            for i in sampled}
    for i in new:
        sim.add_container(i)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(sim.lease, new))
    setup = time.monotonic() - t0
    chosen = scaleplot.sample_pairs(sorted(sim.hosts), pairs, rng)
    state0 = learned(sim)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        answers = list(pool.map(lambda ab: sim.ping(*ab), chosen))
    state1 = learned(sim)
    arp = arp_entries()
    forget(sim)
    dns = [sim.dnsmasq(i) for i in sorted(sim.hosts)]
    up = summary([sim.up_times[i] for i in new])
    cpu = summary([sim.up_cpu[i] for i in new])
    kern = summary(kernel)
    first = made[sampled[0]]
    return {
        "n": n, "new": len(new), "setup_s": setup, "sampled": sampled,
        "made": first, "made_all_equal": all(m == first for m in made.values()),
        "learned": {k: state1[k] - state0[k] for k in state1}, "learned_total": state1,
        "host_pairs": len({frozenset(p) for p in chosen}),
        "up": {"median": up.median, "low": up.low, "high": up.high, "q1": up.q1, "q3": up.q3,
               "cpu_median": cpu.median, "cpu_low": cpu.low, "cpu_high": cpu.high},
        "mem": {"dnsmasq_rss_kb": summary([d["rss"] for d in dns]).median,
                "dnsmasq_pss_kb": summary([d["pss"] for d in dns]).median,
                "dnsmasq_pte_kb": summary([d["pte"] for d in dns]).median,
                "bpf_kb": sim.bpf_kb(sampled[0]),
                "kernel_kb": step_kb, "kernel_up_median_kb": kern.median,
                "kernel_q1_kb": kern.q1, "kernel_q3_kb": kern.q3},
        "reach": {"pairs": len(chosen), "ok": sum(answers),
                  "failed": [f"c{a}->c{b}" for (a, b), ok in zip(chosen, answers) if not ok]},
        "arp_entries": arp, "arp_entries_after": arp_entries(), "load": os.getloadavg(),
    }


def show(row: dict) -> None:
    up, mem, reach = row["up"], row["mem"], row["reach"]
    print(f"\nN = {row['n']} hosts ({row['new']} added in {row['setup_s']:.0f} s; "
          f"load average {row['load'][0]:.2f})")
    print("  kernel objects fangen made per host (sampled hosts "
          + ", ".join(f"h{i}" for i in row["sampled"])
          + ("; identical" if row["made_all_equal"] else "; NOT identical") + "): "
          + ", ".join(f"{k} {v}" for k, v in row["made"].items())
          + f"; total {sum(row['made'].values())}")
    got = row["learned"]
    print(f"  learned by the kernel during the ping sample ({row['reach']['pairs']} ordered "
          f"pairs, {row['host_pairs']} host pairs), summed over all hosts: FDB entries on the "
          f"tunnel ports +{got['fdb']}, underlay neighbours +{got['underlay_neigh']}, "
          f"containers' neighbours +{got['container_neigh']}; made by fangen: none")
    print(f"  one host's fangen up: median {up['median']:.2f} s  [{up['low']:.2f} .. "
          f"{up['high']:.2f}]  IQR {up['q1']:.2f} .. {up['q3']:.2f}; CPU time median "
          f"{up['cpu_median']:.2f} s [{up['cpu_low']:.2f} .. {up['cpu_high']:.2f}]  "
          f"({row['new']} hosts)")
    print(f"  memory per host: dnsmasq RSS {mem['dnsmasq_rss_kb']:.0f} KiB, PSS "
          f"{mem['dnsmasq_pss_kb']:.0f} KiB, page tables {mem['dnsmasq_pte_kb']:.0f} KiB "
          f"(medians); tc programs {mem['bpf_kb']:.0f} KiB (memlock); kernel "
          f"{mem['kernel_kb']:.0f} KiB (unreclaimable meminfo growth over the step's ups / "
          f"hosts; across single ups: median {mem['kernel_up_median_kb']:.0f}, IQR "
          f"{mem['kernel_q1_kb']:.0f} .. {mem['kernel_q3_kb']:.0f})")
    print(f"  reachability: {reach['ok']}/{reach['pairs']} sampled container pairs answer"
          + (f"; FAILED: {', '.join(reach['failed'])}" if reach["failed"] else ""))
    print(f"  kernel ARP table (all namespaces of the machine): {row['arp_entries']} entries "
          f"after the ping sample, {row['arp_entries_after']} once ours were flushed")


def main() -> int:
    parser = argparse.ArgumentParser(description="N simulated fan hosts, each with fangen up")
    parser.add_argument("--sizes", default="10,50,200,250",
                        help="host counts to grow through, ascending (default 10,50,200,250)")
    parser.add_argument("--pairs", type=int, default=40,
                        help="container pairs to ping at each size (default 40)")
    parser.add_argument("--workers", type=int, default=4, help="parallel DHCP/ping (default 4)")
    parser.add_argument("--dns", action="store_true",
                        help="leave DNS on in each dnsmasq (the fan's default); each then "
                             "holds an inotify instance, at most fs.inotify."
                             "max_user_instances (128) for all of root's processes")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--plot", default=DEFAULT_PLOT, help="PNG to write ('' for none)")
    parser.add_argument("--json", default="", help="also write the figures as JSON here")
    args = parser.parse_args()
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as exc:
        print(f"scale: {exc}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        sys.exit("scale: needs root (network namespaces)")
    limit = int(_read("/proc/sys/fs/inotify/max_user_instances"))
    if args.dns and sizes[-1] > limit // 2:
        print(f"scale: --dns with {sizes[-1]} hosts needs {sizes[-1]} inotify instances for "
              f"root, and fs.inotify.max_user_instances is {limit} for all of root's processes "
              f"together: use at most {limit // 2} hosts with --dns, or leave DNS off",
              file=sys.stderr)
        return 2

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    rng = random.Random(args.seed)
    run = Run("scale")
    rows = []
    status = 0
    try:
        print(f"fan {FAN}: VXLAN {scaleplot.OVERLAY} over {scaleplot.UNDERLAY}, upstream "
              f"datapath, dns: {'true' if args.dns else 'false'}; sizes {sizes}; "
              f"{os.cpu_count()} CPUs; seed {args.seed}")
        sim = Sim(run, dns=args.dns)
        for n in sizes:
            row = step(sim, n, rng, args.pairs, args.workers)
            rows.append(row)
            show(row)
            if row["reach"]["failed"]:
                status = 1
        if args.plot:
            scaleplot.plot(rows, args.plot)
            print(f"\nplot: {args.plot} ({os.path.getsize(args.plot) // 1024} KiB)")
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=1)
        return status
    except HarnessError as exc:
        print(f"scale: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("scale: interrupted; removing everything", file=sys.stderr)
        return 130
    finally:
        t = time.monotonic()
        run.close()
        print(f"removed every namespace and process in {time.monotonic() - t:.0f} s",
              file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
