"""fangen show: the fans on this host, in the columns fanctl users know first."""

from __future__ import annotations

import json
import sys

from fangen import cli
from fangen.errors import FangenError

COLUMNS = (("Bridge", "bridge"), ("Overlay", "overlay"), ("Underlay", "underlay"),
           ("Slice", "slice"), ("Type", "type"), ("Datapath", "datapath"), ("State", "state"))


def register(sub) -> None:
    parser = sub.add_parser("show", help="list the fans and their state",
                            description="List configured fans and fans that are up: Bridge, "
                                        "Overlay, Underlay, Slice, Type, Datapath, State "
                                        "(up, broken, down, disabled, removed).  A broken "
                                        "fan's reasons follow the table.")
    parser.add_argument("name", nargs="?", metavar="NAME", help="only this fan")
    cli.add_root_dir(parser)
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list (also: tunnel, gateway, bridge_address, mtu, "
                             "underlay_address, underlay_interface, overlay6, slice6, "
                             "problems)")
    parser.set_defaults(func=run)


def table(rows: list[dict]) -> str:
    cells = [[title for title, _ in COLUMNS]]
    for row in rows:
        cells.append([str(row.get(key) or "-") for _, key in COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in cells) + "\n"


def run(args) -> int:
    if getattr(args, "name", None) is not None:
        from fangen.cli.up import check_name

        check_name(args.name)          # before it is used anywhere
    from pyroute2 import IPRoute

    from fangen.config.check import Frozen
    from fangen.runtime import control
    from fangen.runtime.host import Host

    frozen = None
    try:
        fans, errors, report = control.load_fans(args.root_dir)
        cli.print_diagnostics(report)
    except Frozen as exc:                       # show what runs; it stays as it is
        frozen, fans, errors = exc, {}, exc.diagnostics
        for diag in exc.diagnostics:
            print(diag.format(), file=sys.stderr)
        print(exc.summary, file=sys.stderr)
    with IPRoute() as ipr:
        rows = control.status(Host(ipr, None, root=args.root_dir), fans)
    if frozen is not None:
        for row in rows:
            row["state"] = "frozen"
    if args.name:
        rows = [row for row in rows if row["name"] == args.name]
        if not rows:
            raise FangenError(f"no fan named '{args.name}' is configured or up")
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
    else:
        print(table(rows), end="")
        for row in rows:
            for reason in row.get("problems") or []:
                print(f"{row['name']}: {reason}")
    return 1 if errors else 0
