"""Real podman (Debian 12's 4.3, CNI backend) inside a harness host namespace.

Per host, everything podman keeps is private to the test: ``--root`` and ``--runroot``
below the host's work directory, a ``containers.conf`` (``CONTAINERS_CONF``) naming a
private CNI configuration directory, and a :class:`~tests.engines.holder.Holder` mount
namespace for the fixed paths (/run/netns for the containers' namespaces, /var/lib/cni for
host-local's allocations and CNI's cache, /run/cni for the DHCP daemon's socket,
/var/lib/containers for the image blob cache).

The CNI directory holds one symlink, ``NAME.conflist`` -> the file fangen's runtime keeps
at ``ROOT/run/fangen/NAME/cni/NAME.conflist``: what a host's ``/etc/cni/net.d`` holds in
production, so ``podman run --network NAME`` sees whatever fangen wrote last.

Settings forced by this machine, not by the fan: ``cgroup_manager = "cgroupfs"`` and
``events_logger = "file"`` (no systemd, no journal here), and ``default_ulimits`` below
podman's defaults: runc could not apply ``nofile=1048576`` ("error setting rlimit type 7:
operation not permitted"; this sandbox's hard limit is 20000 and it lacks
CAP_SYS_RESOURCE), nor an ``nproc`` above the 32768 it runs with ("rlimit type 6").
"""

from __future__ import annotations

import os
import subprocess

from fangen.engines import cni
from tests.engines.holder import Holder, adopt_netns, remove_empty_cgroups
from tests.harness.host import Host
from tests.harness.ns import Run

IMAGE = "localhost/fanbox"
DHCP_DAEMON = "/usr/lib/cni/dhcp"

CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{tmp}"

[network]
network_backend = "cni"
network_config_dir = "{cni_dir}"
"""


class Podman:
    def __init__(self, run: Run, host: Host, fan: str, image_tar: str) -> None:
        self.run = run
        self.host = host
        self.fan = fan
        self.dir = os.path.join(host.dir, "podman")
        self.cni_dir = os.path.join(self.dir, "cni")
        for sub in ("cni", "root", "runroot", "tmp"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.conflist = os.path.join(host.root, cni.path(fan))
        os.symlink(self.conflist, os.path.join(self.cni_dir, f"{fan}.conflist"))
        self.conf = os.path.join(self.dir, "containers.conf")
        with open(self.conf, "w") as fh:
            fh.write(CONTAINERS_CONF.format(tmp=os.path.join(self.dir, "tmp"),
                                            cni_dir=self.cni_dir))
        self.env = dict(os.environ, CONTAINERS_CONF=self.conf)
        self.holder = Holder(run, host.ns, self.dir)
        self.dhcp_daemon = None
        self.podman("import", image_tar, IMAGE)

    def podman(self, *args: str, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess:
        return self.holder.sh("podman", "--root", os.path.join(self.dir, "root"),
                              "--runroot", os.path.join(self.dir, "runroot"), *args,
                              env=self.env, check=check, timeout=timeout)

    def info(self, template: str) -> str:
        return self.podman("info", "--format", template).stdout.strip()

    def start_dhcp_daemon(self) -> None:
        """The CNI DHCP daemon (cni-dhcp.service in production), on /run/cni/dhcp.sock."""
        self.dhcp_daemon = self.holder.spawn([DHCP_DAEMON, "daemon"],
                                             log=os.path.join(self.dir, "cni-dhcp.log"))

    def run_container(self, name: str, *options: str) -> Container:
        """``podman run -d OPTIONS IMAGE sleep``; OPTIONS carry ``--network``."""
        self.podman("run", "-d", "--name", name, *options, IMAGE, "sleep", "1000000")
        return Container(self, name)

    def restart(self, container: Container) -> Container:
        self.podman("restart", "-t", "0", container.name)
        return Container(self, container.name)

    def close(self) -> None:
        """Remove every container (CNI DEL: leases released, host-local entries freed)."""
        if self.holder.proc.poll() is None:
            self.podman("rm", "--all", "--force", "--time", "0", check=False, timeout=60)
        remove_empty_cgroups("libpod_parent/conmon", "libpod_parent")


class Container:
    """A running podman container; ``ns`` names its network namespace for the harness."""

    _count = 0

    def __init__(self, podman: Podman, name: str) -> None:
        self.podman = podman
        self.name = name
        pid = podman.podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip()
        self.pid = int(pid)
        Container._count += 1
        self.ns = adopt_netns(podman.run, f"p{Container._count}", self.pid)
