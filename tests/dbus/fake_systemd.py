"""A stand-in for systemd's Manager object, exported on a private bus.

systemd cannot run as PID 1 on the test machine, so the Systemd client is tested
against this object instead (the VM boot test covers the real one).  It keeps a
table of units and records every call; ``org.fangen.Test.Calls`` returns them.

Usage: fake_systemd.py BUS_ADDRESS [UNIT=STATE ...]
"""

import sys

import dbus
import dbus.bus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

MANAGER = "org.freedesktop.systemd1.Manager"


class Manager(dbus.service.Object):
    def __init__(self, bus, units):
        super().__init__(bus, "/org/freedesktop/systemd1")
        self.units = dict(units)
        self.calls = []
        self.jobs = 0

    def _job(self, method, unit, mode):
        self.calls.append(f"{method} {unit} {mode}")
        self.jobs += 1
        return dbus.ObjectPath(f"/org/freedesktop/systemd1/job/{self.jobs}")

    @dbus.service.method(MANAGER, in_signature="ss", out_signature="o")
    def StartUnit(self, unit, mode):
        self.units[str(unit)] = "active"
        return self._job("StartUnit", unit, mode)

    @dbus.service.method(MANAGER, in_signature="ss", out_signature="o")
    def StopUnit(self, unit, mode):
        self.units[str(unit)] = "inactive"
        return self._job("StopUnit", unit, mode)

    @dbus.service.method(MANAGER, in_signature="ss", out_signature="o")
    def RestartUnit(self, unit, mode):
        self.units[str(unit)] = "active"
        return self._job("RestartUnit", unit, mode)

    @dbus.service.method(MANAGER, in_signature="ss", out_signature="o")
    def ReloadOrRestartUnit(self, unit, mode):
        self.units[str(unit)] = "active"
        return self._job("ReloadOrRestartUnit", unit, mode)

    @dbus.service.method(MANAGER, in_signature="asas", out_signature="a(ssssssouso)")
    def ListUnitsByPatterns(self, states, patterns):
        import fnmatch
        self.calls.append(f"ListUnitsByPatterns {list(map(str, patterns))}")
        rows = []
        for name, state in sorted(self.units.items()):
            if patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
                continue
            if states and state not in states:
                continue
            rows.append((name, "fake", "loaded", state, "running" if state == "active"
                         else "dead", "", dbus.ObjectPath("/org/freedesktop/systemd1/unit/x"),
                         dbus.UInt32(0), "", dbus.ObjectPath("/")))
        return rows

    @dbus.service.method("org.fangen.Test", in_signature="", out_signature="as")
    def Calls(self):
        return self.calls


def main():
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(sys.argv[1])
    units = dict(arg.split("=", 1) for arg in sys.argv[2:])
    manager = Manager(bus, units)
    name = dbus.service.BusName("org.freedesktop.systemd1", bus)   # noqa: F841
    print("ready", flush=True)
    GLib.MainLoop().run()
    return manager


if __name__ == "__main__":
    main()
