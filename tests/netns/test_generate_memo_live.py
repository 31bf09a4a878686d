"""generate's memo on a live host: interfaces that come and go do not matter, one named
like a fan's device that fangen did not make does.

Needs root: a namespace of the harness with real interfaces (veth, bridge), and
``fangen generate --host-interfaces`` run inside it as a real process.  Each run
reports whether the full pipeline ran (``fangen.generate`` imported) or the memo did.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.harness.ns import Run, ip

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: netns"),
]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FANS = """network:
  fan:
    fan-250:
      overlay: 250.0.0.0/8
      underlay: 172.16.0.0/16
"""
GENERATE = """import sys
from fangen.cli import main
code = main(sys.argv[1:])
print(code, "full" if "fangen.generate" in sys.modules else "memo")
"""


def generate(ns: str, root: str) -> tuple[str, str]:
    env = dict(os.environ, PYTHONPATH=REPO)
    res = subprocess.run(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", GENERATE,
                          "generate", "--host-interfaces", "--root-dir", root],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    return res.stdout.strip(), res.stderr


def test_the_memo_asks_about_a_fans_device_names_only():
    with Run("memo") as run:
        ns = run.netns("live")
        root = os.path.dirname(run.path("root", "x"))
        path = run.path("root", "etc/netplan/fan.d/10-fans.yaml")
        with open(path, "w") as fh:
            fh.write(FANS)
        os.chmod(path, 0o600)
        assert generate(ns, root) == ("0 full", "")
        assert generate(ns, root) == ("0 memo", "")
        ip(ns, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b")
        assert generate(ns, root) == ("0 memo", "")           # unrelated interfaces
        ip(ns, "link", "add", "fan-250", "type", "bridge")
        assert generate(ns, root) == ("0 memo", "")           # fangen's files name it
        shutil.rmtree(os.path.join(root, "run"))              # boot: nothing says it is ours
        out, err = generate(ns, root)
        assert out == "1 full"
        assert "bridge name 'fan-250' is already used on this host (interface fan-250 of " \
               "this host, not made by fangen)" in err
        assert not os.path.exists(os.path.join(root, "run/systemd/network"))
        ip(ns, "link", "del", "fan-250")
        # the first run's memo holds again: its files are written back without a full run
        assert generate(ns, root) == ("0 memo", "")
        assert sorted(os.listdir(os.path.join(root, "run/systemd/network"))) == [
            "10-fangen-fan-250-tun.network", "10-fangen-fan-250.netdev",
            "10-fangen-fan-250.network"]
