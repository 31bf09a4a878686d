"""fangen down: remove what fangen made for a fan, from its state file (or its marks)."""

from __future__ import annotations

import sys

from fangen import cli
from fangen.cli.up import add_selection, check_selection


def register(sub) -> None:
    parser = sub.add_parser(
        "down", help="take a fan down (removes exactly what fangen made)",
        description="Remove every link, address, route, nft table, tc filter, file and "
                    "process that 'fangen up' recorded in DIR/run/fangen/NAME/state.json, "
                    "and nothing else; works after the fan left the configuration.  Taking "
                    "down a fan that is not up is not an error.  A bridge with ports fangen "
                    "did not make (containers) is kept, without its address, unless "
                    "--purge.  With --force, also find the fan's objects by fangen's marks, "
                    "for a state file that is missing or corrupt.")
    add_selection(parser, every="every fan that is up (configured or not)")
    cli.add_root_dir(parser)
    parser.add_argument("--dry-run", action="store_true",
                        help="print the actions without changing anything")
    parser.add_argument("--force", action="store_true",
                        help="also remove what carries the fan's marks (links with the alias "
                             "fangen:NAME, nft table fangen-NAME, fangen's dnsmasq for NAME, "
                             "its drop-ins and run directory), with or without a readable "
                             "state file")
    parser.add_argument("--purge", action="store_true",
                        help="delete the fan's bridge even when containers are attached to "
                             "it (they are detached for good)")
    parser.add_argument("--if-unconfigured", action="store_true",
                        help="only when the fan is no longer configured, is disabled or its "
                             "bridge was renamed; otherwise leave it up (what "
                             "fangen@NAME.service runs when it stops, so a restart keeps "
                             "containers attached)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from fangen.runtime import control
    from fangen.runtime import state as state_mod
    from fangen.runtime.host import make_host

    check_selection(args)
    host = make_host(args.root_dir, no_systemd=False)
    if not args.all:
        chosen = [args.name]
    elif args.force:
        chosen = _marked_names(host)
    else:
        chosen = state_mod.names_with_state(args.root_dir)
    if args.force and args.if_unconfigured:
        from fangen.errors import FangenError
        raise FangenError("--force and --if-unconfigured do not go together")
    for name in chosen:
        notes: list[str] = []
        if args.force:
            actions = control.force_down(host, name, dry_run=args.dry_run, notes=notes,
                                         purge=args.purge)
        elif args.if_unconfigured:
            actions = control.down_if_unconfigured(host, name, dry_run=args.dry_run,
                                                   notes=notes, purge=args.purge)
        else:
            actions = control.down(host, name, dry_run=args.dry_run, notes=notes,
                                   purge=args.purge)
        for note in notes:
            print(f"fangen: {note}", file=sys.stderr)
        if actions is None:                 # --if-unconfigured: left up (the note says why)
            continue
        if args.dry_run:
            print(f"# {name}")
            for action in actions:
                print(action)
        elif actions:
            print(f"{name}: down")
        elif not args.all:
            print(f"{name}: not up")
    return 0


def _marked_names(host) -> list[str]:
    """--all --force: every fan with a run directory, a marked link or an nft table."""
    import os

    from fangen.render import names
    from fangen.render.nft import TABLE_PREFIX
    from fangen.runtime.netlink import Netlink
    from fangen.runtime.state import FAN_NAME, MARK_PREFIX

    found = set()
    try:
        found.update(os.listdir(os.path.join(host.root, names.STATE_DIR)))
    except OSError:
        pass
    found.update(alias[len(MARK_PREFIX):] for alias in Netlink(host.ipr).aliases().values()
                 if alias.startswith(MARK_PREFIX))
    found.update(t[len(TABLE_PREFIX):] for t in host.nft.tables() if t.startswith(TABLE_PREFIX))
    return sorted(n for n in found if FAN_NAME.fullmatch(n))
