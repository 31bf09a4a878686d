"""fangen validate: load, check and report; prints OK with the fans found."""

from __future__ import annotations

import sys

from fangen import cli


def register(sub) -> None:
    parser = sub.add_parser("validate", help="check the fan.d configuration",
                            description="Check every fan.d file (JSON Schema and semantic "
                                        "checks, and names this host already uses) and "
                                        "print OK with the fans found.")
    cli.add_root_dir(parser)
    cli.add_host_interfaces(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from fangen.config.check import load_for_host

    report, result, loaded = load_for_host(args.root_dir, args.host_interfaces)
    cli.print_diagnostics(report)
    if result.frozen:
        print(f"fangen: {', '.join(_files(result.frozen))}: every fan would be frozen "
              "until this is fixed (see fan.d(5), SAFETY)", file=sys.stderr)
    if report.errors:
        return 1
    if not result.fans:
        print("OK: no fans defined" + ("" if loaded.files else " (no fan.d files)"))
        return 0
    described = []
    for fan in result.fans:
        state = "" if fan.enabled else ", disabled"
        six = f" + {fan.overlay6}" if fan.overlay6 is not None else ""
        described.append(f"{fan.name} ({fan.type}, {fan.overlay}{six} over "
                         f"{fan.underlay.spec}{state})")
    print("OK: " + ", ".join(described))
    return 0


def _files(diagnostics) -> list[str]:
    return sorted({d.file for d in diagnostics if d.file}) or ["the configuration"]
