"""A private dbus-daemon (system-bus flavour, permissive policy) for tests.

Started with --fork --print-address --print-pid and ended by that PID; nothing
here touches the machine's own buses.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile

from tests.harness.host import DBUS_CONF, wait_for  # noqa: F401  (re-exported)

CONFIG = DBUS_CONF


class PrivateBus:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix=f"fgbus{os.getpid()}-")
        os.chmod(self.dir, 0o755)           # networkd (user systemd-network) connects too
        self.socket = os.path.join(self.dir, "bus")
        self.config = os.path.join(self.dir, "bus.conf")
        with open(self.config, "w") as fh:
            fh.write(CONFIG.format(socket=self.socket))
        res = subprocess.run(["dbus-daemon", f"--config-file={self.config}", "--fork",
                              "--print-address=1", "--print-pid=1", "--nosyslog"],
                             capture_output=True, text=True, timeout=10)
        if res.returncode != 0:
            raise RuntimeError(f"dbus-daemon: {res.stderr.strip()}")
        lines = res.stdout.split()
        self.address, self.pid = lines[0], int(lines[1])
        os.chmod(self.socket, 0o777)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        for name in os.listdir(self.dir):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.dir, name))
        with contextlib.suppress(OSError):
            os.rmdir(self.dir)

