"""underlay-gateway: dhcp next to real systemd-networkd (issue 15).

One host of the harness (tests/harness/host.py): networkd gets the underlay address and
its default route (the outside namespace, 172.16.0.254) by DHCP on up0, ``fangen run``
keeps the fan's rule and routes in table 100.  The fan's underlay is 172.16.0.0/15,
wider than the /16 segment, so the table holds both the segment and the route by the
DHCP gateway.  A restart of networkd (252) drops the underlay's address for a moment and
the routes in table 100 go with it: afterwards the rule and routes are there again, put
back by ``fangen run`` (its log says so).  ``fangen down`` leaves networkd's own routes
alone.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.harness import Lab
from tests.harness.host import fan_stanza, wait
from tests.harness.ns import ip

pytestmark = [
    pytest.mark.root, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, networkd, tc, nft"),
]

FAN = "fan250"


def fangen_objects(ns: str) -> tuple[list, list]:
    rules = [line for line in ip(ns, "rule").stdout.splitlines() if "proto 250" in line]
    routes = ip(ns, "route", "show", "table", "100", check=False).stdout.splitlines()
    return rules, sorted(routes)


def test_dhcp_gateway_with_networkd_and_its_restart():
    fans = fan_stanza(FAN, underlay="172.16.0.0/15", dhcp=False,
                      **{"underlay-gateway": "dhcp", "underlay-table": 100})
    with Lab(hosts=1, containers=0, fans=fans, tag="mhn") as lab:
        lab.start_hosts()
        lab.start_fans()
        lab.wait_fans()
        host = lab.hosts[0]
        addr = host.address()
        want_rules = ["32700:\tfrom all to 172.16.0.0/15 ipproto udp dport 8472 lookup 100 "
                      "proto 250"]
        want_routes = [f"172.16.0.0/16 dev up0 proto 250 scope link src {addr} ",
                       f"172.16.0.0/15 via 172.16.0.254 dev up0 proto 250 src {addr} "]
        wait(lambda: fangen_objects(host.ns) == (want_rules, sorted(want_routes)), 10,
             "the rule and routes")
        default = ip(host.ns, "route", "show", "default").stdout

        host.restart_networkd()
        host.wait_address()
        time.sleep(1.0)                   # networkd (re)configures its links
        wait(lambda: fangen_objects(host.ns) == (want_rules, sorted(want_routes)), 10,
             "the rule and routes after networkd's restart")
        with open(host.log("fangen-run")) as fh:
            log = fh.read()
        assert "added route 172.16.0.0/15 via 172.16.0.254" in log, log

        host.stop_fangen_run()
        host.fangen("down", FAN)
        assert fangen_objects(host.ns) == ([], [])
        assert ip(host.ns, "route", "show", "default").stdout == default   # networkd's
