"""systemd and systemd-networkd over D-Bus (dbus-python), on an injected bus.

``connect(address)`` gives a private bus (``dbus.bus.BusConnection``) or the
system bus (which libdbus takes from DBUS_SYSTEM_BUS_ADDRESS when set);
:class:`Systemd` and :class:`Networkd` are thin typed wrappers over the two
Manager interfaces fangen needs.
"""

from __future__ import annotations

import os

from fangen.errors import FangenError

SYSTEMD = ("org.freedesktop.systemd1", "/org/freedesktop/systemd1",
           "org.freedesktop.systemd1.Manager")
NETWORKD = ("org.freedesktop.network1", "/org/freedesktop/network1",
            "org.freedesktop.network1.Manager")


class BusError(FangenError):
    """A D-Bus call failed."""


def connect(address: str | None = None):
    """A bus connection, or raise BusError when there is none."""
    import dbus
    import dbus.bus

    try:
        if address:
            return dbus.bus.BusConnection(address)
        return dbus.SystemBus(private=True)
    except dbus.exceptions.DBusException as exc:
        raise BusError(f"cannot connect to the D-Bus system bus: "
                       f"{exc.get_dbus_message()}") from None


def try_connect(address: str | None = None):
    """A bus connection, or None when no bus answers."""
    if address is None and not os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") and \
            not os.path.exists("/run/dbus/system_bus_socket"):
        return None
    try:
        return connect(address)
    except BusError:
        return None


class _Manager:
    service, path, interface = SYSTEMD

    def __init__(self, bus):
        self.bus = bus

    def present(self) -> bool:
        import dbus
        try:
            return bool(self.bus.name_has_owner(self.service))
        except dbus.exceptions.DBusException:
            return False

    def _call(self, method: str, *args):
        import dbus
        try:
            obj = self.bus.get_object(self.service, self.path, introspect=False)
            return getattr(obj, method)(*args, dbus_interface=self.interface)
        except dbus.exceptions.DBusException as exc:
            what = self.service.rsplit(".", 1)[-1]
            raise BusError(f"{what} {method}{_show(args)}: {exc.get_dbus_message()}") from None


def _show(args) -> str:
    return "(" + ", ".join(str(a) for a in args) + ")"


class Systemd(_Manager):
    service, path, interface = SYSTEMD

    def start(self, unit: str) -> str:
        return str(self._call("StartUnit", unit, "replace"))

    def stop(self, unit: str) -> str:
        return str(self._call("StopUnit", unit, "replace"))

    def restart(self, unit: str) -> str:
        return str(self._call("RestartUnit", unit, "replace"))

    def reload_or_restart(self, unit: str) -> str:
        return str(self._call("ReloadOrRestartUnit", unit, "replace"))

    def list_units(self, pattern: str) -> dict:
        """{unit name: active state} of loaded units matching ``pattern``."""
        import dbus
        rows = self._call("ListUnitsByPatterns", dbus.Array([], signature="s"),
                          dbus.Array([pattern], signature="s"))
        return {str(row[0]): str(row[3]) for row in rows}


class Networkd(_Manager):
    service, path, interface = NETWORKD

    def reload(self) -> None:
        self._call("Reload")

    def reconfigure_link(self, ifindex: int) -> None:
        import dbus
        self._call("ReconfigureLink", dbus.Int32(ifindex))


def unit_name(template: str, instance: str) -> str:
    """``fangen@`` + ``fan-250`` -> ``fangen@fan-250.service`` (fan names need no escaping:
    letters, digits, '.', '-', '_')."""
    return f"{template}{instance}.service"
