"""fangen map: which underlay host owns an overlay address, and which slices a host owns."""

from __future__ import annotations

import json

from fangen import cli
from fangen.errors import FangenError


def register(sub) -> None:
    parser = sub.add_parser(
        "map", help="map an overlay address to its underlay host, or a host to its slice",
        description="For an overlay address (IPv4, or IPv6 in a dual-stack fan's overlay6) "
                    "print the underlay host that owns it and its slice; for an underlay "
                    "host address print its slice.  A dual-stack fan also prints the "
                    "host's IPv6 slice.")
    parser.add_argument("address", metavar="ADDRESS", help="an IPv4 or IPv6 address")
    parser.add_argument("--overlay", metavar="NET/LEN", help="overlay network")
    parser.add_argument("--underlay", metavar="NET/LEN", help="underlay network")
    parser.add_argument("--overlay6", metavar="NET/LEN",
                        help="IPv6 overlay network (a dual-stack fan), with --overlay")
    parser.add_argument("--fan", metavar="NAME", help="take both networks from this fan's "
                                                      "definition instead")
    cli.add_root_dir(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args) -> int:
    import ipaddress

    from fangen.fanmap import FanMap, FanMap6, FanMapError, resolve

    try:
        address = ipaddress.ip_address(args.address)
    except ValueError:
        raise FangenError(f"'{args.address}' is not an IPv4 or IPv6 address") from None
    if args.fan:
        from fangen.cli.up import check_name

        check_name(args.fan)
        if args.overlay or args.underlay or args.overlay6:
            raise FangenError("give either --fan or --overlay and --underlay, not both")
        fmap, fmap6 = _fan_map(args.fan, args.root_dir, address)
    else:
        if not (args.overlay and args.underlay):
            raise FangenError("give --overlay NET/LEN and --underlay NET/LEN (or --fan NAME)")
        try:
            fmap = FanMap(_network(args.overlay, "overlay"), _network(args.underlay, "underlay"))
            fmap6 = None if not args.overlay6 else \
                FanMap6(_network6(args.overlay6), fmap.underlay)
        except FanMapError as exc:
            raise FangenError(str(exc)) from None
    try:
        answer = resolve(fmap, address, fmap6)
    except FanMapError as exc:
        raise FangenError(str(exc)) from None
    six = f" and IPv6 slice {answer['slice6']}" if "slice6" in answer else ""
    if args.json:
        print(json.dumps(answer, sort_keys=True))
    elif answer["address"] == answer["underlay_host"]:
        print(f"underlay host {answer['address']} owns slice {answer['slice']}{six}")
    elif address.version == 6:
        print(f"{answer['address']} is in IPv6 slice {answer['slice6']} owned by underlay "
              f"host {answer['underlay_host']} (slice {answer['slice']})")
    else:
        print(f"{answer['address']} is in slice {answer['slice']} "
              f"owned by underlay host {answer['underlay_host']}{six}")
    return 0


def _network6(text: str):
    import ipaddress

    try:
        return ipaddress.IPv6Network(text)
    except ValueError as exc:
        from fangen.errors import shown

        raise FangenError(f"invalid overlay6 {shown(text)}: {str(exc)[:200]}") from None


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
        if address.version == 6:
            raise FangenError(f"fan '{name}' finds its underlay at run time: give an IPv4 "
                              "address, or --overlay, --underlay and --overlay6")
        # interface/default underlays: the prefix is known, the network is the address's own
        underlay = ipaddress_network(address, fan.underlay.prefixlen)
    try:
        return FanMap(fan.overlay, underlay), fan.fanmap6(underlay)
    except FanMapError as exc:
        raise FangenError(str(exc)) from None


def ipaddress_network(address, prefixlen: int):
    import ipaddress

    return ipaddress.IPv4Network((address, prefixlen), strict=False)
