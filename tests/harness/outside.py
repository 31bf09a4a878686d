"""The "outside world": a namespace holding a documentation address (203.0.113.1).

It is the underlay's router (172.16.0.254 on a port of the switch, handed out as
the DHCP router option) and has no route to the overlay, so an overlay source
address can never get an answer: only traffic masqueraded to a host's underlay
address does.  :meth:`Outside.whoami` runs a TCP server there that answers every
connection with the peer address it saw, so a test can prove NAT from both ends.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from .ns import Run, in_netns, ip
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
        self.seen: list[str] = []
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def whoami(self) -> None:
        """Start (once) a TCP server on DOC_ADDR:WHOAMI_PORT replying with the peer address."""
        if self._server is not None:
            return
        with in_netns(self.ns):
            srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((DOC_ADDR, WHOAMI_PORT))
        srv.listen(16)
        self._server = srv
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self._server.accept()
            except OSError:
                return
            with conn:
                self.seen.append(peer[0])
                with contextlib.suppress(OSError):
                    conn.sendall(f"{peer[0]}\n".encode())

    def close(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
