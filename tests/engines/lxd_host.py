"""Real LXD (Debian 12's 5.0.2) inside a harness host namespace.

Per host: a private ``LXD_DIR`` (database, storage pool, images, logs, the unix socket)
and ``LXD_CONF`` (the ``lxc`` client's configuration) below the host's work directory;
the daemon and every ``lxc`` command run in a :class:`~tests.engines.holder.Holder`
mount namespace (its own sysfs, so LXD finds the fan bridge under /sys/class/net, and
private /run and /var/lib, so liblxc's runtime files are the test's).  A ``dir`` storage
pool holds the containers; the image is imported from a local tarball (no image server is
reachable): busybox-static with an init that asks for eth0's address by DHCP.
"""

from __future__ import annotations

import json
import os
import subprocess

import yaml

from tests.engines.holder import Holder, adopt_netns, remove_empty_cgroups
from tests.harness.host import Host, wait
from tests.harness.ns import HarnessError, Run

IMAGE = "fanbox"


class Lxd:
    def __init__(self, run: Run, host: Host, image_tar: str) -> None:
        self.run = run
        self.host = host
        self.dir = os.path.join(host.dir, "lxd")
        self.lxd_dir = os.path.join(self.dir, "var")
        self.pool = os.path.join(self.dir, "pool")
        for path in (self.lxd_dir, self.pool, os.path.join(self.dir, "conf")):
            os.makedirs(path, exist_ok=True)
        self.env = dict(os.environ, LXD_DIR=self.lxd_dir,
                        LXD_CONF=os.path.join(self.dir, "conf"))
        self.holder = Holder(run, host.ns, self.dir)
        self.daemon = self.holder.spawn(
            ["lxd", "--logfile", os.path.join(self.dir, "lxd.log")],
            log=os.path.join(self.dir, "lxd.out"), env=self.env)
        self.holder.sh("lxd", "waitready", "--timeout", "60", env=self.env, timeout=70)
        self.containers: list[str] = []
        self.lxc("storage", "create", "default", "dir", f"source={self.pool}")
        self.lxc("profile", "device", "add", "default", "root", "disk", "path=/",
                 "pool=default")
        self.lxc("image", "import", image_tar, "--alias", IMAGE)

    def lxc(self, *args: str, check: bool = True, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        return self.holder.sh("lxc", *args, env=self.env, check=check, input=input,
                              timeout=timeout)

    def load_profile(self, name: str, text: str) -> None:
        self.lxc("profile", "create", name)
        self.lxc("profile", "edit", name, input=text)

    def profile(self, name: str) -> dict:
        return yaml.safe_load(self.lxc("profile", "show", name).stdout)

    def networks(self) -> list[dict]:
        return json.loads(self.lxc("network", "list", "--format", "json").stdout)

    def launch(self, name: str, *profiles: str) -> Container:
        args = [arg for p in profiles for arg in ("--profile", p)]
        self.containers.append(name)
        self.lxc("launch", IMAGE, name, *args)
        return Container(self, name)

    def close(self) -> None:
        if self.daemon.poll() is None:
            for name in self.containers:
                self.lxc("delete", "--force", name, check=False, timeout=60)
        remove_empty_cgroups("lxc.pivot")


class Container:
    """A running LXD container; ``ns`` names its network namespace for the harness."""

    def __init__(self, lxd: Lxd, name: str) -> None:
        self.lxd = lxd
        self.name = name
        state = json.loads(lxd.lxc("list", f"^{name}$", "--format", "json").stdout)
        if len(state) != 1 or not state[0]["state"]["pid"]:
            raise HarnessError(f"{name}: not running: {state}")
        self.pid = state[0]["state"]["pid"]
        self.ns = adopt_netns(lxd.run, f"x{name[-3:]}", self.pid)

    def lease(self, timeout: float = 20) -> dict:
        """The DHCP lease the image's init got (from /run/lease.env inside the container)."""
        def read():
            res = self.lxd.lxc("exec", self.name, "--", "cat", "/run/lease.env", check=False)
            if res.returncode != 0:
                return None
            got = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
            return got if got.get("ip") else None
        return wait(read, timeout, f"{self.name}: a DHCP lease")
