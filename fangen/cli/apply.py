"""fangen apply: generate, reload networkd, make fangen@NAME units match the config.

As ``netplan apply`` does for netplan: write the files, ask networkd over D-Bus
to reload, then start fangen@NAME.service for new fans, stop the ones removed or
disabled, and reload fangen-follow.service (SIGHUP: re-read and reconcile every
fan it follows) when fans stay configured; with no fan left it is stopped.
Without systemd (``--no-systemd``, or no systemd on D-Bus) it does
the same by hand: ``up`` for every enabled fan, ``down`` for fans that are up
but no longer configured.

Broken files fail safe (fan.d(5), SAFETY): when a fan.d file cannot be read or
parsed, apply writes nothing, reloads nothing, and starts, reloads and stops no
fan; a fan whose own definition is broken is neither reloaded nor stopped.
"""

from __future__ import annotations

import sys

from fangen import cli
from fangen.cli.up import add_no_systemd
from fangen.errors import FangenError

UNIT_TEMPLATE = "fangen@"
FOLLOWER = "fangen-follow.service"


def register(sub) -> None:
    parser = sub.add_parser(
        "apply", help="generate, reload networkd and start/reload/stop the fan units",
        description="Write the networkd and dnsmasq files (unless --no-generate), reload "
                    "systemd-networkd over D-Bus, then start fangen@NAME.service for new "
                    "fans, stop the ones removed and reload fangen-follow.service (which "
                    "re-reads the configuration of the fans still configured).")
    cli.add_root_dir(parser)
    cli.add_host_interfaces(parser)
    parser.add_argument("--no-generate", action="store_true",
                        help="skip writing files (when `fangen generate` has just written them)")
    add_no_systemd(parser)
    parser.add_argument("--timeout", type=cli.seconds, default=30.0, metavar="SEC",
                        help="without systemd: wait this long for each underlay")
    parser.set_defaults(func=run)


def unit_changes(wanted: set, running: dict) -> dict:
    """Pure: {"start": [...], "reload": [...], "stop": [...]} unit names.

    ``wanted``: fan names that should run; ``running``: {unit: active state} of the
    loaded fangen@*.service units."""
    from fangen.runtime.dbus import unit_name

    want_units = {unit_name(UNIT_TEMPLATE, name) for name in wanted}
    active = {u for u, s in running.items() if s in ("active", "activating", "reloading")}
    return {"start": sorted(want_units - active),
            "reload": sorted(want_units & active),
            "stop": sorted(active - want_units)}


def follower_action(changes: dict, wanted: set, broken: set) -> str | None:
    """Pure: what fangen-follow.service gets: "reload" when fans that stay changed may
    have changed (it re-reads the configuration for every fan it follows, so the
    fangen@NAME units themselves are not reloaded), "stop" when no fan is left (nothing
    configured, nothing broken), else None (a new fangen@NAME pulls it in)."""
    if changes["reload"]:
        return "reload"
    if not wanted and not broken:
        return "stop"
    return None


def run(args) -> int:
    from fangen.config.check import load_for_host, require_unfrozen
    from fangen.runtime import control
    from fangen.runtime import state as state_mod
    from fangen.runtime.dbus import Networkd, Systemd
    from fangen.runtime.host import make_host

    # first, before anything changes: a broken file freezes every fan
    report, checked, _ = load_for_host(args.root_dir, args.host_interfaces)
    if checked.frozen:              # every problem into the journal, not only the freezing one
        cli.print_diagnostics(report)
    require_unfrozen(checked, printed=bool(checked.frozen))
    status = 0
    if not args.no_generate:
        from fangen.cli.generate import generate
        status = generate(args.root_dir, args.host_interfaces)
    host = make_host(args.root_dir, args.no_systemd)
    if host.bus is not None and Networkd(host.bus).present():
        Networkd(host.bus).reload()
    fans, errors, _ = control.load_fans(args.root_dir)
    wanted = {name for name, fan in fans.items() if fan.enabled}
    broken = {d.path[2] for d in errors if len(d.path) >= 3}
    if host.systemd:                # make_host decided: the real root, systemd on the bus
        systemd = Systemd(host.bus)
        running = systemd.list_units(f"{UNIT_TEMPLATE}*.service")
        changes = unit_changes(wanted, running)
        # a broken fan keeps running as it was: do not stop what we cannot judge
        changes["stop"] = [u for u in changes["stop"]
                           if u[len(UNIT_TEMPLATE):-len(".service")] not in broken]
        for unit in changes["start"]:
            systemd.start(unit)
        for unit in changes["stop"]:
            systemd.stop(unit)
        action = follower_action(changes, wanted, broken)
        if action == "reload":          # one SIGHUP re-reads the configuration for all
            systemd.reload_or_restart(FOLLOWER)
        elif action == "stop":
            systemd.stop(FOLLOWER)
        return status
    for name in sorted(set(state_mod.names_with_state(args.root_dir)) - wanted - broken):
        notes: list[str] = []
        control.down(host, name, notes=notes)       # a bridge with containers is kept
        for note in notes:
            print(f"fangen: {note}", file=sys.stderr)
        print(f"{name}: down")
    for name in sorted(wanted):
        try:
            result = control.up(host, fans[name], timeout=args.timeout)
        except FangenError as exc:
            print(f"fangen: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: up, slice {result.target.slice.network}")
    return status

