"""A private mount namespace inside a host namespace, for a container engine to live in.

An engine (podman, LXD) runs inside a harness host's network namespace, but it also
keeps state under fixed paths (/run/netns, /run/cni, /run/lxc, /var/lib/cni,
/var/lib/containers, ...) that must not be shared with the machine or with the other
hosts of the lab.  :class:`Holder` starts one long-lived process (``sleep``) that, in its
own mount namespace (private propagation, so nothing leaks out):

* mounts a fresh sysfs, so /sys/class/net shows this network namespace's devices (LXD
  looks for the parent bridge there), with the cgroup hierarchies bound back in below it
  (``ip netns exec`` would remount /sys too, but hide the cgroup mounts);
* puts tmpfs over /run and /var/lib, so the engine's runtime state and caches are private
  and vanish with it.

Every engine command then runs through ``nsenter -t PID -m -n``.  The holder is started
and killed (by PID) through the harness :class:`~tests.harness.ns.Run`.
"""

from __future__ import annotations

import os
import shlex
import subprocess

from tests.harness.host import wait
from tests.harness.ns import HarnessError, Run

PRIVATE = ("/run", "/var/lib")


class Holder:
    def __init__(self, run: Run, netns: str, workdir: str) -> None:
        self.run = run
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        ready = os.path.join(workdir, "holder.ready")
        cgroups = os.path.join(workdir, "cgroup-bind")
        os.makedirs(cgroups, exist_ok=True)
        q = shlex.quote
        script = " && ".join([
            f"mount --rbind /sys/fs/cgroup {q(cgroups)}",
            "mount -t sysfs sysfs /sys",
            f"mount --rbind {q(cgroups)} /sys/fs/cgroup",
            f"umount -l {q(cgroups)}",
            *(f"mount -t tmpfs -o mode=0755 tmpfs {p}" for p in PRIVATE),
            "mkdir -p /run/netns /run/cni /run/lock",
            f"touch {q(ready)}",
            "exec sleep infinity",
        ])
        self.proc = run.spawn(None, ["nsenter", f"--net=/run/netns/{netns}", "unshare", "-m",
                                     "--propagation", "private", "sh", "-c", script],
                              log=os.path.join(workdir, "holder.log"))
        wait(lambda: os.path.exists(ready) or self.proc.poll() is not None, 10,
             "the engine's mount namespace")
        if self.proc.poll() is not None:
            with open(os.path.join(workdir, "holder.log")) as fh:
                raise HarnessError(f"mount namespace for {netns}: {fh.read().strip()}")

    def argv(self, *args: str) -> list[str]:
        return ["nsenter", "-t", str(self.proc.pid), "-m", "-n", *args]

    def sh(self, *args: str, env=None, check: bool = True, timeout: float = 120,
           input: str | None = None) -> subprocess.CompletedProcess:
        res = subprocess.run(self.argv(*args), capture_output=True, text=True, env=env,
                             timeout=timeout, input=input)
        if check and res.returncode != 0:
            raise HarnessError(f"{' '.join(args)} -> {res.returncode}: "
                               f"{(res.stderr or res.stdout).strip()}")
        return res

    def spawn(self, args: list[str], log: str, env=None) -> subprocess.Popen:
        return self.run.spawn(None, self.argv(*args), log=log, env=env)


def adopt_netns(run: Run, short: str, pid: int) -> str:
    """Name a container's network namespace (``ip netns attach``) as one of the run's, so
    the harness's tools reach it and ``Run.close`` kills what is left in it, by PID."""
    name = f"{run.prefix}-{short}"
    subprocess.run(["ip", "netns", "attach", name, str(pid)], check=True, capture_output=True)
    run.namespaces.append(name)
    return name


def remove_empty_cgroups(*names: str) -> None:
    """rmdir the engines' shared parent cgroups (podman's libpod_parent, liblxc's
    lxc.pivot) in every hierarchy; a cgroup still in use is not empty and stays."""
    base = "/sys/fs/cgroup"
    for hierarchy in os.listdir(base):
        for name in names:
            try:
                os.rmdir(os.path.join(base, hierarchy, name))
            except OSError:
                pass
