"""fangen generate: validate, then write networkd files and dnsmasq configs."""

from __future__ import annotations

import os
import sys

from fangen import cli


def register(sub) -> None:
    parser = sub.add_parser(
        "generate", help="write systemd-networkd and dnsmasq files for the fans",
        description="Validate the fan.d configuration and write DIR/run/systemd/network/"
                    "10-fangen-* and DIR/run/fangen/NAME/*.  Fans with errors are reported "
                    "(exit 1) and their earlier output is left as it was; the others are "
                    "written.")
    cli.add_root_dir(parser)
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

    root = args.root_dir
    report, result, loaded = load_checked(root)
    cli.print_diagnostics(report)
    sources = {name: [_shown(path, root) for path in paths]
               for name, paths in loaded.fan_files.items()}
    files = plan.render_all(result.fans, sources, root)
    # With any error we cannot tell a removed fan from a broken one: remove nothing.
    outcome = writer.write_tree(root, files, remove_stale=not report.errors)
    if args.verbose:
        for key in ("written", "unchanged", "removed"):
            for rel in outcome[key]:
                print(f"{key}: /{rel}", file=sys.stderr)
    return 1 if report.errors else 0


def _shown(path: str, root: str) -> str:
    """A source file's name as it is on the target system (without the root prefix)."""
    if root in ("", "/"):
        return path
    return "/" + os.path.relpath(path, root)
