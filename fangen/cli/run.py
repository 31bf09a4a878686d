"""fangen run: follow the fans (fangen-follow.service's main process); with names,
bring them up first (by hand, without systemd)."""

from __future__ import annotations

from fangen import cli
from fangen.cli.up import add_no_systemd


def register(sub) -> None:
    parser = sub.add_parser(
        "run", help="follow the fans' underlays (bring the named fans up first)",
        description="Follow netlink events for the fans: when an underlay address "
                    "changes the slice moves with it, what someone else removed is put "
                    "back, and dnsmasq is restarted when it ends.  With NAME, bring those "
                    "fans up first (waiting for the underlay as long as it takes, or "
                    "--timeout) and follow them; without, follow every fan that is up "
                    "(fangen-follow.service).  One small process for all fans; the work "
                    "runs in short-lived children.  SIGHUP re-reads the configuration (a "
                    "fan removed or disabled is taken down); SIGTERM exits and leaves the "
                    "fans up ('fangen down NAME' takes one down).  Exits with 78 "
                    "(EX_CONFIG) when a named fan is not configured or its definition has "
                    "errors.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="a fan's name")
    cli.add_root_dir(parser)
    add_no_systemd(parser)
    parser.add_argument("--timeout", type=cli.seconds, default=None, metavar="SEC",
                        help="give up when the underlay has not appeared after SEC seconds "
                             "(default: wait for ever)")
    parser.set_defaults(func=run)


EX_CONFIG = 78      # sysexits.h: a named fan is not configured or broken


def run(args) -> int:
    # only the standard library stays in this process (fangen.runtime.follow)
    from fangen.runtime.follow import FAN_NAME, Follower

    for name in args.names:
        if not FAN_NAME.fullmatch(name) or name in (".", ".."):
            from fangen.cli.up import check_name
            from fangen.errors import FangenError
            try:
                check_name(name)
            except FangenError as exc:
                exc.exit_code = EX_CONFIG
                raise
    return Follower(args.root_dir, args.names or None, args.no_systemd,
                    args.timeout).run()
