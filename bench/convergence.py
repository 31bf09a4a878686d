#!/usr/bin/python3
"""Convergence: from the underlay address appearing on a host (a DHCP lease) to a
container on that host answering pings from a container on another host.

Two hosts with real networkd.  Host 1 runs its fan and a container (c11) with a
DHCP lease.  Host 2's cable is unplugged (its switch port is down, so networkd has
no lease), ``fangen run`` waits there for the underlay, and its container (c2N)
already holds a static address in the slice host 2 will own.  Then the cable is
plugged in: networkd gets the lease, fangen brings the fan up, and c11 pings c2N
in a tight loop (ICMP echo, 10 ms timeout each).  Timestamps, all on one clock:

* t_addr: RTM_NEWADDR for the lease on host 2's up0 (a netlink listener there),
* t_gw:   RTM_NEWADDR for the slice gateway on host 2's fan bridge,
* t_reply: the first echo reply c11 receives;
* per round also: when host 2's ``fangen run`` said READY=1, when host 1 received
  host 2's announcements (a packet socket on host 1's up0), and host 2's first other
  ARP there (usually its reply to host 1's own retry: what ends the wait without one).

Three modes, alternated round by round (bench/stats.rotated: none always first):

* ``normal``: c11 starts pinging at t_addr.  Host 1's neighbour entry for host 2's
  underlay address is created then, and host 2 answers its ARP at once.
* ``early``: c11 pings all along, from 1-3 s (random, so the phase of the kernel's
  ARP timer varies) before the cable goes in: host 1's entry for host 2's address is
  INCOMPLETE or FAILED when the address appears (printed per round).  Host 1 retries
  ARP only every ``retrans_time_ms`` (1 s); what ends the wait sooner is host 2's
  announcement of its address (fangen.runtime.announce).
* ``blocked``: ``early`` with host 2's announcements (ARP with sender IP == target IP
  == its address) dropped at its switch port (an nft netdev ingress rule in the
  switch's namespace): the peer waits for its own retry, as before the announcement.

Each round resets host 2 (cable out, ``fangen down``, ``fangen run`` again, until it
says by sd_notify that it waits for the underlay, so its start-up is not counted) and
flushes c11's and host 1's ARP caches.  c11 retransmits ARP every 10 ms (its own
sysctl, like its pings), so c11's own 1 s ARP retry does not hide the fan's time;
host 1 keeps the kernel's defaults (that is the peer being measured).
Prints per-round times and, per mode, median [min..max] and the IQR; asserts nothing.
Target: t_reply - t_addr under 200 ms in every mode but ``blocked``.

Run as root: /usr/bin/python3 bench/convergence.py [--rounds 7] [--modes normal,early]
[--ping-early (early,blocked only)] [--seed N] [--keep (keep the hosts' logs)]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import select
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.stats import rotated, summary  # noqa: E402
from fangen.doctor.icmp import checksum  # noqa: E402
from fangen.runtime import announce  # noqa: E402
from tests.harness import Container, Lab  # noqa: E402
from tests.harness.host import PYTHON, UPLINK, wait  # noqa: E402
from tests.harness.ns import in_netns, ip, nsexec  # noqa: E402

FAN = "fan250"
RTM_NEWADDR = 20


class AddrWatch:
    """Timestamps of the first RTM_NEWADDR per (interface, address) in a namespace."""

    def __init__(self, ns: str) -> None:
        from pyroute2 import IPRoute
        with in_netns(ns):
            self.ipr = IPRoute()
        self.ipr.bind()
        self.seen: dict[tuple[str, str], float] = {}
        self.names: dict[int, str] = {}
        self.stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop:
            ready, _, _ = select.select([self.ipr.fileno()], [], [], 0.1)
            if not ready:
                continue
            now = time.monotonic()
            for msg in self.ipr.get():
                if msg.get("event") != "RTM_NEWADDR" or msg.get("family") != socket.AF_INET:
                    continue
                label = msg.get_attr("IFA_LABEL") or str(msg["index"])
                addr = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
                self.seen.setdefault((label, addr), now)

    def clear(self) -> None:
        self.seen.clear()

    def when(self, label: str, addr: str) -> float | None:
        return self.seen.get((label, addr))

    def close(self) -> None:
        self.stop = True
        self.thread.join(1)
        self.ipr.close()


class ArpWatch:
    """Arrival times of announcements of ``addr`` (ARP, sender IP == target IP == addr)
    on ``dev`` in a namespace: what the peer receives."""

    def __init__(self, ns: str, dev: str, addr: str) -> None:
        with in_netns(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                      socket.htons(0x0806))
        self.sock.bind((dev, 0x0806))
        self.addr = socket.inet_aton(addr)
        self.times: list[float] = []
        self.other: tuple[float, str] | None = None
        self.stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop:
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            data, (_, _, pkttype, _, _) = self.sock.recvfrom(2048)
            now = time.monotonic()
            if pkttype == socket.PACKET_OUTGOING or data[28:32] != self.addr:
                continue
            if data[38:42] == self.addr:
                self.times.append(now)
            elif self.other is None:             # host 2's own ARP traffic also tells host 1
                op = "request" if data[20:22] == b"\x00\x01" else "reply"
                self.other = (now, f"{op} for {socket.inet_ntoa(data[38:42])}")

    def clear(self) -> None:
        self.times = []
        self.other = None

    def close(self) -> None:
        self.stop = True
        self.thread.join(1)
        self.sock.close()


class Pinger:
    """ICMP echo from a namespace, one outstanding request at a time, 10 ms timeout."""

    def __init__(self, ns: str, dst: str, timeout: float = 0.010) -> None:
        with in_netns(ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.dst, self.timeout, self.ident, self.seq = dst, timeout, os.getpid() & 0xFFFF, 0

    def once(self) -> float | None:
        """Monotonic time of the reply, or None after the timeout."""
        self.seq = (self.seq + 1) & 0xFFFF
        head = struct.pack("!BBHHH", 8, 0, 0, self.ident, self.seq)
        body = b"fangen-convergence"
        packet = head[:2] + struct.pack("!H", checksum(head + body)) + head[4:] + body
        self.sock.sendto(packet, (self.dst, 0))
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return None
            data, (src, _) = self.sock.recvfrom(2048)
            now = time.monotonic()
            ihl = (data[0] & 0x0F) * 4
            kind, _, _, ident, seq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if src == self.dst and kind == 0 and ident == self.ident and seq == self.seq:
                return now

    def until_reply(self, limit: float = 10.0) -> float | None:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            got = self.once()
            if got is not None:
                return got
        return None

    def close(self) -> None:
        self.sock.close()


MODES = ("normal", "early", "blocked")


def block_announcements(lab, port: str, addr: str, on: bool) -> None:
    """Drop (or stop dropping) ARP frames from ``port`` whose sender and target IP are
    both ``addr`` (announcements of it), in the switch's namespace."""
    nsexec(lab.switch.ns, "nft", "delete", "table", "netdev", "conv_block", check=False)
    if on:
        path = lab.run.path("conv-block.nft")
        with open(path, "w") as fh:
            fh.write(f"table netdev conv_block {{\n  chain in {{\n"
                     f"    type filter hook ingress device \"{port}\" priority 0;\n"
                     f"    arp saddr ip {addr} arp daddr ip {addr} counter drop\n  }}\n}}\n")
        nsexec(lab.switch.ns, "nft", "-f", path)


def start_run_waiting(lab, host) -> socket.socket:
    """Start ``fangen run`` on ``host`` and return once it says (sd_notify STATUS) that it
    waits for the underlay, so its start-up is not counted; returns the notify socket
    (``wait_ready`` reads READY=1 from it)."""
    path = lab.run.path("conv-notify.sock")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    host.fangen_run = lab.run.spawn(
        host.ns, [PYTHON, "-m", "fangen", "run", FAN, "--root-dir", host.root, "--no-systemd"],
        log=host.log("fangen-run"), env=dict(host.env, NOTIFY_SOCKET=path))
    try:
        while "waiting for the underlay" not in sock.recv(4096).decode():
            pass
    except TimeoutError:
        sock.close()
        sys.exit("convergence: fangen run did not say STATUS=waiting for the underlay in 30 s")
    return sock


def wait_ready(sock: socket.socket, timeout: float = 10.0) -> float | None:
    """When fangen run said READY=1 (the fan is up), or None."""
    sock.settimeout(timeout)
    try:
        while True:
            msg = sock.recv(4096).decode()
            if "READY=1" in msg.split("\n"):
                return time.monotonic()
    except TimeoutError:
        return None
    finally:
        sock.close()


def neigh_state(ns: str, dev: str, addr: str) -> str:
    rows = json.loads(ip(ns, "-j", "neigh", "show", "dev", dev, "to", addr,
                         check=False).stdout or "[]")
    return ",".join(rows[0].get("state", [])) if rows else "none"


def main() -> int:
    parser = argparse.ArgumentParser(description="underlay lease -> remote container answers")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated, alternated per round (default {','.join(MODES)})")
    parser.add_argument("--ping-early", action="store_true",
                        help="only the early modes (early,blocked)")
    parser.add_argument("--seed", type=int, default=11, help="for the early modes' lead times")
    parser.add_argument("--keep", action="store_true",
                        help="keep the lab's work directory (the hosts' logs) and print it")
    args = parser.parse_args()
    modes = ["early", "blocked"] if args.ping_early else \
        [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - set(MODES):
        sys.exit(f"convergence: --modes takes {', '.join(MODES)}")
    if os.geteuid() != 0:
        sys.exit("convergence: needs root (network namespaces)")
    rng = random.Random(args.seed)
    lab = Lab(hosts=2, containers=0, tag="conv", keep_workdir=args.keep)
    if args.keep:
        print(f"work directory: {lab.run.workdir}")
    watch = pinger = arps = None
    try:
        lab.start_hosts()
        h1, h2 = lab.hosts
        h1.start_fangen_run(FAN)
        lab.hosts = [h1]
        lab.wait_fans()
        lab.hosts = [h1, h2]
        c11 = Container(lab.run, h1, 1, FAN)
        c11.start_dhcp()
        c11.wait_lease()
        addr2 = h2.address()
        slice2 = h2.slice_for(addr2)
        gateway2 = str(slice2.network_address + 1)
        target = str(slice2.network_address + 100)
        # c11's ARP retransmits every 10 ms like its pings: with the kernel's default (1 s)
        # the first request, lost before host 2 is up, would hold every ping back ~1 s
        nsexec(c11.ns, "sysctl", "-qw", "net.ipv4.neigh.eth0.retrans_time_ms=10",
               "net.ipv4.neigh.eth0.mcast_solicit=100", "net.ipv4.neigh.eth0.ucast_solicit=100")
        watch = AddrWatch(h2.ns)
        arps = ArpWatch(h1.ns, UPLINK, addr2)
        pinger = Pinger(c11.ns, target)
        print(f"host 2 underlay {addr2} (DHCP) -> slice {slice2}; "
              f"c11 ({c11.address}, on host 1) pings {target} (on host 2), 10 ms timeouts; "
              f"modes {', '.join(modes)}, {args.rounds} round(s)")
        rows: dict[str, list] = {m: [] for m in modes}
        c2 = None
        for r in range(args.rounds):
            for mode in rotated(modes, r):
                c2 = trial(lab, h1, h2, c11, c2, pinger, watch, arps, mode, r + 1, addr2,
                           slice2, gateway2, target, rng, rows[mode])
        print()
        for mode in modes:
            vals = [row["reply"] for row in rows[mode]]
            if vals:
                print(f"{mode:8s} lease -> remote container answers (ms): "
                      f"{summary(vals).text('7.1f')}  (n={len(vals)})")
            else:
                print(f"{mode:8s} no round got a reply")
        print("target: median < 200 ms (normal, early); blocked shows the wait without "
              "the announcement")
        return 0 if all(rows.values()) else 1
    finally:
        if pinger:
            pinger.close()
        if watch:
            watch.close()
        if arps:
            arps.close()
        lab.close()


def trial(lab, h1, h2, c11, c2, pinger, watch, arps, mode, r, addr2, slice2, gateway2,
          target, rng, rows):
    """One cable-in of host 2 in ``mode``; appends its times to ``rows``; returns c2."""
    # reset host 2: no underlay, no fan, fangen run waiting
    h2.carrier(False)
    wait(lambda: not h2.addresses(), 10, "host 2 to lose its lease")
    h2.stop_fangen_run()
    h2.fangen("down", FAN, check=False)
    if c2 is None or ip(c2.ns, "link", "show", "dev", "eth0", check=False).returncode:
        c2 = Container(lab.run, h2, r, FAN)
        ip(c2.ns, "addr", "add", f"{target}/{slice2.supernet(new_prefix=8).prefixlen}",
           "dev", "eth0")
        ip(c2.ns, "route", "add", "default", "via", gateway2)
    block_announcements(lab, h2.switch_port, addr2, mode == "blocked")
    ip(c11.ns, "neigh", "flush", "all")
    ip(h1.ns, "neigh", "flush", "dev", UPLINK)      # every round starts cold
    notify = start_run_waiting(lab, h2)
    assert gateway2 not in h2.addresses(h2.bridge()), "the fan is up too early"
    watch.clear()
    arps.clear()
    before = ""
    if mode != "normal":                     # the peer tries while the address is absent
        plug_at = time.monotonic() + rng.uniform(1.0, 3.0)
        while time.monotonic() < plug_at:
            pinger.once()
        before = neigh_state(h1.ns, UPLINK, addr2)
    t_plug = time.monotonic()
    h2.carrier(True)
    deadline = t_plug + 10
    while mode == "normal" and watch.when(UPLINK, addr2) is None and time.monotonic() < deadline:
        time.sleep(0.001)
    t_reply = pinger.until_reply(10.0)
    t_ready = wait_ready(notify)
    time.sleep(max(announce.SCHEDULE) + 0.05)      # the repeats, if any, have arrived
    t_addr = watch.when(UPLINK, addr2)
    t_gw = watch.when(h2.bridge(), gateway2)
    if t_reply is None or t_addr is None:
        print(f"  round {r} {mode:7s}: no reply within 10 s (address seen: "
              f"{t_addr is not None})")
        return c2

    def since(t):
        return f"{(t - t_addr) * 1e3:6.1f}" if t is not None else "     -"
    row = {"dhcp": (t_addr - t_plug) * 1e3, "reply": (t_reply - t_addr) * 1e3}
    rows.append(row)
    peer = f" | host 1's entry before: {before}" if before else ""
    print(f"  round {r} {mode:7s}: cable in -> lease {row['dhcp']:6.1f} | from the lease: "
          f"bridge gateway {since(t_gw)}, remote container answers {since(t_reply)}, "
          f"READY {since(t_ready)}, announcements at host 1 "
          f"[{', '.join(since(t).strip() for t in arps.times) or 'none'}]"
          + (f", its first other ARP {since(arps.other[0]).strip()} ({arps.other[1]})"
             if arps.other else "") + f" (ms){peer}",
          flush=True)
    return c2


if __name__ == "__main__":
    sys.exit(main())
