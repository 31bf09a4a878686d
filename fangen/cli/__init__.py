"""Command line: argparse dispatch to one thin module per command.

Each command module defines ``register(subparsers)`` and ``run(args) -> int`` and
imports anything heavy (jsonschema, pyroute2, dbus) inside ``run``, so a command
pays only for what it uses.  This is the one place that turns errors into
messages and exit codes: FangenError -> its diagnostics or message, exit 1; no
tracebacks for user mistakes.

``fangen generate`` runs at boot, before systemd-networkd: its plain forms
(``--root-dir DIR``, ``--host-interfaces``, ``--verbose``) skip argparse, which
costs more than a generate that finds nothing changed (``generate.quick_args``);
anything else, ``--help`` included, goes through the parser as before.
"""

from __future__ import annotations

import sys

EXIT_INTERNAL = 70                  # sysexits.h EX_SOFTWARE

COMMANDS = ("validate", "generate", "map", "up", "down", "show", "apply", "run", "docker",
            "doctor")


def build_parser(commands=COMMANDS):
    """The argparse parser of ``commands`` (all by default)."""
    import argparse
    import importlib

    from fangen import __version__

    parser = argparse.ArgumentParser(
        prog="fangen",
        description="Fan networking for netplan and systemd-networkd: every host on an "
                    "underlay network owns a slice of a larger overlay, and traffic to "
                    "another host's slice is tunnelled to the host computed from the address.")
    parser.add_argument("--version", action="version", version=f"fangen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in commands:
        # every command in COMMANDS ships; one that does not import is a broken
        # installation, which main() reports
        importlib.import_module(f"fangen.cli.{name}").register(sub)
    return parser


def _directory(text: str) -> str:
    import argparse
    import os

    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: no such directory")
    return text


def seconds(text: str) -> float:
    """A --timeout: seconds, 0 or more; ``inf`` waits for ever (fangen@.service)."""
    import argparse
    import math

    from fangen.errors import shown

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"{shown(text)} is not a number of seconds (0 or more, or inf)")
    return value


def add_root_dir(parser) -> None:
    parser.add_argument("--root-dir", default="/", metavar="DIR", type=_directory,
                        help="read fan.d files from DIR/{lib,etc,run}/netplan/fan.d and write "
                             "output under DIR (default: /)")


def add_host_interfaces(parser) -> None:
    parser.add_argument("--host-interfaces", action="store_true",
                        help="also refuse fan device names that an interface of this network "
                             "namespace already has (always done with --root-dir /)")


def print_diagnostics(report, stream=None) -> None:
    stream = stream or sys.stderr
    for diag in sorted(report.items, key=lambda d: (d.severity != "warning", d.file or "",
                                                     d.line, d.col, d.message)):
        print(diag.format(), file=stream)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    wanted = [a for a in argv if not a.startswith("-")][:1]
    commands = wanted if wanted and wanted[0] in COMMANDS else COMMANDS
    args = None
    try:
        if argv[:1] == ["generate"]:
            from fangen.cli import generate

            args = generate.quick_args(argv[1:])
        if args is None:
            parser = build_parser(commands)
    except ImportError as exc:
        from fangen.errors import printable

        print(printable(f"fangen: cannot load its commands ({exc}): this installation of "
                        "fangen is broken; reinstall it"), file=sys.stderr)
        return EXIT_INTERNAL
    if args is None:
        args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return failure(exc)


def failure(exc: Exception) -> int:
    """The exit code for an exception out of a command, after its one-line message."""
    from fangen.errors import EXIT_ERROR, FangenError, print_error, printable

    if isinstance(exc, FangenError):
        return print_error(exc)
    if isinstance(exc, BrokenPipeError):
        return EXIT_ERROR
    if isinstance(exc, OSError):
        # filesystem trouble no command foresaw: the path and the OS's word, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(printable(f"fangen: {where}{exc.strerror or exc}"), file=sys.stderr)
        return EXIT_ERROR
    if isinstance(exc, (MemoryError, RecursionError)):
        print(f"fangen: out of resources: {type(exc).__name__}", file=sys.stderr)
        return EXIT_ERROR
    # a bug: still one line; FANGEN_DEBUG=1 shows it all
    import os

    if os.environ.get("FANGEN_DEBUG") == "1":
        raise exc
    print(printable(f"fangen: internal error ({type(exc).__name__}: {exc}); please "
                    "report it (FANGEN_DEBUG=1 shows where)"), file=sys.stderr)
    return EXIT_INTERNAL
