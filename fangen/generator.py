#!/usr/bin/python3 -IS
"""fangen's systemd generator (installed as /usr/lib/systemd/system-generators/fangen).

systemd.generator(7): runs very early, on every boot and every daemon-reload, with
one or three output directories; it may write only units, drop-ins and symlinks
there.  So this file parses no YAML and talks to nobody: when any fan.d/*.yaml
exists it links

  fangen.service  into multi-user.target.wants/

and nothing else.  fangen.service (After=systemd-networkd.service) runs `fangen
apply`: it writes the networkd and dnsmasq files, has networkd reload them over
D-Bus and starts a fangen@NAME.service per fan.  Nothing here is ordered before
systemd-networkd, network.target or network-online.target: the host's own
networking (the underlay's DHCP) never waits for a Python process of fangen.
It imports only os and sys, so it costs about what an empty Python start does
(a YAML import alone would cost more than netplan's whole generator).  It does
not instantiate fangen@NAME itself: the names are YAML keys (flow style, quoting,
layering by file name, `enabled: false`, broken files), which only a YAML parser
gets right, and the files networkd needs still come from `fangen apply`.

Usage: fangen [--root-dir DIR] [--unit-dir DIR] NORMAL_DIR [EARLY_DIR LATE_DIR]
"""

import os
import sys

LAYERS = ("lib", "etc", "run")
UNIT_DIR = "/usr/lib/systemd/system"
# (directory in the output, unit): the only links made.  multi-user.target, not
# network.target: fangen.service must not hold up the host's network (issue 11).
LINKS = (
    ("multi-user.target.wants", "fangen.service"),
)


def has_fan_files(root):
    for layer in LAYERS:
        try:
            names = os.listdir(os.path.join(root, layer, "netplan", "fan.d"))
        except OSError:
            continue
        for name in names:
            if name.endswith(".yaml"):
                return True
    return False


def link(output, wants, unit, unit_dir):
    directory = os.path.join(output, wants)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, unit)
    target = os.path.join(unit_dir, unit)
    try:
        os.symlink(target, path)
    except FileExistsError:
        if os.readlink(path) != target:
            os.unlink(path)
            os.symlink(target, path)


def main(argv):
    root, unit_dir, dirs = "/", UNIT_DIR, []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("--root-dir", "--unit-dir") and args:
            value = args.pop(0)
            if arg == "--root-dir":
                root = value
            else:
                unit_dir = value
        else:
            dirs.append(arg)
    if len(dirs) not in (1, 3):
        sys.stderr.write("usage: fangen [--root-dir DIR] [--unit-dir DIR] "
                         "NORMAL_DIR [EARLY_DIR LATE_DIR]\n")
        return 2
    if not has_fan_files(root):
        return 0
    for wants, unit in LINKS:
        link(dirs[0], wants, unit, unit_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
