"""/usr/sbin/fangen as the .deb installs it (debian/sbin-fangen): run through its #! line
(``python3 -IS``) from a copy of the package laid out as in the package, it finds the
package and its dependencies in the system's site directories, and nothing from the
environment or the current directory gets in front of them.

The layout is the benchmark's (bench/generator.py ``install``): the package byte-compiled
in PREFIX/usr/lib/python3/dist-packages, the launcher with that directory put first on
its ``SITE_DIRS`` line (the one stand-in: the real .deb is not built here).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess

from fangen import __version__

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FANS = """network:
  fan:
    fan-250:
      overlay: 250.0.0.0/8
      underlay: 172.16.0.0/16
"""


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_generator", os.path.join(REPO, "bench/generator.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_launcher_is_python3_IS():
    with open(os.path.join(REPO, "debian/sbin-fangen")) as fh:
        assert fh.readline() == "#!/usr/bin/python3 -IS\n"
    with open(os.path.join(REPO, "debian/rules")) as fh:
        assert "install -D -m 0755 debian/sbin-fangen $(PKG)/usr/sbin/fangen" in fh.read()


def test_the_installed_command_runs_from_its_site_directories_only(tmp_path):
    sbin = _bench().install(str(tmp_path / "prefix"))
    evil = tmp_path / "evil"                      # a fangen of its own, in cwd and PYTHONPATH
    (evil / "fangen").mkdir(parents=True)
    (evil / "fangen" / "__init__.py").write_text("raise SystemExit('the wrong fangen')\n")
    env = dict(os.environ, PYTHONPATH=str(evil), PYTHONSTARTUP=str(evil / "x.py"))
    res = subprocess.run([sbin, "--version"], capture_output=True, text=True, cwd=evil,
                         env=env, timeout=60)
    assert (res.returncode, res.stdout, res.stderr) == (0, f"fangen {__version__}\n", "")
    root = tmp_path / "root"
    (root / "etc/netplan/fan.d").mkdir(parents=True)
    (root / "etc/netplan/fan.d/10-fans.yaml").write_text(FANS)
    (root / "etc/netplan/fan.d/10-fans.yaml").chmod(0o600)
    for _ in range(2):                            # a full run, then the memo's
        res = subprocess.run([sbin, "generate", "--root-dir", str(root)], capture_output=True,
                             text=True, cwd=evil, env=env, timeout=60)
        assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    assert sorted(os.listdir(root / "run/systemd/network")) == [
        "10-fangen-fan-250-tun.network", "10-fangen-fan-250.netdev",
        "10-fangen-fan-250.network"]
