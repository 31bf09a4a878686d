"""Real netplan beside fangen: both generators on one root, neither disturbs the other.

Needs: netplan.io (0.106 on Debian 12).
"""

import os
import shutil
import subprocess
import sys

import pytest

NETPLAN_GENERATE = "/usr/libexec/netplan/generate"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.skipif(not os.path.exists(NETPLAN_GENERATE),
                                reason="needs netplan.io")

PLAIN = """network:
  version: 2
  ethernets:
    eth0:
      dhcp4: true
"""
FAN = """network:
  version: 2
  fan:
    fan-250:
      overlay: 250.0.0.0/8
      underlay: 172.16.0.0/16
"""


def fangen(*args):
    return subprocess.run([sys.executable, "-m", "fangen", *args], capture_output=True,
                          text=True, cwd=REPO)


@pytest.fixture
def root(tmp_path):
    (tmp_path / "etc/netplan/fan.d").mkdir(parents=True)
    (tmp_path / "etc/netplan/01-netcfg.yaml").write_text(PLAIN)
    (tmp_path / "etc/netplan/fan.d/10-fan.yaml").write_text(FAN)
    os.chmod(tmp_path / "etc/netplan/01-netcfg.yaml", 0o600)
    os.chmod(tmp_path / "etc/netplan/fan.d/10-fan.yaml", 0o600)
    return tmp_path


def networkd_files(root):
    return sorted(os.listdir(root / "run/systemd/network"))


def test_netplan_generate_succeeds_beside_fan_d(root):
    res = subprocess.run([NETPLAN_GENERATE, "--root-dir", str(root)], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    assert networkd_files(root) == ["10-netplan-eth0.network"]
    assert fangen("generate", "--root-dir", str(root)).returncode == 0
    both = ["10-fangen-fan-250-tun.network", "10-fangen-fan-250.netdev",
            "10-fangen-fan-250.network", "10-netplan-eth0.network"]
    assert networkd_files(root) == both
    # netplan runs again (as netplan apply would): it keeps its hands off our files
    res = subprocess.run([NETPLAN_GENERATE, "--root-dir", str(root)], capture_output=True,
                         text=True)
    assert res.returncode == 0 and networkd_files(root) == both
    # and ours keep their hands off netplan's when our fan goes away
    (root / "etc/netplan/fan.d/10-fan.yaml").unlink()
    assert fangen("generate", "--root-dir", str(root)).returncode == 0
    assert networkd_files(root) == ["10-netplan-eth0.network"]


@pytest.mark.skipif(shutil.which("netplan") is None, reason="needs the netplan command")
def test_netplan_cli_generate_succeeds(root):
    res = subprocess.run(["netplan", "generate", "--root-dir", str(root)], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr


def test_fan_in_plain_file_breaks_netplan_and_fangen_says_why(root):
    """The reason the stanza lives in fan.d: netplan rejects the key, fangen explains."""
    (root / "etc/netplan/01-netcfg.yaml").write_text(PLAIN + FAN.split("version: 2\n")[1])
    res = subprocess.run([NETPLAN_GENERATE, "--root-dir", str(root)], capture_output=True,
                         text=True)
    assert res.returncode != 0 and "unknown key 'fan'" in res.stderr
    res = fangen("validate", "--root-dir", str(root))
    assert res.returncode == 1
    assert ("01-netcfg.yaml:6:3: Error in fan definition: 'fan' does not belong in a plain "
            "netplan file") in res.stderr
