"""The fan's life cycle on a harness host, as systemd drives it (shared by the engine tests).

* :func:`restart_unit`: what ``systemctl restart fangen@NAME`` does: SIGTERM to ``fangen
  run``, the unit's own ExecStopPost= (read from systemd/fangen@.service, so the test
  follows the unit that ships), then ``fangen run`` again, ready once its log says
  "up" once more;
* :class:`Watch`: ``ip monitor link address`` in the host's namespace, to show that the
  bridge and its address were never deleted meanwhile;
* :func:`ports`, :func:`index`: a bridge's ports and ifindex (attached = still a port).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

from tests.harness.host import Host, wait
from tests.harness.ns import ip

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(REPO, "systemd", "fangen@.service")


def stop_post_argv(name: str) -> list[str]:
    """The unit's ExecStopPost= command line, as fangen arguments for fan ``name``."""
    with open(UNIT, encoding="utf-8") as fh:
        [line] = [ln.strip() for ln in fh if ln.startswith("ExecStopPost=")]
    argv = shlex.split(line.split("=", 1)[1].lstrip("-"))
    if argv[0] != "/usr/sbin/fangen":
        raise AssertionError(f"unexpected ExecStopPost= in {UNIT}: {line}")
    return [arg.replace("%i", name) for arg in argv[1:]]


def ups(host: Host) -> int:
    """How often ``fangen run`` on ``host`` has said it is up (its log)."""
    try:
        with open(host.log("fangen-run"), encoding="utf-8", errors="replace") as fh:
            return fh.read().count("]: up: slice ")
    except OSError:
        return 0


def restart_unit(host: Host, fan: str, timeout: float = 60):
    """``systemctl restart fangen@FAN`` by hand; returns the stop command's result."""
    before = ups(host)
    host.stop_fangen_run()
    res = host.fangen(*stop_post_argv(fan))
    host.start_fangen_run(fan)
    wait(lambda: ups(host) > before, timeout, f"{host.name}: fangen run up again")
    return res


def ports(host: Host, bridge: str) -> list[str]:
    out = ip(host.ns, "-j", "link", "show", "master", bridge, check=False).stdout
    return sorted(entry["ifname"] for entry in json.loads(out or "[]"))


def index(host: Host, dev: str) -> int:
    return json.loads(ip(host.ns, "-j", "link", "show", "dev", dev).stdout)[0]["ifindex"]


class Watch:
    """``ip -o monitor link address`` in ``host``'s namespace, from now on."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.path = os.path.join(host.dir, f"monitor-{os.urandom(3).hex()}.log")
        with open(self.path, "wb") as out:
            self.proc = subprocess.Popen(["ip", "-n", host.ns, "-o", "monitor", "link",
                                          "address"], stdout=out, stderr=subprocess.STDOUT)
        host.run.procs.append(self.proc)
        # changes of our own show that it listens (nothing is asserted about lo)
        mtu = iter([65535, 65536] * 200)
        wait(lambda: ip(host.ns, "link", "set", "lo", "mtu", str(next(mtu))) and
             " lo:" in self._text(), 20, f"{host.name}: ip monitor to listen", interval=0.1)
        ip(host.ns, "link", "set", "lo", "mtu", "65536")

    def _text(self) -> str:
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def deleted(self, dev: str) -> list[str]:
        """Stop watching; the deletions seen of ``dev`` or of its addresses."""
        self.host.run.stop(self.proc, grace=2.0)
        pattern = re.compile(rf"^Deleted (\d+: )?{re.escape(dev)}[:@\s]")
        return [line for line in self._text().splitlines() if pattern.match(line)]
