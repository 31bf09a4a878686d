"""One ``fangen run`` (no names, as fangen-follow.service runs it) follows every fan that is
up on the host: a new underlay address moves both fans' slices, a killed dnsmasq of one
fan is started again, SIGHUP after a fan left the configuration takes that one down, and
SIGTERM leaves the others up.  Between changes it is one process with no child.

Needs root: netns, nft, dnsmasq.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.harness import cli
from tests.harness.cli import fangen
from tests.harness.host import wait_for as wait_until
from tests.harness.ns import Run, ip, underlay_host

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: netns, nft")


def fans_yaml(names=("fan250", "fan251")) -> str:
    lines = ["network:", "  version: 2", "  fan:"]
    for name in names:
        i = int(name[3:]) - 250
        lines += [f"    {name}:", f"      overlay: {250 + i}.0.0.0/8",
                  "      underlay: 172.16.0.0/16", "      type: vxlan",
                  f"      vxlan: {{port: {8472 + i}}}", "      lease-time: 120"]
    return "\n".join(lines) + "\n"


class World:
    def __init__(self, run: Run, root: str):
        self.run, self.root = run, root
        self.h, self.sw = underlay_host(run)
        ip(self.sw, "addr", "add", "172.16.0.1/16", "dev", "p1")
        cli.install(root, fans_yaml())

    def state(self, name: str) -> dict:
        try:
            with open(os.path.join(self.root, f"run/fangen/{name}/state.json")) as fh:
                return json.load(fh)
        except OSError:
            return {}

    def bridge_addrs(self, dev: str) -> list[str]:
        res = ip(self.h, "-j", "-4", "addr", "show", "dev", dev, check=False)
        data = json.loads(res.stdout) if res.returncode == 0 and res.stdout.strip() else []
        return [f"{a['local']}/{a['prefixlen']}" for a in data[0]["addr_info"]] if data else []


def alive(pid) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except (OSError, TypeError):
        return False


def children(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return fh.read().split()
    except OSError:
        return []


@pytest.fixture
def world(tmp_path):
    run = Run("ff")
    w = World(run, str(tmp_path / "root"))
    try:
        yield w
    finally:
        fangen(w.h, w.root, "down", "--all", check=False)
        run.close()


def test_one_follower_follows_two_fans(world):
    w = world
    for name in ("fan250", "fan251"):
        fangen(w.h, w.root, "up", name, "--no-systemd")
    assert w.bridge_addrs("fan250") == ["250.3.4.1/8"]
    assert w.bridge_addrs("fan251") == ["251.3.4.1/8"]
    proc = cli.spawn(w.h, w.root, "run", "--no-systemd")
    w.run.procs.append(proc)

    # the underlay address changes: both slices move
    # (deleting a primary address deletes its secondaries: the old one goes first)
    ip(w.h, "addr", "del", "172.16.3.4/16", "dev", "ul0")
    ip(w.h, "addr", "add", "172.16.5.6/16", "dev", "ul0")
    wait_until(lambda: w.bridge_addrs("fan250") == ["250.5.6.1/8"] and
               w.bridge_addrs("fan251") == ["251.5.6.1/8"], 30, "both slices to move")
    wait_until(lambda: w.state("fan250").get("slice") == "250.5.6.0/24" and
               w.state("fan251").get("slice") == "251.5.6.0/24", 30, "the states")

    # dnsmasq of one fan killed: it is started again, the other one is left alone
    wait_until(lambda: alive(w.state("fan251").get("dnsmasq", {}).get("pid")), 30,
               "fan251's dnsmasq")
    other = w.state("fan250")["dnsmasq"]["pid"]
    killed = w.state("fan251")["dnsmasq"]["pid"]
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: w.state("fan251").get("dnsmasq", {}).get("pid") not in (None, killed)
               and alive(w.state("fan251")["dnsmasq"]["pid"]), 30, "dnsmasq to come back")
    assert w.state("fan250")["dnsmasq"]["pid"] == other and alive(other)

    # between changes: one process, no child left behind
    wait_until(lambda: not children(proc.pid), 30, "the follower's children to end")
    assert proc.poll() is None

    # fan251 leaves the configuration; SIGHUP takes it down and keeps fan250
    cli.install(w.root, fans_yaml(("fan250",)))
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: not w.state("fan251") and not w.bridge_addrs("fan251"), 30,
               "fan251 to be taken down")
    assert w.bridge_addrs("fan250") == ["250.5.6.1/8"]

    # SIGTERM: the follower exits and fan250 stays up
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "fangen[fan250]: exiting; the fan stays up" in err
    assert "fangen[fan251]: removed or disabled in the configuration; taking it down" in err
    assert w.bridge_addrs("fan250") == ["250.5.6.1/8"]
