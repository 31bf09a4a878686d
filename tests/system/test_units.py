"""Every unit we ship or link passes `systemd-analyze verify` with no complaint at all.

Needs: systemd (systemd-analyze), dnsmasq-base.  Runs against a throwaway root holding
this machine's own unit files plus ours, so references like systemd-networkd.service
resolve, and the generator's links are checked too.
"""

import os
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


def test_generator_links_verify_with_networkd(root):
    link = root / "etc/systemd/system/systemd-networkd.service.wants/fangen-generate.service"
    assert os.readlink(link) == "/usr/lib/systemd/system/fangen-generate.service"
    res = verify(root, "systemd-networkd.service")
    assert (res.returncode, res.stderr) == (0, "")


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
    """fangen@ (Type=notify) is ready only once its dnsmasq unit runs, and the runtime
    starts that unit itself: After=fangen@%i on the dnsmasq unit queues its start job
    behind a unit that waits for it, so the fan never comes up (seen in boot-check)."""
    lines = _unit_lines("fangen-dnsmasq@.service")
    assert "PartOf=fangen@%i.service" in lines
    for line in lines:
        if line.startswith(("After=", "Requires=", "Requisite=", "BindsTo=", "Wants=")):
            assert "fangen@" not in line, line        # a restart must not pull it back in


def test_runtime_down_runs_after_the_runtime_exits():
    """`fangen down` must not race the live `fangen run` (which puts back what is
    removed while it follows netlink events): ExecStopPost=, not ExecStop=."""
    lines = _unit_lines("fangen@.service")
    assert "ExecStopPost=/usr/sbin/fangen down --if-unconfigured %i" in lines
    assert not [line for line in lines if line.startswith("ExecStop=")]
