"""Hostile fan.d contents and their exact outcomes (grow this table; see README.md).

Each case is the content of ``etc/netplan/fan.d/50-hostile.yaml``, installed beside a
good fan (``GOOD``, fan ``good``, in ``10-good.yaml``) whose output an earlier
``generate`` wrote.  ``expect`` holds the first line of every diagnostic ``validate``
prints, sorted, with ``F`` for the hostile file's path.  The class says what may
change: FROZEN (a file-level problem: nothing is written or removed), FAN (fan ``bad``
is refused and gets no files; ``good`` is untouched and may change), CLASH (``bad``
clashes with ``good``: both are refused and frozen as they were), OK (accepted).
"""

FROZEN, FAN, CLASH, OK = "frozen", "fan", "clash", "ok"

GOOD = b"""network:
  version: 2
  fan:
    good:
      overlay: 250.0.0.0/8
      underlay: 172.16.3.4/16
      mtu: 1450
"""


def bad(extra: str = "", name: str = "bad", overlay: str = "251.0.0.0/8",
        underlay: str = "10.9.0.0/16") -> bytes:
    """A fan ``bad`` with one hostile line (YAML, indented under the fan)."""
    text = (f"network:\n  fan:\n    {name}:\n      overlay: {overlay}\n"
            f"      underlay: {underlay}\n")
    if extra:
        text += "".join(f"      {line}\n" for line in extra.splitlines())
    return text.encode("utf-8")


E = "F:{}: Error in fan definition: "
Y = "F:{}: Invalid YAML: "
NESTED = "document nested deeper than 32 levels"

CASES = [
    # -- the file cannot be parsed, or has the wrong shape: every fan frozen ----------------
    ("syntax-indent", b"network:\n  fan:\n    bad:\n      overlay: 251.0.0.0/8\n     x: 1\n",
     FROZEN, [Y.format("5:6") + "did not find expected key"]),
    ("tab-indent", b"network:\n\tfan: {}\n", FROZEN,
     [Y.format("2:1") + "found character that cannot start any token"]),
    ("deep-flow-list", b"network: " + b"[" * 100000 + b"]" * 100000, FROZEN,
     [Y.format("1:41") + NESTED]),
    ("deep-flow-map", b"network: " + b"{a: " * 50000 + b"}" * 50000, FROZEN,
     [Y.format("1:134") + NESTED]),
    ("deep-block", b"".join(b" " * i + b"a:\n" for i in range(1000)), FROZEN,
     [Y.format("33:33") + NESTED]),
    ("alias-bomb", b"a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + b"".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n".encode() for i in range(1, 12)),
     FROZEN, [Y.format("5:15") + "document too large: more than 20000 values (after "
                                 "expanding aliases)"]),
    ("alias-undefined", b"network:\n  fan: *nowhere\n", FROZEN,
     [Y.format("2:8") + "unknown alias '*nowhere' (not defined before, or inside itself)"]),
    ("alias-recursive", b"network: &n {fan: *n}\n", FROZEN,
     [Y.format("1:19") + "unknown alias '*n' (not defined before, or inside itself)"]),
    ("two-documents", b"network: {}\n---\nnetwork: {}\n", FROZEN,
     [Y.format("2:1") + "expected a single document, found another one ('---')"]),
    ("top-list", b"- network\n", FROZEN,
     [E.format("1:1") + "a fan.d file holds a mapping with 'network:' at the top, not a list"]),
    ("top-scalar", b"fan\n", FROZEN,
     [E.format("1:1") + "a fan.d file holds a mapping with 'network:' at the top, not the "
                        "text 'fan'"]),
    ("network-null", b"network:\n", FROZEN,
     [E.format("1:9") + "'network' must be a mapping, not nothing (null)"]),
    ("network-scalar", b"network: 5\n", FROZEN,
     [E.format("1:10") + "'network' must be a mapping, not the value 5"]),
    ("fan-null", b"network:\n  fan:\n", FROZEN,
     [E.format("2:7") + "'fan' must be a mapping of fans by name, not nothing (null)"]),
    ("fan-list", b"network:\n  fan: [bad]\n", FROZEN,
     [E.format("2:8") + "'fan' must be a mapping of fans by name, not a list"]),
    ("network-unknown-key", b"network:\n  ethernets: {eth0: {dhcp4: true}}\n", FROZEN,
     [E.format("2:3") + "unknown key 'ethernets' (expected one of: fan, version)"]),
    ("version-3", b"network:\n  version: 3\n", FROZEN,
     [E.format("2:12") + "'version' must be 2, not 3"]),
    ("version-string", b"network:\n  version: '2'\n", FROZEN,
     [E.format("2:12") + "'version' must be 2, not '2'"]),
    ("top-unknown-key", b"fan: {}\n", FROZEN,
     [E.format("1:1") + "unknown key 'fan' (expected one of: network)"]),
    ("nul-byte", b"network:\n  fan:\n    b\x00d: {}\n", FROZEN,
     [Y.format("3:6") + "unacceptable character #x0000: control characters are not allowed"]),
    ("escape-byte", b"network:\n  fan:\n    b\x1b[31md: {}\n", FROZEN,
     [Y.format("3:6") + "unacceptable character #x001b: control characters are not allowed"]),
    ("invalid-utf8", b"network:\n  fan: \xff\n", FROZEN,
     [Y.format("2:8") + "unacceptable character #x00ff: invalid leading UTF-8 octet"]),
    ("merge-key", b"base: &b {overlay: 251.0.0.0/8}\nnetwork:\n  fan:\n    bad:\n      <<: *b\n",
     FROZEN, [Y.format("5:7") + "merge keys ('<<') are not supported"]),
    ("python-tag", b"network: !!python/object/apply:os.system [true]\n", FROZEN,
     [Y.format("1:10") + "unsupported tag 'tag:yaml.org,2002:python/object/apply:os.system' "
                         "on a list"]),
    ("set-tag", b"network:\n  fan: !!set {bad}\n", FROZEN,
     [Y.format("2:8") + "unsupported tag 'tag:yaml.org,2002:set' on a mapping"]),
    ("local-tag-scalar", b"network:\n  fan: !mine x\n", FROZEN,
     [Y.format("2:8") + "could not determine a constructor for the tag '!mine'"]),
    ("huge-file", b"# " + b"x" * (1 << 20) + b"\n", FROZEN,
     [Y.format("1:1") + "file larger than 1048576 bytes; a fan definition is a few lines"]),
    ("huge-integer", bad("mtu: " + "9" * 5000), FROZEN,
     [Y.format("6:12") + "number too large"]),
    ("bad-timestamp", bad("mtu: 2001-13-45"), FROZEN,
     [Y.format("6:12") + "invalid value: month must be in 1..12"]),
    ("bad-base64", bad("mtu: !!binary zz"), FROZEN,
     [Y.format("6:12") + "failed to decode base64 data: Incorrect padding"]),
    ("duplicate-key", bad("overlay: 252.0.0.0/8"), FROZEN,
     [Y.format("6:7") + "duplicate key 'overlay'"]),
    ("list-as-key", b"network:\n  ? [a]\n  : 1\n", FROZEN,
     [Y.format("2:5") + "mapping keys must be scalars"]),
    ("disable-with-syntax-error", b"network:\n  fan:\n    good:\n      enabled: false\n    x\n",
     FROZEN, [Y.format("6:1") + "could not find expected ':'"]),

    # -- one fan's definition is wrong: that fan alone is refused ----------------------------
    ("float-mtu", bad("mtu: 1450.0"), FAN,
     [E.format("6:12") + "bad: 'mtu' must be an integer, not 1450.0"]),
    ("nan-mtu", bad("mtu: .nan"), FAN,
     [E.format("6:12") + "bad: 'mtu' must be an integer, not nan"]),
    ("inf-lease", bad("lease-time: .inf"), FAN,
     [E.format("6:19") + "bad: 'lease-time' must be an integer, not inf",
      E.format("6:19") + "bad: lease-time inf out of range: must be 120..31536000"]),
    ("exponent-lease", bad("lease-time: 1.0e+3"), FAN,
     [E.format("6:19") + "bad: 'lease-time' must be an integer, not 1000.0"]),
    ("e-notation-is-text", bad("lease-time: 1e3"), FAN,
     [E.format("6:19") + "bad: 'lease-time' must be an integer, not '1e3'"]),
    ("bool-for-int", bad("mtu: true"), FAN,
     [E.format("6:12") + "bad: 'mtu' must be an integer, not true"]),
    ("huge-host-reserve", bad("host-reserve: " + "9" * 400), FAN,
     [E.format("6:21") + "bad: host-reserve a number of 400 digits leaves no DHCP range in "
                         "a /24 slice (254 usable addresses): use at most 253"]),
    ("vni-float", bad("type: vxlan\nvxlan: {vni: 1.0}"), FAN,
     [E.format("7:20") + "bad: 'vni' must be an integer, not 1.0"]),
    ("vni-too-big", bad("type: vxlan\nvxlan: {vni: 16777216}"), FAN,
     [E.format("7:20") + "bad: vni 16777216 out of range: must be 1..16777215"]),
    ("bool-as-text", bad("dhcp: maybe"), FAN,
     [E.format("6:13") + "bad: 'dhcp' must be a boolean (true or false), not 'maybe'"]),
    ("type-trailing-newline", bad('type: "ipip\\n"'), FAN,
     [E.format("6:13") + "bad: invalid type 'ipip\\n' (expected one of: ipip, vxlan)"]),
    ("overlay-trailing-newline", bad(overlay='"251.0.0.0/8\\n"'), FAN,
     [E.format("4:16") + "bad: invalid overlay '251.0.0.0/8\\n': expected an IPv4 network "
                         "such as 250.0.0.0/8"]),
    ("underlay-superscript", bad(underlay="10.9.0.0/\u00b2"), FAN,
     [E.format("5:17") + "bad: invalid underlay '10.9.0.0/\u00b2'"]),
    ("underlay-arabic-digits", bad(underlay="10.9.0.0/\u0661\u0666"), FAN,
     [E.format("5:17") + "bad: invalid underlay '10.9.0.0/\u0661\u0666'"]),
    ("underlay-leading-zero", bad(underlay="10.9.0.00/16"), FAN,
     [E.format("5:17") + "bad: invalid underlay: '10.9.0.00' is not a valid IPv4 address"]),
    ("underlay-pattern", bad(underlay="'e*'"), FAN,
     [E.format("5:17") + "bad: invalid underlay: 'e*' is neither an IPv4 address nor a valid "
                         "interface name (use only letters, digits, '_', '.' and '-')"]),
    ("overlay-host-bits", bad(overlay="251.1.0.0/8"), FAN,
     [E.format("4:16") + "bad: overlay 251.1.0.0/8 has host bits set (did you mean "
                         "251.0.0.0/8?)"]),
    ("overlay-clashes-with-good", bad(overlay="250.0.0.0/8"), CLASH,
     [E.format("4:16") + "bad: overlay 250.0.0.0/8 overlaps fan 'good' (250.0.0.0/8)"]),
    ("vxlan-on-ipip", bad("vxlan: {port: 4789}"), FAN,
     [E.format("6:7") + "bad: 'vxlan' settings need 'type: vxlan'"]),
    ("fan-name-newline", b'network:\n  fan:\n    "bad\\n": {overlay: 251.0.0.0/8, underlay: '
                         b'10.9.0.0/16}\n', FAN,
     [E.format("3:5") + "bad\\n: invalid fan name 'bad\\n': letters, digits, '.', '-' or '_', "
                        "at most 64, not starting with '.' or '-'"]),
    ("fan-name-too-long", bad(name="b" * 65), FAN,
     [E.format("3:5") + "b" * 64 + "...: invalid fan name '" + "b" * 64 + "...': letters, "
                        "digits, '.', '-' or '_', at most 64, not starting with '.' or '-'"]),
    ("fan-named-lo", bad(name="lo"), FAN,
     [E.format("3:5") + "lo: invalid bridge name 'lo': 'lo' is reserved; set 'bridge:' to a "
                        "valid name"]),
    ("fan-named-all-digits", bad(name="1234"), FAN,
     [E.format("3:5") + "1234: invalid bridge name '1234': a name of digits only is refused "
                        "by systemd; set 'bridge:' to a valid name"]),
    ("default-tunnel-too-long", bad(name="bad-abcdefgh"), FAN,
     [E.format("3:5") + "bad-abcdefgh: tunnel name 'bad-abcdefgh-tun' is longer than 15 "
                        "bytes; set 'tunnel:' to a shorter name"]),
    # -- the dual-stack keys (overlay6, dhcp6) ------------------------------------------------
    ("overlay6-ipv4", bad("type: vxlan\noverlay6: 250.0.0.0/8"), FAN,
     [E.format("7:17") + "bad: invalid overlay6 '250.0.0.0/8': expected an IPv6 network "
                         "such as fd5a:fa00::/48"]),
    ("overlay6-host-bits", bad("type: vxlan\noverlay6: fd5a:fa00::1/48"), FAN,
     [E.format("7:17") + "bad: overlay6 fd5a:fa00::1/48 has host bits set (did you mean "
                         "fd5a:fa00::/48?)"]),
    ("overlay6-not-a-64", bad("type: vxlan\noverlay6: fd5a:fa00::/40"), FAN,
     [E.format("7:17") + "bad: overlay6 /40 with underlay /16 gives /56 IPv6 slices, and "
                         "containers autoconfigure (SLAAC) only in a /64: use overlay6 /48"]),
    ("overlay6-whole-space", bad("type: vxlan\noverlay6: ::/0"), FAN,
     [E.format("7:17") + "bad: overlay6 ::/0 overlaps a reserved range (::/8, loopback, "
                         "unspecified and IPv4-mapped addresses)",
      E.format("7:17") + "bad: overlay6 /0 with underlay /16 gives /16 IPv6 slices, and "
                         "containers autoconfigure (SLAAC) only in a /64: use overlay6 /48"]),
    ("overlay6-multicast", bad("type: vxlan\noverlay6: ff05::/48"), FAN,
     [E.format("7:17") + "bad: overlay6 ff05::/48 overlaps a reserved range (ff00::/8, "
                         "multicast)"]),
    ("overlay6-huge", bad("type: vxlan\noverlay6: " + "f" * 5000 + "::/48"), FAN,
     [E.format("7:17") + "bad: invalid overlay6 '" + "f" * 64 + "...': expected an IPv6 "
                         "network such as fd5a:fa00::/48"]),
    ("overlay6-triple-colon", bad("type: vxlan\noverlay6: 'fd5a:::/48'"), FAN,
     [E.format("7:17") + "bad: invalid overlay6 'fd5a:::/48': expected an IPv6 network "
                         "such as fd5a:fa00::/48"]),
    ("overlay6-on-ipip", bad("overlay6: fd5a:fa00::/48"), FAN,
     [E.format("6:17") + "bad: overlay6 needs 'type: vxlan': an IPIP tunnel carries IPv4 only "
                         "(the dual-stack fan bridges IPv6 across the fan and maps neighbour "
                         "solicitations as VXLAN maps ARP)"]),
    ("overlay6-kernel-datapath",
     bad("type: vxlan\ndatapath: kernel\noverlay6: fd5a:fa00::/48"), FAN,
     [E.format("7:17") + "bad: overlay6 needs the upstream datapath: the Ubuntu kernel fan "
                         "maps IPv4 only; set 'datapath: upstream' or 'auto' (auto picks "
                         "upstream for a dual-stack fan)"]),
    ("dhcp6-without-overlay6", bad("dhcp6: true"), FAN,
     [E.format("6:7") + "bad: 'dhcp6' needs an IPv6 overlay: set 'overlay6:' (e.g. "
                        "fd5a:fa00::/48)"]),
]

# bridge and tunnel values that are not literal interface names, each with its reason
BAD_DEVICE_NAMES = [
    ('"e*"', "e*", "use only letters, digits, '_', '.' and '-'"),
    ('"eth?"', "eth?", "use only letters, digits, '_', '.' and '-'"),
    ('"eth[0-9]"', "eth[0-9]", "use only letters, digits, '_', '.' and '-'"),
    ('"!eth0"', "!eth0", "use only letters, digits, '_', '.' and '-'"),
    ('"eth\\\\0"', "eth\\0", "use only letters, digits, '_', '.' and '-'"),
    ('"a b"', "a b", "use only letters, digits, '_', '.' and '-'"),
    ('"a\\tb"', "a\\tb", "use only letters, digits, '_', '.' and '-'"),
    ('"br\\n"', "br\\n", "use only letters, digits, '_', '.' and '-'"),
    ('"br\\0"', "br\\x00", "use only letters, digits, '_', '.' and '-'"),
    ('"br\\e[0m"', "br\\x1b[0m", "use only letters, digits, '_', '.' and '-'"),
    ('"x/y"', "x/y", "use only letters, digits, '_', '.' and '-'"),
    ('"x:y"', "x:y", "use only letters, digits, '_', '.' and '-'"),
    ('"x%d"', "x%d", "use only letters, digits, '_', '.' and '-'"),
    ('"x,y"', "x,y", "use only letters, digits, '_', '.' and '-'"),
    ('"br\\u00e4"', "br\u00e4", "use only letters, digits, '_', '.' and '-'"),
    ('"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"', "\u00e9" * 8,
     "it is longer than 15 bytes"),
    ('"br\\u202e"', "br\\u202e", "use only letters, digits, '_', '.' and '-'"),
    ('"."', ".", "it must start with a letter, a digit or '_'"),
    ('".."', "..", "it must start with a letter, a digit or '_'"),
    ('"-x"', "-x", "it must start with a letter, a digit or '_'"),
    ("lo", "lo", "'lo' is reserved"),
    ("all", "all", "'all' is reserved"),
    ("default", "default", "'default' is reserved"),
    ("'1234'", "1234", "a name of digits only is refused by systemd"),
    ("abcdefghijklmnop", "abcdefghijklmnop", "it is longer than 15 bytes"),
    ('""', "", "it is empty"),
]

# the fan 'bad' takes the good fan's devices: both are refused, each frozen as it was
CASES += [
    ("bridge-of-good", bad("bridge: good"), CLASH,
     [E.format("6:15") + "bad: bridge name 'good' is also used by fan 'good'"]),
    ("tunnel-of-good", bad("tunnel: good-tun"), CLASH,
     [E.format("6:15") + "bad: tunnel name 'good-tun' is also used by fan 'good'"]),
]

# harmless oddities: accepted, and nothing but the good fan's own change happens
CASES += [
    ("empty-file", b"", OK, []),
    ("comments-only", b"# nothing here\n", OK, []),
    ("explicit-empty-document", b"---\n...\n", OK, []),
    ("bom-and-crlf", b"\xef\xbb\xbf# nothing\r\nnetwork:\r\n  version: 2\r\n", OK, []),
    ("utf16-with-bom", "network:\n  version: 2\n".encode("utf-16"), OK, []),
]
