"""The underlay address announcement (fangen.runtime.announce) on the running kernel.

Needs root.  Namespaces of the test's own: a "host" ``h`` whose ``ul0`` is a veth to a
"peer" ``p`` (``pl0``, 172.16.0.1/16), and for the scope test a second peer ``q`` on
``ul1``.  The peer's own ARP probing is switched off or pushed a minute away with its
neighbour sysctls (``mcast_solicit``, ``ucast_solicit``, ``app_solicit``,
``retrans_time_ms``; ``arp_accept=0``, the default, set explicitly), so its entry for
the host's address can only be resolved by a frame the host sends unasked: without the
announcement the entry stays INCOMPLETE (checked first), with it the entry is resolved
at once and the packet the peer had queued on it arrives.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from ipaddress import IPv4Address, IPv4Network

import pytest

from fangen.runtime import announce
from fangen.runtime.underlay import Resolved
from tests.harness import cli
from tests.harness.host import PYTHON, wait_for
from tests.harness.ns import Run, in_netns, ip, nsexec, sysctl, veth
from tests.harness.packets import UdpListener

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces"),
]

HOST_ADDR = "172.16.3.4"
PEER_ADDR = "172.16.0.1"
PORT = 9999
BOUND = 0.5          # s: far below the peer's retry (60 s here, 1 s by default)
FANS = """network:
  version: 2
  fan:
    fan250:
      overlay: 250.0.0.0/8
      underlay: 172.16.0.0/16
      type: vxlan
"""


class Log:
    def __init__(self):
        self.lines = []

    def log(self, text):
        self.lines.append(text)


@pytest.fixture
def pair():
    with Run("an") as run:
        h, p = run.netns("h"), run.netns("p")
        veth(h, "ul0", p, "pl0")
        ip(p, "addr", "add", f"{PEER_ADDR}/16", "dev", "pl0")
        yield run, h, p


def quiet_peer(p: str, dev: str = "pl0", probes: int = 1) -> None:
    """The peer sends ``probes`` broadcast ARP requests (0: none, the entry fails at
    once), then waits a minute before the next; it learns nothing unasked."""
    base = f"net.ipv4.neigh.{dev}"
    sysctl(p, f"{base}.mcast_solicit", probes)
    sysctl(p, f"{base}.ucast_solicit", 0)
    sysctl(p, f"{base}.app_solicit", 0)
    sysctl(p, f"{base}.retrans_time_ms", 60000)
    sysctl(p, f"net.ipv4.conf.{dev}.arp_accept", 0)


def neigh(ns: str, dev: str, addr: str) -> tuple[str, str | None]:
    """(state, lladdr) of the entry for ``addr`` on ``dev``; ("", None) when there is none."""
    rows = json.loads(ip(ns, "-j", "neigh", "show", "dev", dev, "to", addr).stdout or "[]")
    rows = [r for r in rows if r.get("dst") == addr]
    if not rows:
        return "", None
    return ",".join(rows[0].get("state", [])), rows[0].get("lladdr")


def mac_of(ns: str, dev: str) -> str:
    return json.loads(ip(ns, "-j", "link", "show", "dev", dev).stdout)[0]["address"]


def resolved(ns: str, dev: str = "ul0", addr: str = HOST_ADDR) -> Resolved:
    index = json.loads(ip(ns, "-j", "link", "show", "dev", dev).stdout)[0]["ifindex"]
    return Resolved(dev, index, IPv4Address(addr), IPv4Network("172.16.0.0/16"), 1500)


def send_to_host(p: str) -> None:
    """A datagram from the peer to the host's underlay address (queued while unresolved)."""
    with in_netns(p):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s, contextlib.suppress(OSError):       # a FAILED entry refuses it at once
        s.sendto(b"queued-before-the-address", (HOST_ADDR, PORT))


class Capture:
    """Every ARP frame arriving on ``dev`` in ``ns``."""

    def __init__(self, ns: str, dev: str):
        with in_netns(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                      socket.htons(announce.ETH_P_ARP))
        self.sock.bind((dev, announce.ETH_P_ARP))
        self.sock.settimeout(0.05)

    def frames(self, wait: float = 0.3) -> list[bytes]:
        got, end = [], time.monotonic() + wait
        while time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                got.append(self.sock.recv(2048))
        return got

    def close(self):
        self.sock.close()


def announced(frames: list[bytes], addr: str = HOST_ADDR) -> list[bytes]:
    """The frames that are announcements of ``addr`` (ARP, sender IP == target IP == addr)."""
    ip4 = IPv4Address(addr).packed
    return [f for f in frames if f[12:14] == b"\x08\x06" and f[28:32] == ip4 == f[38:42]]


def test_an_incomplete_entry_is_resolved_by_the_announcement_alone(pair):
    _, h, p = pair
    quiet_peer(p, probes=1)
    send_to_host(p)                               # one probe, unanswered: no address yet
    assert neigh(p, "pl0", HOST_ADDR)[0] == "INCOMPLETE"
    ip(h, "addr", "add", f"{HOST_ADDR}/16", "dev", "ul0")
    listener = UdpListener(h, HOST_ADDR, PORT)
    try:
        # the control: the address alone tells the peer nothing
        assert listener.received(wait=BOUND) == []
        assert neigh(p, "pl0", HOST_ADDR)[0] == "INCOMPLETE"
        with in_netns(h):
            assert announce.address(Log(), resolved(h), schedule=(0.0,)) is None
        state, lladdr = wait_for(lambda: (s := neigh(p, "pl0", HOST_ADDR))[0] != "INCOMPLETE"
                                 and s, BOUND, "the peer's entry to be resolved", 0.01)
        assert state in ("STALE", "REACHABLE", "DELAY")
        assert lladdr == mac_of(h, "ul0")
        # the datagram the peer queued on the unresolved entry went out
        assert listener.received(wait=BOUND) == [b"queued-before-the-address"]
    finally:
        listener.close()


def test_a_failed_entry_is_resolved_by_the_announcement(pair):
    """A peer that gave up (FAILED, here at once: it may send no probe at all)."""
    _, h, p = pair
    quiet_peer(p, probes=0)
    ip(h, "addr", "add", f"{HOST_ADDR}/16", "dev", "ul0")
    for _ in range(3):      # the kernel's garbage collector may drop a FAILED entry first
        send_to_host(p)
        assert neigh(p, "pl0", HOST_ADDR)[0] == "FAILED"
        time.sleep(0.2)
        assert neigh(p, "pl0", HOST_ADDR)[0] in ("FAILED", "")    # nothing resolves it
        with in_netns(h):
            announce.address(Log(), resolved(h), schedule=(0.0,))
        state, lladdr = neigh(p, "pl0", HOST_ADDR)
        if state:
            break
    assert state == "STALE"
    assert lladdr == mac_of(h, "ul0")


def test_the_schedule_goes_out_on_the_resolved_interface_only(pair):
    run, h, p = pair
    q = run.netns("q")
    veth(h, "ul1", q, "ql0")
    ip(h, "addr", "add", f"{HOST_ADDR}/16", "dev", "ul0")
    ip(h, "addr", "add", "10.9.0.1/24", "dev", "ul1")
    on_p, on_q = Capture(p, "pl0"), Capture(q, "ql0")
    try:
        log = Log()
        with in_netns(h):
            thread = announce.address(log, resolved(h))
        thread.join(5)
        assert not thread.is_alive()
        frames = on_p.frames()
        expected = announce.frame(bytes.fromhex(mac_of(h, "ul0").replace(":", "")),
                                  IPv4Address(HOST_ADDR))
        assert frames == [expected] * len(announce.SCHEDULE)
        assert on_q.frames() == []
        assert log.lines == []
    finally:
        on_p.close()
        on_q.close()


def test_a_device_without_arp_gets_nothing_and_no_complaint(pair):
    """NOARP and non-Ethernet devices have no ARP caches to update: skipped, not logged."""
    _, h, p = pair
    ip(h, "addr", "add", f"{HOST_ADDR}/16", "dev", "ul0")
    ip(h, "link", "set", "ul0", "arp", "off")
    on_p = Capture(p, "pl0")
    try:
        log = Log()
        with in_netns(h):
            assert announce.address(log, resolved(h)) is None
            assert announce.address(log, resolved(h, "lo", "127.0.0.1")) is None
        assert on_p.frames() == []
        assert log.lines == []
    finally:
        on_p.close()


def test_fangen_run_announces_the_underlay_when_it_appears_and_comes_back(pair, tmp_path):
    """The hooks: ``fangen run`` waiting for its underlay announces it when it brings the
    fan up on it, and again when the same address comes back with the fan left as it was."""
    run, h, p = pair
    root = str(tmp_path / "root")
    cli.install(root, FANS)
    quiet_peer(p, probes=1)
    on_p = Capture(p, "pl0")
    proc = run.spawn(h, [PYTHON, "-m", "fangen", "run", "fan250", "--root-dir", root,
                         "--no-systemd"], log=str(tmp_path / "run.log"), env=cli.env())
    try:
        time.sleep(0.5)                                   # run is waiting for the underlay
        send_to_host(p)
        assert neigh(p, "pl0", HOST_ADDR)[0] == "INCOMPLETE"
        ip(h, "addr", "add", f"{HOST_ADDR}/16", "dev", "ul0")
        wait_for(lambda: neigh(p, "pl0", HOST_ADDR)[0] not in ("INCOMPLETE", ""), 30,
                 "the announcement after up")
        assert announced(on_p.frames(0.5))
        assert proc.poll() is None
        # the address goes (the fan stays) and comes back; the peer tried meanwhile
        ip(h, "addr", "del", f"{HOST_ADDR}/16", "dev", "ul0")
        wait_for(lambda: "is gone" in open(tmp_path / "run.log").read(), 10,
                 "run to see the underlay go")
        ip(p, "neigh", "flush", "dev", "pl0")
        send_to_host(p)
        assert neigh(p, "pl0", HOST_ADDR)[0] == "INCOMPLETE"
        on_p.frames(0.1)                                  # forget what came before
        ip(h, "addr", "add", f"{HOST_ADDR}/16", "dev", "ul0")
        wait_for(lambda: neigh(p, "pl0", HOST_ADDR)[0] not in ("INCOMPLETE", ""), 10,
                 "the announcement after the address came back")
        assert announced(on_p.frames(0.5))
        assert proc.poll() is None
    finally:
        on_p.close()
        cli.fangen(h, root, "down", "fan250", check=False)


def test_without_cap_net_raw_it_says_so_once_and_goes_on(pair):
    """No packet socket (CAP_NET_RAW dropped from the bounding set): one line, no raise."""
    _, h, _ = pair
    ip(h, "addr", "add", f"{HOST_ADDR}/16", "dev", "ul0")
    index = resolved(h).ifindex
    script = (
        "import sys\n"
        "from ipaddress import IPv4Address, IPv4Network\n"
        "from fangen.runtime import announce\n"
        "from fangen.runtime.underlay import Resolved\n"
        "class Host:\n"
        "    log = None\n"
        f"r = Resolved('ul0', {index}, IPv4Address('{HOST_ADDR}'), "
        "IPv4Network('172.16.0.0/16'), 1500)\n"
        "print(announce.address(Host(), r), announce.address(Host(), r))\n")
    res = nsexec(h, "setpriv", "--bounding-set", "-net_raw", PYTHON, "-c", script,
                 env=cli.env())
    assert res.stdout == "None None\n"
    assert res.stderr == ("fangen: ul0: 172.16.3.4 not announced: cannot open a packet "
                          "socket (Operation not permitted)\n")
