"""Helpers for tests that build real kernel objects inside throw-away namespaces.

Everything happens inside namespaces these helpers create (named with a per-run
prefix) and is removed again by :class:`NsPool.cleanup`, which fixtures call in
their finalizers, also when a test fails.  Shelling out to ``ip``/``tc``/``nft``
is fine here (test setup), never in ``fangen/``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading

from pyroute2 import IPRoute

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_setns_lock = threading.Lock()


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str):
    """Run the body with this thread inside network namespace ``name``.

    Sockets created in the body stay in that namespace after the thread returns.
    """
    with _setns_lock:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)


def iproute_in(name: str) -> IPRoute:
    """An IPRoute whose netlink socket lives in ``name`` but is used from this process
    (so bpf program fds in this process can be passed to tc)."""
    with in_netns(name):
        return IPRoute()


def socket_in(name: str, family=socket.AF_INET, type_=socket.SOCK_STREAM) -> socket.socket:
    with in_netns(name):
        return socket.socket(family, type_)


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    res = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} -> {res.returncode}: {res.stderr.strip()}")
    return res


def nsexec(ns: str, *args: str, check: bool = True, timeout: float = 30):
    return sh("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)


def ip(ns: str, *args: str, check: bool = True):
    return sh("ip", "-n", ns, *args, check=check)


class NsPool:
    """Namespaces and processes a test made, removed again by ``cleanup``."""

    def __init__(self, tag: str) -> None:
        self.prefix = f"fgt{os.getpid()}{tag}"
        self.names: list[str] = []
        self.pids: list[int] = []
        self.handles: list = []

    def add(self, short: str) -> str:
        name = f"{self.prefix}{short}"
        sh("ip", "netns", "add", name)
        self.names.append(name)
        ip(name, "link", "set", "lo", "up")
        # make the test independent of the machine's defaults
        for key in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"):
            nsexec(name, "sysctl", "-qw", f"{key}=0")
        nsexec(name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        nsexec(name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        return name

    def ipr(self, name: str) -> IPRoute:
        handle = iproute_in(name)
        self.handles.append(handle)
        return handle

    def spawn(self, ns: str, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pids.append(proc.pid)
        return proc

    def cleanup(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        for handle in self.handles:
            with contextlib.suppress(Exception):
                handle.close()
        for name in reversed(self.names):
            sh("ip", "netns", "del", name, check=False)
        self.names.clear()


def veth(ns_a: str, name_a: str, ns_b: str, name_b: str, mtu: int | None = None) -> None:
    """A veth pair between two namespaces (created in ns_a, the peer moved to ns_b)."""
    ip(ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", ns_b)
    if mtu:
        ip(ns_a, "link", "set", name_a, "mtu", str(mtu))
        ip(ns_b, "link", "set", name_b, "mtu", str(mtu))
    ip(ns_a, "link", "set", name_a, "up")
    ip(ns_b, "link", "set", name_b, "up")


def ping(ns: str, addr: str, count: int = 1, wait: int = 2) -> bool:
    res = nsexec(ns, "busybox", "ping", "-c", str(count), "-W", str(wait), addr,
                 check=False, timeout=count * wait + 10)
    return res.returncode == 0


def count_objects(ns: str, devs: list[str]) -> dict[str, int]:
    """Kernel objects in a namespace: links, routes, neighbours, fdb entries, tc filters."""
    def lines(*args: str) -> int:
        return len([ln for ln in sh(*args).stdout.splitlines() if ln.strip()])
    filters = 0
    for dev in devs:
        for hook in ("ingress", "egress"):
            out = sh("tc", "-n", ns, "filter", "show", "dev", dev, hook).stdout
            filters += sum(1 for ln in out.splitlines() if " handle " in ln)
    return {
        "links": lines("ip", "-n", ns, "-o", "link", "show"),
        "routes": lines("ip", "-n", ns, "route", "show", "table", "all"),
        "neighbours": lines("ip", "-n", ns, "neigh", "show"),
        "fdb": lines("bridge", "-n", ns, "fdb", "show"),
        "filters": filters,
    }
