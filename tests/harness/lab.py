"""A whole fan lab: underlay switch with DHCP, the outside, N hosts, M containers each.

    lab = Lab(hosts=3, containers=2)
    try:
        lab.start_hosts()        # fangen generate, dbus-daemon, networkd; underlay leases
        lab.start_fans()         # fangen run NAME --no-systemd in each host (background)
        lab.add_containers()     # veths into the fan bridges, udhcpc leases
        lab.ping_matrix()
    finally:
        lab.close()              # kills every process by PID, removes every namespace
"""

from __future__ import annotations

import concurrent.futures
import time

from .container import Container
from .host import Host, fan_stanza, wait
from .ns import Run
from .outside import Outside
from .switch import Switch


class Lab:
    def __init__(self, hosts: int = 3, containers: int = 2, fans: dict | None = None,
                 tag: str = "", log_level: str = "info", keep_workdir: bool = False,
                 ipv6: bool = False) -> None:
        self.run = Run(tag, keep_workdir=keep_workdir, ipv6=ipv6)
        self.containers_per_host = containers
        self.fans = fans if fans is not None else fan_stanza()
        try:
            self.switch = Switch(self.run)
            self.outside = Outside(self.run, self.switch)
            self.hosts = [Host(self.run, self.switch, i, dict(self.fans), log_level)
                          for i in range(1, hosts + 1)]
        except BaseException:
            self.run.close()
            raise
        self.containers: list[Container] = []

    @property
    def fan(self) -> str:
        return next(iter(self.fans))

    def start_hosts(self, generate: bool = True) -> None:
        for host in self.hosts:
            host.start(generate=generate)
        for host in self.hosts:
            host.wait_address()

    def start_fans(self, *extra: str) -> None:
        for host in self.hosts:
            host.start_fangen_run(self.fan, *extra)

    def wait_fans(self, timeout: float = 30, fan: str | None = None) -> None:
        """Until every host's bridge of ``fan`` (default: the first) holds its slice's
        gateway address."""
        for host in self.hosts:
            gateway = str(host.slice_for(fan=fan).network_address + 1)
            wait(lambda h=host, g=gateway: g in h.addresses(h.bridge(fan)), timeout,
                 f"{host.name}: {gateway} on the bridge of {fan or self.fan}")

    def add_containers(self, per_host: int | None = None, timeout: float = 30,
                       fan: str | None = None) -> list[Container]:
        """``per_host`` more containers on each host's bridge of ``fan`` (default: the
        first fan), numbered after the host's containers so far, each with a lease."""
        per_host = self.containers_per_host if per_host is None else per_host
        new = []
        for host in self.hosts:
            first = len(self.containers_of(host)) + 1
            for j in range(first, first + per_host):
                c = Container(self.run, host, j, fan or self.fan)
                c.start_dhcp()
                new.append(c)
        for c in new:
            c.wait_lease(timeout)
        self.containers.extend(new)
        return new

    def containers_of(self, host: Host) -> list[Container]:
        return [c for c in self.containers if c.host is host]

    def ping_matrix(self, containers: list[Container] | None = None, attempts: int = 3,
                    workers: int = 6) -> dict[tuple[str, str], bool]:
        """{(from, to): reachable} for every ordered pair of distinct containers."""
        cs = containers or self.containers
        pairs = [(a, b) for a in cs for b in cs if a is not b]

        def probe(pair):
            a, b = pair
            return any(a.ping(b.address) for _ in range(attempts))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(probe, pairs))
        return {(a.name, b.name): ok for (a, b), ok in zip(pairs, results, strict=True)}

    def close(self) -> None:
        self.outside.close()
        self.run.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def elapsed(start: float) -> float:
    return time.monotonic() - start
