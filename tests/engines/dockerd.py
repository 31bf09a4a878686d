"""A real dockerd (docker.io 20.10 from Debian) inside one harness host's namespace.

How it is kept to the test (what docker.io 20.10 needed to run in a namespace of its
own on this project's machines):

* ``unshare -m --propagation slave nsenter --net=/run/netns/HOST``: dockerd gets the
  host's network namespace (not ``ip netns exec``, which remounts /sys and hides the
  cgroup mounts) and a mount namespace of its own, in which a tmpfs covers /run (dockerd
  creates /run/docker/plugins whatever its --exec-root says) and an empty directory
  covers /etc/docker;
* every path in its own directory: --data-root, --exec-root, the API socket, the pid
  file, ``deprecated-key-path`` (else it writes /etc/docker/key.json); storage driver vfs;
* no registry: :func:`image_tar` builds a busybox-static root filesystem that
  :meth:`Dockerd.import_image` loads with ``docker import``;
* the client is /usr/bin/docker (docker.io's) with DOCKER_CONFIG in the test directory.

:meth:`Dockerd.close` ends dockerd by PID (SIGTERM: it stops its containers), then
kills, by PID, whatever is left that names its directory (containerd, shims) and
their descendants (container processes).  Call it before the harness ``Run`` closes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import tarfile
import time

from tests.harness.host import Host, wait
from tests.harness.ns import HarnessError, Run, kill_pid, sh

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"              # docker.io's client (20.10), whatever else is on PATH
BUSYBOX = "/bin/busybox"
IMAGE = "fangen-busybox:1"
APPLETS = ("sh", "ping", "nc", "cat", "echo", "sleep", "ip", "ifconfig", "route", "wget")


def available() -> str | None:
    """Why Docker cannot run here, or None."""
    for path in (DOCKERD, DOCKER, BUSYBOX, "/usr/bin/unshare", "/usr/bin/nsenter"):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (scripts/setup.sh installs docker.io, busybox-static)"
    return None


def image_tar(path: str) -> str:
    """A tar of a root filesystem holding busybox-static and links to a few applets."""
    with tarfile.open(path, "w") as tar:
        for name in ("bin", "etc", "tmp", "proc", "sys", "dev"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755 if name != "tmp" else 0o1777
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        for name, text in (("etc/passwd", "root:x:0:0:root:/:/bin/sh\n"),
                           ("etc/group", "root:x:0:\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


class Dockerd:
    def __init__(self, run: Run, host: Host, settings: dict) -> None:
        """``settings``: daemon.json keys (e.g. what ``fangen docker`` printed); the
        isolation keys are added here."""
        self.run, self.host = run, host
        self.dir = os.path.join(host.dir, "dk")           # short: socket paths < 108
        for sub in ("data", "exec", "etc", "cli"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.socket = os.path.join(self.dir, "docker.sock")
        self.config = dict(settings)
        self.config.update({
            "data-root": os.path.join(self.dir, "data"),
            "exec-root": os.path.join(self.dir, "exec"),
            "pidfile": os.path.join(self.dir, "docker.pid"),
            "hosts": [f"unix://{self.socket}"],
            "storage-driver": "vfs",
            "deprecated-key-path": os.path.join(self.dir, "key.json"),
            "shutdown-timeout": 2,
            "log-level": "warn",
        })
        self.proc = None
        self.containers: dict[str, dict] = {}

    @property
    def log(self) -> str:
        return os.path.join(self.dir, "dockerd.log")

    def start(self, wait_ready: bool = True) -> None:
        conf = os.path.join(self.dir, "daemon.json")
        with open(conf, "w") as fh:
            json.dump(self.config, fh, indent=2)
        d = shlex.quote(self.dir)
        script = " && ".join([
            "mount -t tmpfs -o mode=0755 tmpfs /run",
            f"if [ -d /etc/docker ]; then mount --bind {d}/etc /etc/docker; fi",
            f"exec {DOCKERD} --config-file {shlex.quote(conf)}",
        ])
        self.proc = self.run.spawn(None, [
            "unshare", "-m", "--propagation", "slave",
            "nsenter", f"--net=/run/netns/{self.host.ns}", "sh", "-c", script], log=self.log)
        if wait_ready:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        wait(lambda: self.proc.poll() is not None or self._answers(), timeout,
             f"{self.host.name}: dockerd to answer (log: {self.log})")
        if self.proc.poll() is not None:
            raise HarnessError(f"{self.host.name}: dockerd exited: {self._tail()}")

    def _answers(self) -> bool:
        if not os.path.exists(self.socket):
            return False
        return self.cli("version", "--format", "{{.Server.Version}}", check=False,
                        timeout=10).returncode == 0

    def _tail(self) -> str:
        try:
            with open(self.log) as fh:
                return " | ".join(fh.read().strip().splitlines()[-5:])
        except OSError:
            return "(no log)"

    # -- the client --------------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True, timeout: float = 60):
        env = dict(os.environ, DOCKER_CONFIG=os.path.join(self.dir, "cli"))
        env.pop("DOCKER_HOST", None)
        return sh(DOCKER, "-H", f"unix://{self.socket}", *args, check=check, timeout=timeout,
                  env=env)

    def import_image(self, tar: str) -> None:
        self.cli("import", tar, IMAGE)

    def run_container(self, name: str, *docker_args: str, command=("sleep", "3600")) -> dict:
        """``docker run -d --name NAME ARGS IMAGE COMMAND``; returns {"ip", "pid", "ns"}
        with the container's network namespace attached as a harness namespace."""
        self.cli("run", "-d", "--name", name, *docker_args, IMAGE, *command)
        fmt = "{{.State.Pid}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
        pid, ip_addr = self.cli("inspect", "-f", fmt, name).stdout.split()[:2]
        ns = f"{self.run.prefix}-{name}"
        sh("ip", "netns", "attach", ns, pid)              # /run/netns/NS -> its namespace
        self.run.namespaces.append(ns)
        info = {"name": name, "ip": ip_addr, "pid": int(pid), "ns": ns, "host": self.host}
        self.containers[name] = info
        return info

    def network(self, name: str) -> dict:
        return json.loads(self.cli("network", "inspect", name).stdout)[0]

    # -- the end -----------------------------------------------------------------------------
    def close(self) -> None:
        """The containers (SIGKILL: `sleep` as PID 1 ignores SIGTERM), dockerd by PID, then
        every leftover by PID."""
        if self.proc is not None and self.proc.poll() is None and self.containers:
            self.cli("rm", "-f", *self.containers, check=False, timeout=30)
        if self.proc is not None and self.proc.poll() is None:
            kill_pid(self.proc.pid, grace=10.0)
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=2)
        if self.proc in self.run.procs:
            self.run.procs.remove(self.proc)
        for _ in range(3):
            left = leftovers(self.dir)
            if not left:
                break
            for pid in left:
                kill_pid(pid, grace=0.5)
            time.sleep(0.1)


def leftovers(directory: str) -> list[int]:
    """PIDs whose command line names ``directory`` (containerd, shims), and all their
    descendants (the container processes), deepest first."""
    parents: dict[int, int] = {}
    roots = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as fh:
                parents[pid] = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if directory.encode() in fh.read():
                    roots.append(pid)
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        if pid in found or pid == os.getpid():
            continue
        found.append(pid)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return list(reversed(found))


def docker_settings(host: Host, fan: str, *extra: str) -> dict:
    """What ``fangen docker FAN`` prints on ``host``, parsed."""
    return json.loads(host.fangen("docker", fan, *extra).stdout)


def network_create_argv(host: Host, fan: str, network: str) -> list[str]:
    """``fangen docker FAN --network NETWORK``, split as a shell would."""
    argv = shlex.split(host.fangen("docker", fan, "--network", network).stdout)
    if argv[:3] != ["docker", "network", "create"]:
        raise HarnessError(f"unexpected: {argv}")
    return argv[1:]
