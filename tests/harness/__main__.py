"""python3 -m tests.harness cleanup [PREFIX]: remove leftover namespaces (default prefix 'fh')."""

import sys

from .ns import PREFIX, cleanup

if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0] != "cleanup":
        sys.exit("usage: python3 -m tests.harness cleanup [PREFIX]")
    prefix = args[1] if len(args) > 1 else PREFIX
    for name in cleanup(prefix):
        print(f"removed {name}")
