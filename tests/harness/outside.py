"""The "outside world": a namespace holding a documentation address (203.0.113.1).

It is the underlay's router (172.16.0.254 on a port of the switch, handed out as
the DHCP router option) and has no route to the overlay, so an overlay source
address can never get an answer: only traffic masqueraded to a host's underlay
address does.  :meth:`Outside.whoami` runs a TCP server there that answers every
connection with the peer address it saw, so a test can prove NAT from both ends.
"""

from __future__ import annotations

from .ns import Run, ip
from .packets import Whoami
from .switch import ROUTER_ADDR, UNDERLAY, Switch

DOC_ADDR = "203.0.113.1"
WHOAMI_PORT = 7777


class Outside:
    def __init__(self, run: Run, switch: Switch) -> None:
        self.ns = run.netns("out")
        switch.port(self.ns, "up0")
        ip(self.ns, "addr", "add", f"{ROUTER_ADDR}/{UNDERLAY.prefixlen}", "dev", "up0")
        ip(self.ns, "link", "set", "up0", "up")
        ip(self.ns, "addr", "add", f"{DOC_ADDR}/32", "dev", "lo")   # no dummy module here
        self._server: Whoami | None = None

    def whoami(self) -> None:
        """Start (once) a TCP server on DOC_ADDR:WHOAMI_PORT replying with the peer address."""
        if self._server is None:
            self._server = Whoami(self.ns, DOC_ADDR, WHOAMI_PORT)

    @property
    def seen(self) -> list[str]:
        """The peer addresses the whoami server saw, in order."""
        return self._server.seen if self._server is not None else []

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
