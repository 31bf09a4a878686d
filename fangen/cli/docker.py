"""fangen docker: what to give Docker so its containers sit in this host's slice."""

from __future__ import annotations

import json
import shlex
import sys

from fangen import cli


def register(sub) -> None:
    parser = sub.add_parser(
        "docker", help="print Docker settings for this host's slice of a fan",
        description="Print what Docker needs to put containers on the fan bridge with "
                    "addresses from this host's slice: by default the keys for "
                    "/etc/docker/daemon.json (bridge, fixed-cidr, mtu, icc, ip-masq); with "
                    "--network the 'docker network create' command of a user-defined "
                    "network instead.  The fan must be up (the slice follows the underlay "
                    "address); run it again, and restart Docker or recreate the network, "
                    "when the slice moves.")
    parser.add_argument("name", metavar="NAME", help="the fan's name")
    parser.add_argument("--network", metavar="NETWORK",
                        help="print the 'docker network create' command of a network named "
                             "NETWORK instead")
    cli.add_root_dir(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    if getattr(args, "name", None) is not None:
        from fangen.cli.up import check_name

        check_name(args.name)          # before it is used anywhere
    from fangen.engines import docker
    from fangen.engines.common import EngineNetwork
    from fangen.runtime import control
    from fangen.runtime import state as state_mod

    fans, _, _ = control.load_fans(args.root_dir)
    fan = fans.get(args.name)
    state = state_mod.load(args.root_dir, args.name)
    if fan is None and state is None:
        control.fan_named(args.root_dir, args.name)        # raises the right error
    net = EngineNetwork.from_state(state or state_mod.State(args.name), fan)
    if net.dhcp:
        print(f"fangen: warning: {net.fan} has dhcp: true, so fangen's dnsmasq hands out "
              f"{net.slice} on {net.bridge} too; set 'dhcp: false' for a fan that Docker "
              f"uses", file=sys.stderr)
    if args.network is None:
        print(json.dumps(docker.daemon_json(net), indent=2))
    else:
        print(shlex.join(docker.network_create(net, args.network)))
    return 0
