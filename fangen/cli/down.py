"""fangen down: remove what fangen made for a fan, from its state file alone."""

from __future__ import annotations

from fangen import cli
from fangen.cli.up import add_selection, check_selection


def register(sub) -> None:
    parser = sub.add_parser(
        "down", help="take a fan down (removes exactly what fangen made)",
        description="Remove every link, address, route, nft table, tc filter, file and "
                    "process that 'fangen up' recorded in DIR/run/fangen/NAME/state.json, "
                    "and nothing else; works after the fan left the configuration.  Taking "
                    "down a fan that is not up is not an error.")
    add_selection(parser, every="every fan that is up (configured or not)")
    cli.add_root_dir(parser)
    parser.add_argument("--dry-run", action="store_true",
                        help="print the actions without changing anything")
    parser.set_defaults(func=run)


def run(args) -> int:
    from fangen.runtime import control
    from fangen.runtime import state as state_mod
    from fangen.runtime.host import make_host

    check_selection(args)
    host = make_host(args.root_dir, no_systemd=False)
    chosen = state_mod.names_with_state(args.root_dir) if args.all else [args.name]
    for name in chosen:
        actions = control.down(host, name, dry_run=args.dry_run)
        if args.dry_run:
            print(f"# {name}")
            for action in actions:
                print(action)
        elif actions:
            print(f"{name}: down")
        elif not args.all:
            print(f"{name}: not up")
    return 0
