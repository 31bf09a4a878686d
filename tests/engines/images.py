"""Container images built here from Debian's busybox-static (no registry or image server
is reachable from the test machines).

* :func:`podman_tarball`: a root filesystem tarball for ``podman import``;
* :func:`lxd_tarball`: a unified LXD image (``metadata.yaml`` + ``rootfs/``) for
  ``lxc image import``, whose ``/sbin/init`` brings ``eth0`` up by DHCP with busybox's
  ``udhcpc`` and the harness's lease script, so the container's lease (address, prefix
  length, router, MTU) can be read back from ``/run/lease.env`` inside it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "ip", "ping", "sleep", "cat", "udhcpc", "awk", "rm", "mv", "echo", "nc",
           "ls", "mount", "hostname")
LEASE_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "harness", "udhcpc.sh")

LXD_INIT = """#!/bin/sh
# PID 1 of the test image: eth0 by DHCP (the lease is written to /run/lease.env), then idle.
ip link set lo up
LEASE_FILE=/run/lease.env udhcpc -f -i eth0 -s /etc/udhcpc.sh -O mtu -t 1000 -T 1 -A 1 -S \\
    >/run/udhcpc.log 2>&1 &
while :; do sleep 3600; done
"""

LXD_METADATA = """architecture: x86_64
creation_date: 1767225600
properties:
  description: busybox-static, built by fangen's tests
  os: busybox
  release: test
"""


def rootfs(directory: str, init: str | None = None) -> str:
    """A busybox root filesystem in ``directory``; returns it."""
    for sub in ("bin", "sbin", "etc", "proc", "sys", "dev", "run", "tmp", "root"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    shutil.copy(BUSYBOX, os.path.join(directory, "bin", "busybox"))
    for applet in APPLETS:
        os.symlink("busybox", os.path.join(directory, "bin", applet))
    shutil.copy(LEASE_SCRIPT, os.path.join(directory, "etc", "udhcpc.sh"))
    os.chmod(os.path.join(directory, "etc", "udhcpc.sh"), 0o755)
    if init is not None:
        path = os.path.join(directory, "sbin", "init")
        with open(path, "w") as fh:
            fh.write(init)
        os.chmod(path, 0o755)
    return directory


def podman_tarball(workdir: str) -> str:
    top = os.path.join(workdir, "podman-rootfs")
    rootfs(top)
    out = os.path.join(workdir, "podman-rootfs.tar")
    subprocess.run(["tar", "-C", top, "-cf", out, "."], check=True)
    return out


def lxd_tarball(workdir: str) -> str:
    top = os.path.join(workdir, "lxd-image")
    rootfs(os.path.join(top, "rootfs"), init=LXD_INIT)
    with open(os.path.join(top, "metadata.yaml"), "w") as fh:
        fh.write(LXD_METADATA)
    out = os.path.join(workdir, "lxd-image.tar.gz")
    subprocess.run(["tar", "-C", top, "-czf", out, "metadata.yaml", "rootfs"], check=True)
    return out
