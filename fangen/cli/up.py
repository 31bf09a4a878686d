"""fangen up: bring fans up on this host and return once they carry traffic."""

from __future__ import annotations

import sys

from fangen import cli
from fangen.errors import FangenError


def register(sub) -> None:
    parser = sub.add_parser(
        "up", help="bring a fan up (bridge, tunnel, datapath, NAT, dnsmasq)",
        description="Resolve the underlay (waiting for it up to --timeout), create what "
                    "networkd did not (bridge, tunnel), address the bridge with the slice's "
                    "first address, attach the datapath, install the nft table, start dnsmasq "
                    "and return once the fan carries traffic.  Running it again changes "
                    "nothing that is already right.")
    add_selection(parser)
    cli.add_root_dir(parser)
    parser.add_argument("--dry-run", action="store_true",
                        help="print the actions without changing anything")
    add_no_systemd(parser)
    parser.add_argument("--timeout", type=cli.seconds, default=30.0, metavar="SEC",
                        help="wait this long for the underlay (default 30; 0: do not wait; "
                             "inf: for ever)")
    parser.set_defaults(func=run)


def add_selection(parser, every: str = "every enabled fan") -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help="the fan's name")
    parser.add_argument("--all", "-a", action="store_true", help=every)


def add_no_systemd(parser) -> None:
    parser.add_argument("--no-systemd", action="store_true",
                        help="run dnsmasq as a plain process even where systemd runs "
                             "(default: a fangen-dnsmasq@ unit when systemd is PID 1 and "
                             "answers on D-Bus)")


def check_selection(args) -> None:
    if bool(args.name) == bool(args.all):
        raise FangenError("give a fan NAME or --all")
    if args.name:
        check_name(args.name)


def check_name(name: str) -> str:
    """A NAME argument must be a fan name before it is used anywhere (a path)."""
    from fangen.runtime.state import check_name as check

    return check(name)


def run(args) -> int:
    from fangen.runtime import control
    from fangen.runtime.host import make_host

    check_selection(args)
    # the configuration first: a broken file refuses before anything is touched
    if args.all:
        fans, errors, report = control.load_fans(args.root_dir)
        cli.print_diagnostics(report)
        chosen = [fan for fan in fans.values() if fan.enabled]
        status = 1 if errors else 0
    else:
        chosen = [control.fan_named(args.root_dir, args.name)]
        status = 0
    host = make_host(args.root_dir, args.no_systemd)
    for fan in sorted(chosen, key=lambda f: f.name):
        try:
            result = control.up(host, fan, timeout=args.timeout, dry_run=args.dry_run)
        except FangenError as exc:
            if not args.all:
                raise
            print(f"fangen: {exc}", file=sys.stderr)
            status = 1
            continue
        t = result.target
        for note in result.notes:
            print(f"fangen: {note}", file=sys.stderr)
        if args.dry_run:
            print(f"# {fan.name}: underlay {t.underlay.ifname} {t.underlay.address} "
                  f"({t.underlay.network}), slice {t.slice.network}, {t.datapath} datapath")
            from fangen.runtime import underlay_route
            routing = underlay_route.preview(host, fan, t.underlay)    # issue 15
            for action in [*result.actions, *routing]:
                print(action)
            if not result.actions and not routing:
                print("# nothing to do")
        else:
            state = "up" if result.actions else "already up, nothing changed"
            print(f"{fan.name}: {state}, slice {t.slice.network} via {t.underlay.ifname} "
                  f"{t.underlay.address} ({fan.type}, {t.datapath} datapath)")
    return status
