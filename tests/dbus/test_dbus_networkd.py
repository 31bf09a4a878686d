"""fangen's Networkd client against REAL systemd-networkd on a private bus.

Needs root.  A private dbus-daemon (permissive policy) stands in for the system
bus; systemd-networkd runs in a network namespace this test makes, in a private
mount namespace (tmpfs over /etc/systemd/network and /run/systemd/netif, a
directory of ours bound over /run/systemd/network, /sys read-only so it does
not wait for udev) with DBUS_SYSTEM_BUS_ADDRESS pointing at the private bus.
The test writes a .network file and calls fangen's ``Networkd.reload()``: the
address appears on the namespace's dummy link.  networkd, the bus and the
namespace are ended by PID / removed in the finalizer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/lib/systemd/systemd-networkd"),
    reason="needs root and systemd-networkd")

from busutil import PrivateBus, wait_for  # noqa: E402

from fangen.runtime.dbus import Networkd, connect  # noqa: E402

NETWORKD = "/lib/systemd/systemd-networkd"
BASE = "[Match]\nName=dummy0\n\n[Network]\nLinkLocalAddressing=no\nConfigureWithoutCarrier=yes\n"
SETUP = """set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /etc/systemd/network
mkdir -p /run/systemd/network /run/systemd/netif
mount --bind {netdir} /run/systemd/network
mount -t tmpfs tmpfs /run/systemd/netif
chown systemd-network:systemd-network /run/systemd/netif
exec ip netns exec {ns} sh -c 'mount -o remount,ro /sys; exec {networkd}'
"""


def ipj(ns: str, *args: str):
    res = subprocess.run(["ip", "-n", ns, "-j", *args], capture_output=True, text=True)
    return json.loads(res.stdout or "[]")


def addrs(ns: str, dev: str) -> list[str]:
    data = ipj(ns, "-4", "addr", "show", "dev", dev)
    return [f"{a['local']}/{a['prefixlen']}" for a in data[0]["addr_info"]] if data else []


@pytest.fixture
def networkd():
    ns = f"fgt{os.getpid()}nd"
    private = PrivateBus()
    netdir = tempfile.mkdtemp(prefix=f"fgnd{os.getpid()}-")
    os.chmod(netdir, 0o755)
    proc = None
    conn = None
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "-n", ns, "link", "add", "dummy0", "type", "veth",
                        "peer", "name", "dummy0p"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "dummy0p", "up"], check=True)
        with open(os.path.join(netdir, "10-test.network"), "w") as fh:
            fh.write(BASE)
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=private.address,
                   SYSTEMD_LOG_LEVEL="info")
        proc = subprocess.Popen(["unshare", "-m", "sh", "-c",
                                 SETUP.format(netdir=netdir, ns=ns, networkd=NETWORKD)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        conn = connect(private.address)
        wait_for(lambda: Networkd(conn).present() or proc.poll() is not None, 15,
                 "networkd on the private bus")
        assert proc.poll() is None, proc.stderr.read().decode()
        # networkd brings dummy0 up once it has configured it
        wait_for(lambda: "UP" in (ipj(ns, "link", "show", "dummy0") or [{}])[0].get("flags", []),
                 15, "networkd to configure dummy0")
        yield ns, netdir, conn
    finally:
        if conn is not None:
            conn.close()
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(netdir, ignore_errors=True)
        private.close()


def test_reload_makes_networkd_pick_up_a_new_file(networkd):
    ns, netdir, conn = networkd
    assert addrs(ns, "dummy0") == []
    with open(os.path.join(netdir, "10-test.network"), "w") as fh:
        fh.write(BASE + "Address=192.0.2.10/24\n")
    Networkd(conn).reload()
    wait_for(lambda: addrs(ns, "dummy0") == ["192.0.2.10/24"], 10, "the address from the file")


def test_reconfigure_link(networkd):
    ns, netdir, conn = networkd
    with open(os.path.join(netdir, "10-test.network"), "w") as fh:
        fh.write(BASE + "Address=198.51.100.7/24\n")
    Networkd(conn).reload()
    wait_for(lambda: addrs(ns, "dummy0") == ["198.51.100.7/24"], 10, "the address")
    # someone removes it by hand; ReconfigureLink makes networkd put it back
    subprocess.run(["ip", "-n", ns, "addr", "flush", "dev", "dummy0"], check=True)
    index = ipj(ns, "link", "show", "dummy0")[0]["ifindex"]
    Networkd(conn).reconfigure_link(index)
    wait_for(lambda: addrs(ns, "dummy0") == ["198.51.100.7/24"], 10, "the address again")
