"""The underlay: a bridge in its own namespace, with dnsmasq handing out addresses.

Every host port has a fixed MAC and a ``dhcp-host`` entry (MAC -> address) in a
hosts file; :meth:`Switch.assign` rewrites the entry and sends dnsmasq SIGHUP (it
re-reads the file), so the host's next renewal is refused (NAK: dnsmasq is
authoritative) and it gets the new address.  The DHCP router option points at the
"outside" namespace, so hosts' default routes lead there.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import time

from .ns import Run, ip

UNDERLAY = ipaddress.IPv4Network("172.16.0.0/16")
SWITCH_ADDR = ipaddress.IPv4Address("172.16.0.1")     # dnsmasq listens here
ROUTER_ADDR = ipaddress.IPv4Address("172.16.0.254")   # the outside namespace
BRIDGE = "br0"


class Switch:
    def __init__(self, run: Run, mtu: int = 1500, lease_time: int = 120) -> None:
        self.run = run
        self.ns = run.netns("sw")
        self.mtu = mtu
        self.lease_time = lease_time
        self.hosts_file = run.path("switch", "dhcp-hosts")
        self.lease_file = run.path("switch", "dnsmasq.leases")
        self.log = run.path("switch", "dnsmasq.log")
        self.entries: dict[str, str] = {}              # mac -> address
        self.ports = 0
        ip(self.ns, "link", "add", BRIDGE, "mtu", str(mtu), "type", "bridge",
           "forward_delay", "0", "stp_state", "0")
        ip(self.ns, "addr", "add", f"{SWITCH_ADDR}/{UNDERLAY.prefixlen}", "dev", BRIDGE)
        ip(self.ns, "link", "set", BRIDGE, "up")
        self._write_hosts()
        self.dnsmasq = None
        self._start_dnsmasq()

    def _start_dnsmasq(self) -> None:
        net = UNDERLAY
        self.dnsmasq = self.run.spawn(self.ns, [
            "dnsmasq", "--conf-file=/dev/null", "--keep-in-foreground", "--log-facility=-",
            "--log-dhcp", "--port=0", "--no-hosts", "--no-resolv", "--user=root",
            "--pid-file=", f"--interface={BRIDGE}", "--bind-interfaces",
            "--except-interface=lo", f"--listen-address={SWITCH_ADDR}",
            f"--dhcp-range={net.network_address + 200},{net.network_address + 250},"
            f"{net.netmask},{self.lease_time}s",
            f"--dhcp-hostsfile={self.hosts_file}", f"--dhcp-leasefile={self.lease_file}",
            f"--dhcp-option=option:router,{ROUTER_ADDR}", "--dhcp-authoritative",
        ], log=self.log)

    def _write_hosts(self) -> None:
        tmp = self.hosts_file + ".tmp"
        with open(tmp, "w") as fh:
            for mac, addr in sorted(self.entries.items()):
                fh.write(f"{mac},{addr},{self.lease_time}s\n")
        os.rename(tmp, self.hosts_file)

    def port(self, peer_ns: str, peer_name: str, mac: str | None = None) -> str:
        """A veth from the bridge to ``peer_ns`` (named ``peer_name`` there); returns our end."""
        self.ports += 1
        ours = f"p{self.ports}"
        ip(self.ns, "link", "add", ours, "mtu", str(self.mtu), "type", "veth",
           "peer", "name", peer_name, "netns", peer_ns)
        if mac:
            ip(peer_ns, "link", "set", peer_name, "address", mac)
        ip(peer_ns, "link", "set", peer_name, "mtu", str(self.mtu))
        ip(self.ns, "link", "set", ours, "master", BRIDGE, "up")
        return ours

    def assign(self, mac: str, addr: str) -> None:
        """Give ``mac`` the address ``addr`` from now on (dnsmasq re-reads the file on SIGHUP)."""
        self.entries[mac.lower()] = str(addr)
        self._write_hosts()
        if self.dnsmasq is not None and self.dnsmasq.poll() is None:
            os.kill(self.dnsmasq.pid, signal.SIGHUP)
            time.sleep(0.05)

    def leases(self) -> list[str]:
        try:
            with open(self.lease_file) as fh:
                return fh.read().splitlines()
        except OSError:
            return []


def host_mac(index: int) -> str:
    return f"02:fa:00:00:00:{index:02x}"


def host_address(index: int, generation: int = 0) -> str:
    """Underlay address of host ``index``: 172.16.<index>.<10 + generation>."""
    return str(UNDERLAY.network_address + (index << 8) + 10 + generation)

