"""The resident follower (``fangen run``) stays small: it imports the standard library
only, and the pure parts of its loop (which netlink messages wake it, which fans it
follows) and of apply's unit handling."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

from fangen.cli.apply import follower_action
from fangen.runtime import follow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAVY = ("pyroute2", "yaml", "jsonschema", "dbus", "fangen.config", "fangen.runtime.control",
         "fangen.runtime.reconcile", "dataclasses", "ipaddress")


def test_the_resident_process_imports_no_heavy_module():
    code = ("import sys\n"
            "from fangen import cli\n"
            "parser = cli.build_parser(['run'])\n"
            "args = parser.parse_args(['run', '--root-dir', '/'])\n"
            "from fangen.runtime.follow import Follower\n"
            "print('\\n'.join(sorted(sys.modules)))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
    assert res.returncode == 0, res.stderr
    loaded = set(res.stdout.split())
    assert "fangen.runtime.follow" in loaded
    assert not [m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY
                or any(m.startswith(h + ".") for h in HEAVY)]


def _msg(kind: int, family: int) -> bytes:
    body = struct.pack("=BxHiII", family, 0, 4, 0, 0)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_bridge_port_notifications_do_not_wake_the_follower():
    bridge = _msg(follow.RTM_NEWLINK, follow.AF_BRIDGE)
    assert not follow.relevant(bridge)
    assert not follow.relevant(bridge + _msg(follow.RTM_DELLINK, follow.AF_BRIDGE))
    assert follow.relevant(_msg(follow.RTM_NEWLINK, 0))
    assert follow.relevant(bridge + _msg(20, 2))            # RTM_NEWADDR after it
    assert follow.relevant(struct.pack("=IHHII", 8, 16, 0, 0, 0) + b"\0")  # malformed


def test_the_fans_that_are_up_and_their_dnsmasq(tmp_path):
    root = str(tmp_path)
    for name, record in (("fan250", {"mode": "process", "pid": 123}),
                         ("fan251", {"mode": "unit", "unit": "fangen-dnsmasq@fan251.service"}),
                         (".hidden", {})):
        os.makedirs(os.path.join(root, "run/fangen", name))
        with open(os.path.join(root, "run/fangen", name, "state.json"), "w") as fh:
            json.dump({"name": name, "dnsmasq": record}, fh)
    os.makedirs(os.path.join(root, "run/fangen/nostate"))
    assert follow.names_with_state(root) == ["fan250", "fan251"]
    assert follow.dnsmasq_pid(root, "fan250") == 123
    assert follow.dnsmasq_pid(root, "fan251") is None
    assert follow.dnsmasq_pid(root, "nostate") is None
    assert follow.names_with_state(str(tmp_path / "none")) == []


def test_apply_reloads_the_follower_once_or_stops_it():
    changes = {"start": [], "reload": ["fangen@a.service", "fangen@b.service"], "stop": []}
    assert follower_action(changes, {"a", "b"}, set()) == "reload"
    none = {"start": [], "reload": [], "stop": ["fangen@a.service"]}
    assert follower_action(none, set(), set()) == "stop"
    assert follower_action(none, set(), {"a"}) is None          # a broken fan keeps it
    new = {"start": ["fangen@a.service"], "reload": [], "stop": []}
    assert follower_action(new, {"a"}, set()) is None           # fangen@a pulls it in
