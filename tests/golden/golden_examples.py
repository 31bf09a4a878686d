"""The examples under examples/ and how each is installed on a test root.

Shared by tests/golden/test_golden.py and tests/unit/test_examples.py.  An example is either a
top-level ``examples/NAME.yaml`` or a directory ``examples/NAME/`` holding one
``*-fan.yaml`` (the fan.d file) beside the files for another program.
"""

from __future__ import annotations

import os
import shutil

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, "examples")
FAN_DIR = os.path.join("etc", "netplan", "fan.d")


def examples() -> dict[str, str]:
    """{example name: path of its fan.d file}, sorted by name."""
    found = {}
    for entry in sorted(os.listdir(EXAMPLES)):
        path = os.path.join(EXAMPLES, entry)
        if entry.endswith(".yaml") and os.path.isfile(path):
            found[entry[:-len(".yaml")]] = path
        elif os.path.isdir(path):
            fan_files = sorted(f for f in os.listdir(path) if f.endswith("-fan.yaml"))
            if len(fan_files) != 1:
                raise AssertionError(f"{path}: expected exactly one *-fan.yaml, "
                                     f"found {fan_files}")
            found[entry] = os.path.join(path, fan_files[0])
    return found


def install(fan_file: str, root: str) -> str:
    """Copy a fan.d file to ROOT/etc/netplan/fan.d/ with mode 0600, as an admin would."""
    directory = os.path.join(root, FAN_DIR)
    os.makedirs(directory, exist_ok=True)
    target = os.path.join(directory, os.path.basename(fan_file))
    shutil.copyfile(fan_file, target)
    os.chmod(target, 0o600)
    return target
