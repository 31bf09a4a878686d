"""Network namespaces and processes of one harness run, removed again whatever happens.

A :class:`Run` owns a unique name prefix (``fh`` + 6 characters), a work directory,
and every namespace and process created through it.  ``Run.close()`` kills every
process it started and every process still living in one of its namespaces (found
by namespace with ``ip netns pids``, then killed by PID), then deletes the
namespaces and the work directory.  It is called by the fixtures' finalizers, by
the demo's ``finally`` and, as a last resort, from ``atexit``.

:func:`cleanup` does the same for leftovers of any run with a given prefix (a run
killed by SIGKILL cannot clean up after itself): ``python3 -m tests.harness cleanup``.

Shelling out to ``ip`` is fine here: this is test code, not fangen.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from fangen.datapath.rtnl import CLONE_NEWNET, setns

PREFIX = "fh"                       # every harness namespace name starts with this
_setns_lock = threading.Lock()


class HarnessError(RuntimeError):
    pass


def sh(*args: str, check: bool = True, timeout: float = 30, env=None,
       input: str | None = None) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                             env=env, input=input)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{' '.join(args)}: still running after {timeout:g} s, "
                           "stopped") from None
    if check and res.returncode != 0:
        raise HarnessError(f"{' '.join(args)} -> {res.returncode}: "
                           f"{(res.stderr or res.stdout).strip()}")
    return res


def ip(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh("ip", "-n", ns, *args, check=check)


def nsexec(ns: str, *args: str, check: bool = True, timeout: float = 30,
           env=None) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *args, check=check, timeout=timeout, env=env)


def list_netns() -> list[str]:
    out = sh("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def pids_in(ns: str) -> list[int]:
    out = sh("ip", "netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def kill_pid(pid: int, grace: float = 1.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; reaps it when it is our child."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _alive(pid)


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def cmdline(pid: int) -> str:
    """/proc/PID/cmdline with spaces for the NULs; "" once the process is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def remove_netns(name: str) -> None:
    """Kill every process inside the namespace (by PID), then delete it."""
    for _ in range(3):
        pids = pids_in(name)
        if not pids:
            break
        for pid in pids:
            kill_pid(pid, grace=0.5)
    sh("ip", "netns", "del", name, check=False)


def cleanup(prefix: str = PREFIX) -> list[str]:
    """Remove every namespace whose name starts with ``prefix``; returns their names."""
    gone = [name for name in list_netns() if name.startswith(prefix)]
    for name in gone:
        remove_netns(name)
    return gone


@contextlib.contextmanager
def in_netns(name: str):
    """Run the body with this thread inside namespace ``name``; sockets made there stay there.

    The setns is fangen's own (:func:`fangen.datapath.rtnl.setns`): one way into a
    namespace for the product and the tests."""
    with _setns_lock:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            try:
                setns(target, CLONE_NEWNET)
            except OSError as exc:
                raise OSError(exc.errno, f"setns {name}: {exc.strerror}") from None
            try:
                yield
            finally:
                setns(home, CLONE_NEWNET)
        finally:
            os.close(target)
            os.close(home)


def socket_in(name: str, family=socket.AF_INET, type_=socket.SOCK_STREAM,
              proto: int = 0) -> socket.socket:
    """A socket that lives in namespace ``name``, used from this process."""
    with in_netns(name):
        return socket.socket(family, type_, proto)


def iproute_in(name: str):
    """A pyroute2 IPRoute whose netlink socket lives in ``name`` but is used from this
    process (so bpf program fds of this process can be passed to tc)."""
    from pyroute2 import IPRoute

    with in_netns(name):
        return IPRoute()


def sysctl(ns: str, key: str, value) -> None:
    """Write /proc/sys/KEY inside ``ns`` (no sysctl(8) needed: the kernel VM has none)."""
    path = "/proc/sys/" + key.replace(".", "/")
    nsexec(ns, "sh", "-c", f"echo {value} > {path}")


def veth(ns_a: str, name_a: str, ns_b: str, name_b: str, mtu: int | None = None) -> None:
    """A veth pair between two namespaces (created in ns_a, the peer moved to ns_b), up."""
    ip(ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", ns_b)
    if mtu:
        ip(ns_a, "link", "set", name_a, "mtu", str(mtu))
        ip(ns_b, "link", "set", name_b, "mtu", str(mtu))
    ip(ns_a, "link", "set", name_a, "up")
    ip(ns_b, "link", "set", name_b, "up")


def settle_ipv6(ns: str, timeout: float = 10.0) -> None:
    """Wait until every link of ``ns`` that is up with a carrier holds its link-local
    address and none is tentative: with IPv6 on, the kernel adds them a moment after
    the link comes up, and a snapshot taken before would miss them."""
    deadline = time.monotonic() + timeout
    while True:
        rows = json.loads(ip(ns, "-j", "addr", "show").stdout or "[]")
        six = [[a for a in row.get("addr_info", []) if a.get("family") == "inet6"]
               for row in rows if "LOWER_UP" in row.get("flags", [])
               and row.get("ifname") != "lo"]
        if all(any(a.get("scope") == "link" for a in addrs) and
               not any(a.get("tentative") for a in addrs) for addrs in six):
            return
        if time.monotonic() > deadline:
            raise HarnessError(f"{ns}: IPv6 link-local addresses did not settle")
        time.sleep(0.05)


def switch_ns(run: Run, short: str = "sw") -> str:
    """A namespace holding a bridge ``br0`` that is up: the underlay switch of a test."""
    sw = run.netns(short)
    ip(sw, "link", "add", "br0", "type", "bridge")
    ip(sw, "link", "set", "br0", "up")
    return sw


def plug(sw: str, port: str, ns: str, dev: str, address: str | None = None,
         mtu: int | None = None) -> None:
    """A veth from ``dev`` in ``ns`` (holding ``address``) to ``port`` on ``sw``'s br0, up."""
    veth(ns, dev, sw, port, mtu)
    ip(sw, "link", "set", port, "master", "br0")
    if address:
        ip(ns, "addr", "add", address, "dev", dev)


def underlay_host(run: Run, address: str = "172.16.3.4/16") -> tuple[str, str]:
    """Namespaces ``h`` (a host) and ``sw`` (its switch), joined by a veth that is up:
    ``ul0`` in the host, holding ``address``, and ``p1`` in the switch."""
    sw = run.netns("sw")
    h = run.netns("h")
    veth(h, "ul0", sw, "p1")
    ip(h, "addr", "add", address, "dev", "ul0")
    return h, sw


def ipip_available() -> bool:
    """Can this kernel make a collect-metadata IPIP device?  (This project's machines: no;
    the kernel-check VMs: yes.)  Probed in a namespace of its own, removed again."""
    with Run("i") as run:
        ns = run.netns("probe")
        return ip(ns, "link", "add", "t0", "type", "ipip", "external",
                  check=False).returncode == 0


def ping(ns: str, addr, count: int = 1, wait: int = 2) -> bool:
    """busybox ping from ``ns``: did ``count`` echoes (``wait`` s each at most) get an answer?"""
    res = nsexec(ns, "busybox", "ping", "-c", str(count), "-W", str(wait), str(addr),
                 check=False, timeout=count * wait + 10)
    return res.returncode == 0


class Run:
    """One run's namespaces, processes and work directory."""

    def __init__(self, tag: str = "", keep_workdir: bool = False, ipv6: bool = False) -> None:
        self.prefix = f"{PREFIX}{secrets.token_hex(3)}{tag}"
        self.ipv6 = ipv6                        # leave IPv6 on in this run's namespaces
        self.workdir = tempfile.mkdtemp(prefix=f"{self.prefix}-", dir="/tmp")
        os.chmod(self.workdir, 0o755)           # networkd (systemd-network) reads below it
        self.keep_workdir = keep_workdir
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.handles: list = []
        self.closed = False
        atexit.register(self.close)

    # -- namespaces ---------------------------------------------------------------
    def netns(self, short: str) -> str:
        """A fresh namespace ``<prefix>-<short>``: lo up, rp_filter off, IPv6 off (where
        the kernel has IPv6: the kernel-check VM's has none) unless the run was made
        with ``ipv6=True`` (a dual-stack fan's tests)."""
        name = f"{self.prefix}-{short}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        ip(name, "link", "set", "lo", "up")
        six = "0" if self.ipv6 else "1"
        nsexec(name, "sh", "-c",
               "cd /proc/sys/net && for k in all default; do echo 0 > ipv4/conf/$k/rp_filter; "
               f"if [ -d ipv6 ]; then echo {six} > ipv6/conf/$k/disable_ipv6; fi; done")
        return name

    def ipr(self, ns: str):
        """A pyroute2 IPRoute in ``ns`` (see :func:`iproute_in`), closed by close()."""
        handle = iproute_in(ns)
        self.handles.append(handle)
        return handle

    def path(self, *parts: str) -> str:
        path = os.path.join(self.workdir, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    # -- processes ----------------------------------------------------------------
    def spawn(self, ns: str | None, args: list[str], log: str | None = None, env=None,
              stdin=subprocess.DEVNULL) -> subprocess.Popen:
        """Start ``args`` (inside ``ns`` when given), output to ``log``; killed by close()."""
        cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
        out = open(log, "ab") if log else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=stdin,
                                    env=env, start_new_session=True)
        finally:
            if log:
                out.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 2.0) -> None:
        kill_pid(proc.pid, grace)
        with contextlib.suppress(Exception):
            proc.wait(timeout=1)
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for proc in reversed(self.procs):
            kill_pid(proc.pid, grace=1.0)
            with contextlib.suppress(Exception):
                proc.wait(timeout=1)
        self.procs.clear()
        for handle in self.handles:
            with contextlib.suppress(Exception):
                handle.close()
        self.handles.clear()
        for name in reversed(self.namespaces):
            remove_netns(name)
        self.namespaces.clear()
        cleanup(self.prefix)                 # anything named by this run but not recorded
        if not self.keep_workdir:
            _umount_below(self.workdir)
            for _ in range(3):                   # a dying daemon may still write a file
                shutil.rmtree(self.workdir, ignore_errors=True)
                if not os.path.exists(self.workdir):
                    break
                time.sleep(0.1)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _umount_below(directory: str) -> None:
    """Nothing should be mounted below the work dir (mounts live in private namespaces)."""
    with open("/proc/self/mounts") as fh:
        points = [line.split()[1] for line in fh if line.split()[1].startswith(directory + "/")]
    for point in sorted(points, reverse=True):
        sh("umount", "-l", point, check=False)
