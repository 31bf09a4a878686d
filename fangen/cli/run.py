"""fangen run: up, then follow the underlay (the fangen@NAME.service main process)."""

from __future__ import annotations

from fangen import cli
from fangen.cli.up import add_no_systemd


def register(sub) -> None:
    parser = sub.add_parser(
        "run", help="bring a fan up and follow its underlay until stopped",
        description="Bring the fan up (waiting for the underlay as long as it takes, or "
                    "--timeout), then follow netlink events: when the underlay address "
                    "changes the slice moves with it; dnsmasq is restarted when it ends.  "
                    "SIGHUP re-reads the configuration; SIGTERM exits and leaves the fan "
                    "up ('fangen down NAME' takes it down).  Exits with 78 (EX_CONFIG) when "
                    "the fan is not configured or its definition has errors.")
    parser.add_argument("name", metavar="NAME", help="the fan's name")
    cli.add_root_dir(parser)
    add_no_systemd(parser)
    parser.add_argument("--timeout", type=float, default=None, metavar="SEC",
                        help="give up when the underlay has not appeared after SEC seconds "
                             "(default: wait for ever)")
    parser.set_defaults(func=run)


EX_CONFIG = 78      # sysexits.h; fangen@.service has RestartPreventExitStatus=78


def run(args) -> int:
    from fangen.cli.up import check_name
    from fangen.errors import FangenError
    from fangen.runtime import control
    from fangen.runtime.follow import Follower
    from fangen.runtime.host import make_host

    try:
        check_name(args.name)
        control.fan_named(args.root_dir, args.name)
    except FangenError as exc:
        # not a fan name, not configured (removed), or broken: a restart would fail the
        # same way
        exc.exit_code = EX_CONFIG
        raise
    host = make_host(args.root_dir, args.no_systemd)
    return Follower(host, args.name).run(timeout=args.timeout)
