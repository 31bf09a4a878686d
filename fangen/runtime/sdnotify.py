"""sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET, when there is one.

``fangen-follow.service`` is ``Type=notify``: ``fangen run`` says ``READY=1`` when it
follows (by hand, ``fangen run NAME`` says it once the named fans carry traffic), and
``STATUS=`` lines show in ``systemctl status``.
"""

from __future__ import annotations

import os
import socket


def notify(message: str, environ=None) -> bool:
    """Send ``message`` (e.g. "READY=1\\nSTATUS=up"); False when not run by systemd."""
    path = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):                    # abstract namespace
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True
