"""A reusable namespace toolkit for fangen's end-to-end tests, demo and benchmarks.

    with Lab(hosts=3, containers=2) as lab:      # switch + DHCP, outside, hosts, containers
        lab.start()                               # networkd, fangen run, container leases

Pieces: :mod:`tests.harness.ns` (Run: unique prefix, namespaces, processes, cleanup;
in_netns, veth, plug, switch_ns, underlay_host, ping, sockets and IPRoute handles in a
namespace: the one namespace helper of every test, tests/kernel included),
:mod:`tests.harness.packets` (the one packet builder, UDP/TCP/whoami traffic),
:mod:`tests.harness.cli` (fangen run in a namespace on a root directory),
:mod:`tests.harness.switch` (underlay bridge + dnsmasq), :mod:`tests.harness.outside`
(203.0.113.1), :mod:`tests.harness.host` (real networkd on a private bus + fangen),
:mod:`tests.harness.container` (veth into the fan bridge + udhcpc), :mod:`tests.harness.lab`.
"""

from .container import Container
from .host import Host, fan_stanza
from .lab import Lab
from .ns import HarnessError, Run, cleanup
from .outside import DOC_ADDR, Outside
from .switch import Switch

__all__ = ["Container", "DOC_ADDR", "HarnessError", "Host", "Lab", "Outside", "Run", "Switch",
           "cleanup", "fan_stanza"]
