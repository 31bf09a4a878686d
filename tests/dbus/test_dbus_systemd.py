"""fangen's Systemd client (and the unit logic of ``fangen apply``) on a private bus.

systemd cannot run as PID 1 on this machine, so the far end is a stand-in: a tiny
object exported with dbus-python's service API (tests/dbus/fake_systemd.py) that
implements the Manager methods fangen calls and records them.  The real systemd
is exercised by the boot test in a VM.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="no dbus-daemon")

from busutil import PrivateBus, wait_for  # noqa: E402

from fangen.cli.apply import unit_changes  # noqa: E402
from fangen.runtime.dbus import BusError, Networkd, Systemd, connect  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def bus():
    private = PrivateBus()
    proc = None
    try:
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "fake_systemd.py"),
                                 private.address, "fangen@old.service=active",
                                 "fangen@keep.service=active", "ssh.service=active"],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        conn = connect(private.address)
        wait_for(lambda: Systemd(conn).present(), 5, "the fake systemd")
        yield conn
        conn.close()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        private.close()


def calls(conn) -> list[str]:
    obj = conn.get_object("org.freedesktop.systemd1", "/org/freedesktop/systemd1")
    return [str(c) for c in obj.Calls(dbus_interface="org.fangen.Test")]


def test_unit_control(bus):
    systemd = Systemd(bus)
    assert systemd.list_units("fangen@*.service") == {"fangen@keep.service": "active",
                                                      "fangen@old.service": "active"}
    assert systemd.start("fangen@new.service").startswith("/org/freedesktop/systemd1/job/")
    systemd.reload_or_restart("fangen@keep.service")
    systemd.restart("fangen-dnsmasq@keep.service")
    systemd.stop("fangen@old.service")
    assert calls(bus)[1:] == [
        "StartUnit fangen@new.service replace",
        "ReloadOrRestartUnit fangen@keep.service replace",
        "RestartUnit fangen-dnsmasq@keep.service replace",
        "StopUnit fangen@old.service replace",
    ]
    assert systemd.list_units("fangen@*.service")["fangen@old.service"] == "inactive"


def test_apply_plan_against_listed_units(bus):
    running = Systemd(bus).list_units("fangen@*.service")
    assert unit_changes({"keep", "new"}, running) == {
        "start": ["fangen@new.service"], "reload": ["fangen@keep.service"],
        "stop": ["fangen@old.service"]}


def test_absent_service_is_a_clear_error(bus):
    assert not Networkd(bus).present()
    with pytest.raises(BusError, match=r"^network1 Reload\(\): "):
        Networkd(bus).reload()


def test_no_bus_is_a_clear_error(tmp_path):
    with pytest.raises(BusError, match="cannot connect to the D-Bus system bus"):
        connect(f"unix:path={tmp_path}/nothing")
