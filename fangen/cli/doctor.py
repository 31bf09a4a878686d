"""fangen doctor: check a fan on this host, one line per check; exit 1 when one fails."""

from __future__ import annotations

import json

from fangen import cli


def register(sub) -> None:
    parser = sub.add_parser(
        "doctor", help="check that a fan works on this host (reads only)",
        description="Check the fan NAME (default: every fan that is configured or up): "
                    "kernel support and datapath, tunnel, the bridge's address and the "
                    "overlay route, MTU along the path, forwarding, fangen's nft table, "
                    "forward chains that would drop fan traffic, dnsmasq answering a DHCP "
                    "DISCOVER on the bridge, Docker's networks on the bridge (icc, subnet, "
                    "ip-range, MTU), and with --peer that another fan host answers over the "
                    "fan.  One line per check: ok, warn, FAIL or skip.  Changes nothing; "
                    "exits 1 when a check fails.")
    parser.add_argument("name", nargs="?", metavar="NAME", help="the fan's name")
    parser.add_argument("--peer", metavar="ADDR",
                        help="an underlay or overlay address of another fan host: ping its "
                             "slice's gateway over the fan, also with a full-MTU packet")
    parser.add_argument("--docker-host", metavar="SOCKET",
                        help="Docker's API socket, as a path or unix:///path (default: "
                             "/var/run/docker.sock when it exists)")
    cli.add_root_dir(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args) -> int:
    if getattr(args, "name", None) is not None:
        from fangen.cli.up import check_name

        check_name(args.name)          # before it is used anywhere
    from fangen.doctor import checks, probe
    from fangen.runtime import control
    from fangen.runtime import state as state_mod
    from fangen.runtime.host import make_host

    fans, errors, _ = control.load_fans(args.root_dir)
    if args.name:
        names = [args.name]
    else:
        names = sorted(set(fans) | set(state_mod.names_with_state(args.root_dir)))
    host = make_host(args.root_dir, no_systemd=False)
    results, shared = [], {}
    for name in names:
        mine = tuple(d.message for d in errors if len(d.path) >= 3 and d.path[2] == name)
        facts = probe.facts(host, name, fans.get(name), mine, args.docker_host, args.peer,
                            shared)
        results.extend(checks.evaluate(facts))
    failed = any(c.status == "fail" for c in results)
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in results]},
                         indent=2))
    else:
        if not names:
            print("no fans are configured or up")
        for check in results:
            print(check.line())
    return 1 if failed else 0
