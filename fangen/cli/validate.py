"""fangen validate: load, check and report; prints OK with the fans found."""

from __future__ import annotations

from fangen import cli


def register(sub) -> None:
    parser = sub.add_parser("validate", help="check the fan.d configuration",
                            description="Check every fan.d file (JSON Schema and semantic "
                                        "checks) and print OK with the fans found.")
    cli.add_root_dir(parser)
    parser.set_defaults(func=run)


def load_checked(root: str):
    """(report, result, loaded) for the configuration under ``root``."""
    from fangen.config import loader, validate
    from fangen.errors import Report

    report = Report()
    loaded = loader.load(root, report)
    result = validate.validate(loaded, report)
    return report, result, loaded


def run(args) -> int:
    report, result, loaded = load_checked(args.root_dir)
    cli.print_diagnostics(report)
    if report.errors:
        return 1
    if not result.fans:
        print("OK: no fans defined" + ("" if loaded.files else " (no fan.d files)"))
        return 0
    described = []
    for fan in result.fans:
        state = "" if fan.enabled else ", disabled"
        described.append(f"{fan.name} ({fan.type}, {fan.overlay} over {fan.underlay.spec}{state})")
    print("OK: " + ", ".join(described))
    return 0
