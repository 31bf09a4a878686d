"""fangen generate: validate, then write networkd files and dnsmasq configs.

It runs at boot before systemd-networkd, so it is built to be cheap: when the memo
of the last clean run (``fangen.fingerprint``) still holds -- the same code, every
read answered as then -- it checks that run's files are in place and exits 0, or
writes them again (at boot /run is empty) without loading YAML, validating or
rendering; only otherwise does it run in full.
"""

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
                    "freezes every fan: nothing is written or removed (exit 1).  When "
                    "nothing it reads changed since its last run without diagnostics "
                    "(/var/cache/fangen/generate.memo), it only puts that run's files "
                    "back where they are missing or changed.")
    cli.add_root_dir(parser)
    cli.add_host_interfaces(parser)
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="list the files written, left unchanged and removed")
    parser.set_defaults(func=run)


class Args:
    """generate's arguments, as argparse would give them."""

    def __init__(self, root_dir: str = "/", host_interfaces: bool = False,
                 verbose: bool = False):
        self.command = "generate"
        self.root_dir = root_dir
        self.host_interfaces = host_interfaces
        self.verbose = verbose
        self.func = run


def quick_args(argv: list[str]) -> Args | None:
    """The arguments of a plain command line (each option at most once, exact spellings,
    an existing --root-dir), without argparse; None for anything else, which the
    parser then handles (and reports) as always."""
    args = Args()
    seen = set()
    rest = list(argv)
    while rest:
        word = rest.pop(0)
        option, eq, value = word.partition("=")
        if option in seen:
            return None
        seen.add(option)
        if option == "--root-dir":
            if not eq:
                if not rest or rest[0].startswith("-"):
                    return None
                value = rest.pop(0)
            if not os.path.isdir(value):
                return None
            args.root_dir = value
        elif eq:
            return None
        elif word == "--host-interfaces":
            args.host_interfaces = True
        elif word in ("--verbose", "-v") and not args.verbose:
            args.verbose = True
        else:
            return None
    return args


def run(args) -> int:
    return generate(args.root_dir, args.host_interfaces, args.verbose)


def generate(root: str = "/", host_interfaces: bool = False, verbose: bool = False) -> int:
    """Validate the configuration under ``root`` and write its files; the exit status
    (diagnostics printed to stderr; with ``verbose``, the files written, left unchanged
    and removed).  ``fangen apply`` calls it too."""
    from fangen import fingerprint, hostnames

    live = hostnames.live_wanted(root, host_interfaces)
    if not verbose:
        memo = fingerprint.load(root)
        if memo is not None and fingerprint.holds(root, live, memo) and \
                fingerprint.settled(root, memo):
            return 0                    # nothing to write, remove or report: no lock

    from fangen.runtime import lock

    # one writer at a time (stale removal races otherwise); best effort where the
    # lock file cannot be made: nothing can be written there either
    with lock.held(root, "generate", required=False):
        return _generate(root, live, host_interfaces, verbose)


def _generate(root: str, live: bool, host_interfaces: bool, verbose: bool) -> int:
    from fangen import fingerprint, writer

    memo = fingerprint.load(root)          # again: another generate may have run
    if memo is not None and fingerprint.holds(root, live, memo):
        # the same inputs as the last clean run: its files, as it wrote them
        _report(verbose, writer.write_tree(root, memo.files))
        return 0
    return _full(root, live, host_interfaces, verbose)


def _full(root: str, live: bool, host_interfaces: bool, verbose: bool) -> int:
    from fangen import fingerprint, writer
    from fangen import generate as rendered
    from fangen.config import files as config_files
    from fangen.config.check import load_for_host, require_unfrozen

    code = fingerprint.code(root, live)
    with config_files.recording() as tape:      # every read the outcome depends on
        report, result, loaded = load_for_host(root, host_interfaces)
    cli.print_diagnostics(report)
    require_unfrozen(result, printed=True)   # a broken file: write nothing, remove nothing
    sources = {name: [_shown(path, root) for path in paths]
               for name, paths in loaded.fan_files.items()}
    # the last run's files of a fan that is broken now are kept (carried over)
    previous = read_manifest(root) if result.broken else None
    files, keep = rendered.render_set(result.fans, sources, root, result.broken, previous)
    # a broken fan whose files we cannot tell apart (no manifest yet): remove nothing
    remove_stale = not result.broken or previous is not None
    _report(verbose, writer.write_tree(root, files, remove_stale=remove_stale, keep=keep))
    if not report.items and not result.broken:
        fingerprint.store(root, code, tape, files)      # clean: the next run may skip it all
    return 1 if report.errors else 0


def _report(verbose: bool, outcome: dict) -> None:
    if verbose:
        for key in ("written", "unchanged", "removed"):
            for rel in outcome[key]:
                print(f"{key}: /{rel}", file=sys.stderr)


def read_manifest(root: str) -> dict | None:
    """The last generate's {fan: [files]}, or None when there is none (or it is damaged)."""
    from fangen import generate as rendered
    from fangen.config.files import read_limited
    from fangen.render import names

    try:
        raw = read_limited(os.path.join(root, names.MANIFEST))
    except OSError:
        return None
    return rendered.parse_manifest(raw.decode("utf-8", errors="replace"))


def _shown(path: str, root: str) -> str:
    """A source file's name as it is on the target system (without the root prefix)."""
    if root in ("", "/"):
        return path
    return "/" + os.path.relpath(path, root)
