"""An engine started before its fan waits for it: the drop-ins in examples/, checked by
systemd itself.

For each engine (Docker's docker.service, LXD's lxd.service, podman's
podman-restart.service) the example drop-in goes into a throw-away root next to this
machine's own unit files (the engine's unit as Debian 12 ships it) and fangen's units
from systemd/, then:

* ``systemd-analyze verify`` of the engine's unit with the drop-in: no complaint at all;
* systemd's own manager in test mode (``systemd --test --system --unit=ENGINE``: it loads
  the units, computes the start transaction of the engine, dumps it and exits; run as
  ``nobody`` with ``SYSTEMD_UNIT_PATH`` set to the root and no generators, so it reads
  nothing else and changes nothing) shows the drop-in loaded, the engine ``After=`` and
  ``Wants=`` ``fangen@FAN.service``, that unit loaded from fangen@.service (so the name in
  the drop-in is right: a wrong one is "not-found", see the oracle test) and a start job
  for it in the engine's start transaction, which also starts the one follower of every
  fan (``fangen-follow.service``).

The fan named in each drop-in is the one of the example's fan.d file next to it.  No
root needed (as root, systemd's test mode runs as ``nobody``); well under a second.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, "examples")
SYSTEMD = "/lib/systemd/systemd"
HOST_UNITS = "/lib/systemd/system"
DROPIN = "10-fangen.conf"
# (example directory, the engine's unit, the fan.d file of the example)
ENGINES = [("docker", "docker.service", "docker-fan.yaml"),
           ("lxd", "lxd.service", "lxd-fan.yaml"),
           ("podman", "podman-restart.service", "podman-fan.yaml")]

pytestmark = [
    pytest.mark.skipif(shutil.which("systemd-analyze") is None or not os.access(SYSTEMD, os.X_OK),
                       reason="needs systemd (systemd-analyze, /lib/systemd/systemd)"),
    pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None,
                       reason="as root, needs setpriv (util-linux) to run systemd --test "
                              "as nobody"),
]


def fan_of(directory: str, fan_file: str) -> str:
    with open(os.path.join(EXAMPLES, directory, fan_file), encoding="utf-8") as fh:
        [name] = yaml.safe_load(fh)["network"]["fan"]
    return name


def dropin_text(directory: str, unit: str) -> str:
    with open(os.path.join(EXAMPLES, directory, f"{unit}.d", DROPIN), encoding="utf-8") as fh:
        return fh.read()


@pytest.fixture(scope="module")
def unit_root():
    """A root readable by nobody (pytest's tmp_path is not): the machine's units, ours,
    executables named by Exec*= lines as empty scripts."""
    base = tempfile.mkdtemp(prefix="fangen-order-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        units = os.path.join(base, "usr/lib/systemd/system")
        shutil.copytree(HOST_UNITS, units, symlinks=True)
        for name in os.listdir(os.path.join(REPO, "systemd")):
            shutil.copy(os.path.join(REPO, "systemd", name), os.path.join(units, name))
        for name in os.listdir(units):
            path = os.path.join(units, name)
            if os.path.isfile(path) and not os.path.islink(path):
                _stub_executables(base, path)
        os.makedirs(os.path.join(base, "empty"))
        for directory, _, files in os.walk(base):
            os.chmod(directory, 0o755)
            for name in files:
                path = os.path.join(directory, name)
                if not os.path.islink(path):
                    os.chmod(path, os.stat(path).st_mode | 0o444)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _stub_executables(root: str, unit_file: str) -> None:
    with open(unit_file, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = re.match(r"\s*Exec[A-Za-z]*=[-@:+!]*(\S+)", line)
            if not m or not m.group(1).startswith("/"):
                continue
            stub = os.path.join(root, m.group(1).lstrip("/"))
            if not os.path.exists(stub):
                os.makedirs(os.path.dirname(stub), exist_ok=True)
                with open(stub, "w") as out:
                    out.write("#!/bin/sh\n")
                os.chmod(stub, 0o755)


def install(root: str, unit: str, text: str) -> str:
    directory = os.path.join(root, "etc/systemd/system", f"{unit}.d")
    os.makedirs(directory, exist_ok=True)
    os.chmod(os.path.join(root, "etc"), 0o755)
    for sub in ("etc/systemd", "etc/systemd/system", f"etc/systemd/system/{unit}.d"):
        os.chmod(os.path.join(root, sub), 0o755)
    path = os.path.join(directory, DROPIN)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o644)
    return path


def manager_dump(root: str, unit: str) -> dict:
    """{unit: {"props": [(key, value)], "jobs": [action]}} from ``systemd --test``."""
    env = {"HOME": os.path.join(root, "empty"), "PATH": "/usr/bin:/bin",
           "SYSTEMD_UNIT_PATH": f"{root}/etc/systemd/system:{root}/usr/lib/systemd/system",
           "SYSTEMD_GENERATOR_PATH": os.path.join(root, "empty"),
           "SYSTEMD_ENVIRONMENT_GENERATOR_PATH": os.path.join(root, "empty")}
    argv = [SYSTEMD, "--test", "--system", f"--unit={unit}", "--log-target=console",
            "--log-level=err"]
    if os.geteuid() == 0:           # "Don't run test mode as root."
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    units: dict = {}
    current = job = None
    for line in res.stdout.splitlines():
        if m := re.match(r"\t-> Unit (\S+):$", line):
            current = units.setdefault(m.group(1), {"props": [], "jobs": []})
            job = None
        elif current is not None and re.match(r"\t\t-> Job \d+:$", line):
            job = True
        elif current is not None and job and (m := re.match(r"\t\t\tAction: (.*)$", line)):
            current["jobs"].append(m.group(1))
        elif current is not None and (m := re.match(r"\t\t([^\t][^:]*): (.*)$", line)):
            current["props"].append((m.group(1), m.group(2)))
            job = None
    return units


def props(units: dict, unit: str, key: str) -> list[str]:
    return [v for k, v in units.get(unit, {"props": []})["props"] if k == key]


@pytest.mark.parametrize("directory,unit,fan_file", ENGINES, ids=[e[1] for e in ENGINES])
def test_dropin_says_wants_and_after_the_fan_of_its_example(directory, unit, fan_file):
    fan = fan_of(directory, fan_file)
    lines = [ln.strip() for ln in dropin_text(directory, unit).splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines == ["[Unit]", f"Wants=fangen@{fan}.service", f"After=fangen@{fan}.service"]
    # the header names where it goes
    assert dropin_text(directory, unit).startswith(
        f"# /etc/systemd/system/{unit}.d/{DROPIN}\n")


@pytest.mark.parametrize("directory,unit,fan_file", ENGINES, ids=[e[1] for e in ENGINES])
def test_systemd_orders_the_engine_after_the_fan(unit_root, directory, unit, fan_file):
    if not os.path.exists(os.path.join(HOST_UNITS, unit)):
        pytest.skip(f"{unit} is not installed here (scripts/setup.sh installs the engines)")
    fan = fan_of(directory, fan_file)
    fan_unit = f"fangen@{fan}.service"
    path = install(unit_root, unit, dropin_text(directory, unit))
    try:
        res = subprocess.run(["systemd-analyze", "verify", f"--root={unit_root}", "--man=no",
                              unit], capture_output=True, text=True, timeout=60)
        assert (res.returncode, res.stderr) == (0, "")

        units = manager_dump(unit_root, unit)
        assert props(units, unit, "DropIn Path") == [path]
        assert f"{fan_unit} (origin-file)" in props(units, unit, "Wants")
        assert f"{fan_unit} (origin-file)" in props(units, unit, "After")
        assert not [v for v in props(units, unit, "Requires") if "fangen@" in v]
        assert props(units, fan_unit, "Unit Load State") == ["loaded"]
        assert props(units, fan_unit, "Fragment Path") == [
            os.path.join(unit_root, "usr/lib/systemd/system/fangen@.service")]
        assert f"{unit} (destination-file)" in props(units, fan_unit, "Before")
        # the engine's start pulls in the fan's
        assert units[unit]["jobs"] == [f"{unit} -> start"]
        assert units[fan_unit]["jobs"] == [f"{fan_unit} -> start"]
        # and the fan's unit pulls in the one follower of every fan (not ordered before
        # the engine: the fan's unit is active once the fan carries traffic)
        assert "fangen-follow.service (origin-file)" in props(units, fan_unit, "Wants")
        assert units["fangen-follow.service"]["jobs"] == ["fangen-follow.service -> start"]
        assert f"{unit} (destination-file)" not in props(units, "fangen-follow.service",
                                                         "Before")
    finally:
        os.unlink(path)


def test_the_oracle_sees_a_wrong_unit_name(unit_root):
    """A misspelt fan unit loads as not-found and gets no start job: the checks above
    could fail."""
    unit = "docker.service"
    if not os.path.exists(os.path.join(HOST_UNITS, unit)):
        pytest.skip(f"{unit} is not installed here")
    path = install(unit_root, unit, "[Unit]\nWants=fangen-typo@fan-250.service\n"
                                    "After=fangen-typo@fan-250.service\n")
    try:
        units = manager_dump(unit_root, unit)
        assert props(units, "fangen-typo@fan-250.service", "Unit Load State") == ["not-found"]
        assert units["fangen-typo@fan-250.service"]["jobs"] == []
        assert "fangen@fan-250.service" not in units
    finally:
        os.unlink(path)


def test_readme_and_man_page_name_the_dropins():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    with open(os.path.join(REPO, "man", "fangen.8"), encoding="utf-8") as fh:
        man = fh.read()
    for directory, unit, _ in ENGINES:
        assert f"examples/{directory}/{unit}.d/{DROPIN}" in readme, unit
        assert unit.replace("-", "\\-") in man, unit
