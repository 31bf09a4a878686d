"""fangen map: which underlay host owns an overlay address, and which slice a host owns."""

from __future__ import annotations

import json

from fangen import cli
from fangen.errors import FangenError


def register(sub) -> None:
    parser = sub.add_parser(
        "map", help="map an overlay address to its underlay host, or a host to its slice",
        description="For an overlay address print the underlay host that owns it and its "
                    "slice; for an underlay host address print its slice.")
    parser.add_argument("address", metavar="ADDRESS", help="an IPv4 address")
    parser.add_argument("--overlay", metavar="NET/LEN", help="overlay network")
    parser.add_argument("--underlay", metavar="NET/LEN", help="underlay network")
    parser.add_argument("--fan", metavar="NAME", help="take both networks from this fan's "
                                                      "definition instead")
    cli.add_root_dir(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args) -> int:
    import ipaddress

    from fangen.fanmap import FanMap, FanMapError, resolve

    try:
        address = ipaddress.IPv4Address(args.address)
    except ValueError:
        raise FangenError(f"'{args.address}' is not an IPv4 address") from None
    if args.fan:
        from fangen.cli.up import check_name

        check_name(args.fan)
        if args.overlay or args.underlay:
            raise FangenError("give either --fan or --overlay and --underlay, not both")
        fmap = _fan_map(args.fan, args.root_dir, address)
    else:
        if not (args.overlay and args.underlay):
            raise FangenError("give --overlay NET/LEN and --underlay NET/LEN (or --fan NAME)")
        try:
            fmap = FanMap(_network(args.overlay, "overlay"), _network(args.underlay, "underlay"))
        except FanMapError as exc:
            raise FangenError(str(exc)) from None
    try:
        answer = resolve(fmap, address)
    except FanMapError as exc:
        raise FangenError(str(exc)) from None
    if args.json:
        print(json.dumps(answer, sort_keys=True))
    elif answer["address"] == answer["underlay_host"]:
        print(f"underlay host {answer['address']} owns slice {answer['slice']}")
    else:
        print(f"{answer['address']} is in slice {answer['slice']} "
              f"owned by underlay host {answer['underlay_host']}")
    return 0


def _network(text: str, what: str):
    import ipaddress

    try:
        return ipaddress.IPv4Network(text)
    except ValueError as exc:
        raise FangenError(f"invalid {what} '{text}': {exc}") from None


def _fan_map(name: str, root: str, address):
    from fangen.config.check import load_for_host
    from fangen.config.check import require_unfrozen
    from fangen.errors import ConfigError
    from fangen.fanmap import FanMap, FanMapError

    report, result, _ = load_for_host(root)
    require_unfrozen(result)
    fans = {fan.name: fan for fan in result.fans}
    if name not in fans:
        if report.errors:
            raise ConfigError(report.errors)
        raise FangenError(f"no fan named '{name}' under {root}")
    fan = fans[name]
    underlay = fan.underlay.network
    if underlay is None:
        # interface/default underlays: the prefix is known, the network is the address's own
        underlay = ipaddress_network(address, fan.underlay.prefixlen)
    try:
        return FanMap(fan.overlay, underlay)
    except FanMapError as exc:
        raise FangenError(str(exc)) from None


def ipaddress_network(address, prefixlen: int):
    import ipaddress

    return ipaddress.IPv4Network((address, prefixlen), strict=False)
