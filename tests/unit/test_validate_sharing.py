"""Validation of what the kernel's collect-metadata rules allow (fangen.datapath.tunnels):
two VXLAN fans need two UDP ports unless both use the kernel datapath; IPIP fans may be
several (they share fangen-ipip), and no fan may take that device's name.  Exact file,
line, column and message."""

import pytest

from fangen.config import loader, validate
from fangen.errors import Report

TWO_VXLAN = """
network:
  version: 2
  fan:
    front:
      overlay: 250.0.0.0/8
      underlay: 10.10.0.0/16
      type: vxlan{front}
    storage:
      overlay: 251.0.0.0/8
      underlay: 10.20.0.0/16
      type: vxlan{storage}
"""
MESSAGE = ("Error in fan definition: storage: vxlan port {port} is also used by fan 'front': "
           "the upstream datapath needs a UDP port of its own for each VXLAN fan; set "
           "'vxlan: {{port: N}}' to another port (or 'datapath: kernel' on both fans, with "
           "the kernel fan patch)")


def errors(fanroot, text):
    path = fanroot.fan(text)
    report = Report()
    result = validate.validate(loader.load(fanroot.path, report), report)
    lines = sorted(d.format().splitlines()[0].replace(path, "F") for d in report.errors)
    return lines, result


def test_two_vxlan_fans_on_the_default_port_are_refused_at_the_second_type(fanroot):
    lines, result = errors(fanroot, TWO_VXLAN.format(front="", storage=""))
    assert lines == ["F:11:13: " + MESSAGE.format(port=8472)]
    assert [f.name for f in result.fans] == ["front"]       # the first one still comes up


def test_the_same_explicit_port_is_refused_at_that_port(fanroot):
    port = "\n      vxlan:\n        port: 4789"
    lines, result = errors(fanroot, TWO_VXLAN.format(front=port, storage=port))
    assert lines == ["F:15:15: " + MESSAGE.format(port=4789)]
    assert result.broken == {"storage"}


@pytest.mark.parametrize("front, storage", [
    ("", "\n      vxlan:\n        port: 4789"),                            # distinct ports
    ("\n      datapath: kernel", "\n      datapath: kernel"),              # both kernel fans
])
def test_distinct_ports_or_kernel_fans_are_fine(fanroot, front, storage):
    lines, result = errors(fanroot, TWO_VXLAN.format(front=front, storage=storage))
    assert lines == []
    assert len(result.fans) == 2


def test_a_disabled_fan_still_counts(fanroot):
    """As its names and networks do (fan.d(5)): enabling it later must not break."""
    lines, result = errors(fanroot, TWO_VXLAN.format(front="\n      enabled: false",
                                                storage=""))
    assert lines == ["F:12:13: " + MESSAGE.format(port=8472)]


def test_a_kernel_fan_and_an_upstream_fan_cannot_share_a_port(fanroot):
    """Different socket flags on one UDP port: the kernel refuses the second at link up."""
    lines, _ = errors(fanroot, TWO_VXLAN.format(front="\n      datapath: kernel",
                                                storage="\n      datapath: upstream"))
    assert lines == ["F:12:13: " + MESSAGE.format(port=8472)]


def test_two_ipip_fans_are_fine(fanroot):
    lines, result = errors(fanroot, TWO_VXLAN.replace("type: vxlan", "type: ipip")
                           .format(front="", storage=""))
    assert lines == [] and len(result.fans) == 2


def test_the_shared_ipip_device_name_is_reserved(fanroot):
    lines, result = errors(fanroot, """
network:
  version: 2
  fan:
    front:
      overlay: 250.0.0.0/8
      underlay: 10.10.0.0/16
      tunnel: fangen-ipip
""")
    assert lines == ["F:7:15: Error in fan definition: front: tunnel name 'fangen-ipip' is "
                     "reserved for the device fangen's IPIP fans share; choose another name"]
    assert result.fans == []
    lines, _ = errors(fanroot, """
network:
  version: 2
  fan:
    fangen-ipip:
      overlay: 250.0.0.0/8
      underlay: 10.10.0.0/16
""")
    assert lines == ["F:4:5: Error in fan definition: fangen-ipip: bridge name 'fangen-ipip' "
                     "is reserved for the device fangen's IPIP fans share; choose another name"]
