"""fangen up / down / run on real kernel objects, in namespaces this test makes.

Needs root.  One "host" namespace with a veth underlay (172.16.3.4/16) into a
"switch" namespace, a "container" namespace with a veth into the fan bridge, and a
root directory under pytest's tmp_path holding the fan.d file and fangen's state.
fangen runs as ``ip netns exec HOST /usr/bin/python3 -m fangen ...``, so its
sysctls and nft tables are the host namespace's.  Namespaces and every process
started here (fangen run, udhcpc; dnsmasq is ended by ``fangen down`` and, as a
fallback, by PID from the state file) are removed in the finalizer, also on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import time

import pytest

from tests.harness import cli
from tests.harness.cli import fangen
from tests.harness.host import wait_for as wait_until
from tests.harness.ns import Run, ip, nsexec, settle_ipv6, sh, underlay_host, veth

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: netns, bpf(2), nft")

FAN_YAML = """network:
  version: 2
  fan:
    fan250:
      overlay: 250.0.0.0/8
      underlay: 172.16.0.0/16
      type: vxlan
      lease-time: 120
"""
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew) echo "$ip $subnet $router $mtu" > "{out}" ;;
esac
exit 0
"""


class World:
    def __init__(self, run: Run, root: str):
        self.run, self.root = run, root
        self.h, self.sw = underlay_host(run)
        self.c = run.netns("c")
        ip(self.sw, "addr", "add", "172.16.0.1/16", "dev", "p1")
        ip(self.h, "route", "add", "default", "via", "172.16.0.1")
        veth(self.h, "c0", self.c, "eth0")
        for ns in (self.h, self.c):
            settle_ipv6(ns)
        cli.install(root, FAN_YAML)

    def state(self) -> dict:
        with open(os.path.join(self.root, "run/fangen/fan250/state.json")) as fh:
            return json.load(fh)

    def bridge_addrs(self, family: int = 4) -> list[str]:
        res = ip(self.h, "-j", f"-{family}", "addr", "show", "dev", "fan250", check=False)
        data = json.loads(res.stdout) if res.returncode == 0 else []
        return [f"{a['local']}/{a['prefixlen']}" for a in data[0]["addr_info"]] if data else []


@pytest.fixture
def world(tmp_path):
    run = Run("rt", ipv6=True)          # IPv6 on, as on most hosts
    root = str(tmp_path / "root")
    try:
        yield World(run, root)
    finally:
        _end_dnsmasq(root)
        run.close()


def _end_dnsmasq(root: str) -> None:
    """Fallback cleanup: the dnsmasq fangen started, by PID, if it is still ours."""
    try:
        with open(os.path.join(root, "run/fangen/fan250/state.json")) as fh:
            rec = json.load(fh).get("dnsmasq", {})
    except (OSError, ValueError):
        return
    pid = rec.get("pid")
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            ours = fh.read().split(b"\0")[:-1] == [c.encode() for c in rec.get("cmdline", [])]
    except (OSError, TypeError):
        return
    if ours:
        os.kill(pid, signal.SIGKILL)


def snapshot(ns: str) -> dict:
    """Links, addresses, routes, nft ruleset and tc filters of a namespace, as text."""
    links = [row.split()[0] for row in sh("ip", "-n", ns, "-br", "link").stdout.splitlines()]
    tc = {}
    for link in links:
        dev = link.split("@")[0]
        for hook in ("ingress", "egress"):
            tc[f"{dev} {hook}"] = sh("tc", "-n", ns, "filter", "show", "dev", dev, hook).stdout
        tc[f"{dev} qdisc"] = sh("tc", "-n", ns, "qdisc", "show", "dev", dev).stdout
    return {
        "links": sh("ip", "-n", ns, "-br", "link").stdout,
        "masters": sh("ip", "-n", ns, "-o", "link", "show", "master", "fan250",
                      check=False).stdout,
        "addresses": sh("ip", "-n", ns, "-br", "addr").stdout,
        "routes": sh("ip", "-n", ns, "route", "show", "table", "all").stdout,
        "nft": nsexec(ns, "nft", "list", "ruleset").stdout,
        "tc": tc,
    }


def dhcp(w: World, tmp_path, name: str = "lease") -> list[str]:
    out = tmp_path / f"{name}.out"
    script = tmp_path / f"{name}.sh"
    script.write_text(UDHCPC_SCRIPT.format(out=out))
    script.chmod(0o755)
    nsexec(w.c, "busybox", "udhcpc", "-f", "-q", "-n", "-i", "eth0", "-s", str(script),
           "-t", "5", "-T", "1", "-A", "1", timeout=30)
    return out.read_text().split()


def gone(pid: int) -> bool:
    """Ended (a zombie waiting for PID 1 to reap it counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True



def _tunnel(w: World) -> tuple[dict, str]:
    link = json.loads(ip(w.h, "-j", "-d", "link", "show", "dev", "fan250-tun").stdout)[0]
    egress = sh("tc", "-n", w.h, "filter", "show", "dev", "fan250-tun", "egress").stdout
    return link, egress


def test_the_tunnel_changes_kind_when_the_stanza_does(world):
    """A multi-homed fan keeps a collect-metadata device (its policy rule selects by the
    outer UDP port, which the program's route lookup does not carry); without those keys
    the same fan gets a plain VXLAN device: ``up`` replaces one by the other, and
    ``down`` leaves the host as it was."""
    w = world
    before = snapshot(w.h)
    cli.install(w.root, FAN_YAML + "      underlay-gateway: 172.16.0.1\n"
                                   "      underlay-table: 100\n")
    fangen(w.h, w.root, "up", "fan250")
    link, egress = _tunnel(w)
    assert link["linkinfo"]["info_data"].get("external") is True
    assert " name fan_vx_encap " in egress and "plain" not in w.state()["tc"]["fan250-tun"][
        "params"]
    cli.install(w.root, FAN_YAML)
    fangen(w.h, w.root, "up", "fan250")
    link, egress = _tunnel(w)
    data = link["linkinfo"]["info_data"]
    assert data.get("external") is None and data["id"] == 16384000 and data["port"] == 8472
    assert link["master"] == "fan250" and "UP" in link["flags"]
    assert " name fan_vx_plain " in egress and egress.count("fangen:fan:") == 1
    assert w.state()["tc"]["fan250-tun"]["params"]["plain"] is True
    fangen(w.h, w.root, "down", "fan250")
    assert snapshot(w.h) == before


def test_up_twice_dhcp_and_down_restores(world, tmp_path):
    w = world
    before = snapshot(w.h)
    res = fangen(w.h, w.root, "up", "fan250")
    assert "slice 250.3.4.0/24" in res.stdout
    assert w.bridge_addrs() == ["250.3.4.1/8"]
    st = w.state()
    assert st["datapath"] == "upstream" and st["links"]["fan250"]["created"]
    assert "fangen-fan250" in nsexec(w.h, "nft", "list", "tables").stdout
    assert nsexec(w.h, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    egress = sh("tc", "-n", w.h, "filter", "show", "dev", "fan250-tun", "egress").stdout
    assert "fangen:" in egress
    # a plain VXLAN device: every frame encapsulated by the program itself
    assert " name fan_vx_plain " in egress
    assert st["tc"]["fan250-tun"]["params"]["plain"] is True

    # a container on the bridge gets a slice address, router and MTU from dnsmasq
    ip(w.h, "link", "set", "c0", "master", "fan250")
    addr, mask, router, mtu = dhcp(w, tmp_path)
    assert addr.startswith("250.3.4.") and addr not in ("250.3.4.1", "250.3.4.0")
    assert (mask, router, mtu) == ("255.0.0.0", "250.3.4.1", "1450")

    # up again: nothing changes, nothing is duplicated (once the kernel has given the
    # new links their IPv6 link-local addresses)
    settle_ipv6(w.h)
    middle = snapshot(w.h)
    again = fangen(w.h, w.root, "up", "fan250", "--dry-run")
    assert "# nothing to do" in again.stdout
    fangen(w.h, w.root, "up", "fan250")
    assert snapshot(w.h) == middle
    assert w.state()["dnsmasq"]["pid"] == st["dnsmasq"]["pid"]

    show = fangen(w.h, w.root, "show", "--json")
    row = json.loads(show.stdout)[0]
    assert (row["bridge"], row["slice"], row["datapath"], row["state"]) == \
        ("fan250", "250.3.4.0/24", "upstream", "up")
    # no networkd here: the bridge also has the kernel's IPv6 link-local address, which
    # the doctor once took for IPv4 (an internal error)
    assert any(a.startswith("fe80:") for a in w.bridge_addrs(6))
    doc = fangen(w.h, w.root, "doctor", "fan250", "--json", check=False)
    assert doc.stderr == "" and doc.returncode in (0, 1), doc
    checks = {c["check"]: c for c in json.loads(doc.stdout)["checks"]}
    assert checks["bridge"]["status"] == "ok", checks["bridge"]

    # down: the namespace is as it was; down twice is fine.  The container is still on
    # the bridge: plain down would keep it (tests/netns/test_lifecycle.py), --purge
    # deletes it and says so
    res = fangen(w.h, w.root, "down", "fan250", "--purge")
    assert "fangen: fan250: deleted bridge fan250 with c0 attached: their containers are " \
        "detached" in res.stderr
    fangen(w.h, w.root, "down", "fan250")
    assert snapshot(w.h) == before
    assert nsexec(w.h, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "0"
    assert gone(st["dnsmasq"]["pid"])
    assert not os.path.exists(os.path.join(w.root, "run/fangen/fan250/state.json"))


def test_down_works_after_the_fan_left_the_config(world):
    w = world
    before = snapshot(w.h)
    fangen(w.h, w.root, "up", "fan250")
    os.unlink(os.path.join(w.root, "etc/netplan/fan.d/fan.yaml"))
    show = fangen(w.h, w.root, "show")
    assert "removed" in show.stdout
    fangen(w.h, w.root, "down", "--all")
    assert snapshot(w.h) == before


def test_up_waits_for_the_underlay_and_fails_clearly(world):
    w = world
    ip(w.h, "addr", "del", "172.16.3.4/16", "dev", "ul0")
    res = fangen(w.h, w.root, "up", "fan250", "--timeout", "0.5", check=False)
    assert res.returncode == 1
    assert res.stderr.strip() == ("fangen: fan250: underlay 172.16.0.0/16 not found: no "
                                  "interface that is up holds an address in 172.16.0.0/16 "
                                  "after 0.5 s")
    # the address appears while up waits: up returns once it is there
    proc = cli.spawn(w.h, w.root, "up", "fan250", "--timeout", "20")
    w.run.procs.append(proc)
    time.sleep(0.5)
    t0 = time.monotonic()
    ip(w.h, "addr", "add", "172.16.7.8/16", "dev", "ul0")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "slice 250.7.8.0/24" in out
    assert time.monotonic() - t0 < 5
    fangen(w.h, w.root, "down", "fan250")


def test_run_follows_an_underlay_address_change(world, tmp_path):
    w = world
    before = snapshot(w.h)
    # systemd's notification socket, as Type=notify gives it (fangen@.service)
    notify_path = str(tmp_path / "notify.sock")
    notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_sock.bind(notify_path)
    notify_sock.settimeout(20)
    proc = cli.spawn(w.h, w.root, "run", "fan250",
                     environ=cli.env(NOTIFY_SOCKET=notify_path))
    w.run.procs.append(proc)
    try:
        messages = []
        while not any("READY=1" in m for m in messages):
            messages.append(notify_sock.recv(4096).decode())
        # READY only once the fan is really up
        assert w.bridge_addrs() == ["250.3.4.1/8"]
        assert messages[0].startswith("STATUS=waiting for the underlay")
        assert "STATUS=slice 250.3.4.0/24 on ul0 172.16.3.4" in messages[-1]
        wait_until(lambda: os.path.exists(os.path.join(w.root, "run/fangen/fan250/state.json"))
                   and w.state().get("dnsmasq"), 10, "dnsmasq")
        old = w.state()
        ip(w.h, "link", "set", "c0", "master", "fan250")
        assert dhcp(w, tmp_path, "first")[0].startswith("250.3.4.")

        # the underlay address changes (a new DHCP lease): the slice moves
        ip(w.h, "addr", "del", "172.16.3.4/16", "dev", "ul0")
        ip(w.h, "addr", "add", "172.16.5.6/16", "dev", "ul0")
        ip(w.h, "route", "replace", "default", "via", "172.16.0.1")
        wait_until(lambda: w.bridge_addrs() == ["250.5.6.1/8"], 10, "the new slice")
        wait_until(lambda: w.state()["slice"] == "250.5.6.0/24" and
                   w.state()["dnsmasq"].get("pid") != old["dnsmasq"]["pid"], 10, "state")
        new = w.state()
        ruleset = nsexec(w.h, "nft", "list", "ruleset").stdout
        assert "250.5.6.0/24" in ruleset and "250.3.4.0" not in ruleset
        assert gone(old["dnsmasq"]["pid"])
        conf = open(os.path.join(w.root, "run/fangen/fan250/dnsmasq.conf")).read()
        assert "dhcp-range=250.5.6.2,250.5.6.254" in conf and "250.3.4" not in conf
        assert new["tc"]["fan250-tun"]["params"]["slice"] == "250.5.6.0/24"
        assert new["addresses"] == [{"dev": "fan250", "address": "250.5.6.1/8"}]
        assert dhcp(w, tmp_path, "second")[0].startswith("250.5.6.")

        # dnsmasq killed: run starts it again
        os.kill(new["dnsmasq"]["pid"], signal.SIGKILL)
        wait_until(lambda: w.state()["dnsmasq"].get("pid") not in (None, new["dnsmasq"]["pid"]),
                   10, "dnsmasq to come back")

        # the underlay interface is deleted and made again, with a new index: the
        # programs are attached again, encapsulating to the new interface
        tc = w.state()["tc"]["fan250-tun"]["params"]
        ip(w.h, "link", "del", "ul0")
        veth(w.h, "ul0", w.sw, "p1")
        ip(w.sw, "addr", "add", "172.16.0.1/16", "dev", "p1")
        ip(w.h, "addr", "add", "172.16.5.6/16", "dev", "ul0")
        ip(w.h, "route", "replace", "default", "via", "172.16.0.1")
        index = json.loads(ip(w.h, "-j", "link", "show", "ul0").stdout)[0]["ifindex"]
        assert index != tc["underlay_index"]
        wait_until(lambda: w.state()["tc"].get("fan250-tun", {}).get("params", {})
                   .get("underlay_index") == index, 10, "the programs for the new ul0")
        assert w.bridge_addrs() == ["250.5.6.1/8"]
        egress = sh("tc", "-n", w.h, "filter", "show", "dev", "fan250-tun", "egress").stdout
        assert " name fan_vx_plain " in egress, egress

        # SIGTERM: run exits and leaves the fan up
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert w.bridge_addrs() == ["250.5.6.1/8"]
        assert "exiting; the fan stays up" in err
        notify_sock.settimeout(0)
        rest = []
        with contextlib.suppress(BlockingIOError):
            while True:
                rest.append(notify_sock.recv(4096).decode())
        assert rest[-1] == "STOPPING=1"
    finally:
        notify_sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    fangen(w.h, w.root, "down", "fan250", "--purge")      # c0 is still a port
    settle_ipv6(w.h)                                        # the new ul0's link-local
    after = snapshot(w.h)
    # the underlay address changed on purpose, and ul0 was made again (its place in
    # the list, peer index and MAC); everything else is as before
    def strip(snap):
        # ul0's link-local address follows its new MAC
        out = {k: (re.sub(r"fe80::[0-9a-f:]+(/64)? dev ul0", "fe80::X dev ul0",
                          v.replace("172.16.5.6", "172.16.3.4"))
                   if isinstance(v, str) else v) for k, v in snap.items()}
        out["routes"] = sorted(out["routes"].splitlines())
        for k in ("links", "addresses"):
            out[k] = sorted(re.sub(r"@if\d+|([0-9a-f]{2}:){5}[0-9a-f]{2}|fe80::[0-9a-f:]+/64",
                                   "", line) for line in out[k].splitlines())
        return out
    assert strip(after) == strip(before)
