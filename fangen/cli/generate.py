"""fangen generate: validate, then write networkd files and dnsmasq configs."""

from __future__ import annotations

import os
import sys

from fangen import cli


def register(sub) -> None:
    parser = sub.add_parser(
        "generate", help="write systemd-networkd and dnsmasq files for the fans",
        description="Validate the fan.d configuration and write DIR/run/systemd/network/"
                    "10-fangen-* and DIR/run/fangen/NAME/*, all or nothing.  A fan with "
                    "errors is reported (exit 1) and its earlier output is left as it was; "
                    "the others are written.  A fan.d file that cannot be read or parsed "
                    "freezes every fan: nothing is written or removed (exit 1).")
    cli.add_root_dir(parser)
    cli.add_host_interfaces(parser)
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="list the files written, left unchanged and removed")
    parser.set_defaults(func=run)


def run(args) -> int:
    from fangen.runtime import lock

    # one writer at a time (stale removal races otherwise); best effort where the
    # lock file cannot be made: nothing can be written there either
    with lock.held(args.root_dir, "generate", required=False):
        return _generate(args)


def _generate(args) -> int:
    from fangen import plan, writer
    from fangen.cli.validate import load_checked
    from fangen.config.check import require_unfrozen

    root = args.root_dir
    report, result, loaded = load_checked(root, getattr(args, "host_interfaces", False))
    cli.print_diagnostics(report)
    require_unfrozen(result, printed=True)   # a broken file: write nothing, remove nothing
    sources = {name: [_shown(path, root) for path in paths]
               for name, paths in loaded.fan_files.items()}
    previous = read_manifest(root)
    files, keep = plan.render_set(result.fans, sources, root, result.broken, previous)
    # a broken fan whose files we cannot tell apart (no manifest yet): remove nothing
    remove_stale = not result.broken or previous is not None
    outcome = writer.write_tree(root, files, remove_stale=remove_stale, keep=keep)
    if args.verbose:
        for key in ("written", "unchanged", "removed"):
            for rel in outcome[key]:
                print(f"{key}: /{rel}", file=sys.stderr)
    return 1 if report.errors else 0


def read_manifest(root: str) -> dict | None:
    """The last generate's {fan: [files]}, or None when there is none (or it is damaged)."""
    from fangen import plan
    from fangen.config.loader import read_limited
    from fangen.render import names

    try:
        raw = read_limited(os.path.join(root, names.MANIFEST))
    except OSError:
        return None
    return plan.parse_manifest(raw.decode("utf-8", errors="replace"))


def _shown(path: str, root: str) -> str:
    """A source file's name as it is on the target system (without the root prefix)."""
    if root in ("", "/"):
        return path
    return "/" + os.path.relpath(path, root)
