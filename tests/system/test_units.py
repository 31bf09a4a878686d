"""Every unit we ship or link passes `systemd-analyze verify` with no complaint at all.

Needs: systemd (systemd-analyze), dnsmasq-base.  Runs against a throwaway root holding
this machine's own unit files plus ours, so references like systemd-networkd.service
resolve, and the generator's links are checked too.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUR_UNITS = sorted(os.listdir(os.path.join(REPO, "systemd")))

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="needs systemd-analyze (package systemd)")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify-root")
    unitdir = root / "usr/lib/systemd/system"
    shutil.copytree("/lib/systemd/system", unitdir, symlinks=True)
    for name in OUR_UNITS:
        shutil.copy(os.path.join(REPO, "systemd", name), unitdir / name)
    for template in ("fangen@.service", "fangen-dnsmasq@.service"):
        os.symlink(template, unitdir / template.replace("@.", "@fan-250."))
    (root / "usr/sbin").mkdir(parents=True)
    (root / "bin").mkdir()
    wrapper = root / "usr/sbin/fangen"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m fangen \"$@\"\n")
    wrapper.chmod(0o755)
    shutil.copy("/usr/sbin/dnsmasq", root / "usr/sbin/dnsmasq")
    (root / "lib/systemd").mkdir(parents=True)
    shutil.copy("/lib/systemd/systemd-networkd", root / "lib/systemd/systemd-networkd")
    for tool in ("kill", "systemctl", "networkctl"):
        shutil.copy(shutil.which(tool), root / "bin" / tool)
    fan_d = root / "etc/netplan/fan.d"
    fan_d.mkdir(parents=True)
    (fan_d / "10-fan.yaml").write_text("network: {version: 2}\n")
    res = subprocess.run([sys.executable, "-I", "-S", os.path.join(REPO, "fangen/generator.py"),
                          "--root-dir", str(root), str(root / "etc/systemd/system")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return root


def verify(root, *units):
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", "--man=no", *units],
                          capture_output=True, text=True)


@pytest.mark.parametrize("unit", [u.replace("@.", "@fan-250.") for u in OUR_UNITS])
def test_unit_verifies_cleanly(root, unit):
    res = verify(root, unit)
    assert (res.returncode, res.stderr) == (0, "")


def test_generator_links_verify_with_multi_user(root):
    link = root / "etc/systemd/system/multi-user.target.wants/fangen.service"
    assert os.readlink(link) == "/usr/lib/systemd/system/fangen.service"
    for unit in ("multi-user.target", "network-online.target", "systemd-networkd.service"):
        res = verify(root, unit)
        assert (res.returncode, res.stderr) == (0, ""), unit


def test_verify_would_catch_a_bad_unit(root):
    """The oracle can fail: an unknown key is reported on stderr."""
    bad = root / "usr/lib/systemd/system/fangen-bad.service"
    bad.write_text("[Service]\nExecStart=/bin/kill\nBogus=1\n")
    try:
        assert "Unknown key 'Bogus'" in verify(root, "fangen-bad.service").stderr
    finally:
        bad.unlink()


def _unit_lines(name):
    with open(os.path.join(REPO, "systemd", name)) as fh:
        return [line.strip() for line in fh if not line.lstrip().startswith("#")]


def test_dnsmasq_unit_not_ordered_after_runtime():
    """fangen@ (a oneshot running `fangen up`) is active only once its dnsmasq unit runs,
    and `fangen up` starts that unit itself: After=fangen@%i on the dnsmasq unit queues
    its start job behind a unit that waits for it, so the fan never comes up (seen in
    boot-check)."""
    lines = _unit_lines("fangen-dnsmasq@.service")
    assert "PartOf=fangen@%i.service" in lines
    for line in lines:
        if line.startswith(("After=", "Requires=", "Requisite=", "BindsTo=", "Wants=")):
            assert "fangen@" not in line, line        # a restart must not pull it back in


def test_runtime_down_runs_after_the_runtime_exits():
    """A stop of fangen@NAME takes the fan down only when it left the configuration
    (ExecStopPost=, which also runs when `fangen up` failed), and a restart keeps it."""
    lines = _unit_lines("fangen@.service")
    assert "ExecStopPost=/usr/sbin/fangen down --if-unconfigured %i" in lines
    assert not [line for line in lines if line.startswith("ExecStop=")]


def test_one_follower_for_every_fan():
    """fangen@NAME brings its fan up and stays active (a container engine orders itself
    after it); it pulls in the one resident follower, which has nothing that takes a
    fan down when it stops (a restart or an upgrade keeps the fans)."""
    fan = _unit_lines("fangen@.service")
    assert {"Type=oneshot", "RemainAfterExit=yes", "Wants=fangen-follow.service",
            "ExecStart=/usr/sbin/fangen up --timeout=inf %i"} <= set(fan)
    follow = _unit_lines("fangen-follow.service")
    assert {"Type=notify", "ExecStart=/usr/sbin/fangen run",
            "ExecReload=/bin/kill -HUP $MAINPID"} <= set(follow)
    assert not [line for line in follow if line.startswith(("ExecStop", "BindsTo=",
                                                             "Requires="))]


# -- the boot order: nothing of fangen in front of the host's network (issue 11) --------
NETWORK = ("network-pre.target", "network.target", "network-online.target",
           "systemd-networkd.service", "systemd-networkd-wait-online.service")
PULLS = ("Wants", "Requires", "Requisite", "BindsTo", "Upholds")


def _unit_file(dirs, name):
    """(path, instance) of unit ``name`` in the first of ``dirs`` holding it (templates too)."""
    m = re.match(r"(.+@)(.*)(\.[a-z]+)$", name)
    for d in dirs:
        if os.path.isfile(os.path.join(d, name)):
            return os.path.join(d, name), (m.group(2) if m else "")
        if m and os.path.isfile(os.path.join(d, m.group(1) + m.group(3))):
            return os.path.join(d, m.group(1) + m.group(3)), m.group(2)
    return None, ""


def _deps(dirs, name):
    """{key: [units]} of [Unit] in ``name``'s file plus its .wants/.requires links."""
    deps = {}
    path, instance = _unit_file(dirs, name)
    if path is not None:
        section = None
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if line.startswith("["):
                    section = line
                elif section == "[Unit]" and "=" in line and not line.startswith(("#", ";")):
                    key, value = line.split("=", 1)
                    value = value.replace("%i", instance).replace("%I", instance)
                    deps[key.strip()] = [] if not value.strip() else \
                        deps.get(key.strip(), []) + value.split()
    for d in dirs:
        for suffix, key in ((".wants", "Wants"), (".requires", "Requires")):
            try:
                deps.setdefault(key, []).extend(sorted(os.listdir(os.path.join(d, name + suffix))))
            except OSError:
                pass
    return deps


def ordering_graph(dirs, start):
    """{unit: units ordered after it} over every unit reachable from ``start`` by any
    dependency, as systemd orders them: X Before=Y and Y After=X both put X first, and a
    target (DefaultDependencies=yes) is ordered after every unit it wants or requires,
    which is how a link in network.target.wants/ puts a service in front of it."""
    after_me: dict[str, set] = {}
    seen, todo = set(), list(start)
    while todo:
        unit = todo.pop()
        if unit in seen:
            continue
        seen.add(unit)
        deps = _deps(dirs, unit)
        for other in deps.get("Before", []):
            after_me.setdefault(unit, set()).add(other)
        for other in deps.get("After", []):
            after_me.setdefault(other, set()).add(unit)
        default = deps.get("DefaultDependencies", ["yes"])[-1].lower() not in ("no", "false", "0")
        for key in PULLS:
            for other in deps.get(key, []):
                if unit.endswith(".target") and default:
                    after_me.setdefault(other, set()).add(unit)
        for key in PULLS + ("Before", "After", "PartOf"):
            todo.extend(deps.get(key, []))
    return after_me


def units_waiting_for(graph, unit):
    """Every unit ordered (transitively) after ``unit``."""
    found, todo = set(), [unit]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in found:
                found.add(nxt)
                todo.append(nxt)
    return found


def unit_dirs(root):
    return [str(root / "etc/systemd/system"), str(root / "usr/lib/systemd/system")]


FANGEN_UNITS = ["fangen.service", "fangen-apply.service", "fangen@fan-250.service",
                "fangen-dnsmasq@fan-250.service", "fangen-follow.service"]


def test_nothing_of_fangen_orders_before_the_network(root):
    """With the generator's links in place (fan.d files exist), no fangen unit is ordered,
    directly or through other units, before networkd or the network targets: this host's
    real unit files plus ours, the boot's start units included."""
    start = FANGEN_UNITS + ["multi-user.target", "graphical.target"] + list(NETWORK)
    graph = ordering_graph(unit_dirs(root), start)
    assert "fangen.service" in units_waiting_for(graph, "systemd-networkd.service")
    for unit in FANGEN_UNITS:
        blocked = units_waiting_for(graph, unit) & set(NETWORK)
        assert not blocked, f"{unit} is ordered before {sorted(blocked)}"


def test_no_network_unit_pulls_fangen_in(root):
    dirs = unit_dirs(root)
    for unit in NETWORK:
        pulled = {u for key in PULLS for u in _deps(dirs, unit).get(key, [])}
        assert not {u for u in pulled if u.startswith("fangen")}, unit


def test_the_order_check_would_catch_the_old_boot_path(tmp_path, root):
    """The oracle can fail: the layout before issue 11 (fangen-generate.service Before=
    systemd-networkd, fangen.service linked into network.target.wants) is flagged."""
    extra = tmp_path / "old"
    (extra / "network.target.wants").mkdir(parents=True)
    os.symlink("/usr/lib/systemd/system/fangen.service",
               extra / "network.target.wants/fangen.service")
    (extra / "fangen-generate.service").write_text(
        "[Unit]\nDefaultDependencies=no\nBefore=systemd-networkd.service network-pre.target\n")
    (extra / "systemd-networkd.service.wants").mkdir()
    os.symlink(extra / "fangen-generate.service",
               extra / "systemd-networkd.service.wants/fangen-generate.service")
    dirs = [str(extra)] + unit_dirs(root)
    graph = ordering_graph(dirs, FANGEN_UNITS + list(NETWORK))
    assert "network.target" in units_waiting_for(graph, "fangen.service")
    assert {"systemd-networkd.service", "network-online.target"} <= \
        units_waiting_for(graph, "fangen-generate.service")
