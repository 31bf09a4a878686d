"""A container: a namespace with a veth into a host's fan bridge and a DHCP client.

The client is busybox ``udhcpc`` in the foreground with the harness's own event
script (``udhcpc.sh``), which applies the lease inside the container's namespace
and records address, prefix length, router and MTU in ``lease.env``.  SIGUSR2
then SIGUSR1 (release, then renew) forces a fresh DISCOVER, e.g. after the host's
slice moved.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

from .host import Host, wait
from .ns import Run, ip, nsexec, ping

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "udhcpc.sh")
IFACE = "eth0"


class Container:
    def __init__(self, run: Run, host: Host, index: int, fan: str | None = None) -> None:
        self.run = run
        self.host = host
        self.name = f"c{host.index}{index}"
        self.ns = run.netns(self.name)
        self.dir = os.path.join(run.workdir, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.lease_file = os.path.join(self.dir, "lease.env")
        self.script = os.path.join(self.dir, "udhcpc.sh")
        shutil.copyfile(SCRIPT, self.script)
        os.chmod(self.script, 0o755)
        self.bridge = host.bridge(fan)
        self.host_end = f"v{self.name}"
        self.client = None
        wait(lambda: _link_exists(host.ns, self.bridge), 20, f"{host.name}: bridge {self.bridge}")
        ip(self.ns, "link", "add", IFACE, "type", "veth", "peer", "name", self.host_end,
           "netns", host.ns)
        mtu = _mtu(host.ns, self.bridge)
        if mtu:
            ip(host.ns, "link", "set", self.host_end, "mtu", str(mtu))
        ip(host.ns, "link", "set", self.host_end, "master", self.bridge, "up")
        ip(self.ns, "link", "set", IFACE, "up")

    # -- DHCP -------------------------------------------------------------------
    def start_dhcp(self) -> None:
        env = dict(os.environ, LEASE_FILE=self.lease_file)
        self.client = self.run.spawn(self.ns, [
            "busybox", "udhcpc", "-f", "-i", IFACE, "-s", self.script, "-O", "mtu",
            "-t", "1000", "-T", "1", "-A", "1", "-S"], log=os.path.join(self.dir, "udhcpc.log"),
            env=env)

    def lease(self) -> dict | None:
        try:
            with open(self.lease_file) as fh:
                return dict(line.rstrip("\n").split("=", 1) for line in fh if "=" in line)
        except OSError:
            return None

    def wait_lease(self, timeout: float = 20, not_ip: str | None = None) -> dict:
        def ready():
            got = self.lease()
            return got is not None and got.get("ip") and got.get("ip") != not_ip
        wait(ready, timeout, f"{self.name}: a DHCP lease" + (f" other than {not_ip}" if not_ip
                                                              else ""))
        return self.lease()

    def renew(self, timeout: float = 20) -> dict:
        """Release and ask again (a fresh DISCOVER); returns the new lease."""
        old = (self.lease() or {}).get("ip")
        os.kill(self.client.pid, signal.SIGUSR2)
        wait(lambda: self.lease() is None, 5, f"{self.name}: release")
        time.sleep(0.05)
        os.kill(self.client.pid, signal.SIGUSR1)
        lease = self.wait_lease(timeout)
        return lease if lease.get("ip") else self.wait_lease(timeout, not_ip=old)

    @property
    def address(self) -> str | None:
        lease = self.lease()
        return lease.get("ip") if lease else None

    # -- IPv6 (a dual-stack fan: SLAAC from the host's router advertisements) -------
    @property
    def address6(self) -> str | None:
        """The global IPv6 address on eth0 once duplicate address detection is done."""
        out = ip(self.ns, "-j", "-6", "addr", "show", "dev", IFACE, "scope", "global",
                 check=False).stdout
        try:
            data = json.loads(out or "[]")
        except ValueError:
            return None
        for link in data:
            for a in link.get("addr_info", []):
                if "local" in a and not a.get("tentative"):
                    return a["local"]
        return None

    def wait_address6(self, timeout: float = 70) -> str:
        """Until SLAAC gave an address (the kernel solicits; dnsmasq also advertises
        every minute)."""
        wait(lambda: self.address6, timeout, f"{self.name}: a SLAAC address")
        return self.address6

    # -- traffic ----------------------------------------------------------------
    def ping(self, addr: str, count: int = 1, wait_s: int = 1) -> bool:
        return ping(self.ns, addr, count, wait_s)

    def ping_until(self, addr: str, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping(addr):
                return True
        return False

    def exec(self, *args: str, check: bool = True, timeout: float = 30):
        return nsexec(self.ns, *args, check=check, timeout=timeout)


def _link_exists(ns: str, name: str) -> bool:
    return ip(ns, "link", "show", "dev", name, check=False).returncode == 0


def _mtu(ns: str, name: str) -> int | None:
    out = ip(ns, "-j", "link", "show", "dev", name, check=False).stdout
    try:
        return json.loads(out)[0]["mtu"]
    except (ValueError, IndexError, KeyError):
        return None
