"""IP forwarding's rule, dnsmasq's bind mode and links fangen no longer owns, on real objects.

Needs root.  Harness namespaces (tests.harness.ns.Run): a "host" with a veth underlay
172.16.3.4/16; fangen runs there with ``--root-dir`` under the run's work directory.

* ``down`` turns ``net.ipv4.ip_forward`` off again only when fangen turned it on and
  nothing else needs it: another fan that is up, or someone else's ruleset that
  forwards or translates (here a table with a nat hook, as a container engine makes);
* the rendered dnsmasq config passes ``dnsmasq --test`` and dnsmasq starts on it
  without its warning about the bind mode;
* a link fangen made but someone replaced under the same name is left alone by down;
* a bridge or tunnel someone else made under the fan's names, even one exactly like
  fangen's, is refused by up and left as it was;
* a fan's first up that fails half-way (its UDP port held by another program, a full
  /run) takes down what it made.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.harness import cli, snapshot
from tests.harness.host import wait_for
from tests.harness.ns import Run, ip, nsexec, sh, underlay_host

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: netns, nft, dnsmasq"),
]

FANS = """network:
  version: 2
  fan:
    fan250:
      overlay: 250.0.0.0/8
      underlay: 172.16.0.0/16
      type: vxlan
    fan251:
      overlay: 251.0.0.0/8
      underlay: 172.16.0.0/16
      type: vxlan
      vxlan: {port: 4789}
"""


@pytest.fixture
def host():
    with Run("sf") as run:
        h, _ = underlay_host(run)
        root = os.path.join(run.workdir, "root")
        cli.install(root, FANS, "fans.yaml")
        yield run, h, root


def fangen(h: str, root: str, *args: str) -> subprocess.CompletedProcess:
    res = cli.fangen(h, root, *args)
    assert "Traceback" not in res.stderr
    return res


def forwarding(h: str) -> str:
    return nsexec(h, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip()


def test_the_last_fan_down_restores_forwarding(host):
    _, h, root = host
    fangen(h, root, "up", "fan250")
    fangen(h, root, "up", "fan251")
    assert forwarding(h) == "1"
    fangen(h, root, "down", "fan250")
    assert forwarding(h) == "1"                   # fan251 is still up
    fangen(h, root, "down", "fan251")
    assert forwarding(h) == "0"                   # fangen turned it on; nothing else uses it


def test_forwarding_stays_on_for_someone_elses_nat(host):
    _, h, root = host
    fangen(h, root, "up", "fan250")
    # what a container engine adds after the fan came up (iptables-nft makes such a table)
    nsexec(h, "nft", "add table ip nat; add chain ip nat POSTROUTING "
           "{ type nat hook postrouting priority srcnat; }")
    res = fangen(h, root, "down", "fan250")
    assert res.stderr == ("fangen: fan250: net.ipv4.ip_forward stays on: needed by nft table "
                          "ip nat, chain POSTROUTING (nat hook postrouting)\n")
    assert forwarding(h) == "1"
    # the state that recorded the earlier value went with the fan: fangen no longer
    # claims forwarding, so nothing turns it off later either
    nsexec(h, "nft", "delete table ip nat")
    fangen(h, root, "up", "fan250")
    fangen(h, root, "down", "fan250")
    assert forwarding(h) == "1"
    # forwarding that was on before up is never turned off
    nsexec(h, "sysctl", "-qw", "net.ipv4.ip_forward=0")
    fangen(h, root, "up", "fan250")
    fangen(h, root, "down", "fan250")
    assert forwarding(h) == "0"


def test_dnsmasq_config_is_accepted_and_binds_the_bridge_only(host):
    run, h, root = host
    fangen(h, root, "up", "fan250")
    conf = os.path.join(root, "run/fangen/fan250/dnsmasq.conf")
    text = open(conf).read()
    assert "bind-dynamic\n" in text and "bind-interfaces" not in text
    res = nsexec(h, "dnsmasq", "--test", f"--conf-file={conf}", check=False)
    assert (res.returncode, res.stderr.strip()) == (0, "dnsmasq: syntax check OK.")
    # the same config in a foreground dnsmasq logging to stdout (after down, on a bridge
    # made by hand): no warning about the bind mode, DNS bound to the bridge address only
    copy = os.path.join(run.workdir, "dnsmasq.conf")
    pidfile = os.path.join(run.workdir, "dnsmasq.pid")
    with open(copy, "w") as fh:           # the fan's directory goes with down
        fh.write(text.replace(f"pid-file={root}/run/fangen/fan250/dnsmasq.pid",
                              f"pid-file={pidfile}"))
    conf = copy
    fangen(h, root, "down", "fan250")
    nsexec(h, "ip", "link", "add", "fan250", "type", "bridge")
    nsexec(h, "ip", "addr", "add", "250.3.4.1/8", "dev", "fan250")
    nsexec(h, "ip", "link", "set", "fan250", "up")
    log = os.path.join(run.workdir, "dnsmasq.log")
    proc = run.spawn(h, ["dnsmasq", "--keep-in-foreground", "--log-facility=-",
                         f"--conf-file={conf}"], log=log)
    try:
        wait_for(lambda: "sockets bound exclusively to interface fan250" in open(log).read(),
                 10, "dnsmasq to start")
        sockets = nsexec(h, "ss", "-lnup").stdout
    finally:
        run.stop(proc)
    assert "LOUD WARNING" not in open(log).read()
    assert "250.3.4.1:53 " in sockets and "0.0.0.0:53 " not in sockets


def test_down_leaves_a_link_that_lost_fangens_mark(host):
    """fangen made fan250-tun; someone deleted it and made their own under that name."""
    _, h, root = host
    before = snapshot.snapshot(h)
    fangen(h, root, "up", "fan250")
    ip(h, "link", "del", "fan250-tun")
    ip(h, "link", "add", "fan250-tun", "type", "bridge")
    res = fangen(h, root, "down", "fan250")
    assert res.stderr == ("fangen: fan250: left fan250-tun alone: it does not carry fangen's "
                          "mark fangen:fan250\n")
    assert ip(h, "link", "show", "dev", "fan250-tun", check=False).returncode == 0
    ip(h, "link", "del", "fan250-tun")
    assert snapshot.snapshot(h) == before


def _link(h: str, dev: str) -> dict:
    """`ip -d link show`, without the bridge's running timers."""
    [link] = json.loads(ip(h, "-j", "-d", "link", "show", "dev", dev).stdout)
    data = link["linkinfo"]["info_data"]
    link["linkinfo"]["info_data"] = {k: v for k, v in data.items() if "timer" not in k}
    return link


@pytest.mark.parametrize("dev", ["fan250", "fan250-tun"])
def test_up_never_takes_over_a_device_it_did_not_make(host, dev):
    """Someone made a device under the fan's bridge or tunnel name, of the very kind
    and attributes fangen would make: up refuses in one line and changes nothing of
    it (no address, no master, no programs, no mark); once it is gone, up works."""
    _, h, root = host
    fangen(h, root, "up", "fan250")
    made = json.loads(ip(h, "-j", "-d", "link", "show", "dev", dev).stdout)[0]
    fangen(h, root, "down", "fan250")
    before = snapshot.snapshot(h)
    if dev == "fan250":
        ip(h, "link", "add", dev, "type", "bridge")
    else:
        data = made["linkinfo"]["info_data"]
        ip(h, "link", "add", dev, "type", "vxlan", "id", str(data["id"]),
           "dstport", str(data["port"]), "nolearning")
    ip(h, "link", "set", dev, "up")
    theirs = _link(h, dev)
    res = cli.fangen(h, root, "up", "fan250", check=False)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr and len(res.stderr.splitlines()) == 1, res.stderr
    assert f"{dev} exists and was not made by fangen" in res.stderr
    assert _link(h, dev) == theirs
    assert ip(h, "addr", "show", "dev", dev).stdout.count("inet ") == 0
    for hook in ("ingress", "egress"):
        assert sh("tc", "-n", h, "filter", "show", "dev", dev, hook, check=False).stdout == ""
    ip(h, "link", "del", dev)
    assert snapshot.snapshot(h) == before
    fangen(h, root, "up", "fan250")
    fangen(h, root, "down", "fan250")
    assert snapshot.snapshot(h) == before


def test_a_failed_first_up_leaves_nothing_behind(host):
    """The fan's UDP port is held by another program: the tunnel cannot go up.  up
    fails in one line, and what it had made (bridge, tunnel, files, state) is gone
    again; the holder is untouched.  Once the port is free, up works."""
    run, h, root = host
    before = snapshot.snapshot(h)
    holder = run.spawn(h, ["/usr/bin/python3", "-c",
                           "import socket, time\n"
                           "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                           "s.bind(('0.0.0.0', 8472))\n"
                           "time.sleep(120)\n"])
    try:
        wait_for(lambda: ":8472 " in nsexec(h, "ss", "-Hnua").stdout, 5, "the holder")
        res = cli.fangen(h, root, "up", "fan250", check=False)
        assert res.returncode != 0
        assert "Traceback" not in res.stderr and len(res.stderr.splitlines()) == 1, res.stderr
        assert res.stderr.startswith(
            "fangen: fan250: set fan250-tun up: Address already in use: another socket "
            "holds fan250-tun's UDP port"), res.stderr
        assert res.stderr.endswith(" (undone: nothing of fan250 was left)\n"), res.stderr
        assert snapshot.snapshot(h) == before
        assert not os.path.exists(os.path.join(root, "run", "fangen", "fan250"))
        assert holder.poll() is None
    finally:
        run.stop(holder)
    fangen(h, root, "up", "fan250")
    fangen(h, root, "down", "fan250")
    assert snapshot.snapshot(h) == before


def test_a_first_up_on_a_full_run_leaves_nothing_behind(host):
    """/run is full (a private tmpfs, in a mount namespace of this command only): the
    first step that saves the state fails, and what up had made by then goes again."""
    _, h, root = host
    before = snapshot.snapshot(h)
    os.makedirs(os.path.join(root, "run"), exist_ok=True)
    full = ('mount -t tmpfs -o size=64k tmpfs "$0/run" || exit 99; '
            'dd if=/dev/zero of="$0/run/fill" bs=1k count=80 2>/dev/null; exec "$@"')
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", full,
                          root, *cli.argv(h, root, "up", "fan250")],
                         capture_output=True, text=True, cwd=cli.REPO, env=cli.env(),
                         timeout=60)
    assert res.returncode == 1, res
    [line] = res.stderr.splitlines()
    assert line.startswith(f"fangen: fan250: cannot write {root}/run/fangen/fan250/") and \
        line.endswith(": No space left on device (undone: nothing of fan250 was left)"), line
    assert snapshot.snapshot(h) == before


def test_a_route_of_someone_elses_into_the_overlay_is_named_and_left(host):
    """A static route to part of the overlay (and one to all of it, which comes first
    among equals) takes that traffic away from the fan: up says so on stderr and
    exits 0 (the fan is as configured), show calls the fan broken with the reason,
    and neither up nor down touches those routes."""
    _, h, root = host
    ip(h, "route", "add", "250.0.0.0/8", "via", "172.16.0.1")
    ip(h, "route", "add", "250.9.0.0/16", "dev", "ul0")
    ip(h, "route", "add", "240.0.0.0/4", "dev", "ul0")        # wider: takes nothing
    theirs = ip(h, "route", "show", "dev", "ul0").stdout
    res = fangen(h, root, "up", "fan250")
    assert res.stderr == ("fangen: fan250: route 250.0.0.0/8 dev ul0, 250.9.0.0/16 dev ul0 "
                          "takes part of the overlay away from the fan (not fangen's: left "
                          "as it is; 'fangen doctor fan250' checks)\n")
    [row] = [r for r in json.loads(fangen(h, root, "show", "--json").stdout)
             if r["name"] == "fan250"]
    assert row["state"] == "broken", row
    assert "250.9.0.0/16 dev ul0" in json.dumps(row)
    fangen(h, root, "down", "fan250")
    assert ip(h, "route", "show", "dev", "ul0").stdout == theirs
