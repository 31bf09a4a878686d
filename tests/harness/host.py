"""A host: a namespace on the underlay switch running real systemd-networkd and fangen.

Per host, under ``<run workdir>/h<N>/root`` (the ``--root-dir`` given to fangen):

* ``etc/systemd/network/50-underlay.network``: DHCP on ``up0`` (the port to the switch);
* ``etc/netplan/fan.d/50-harness.yaml``: the fan stanza; ``fangen generate`` writes
  ``run/systemd/network/10-fangen-*`` from it;
* a private ``dbus-daemon`` (socket ``bus.sock``) that stands in for the system bus:
  ``DBUS_SYSTEM_BUS_ADDRESS`` points at it for networkd, networkctl and fangen;
* ``systemd-networkd`` in a private mount namespace (``unshare -m``, the way that worked
  on this project's machines): a tmpfs over
  /run/systemd, then ``root/run/systemd/network`` bound onto /run/systemd/network,
  ``root/run/systemd/netif`` onto /run/systemd/netif and ``root/etc/systemd/network``
  onto /etc/systemd/network, the host's own ``machine-id`` onto /etc/machine-id (networkd
  derives the MAC of the bridges it makes from it: with the machine's one id every
  host's fan bridge had the same MAC, and bridge-to-bridge traffic over a VXLAN fan
  was delivered to the sender itself), and /sys read-only so networkd does not wait
  for udev.

Everything it starts runs inside the host's namespace and is killed by PID by the
:class:`~tests.harness.ns.Run`, also on failure.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import subprocess
import time

import yaml

from .ns import HarnessError, Run, ip, nsexec, sh
from .switch import UNDERLAY, Switch, host_address, host_mac

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"
UPLINK = "up0"
NETWORKD = "/lib/systemd/systemd-networkd"

DBUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

UNDERLAY_NETWORK = """[Match]
Name={uplink}

[Link]
RequiredForOnline=yes

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
ClientIdentifier=mac
SendHostname=no
UseHostname=no
UseDNS=no
"""


def fan_stanza(name: str = "fan250", overlay: str = "250.0.0.0/8",
               underlay: str = str(UNDERLAY), type_: str = "vxlan",
               datapath: str = "upstream", **extra) -> dict:
    fan = {"overlay": overlay, "underlay": underlay, "type": type_, "datapath": datapath}
    fan.update(extra)
    return {name: fan}


class Host:
    def __init__(self, run: Run, switch: Switch, index: int, fans: dict | None = None,
                 log_level: str = "info") -> None:
        self.run = run
        self.switch = switch
        self.index = index
        self.name = f"h{index}"
        self.ns = run.netns(self.name)
        self.dir = os.path.join(run.workdir, self.name)
        self.root = os.path.join(self.dir, "root")
        self.fans = fans if fans is not None else fan_stanza()
        self.mac = host_mac(index)
        self.log_level = log_level
        self.bus_socket = os.path.join(self.dir, "bus.sock")
        self.bus_address = f"unix:path={self.bus_socket}"
        self.dbus = None
        self.networkd = None
        self.fangen_run = None
        self.machine_id = os.path.join(self.dir, "machine-id")
        self._prepare_root()
        switch.assign(self.mac, host_address(index))
        self.switch_port = switch.port(self.ns, UPLINK, mac=self.mac)

    # -- files ------------------------------------------------------------------
    def _prepare_root(self) -> None:
        for sub in ("etc/systemd/network", "etc/netplan/fan.d", "run/systemd/network",
                    "run/systemd/netif", "run/fangen", "var/lib/fangen"):
            os.makedirs(os.path.join(self.root, sub), mode=0o755, exist_ok=True)
        for sub in ("", "run", "run/systemd", "etc", "etc/systemd"):
            os.chmod(os.path.join(self.root, sub), 0o755)
        os.chmod(self.dir, 0o755)
        sh("chown", "systemd-network:systemd-network",
           os.path.join(self.root, "run/systemd/netif"))
        with open(self.machine_id, "w") as fh:
            fh.write(f"{self.index:08x}{os.urandom(12).hex()}\n")
        with open(os.path.join(self.root, "etc/systemd/network/50-underlay.network"), "w") as fh:
            fh.write(UNDERLAY_NETWORK.format(uplink=UPLINK))
        self.write_fans(self.fans)

    def write_fans(self, fans: dict) -> None:
        self.fans = fans
        path = os.path.join(self.root, "etc/netplan/fan.d/50-harness.yaml")
        with open(path, "w") as fh:
            yaml.safe_dump({"network": {"version": 2, "fan": fans}}, fh, sort_keys=True)
        os.chmod(path, 0o600)

    @property
    def env(self) -> dict:
        env = dict(os.environ)
        env.update({"DBUS_SYSTEM_BUS_ADDRESS": self.bus_address, "PYTHONPATH": REPO,
                    "PYTHONDONTWRITEBYTECODE": "1", "SYSTEMD_LOG_LEVEL": self.log_level})
        return env

    def log(self, what: str) -> str:
        return os.path.join(self.dir, f"{what}.log")

    # -- fangen -----------------------------------------------------------------
    def fangen(self, *args: str, check: bool = True, timeout: float = 60):
        """Run ``fangen ARGS --root-dir ROOT`` inside the host namespace."""
        return nsexec(self.ns, PYTHON, "-m", "fangen", *args, "--root-dir", self.root,
                      check=check, timeout=timeout, env=self.env)

    def generate(self) -> None:
        self.fangen("generate")

    def start_fangen_run(self, fan: str | list[str] | None = None,
                         *extra: str) -> subprocess.Popen:
        """``fangen run FAN...`` (one name or a list; default: the first fan)."""
        names = [fan] if isinstance(fan, str) else list(fan or [next(iter(self.fans))])
        self.fangen_run = self.run.spawn(
            self.ns, [PYTHON, "-m", "fangen", "run", *names, "--root-dir", self.root,
                      "--no-systemd", *extra], log=self.log("fangen-run"), env=self.env)
        return self.fangen_run

    def stop_fangen_run(self) -> None:
        if self.fangen_run is not None:
            self.run.stop(self.fangen_run, grace=5.0)
            self.fangen_run = None

    # -- daemons ----------------------------------------------------------------
    def start_dbus(self) -> None:
        conf = os.path.join(self.dir, "dbus.conf")
        with open(conf, "w") as fh:
            fh.write(DBUS_CONF.format(socket=self.bus_socket))
        self.dbus = self.run.spawn(self.ns, ["dbus-daemon", "--nofork", f"--config-file={conf}"],
                                   log=self.log("dbus"))
        _wait(lambda: os.path.exists(self.bus_socket), 5, "dbus-daemon socket")

    def start_networkd(self) -> None:
        r = shlex.quote(self.root)
        script = " && ".join([
            "mkdir -p /run/systemd",           # a qemu guest's /run is a bare tmpfs
            "mount -t tmpfs -o mode=0755 tmpfs /run/systemd",
            "mkdir -p /run/systemd/network /run/systemd/netif",
            f"mount --bind {r}/run/systemd/network /run/systemd/network",
            f"mount --bind {r}/run/systemd/netif /run/systemd/netif",
            f"mount --bind {r}/etc/systemd/network /etc/systemd/network",
            f"mount --bind {shlex.quote(self.machine_id)} /etc/machine-id",
            "mount -o remount,bind,ro /sys",   # this mount only: the netns's sysfs stays rw
            f"exec {NETWORKD}",
        ])
        self.networkd = self.run.spawn(
            self.ns, ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            log=self.log("networkd"), env=self.env)
        _wait(lambda: self.bus_has("org.freedesktop.network1") or self._died(self.networkd),
              10, "networkd on the bus")
        if self._died(self.networkd):
            raise HarnessError(f"{self.name}: networkd exited; see {self.log('networkd')}")

    def stop_networkd(self) -> None:
        if self.networkd is not None:
            self.run.stop(self.networkd, grace=5.0)
            self.networkd = None

    def restart_networkd(self) -> None:
        self.stop_networkd()
        self.start_networkd()

    def start(self, generate: bool = True) -> None:
        """Generate the units, start the bus and networkd, wait for the underlay lease."""
        if generate:
            self.generate()
        self.start_dbus()
        self.start_networkd()

    @staticmethod
    def _died(proc) -> bool:
        return proc is None or proc.poll() is not None

    def bus_has(self, name: str) -> bool:
        res = sh("dbus-send", f"--bus={self.bus_address}", "--print-reply",
                 "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
                 "org.freedesktop.DBus.NameHasOwner", f"string:{name}", check=False, timeout=5)
        return "boolean true" in res.stdout

    def networkctl(self, *args: str, check: bool = True):
        return nsexec(self.ns, "networkctl", "--no-pager", *args, check=check, env=self.env)

    # -- underlay ---------------------------------------------------------------
    def addresses(self, dev: str = UPLINK) -> list[str]:
        out = ip(self.ns, "-j", "-4", "addr", "show", "dev", dev, check=False).stdout
        try:
            data = json.loads(out or "[]")
        except ValueError:
            return []
        return [a["local"] for link in data for a in link.get("addr_info", [])]

    def address(self) -> str | None:
        found = self.addresses()
        return found[0] if found else None

    def wait_address(self, expected: str | None = None, timeout: float = 15) -> str:
        def ready():
            found = self.addresses()
            return found and (expected is None or found == [expected])
        _wait(ready, timeout, f"{self.name}: underlay address {expected or ''}")
        return self.address()

    def move_to(self, addr: str, timeout: float = 15) -> str:
        """Give this host a new underlay address by DHCP: new dhcp-host entry, forced rebind.

        ``networkctl renew`` is not enough: a renewing client sends its REQUEST from a
        socket bound to the old address, so it never sees the (broadcast) NAK and would
        only rebind at T2.  ``reconfigure`` restarts the client, whose INIT-REBOOT
        REQUEST is broadcast: NAK, DISCOVER, the new address.
        """
        self.switch.assign(self.mac, addr)
        self.networkctl("reconfigure", UPLINK)
        return self.wait_address(addr, timeout)

    def carrier(self, on: bool) -> None:
        """Plug or unplug the host's cable (its port on the switch goes up or down)."""
        ip(self.switch.ns, "link", "set", self.switch_port, "up" if on else "down")

    def slice_for(self, addr: str | None = None, fan: str | None = None) -> ipaddress.IPv4Network:
        from fangen.config.model import build
        fan = fan or next(iter(self.fans))
        model = build(fan, self.fans[fan])
        return model.slice_for(addr or self.address()).network

    def bridge(self, fan: str | None = None) -> str:
        fan = fan or next(iter(self.fans))
        return self.fans[fan].get("bridge", fan)


def wait_for(pred, timeout: float = 10.0, what: str = "condition", interval: float = 0.02):
    """Poll ``pred`` until it returns something true, and return that; HarnessError on
    timeout (an AssertionError to pytest)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise HarnessError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


_wait = wait = wait_for
