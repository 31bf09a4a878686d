"""The examples under examples/: each validates, together they use every schema key,
and the Docker and LXD files agree with their fan (bridge name, MTU).

The Docker files are checked for shape here; the LXD profile and podman's CNI networks
are checked against fangen's rendering in tests/unit/test_cni_lxd.py and run by the real
engines in tests/engines.  Golden output of every example: tests/golden.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "golden"))
import golden_examples as examples  # noqa: E402

from fangen.config import loader, validate  # noqa: E402
from fangen.errors import Report  # noqa: E402
from fangen.fanmap import MAX_SLICE_PREFIX, FanMap  # noqa: E402

EXAMPLES = examples.examples()


def check(name: str, tmp_path):
    root = str(tmp_path / "root")
    examples.install(EXAMPLES[name], root)
    report = Report()
    loaded = loader.load(root, report)
    result = validate.validate(loaded, report)
    return report, result, loaded


def fans_of(name: str, tmp_path) -> dict:
    report, result, _ = check(name, tmp_path)
    assert not report.items, [d.format() for d in report.items]
    return {fan.name: fan for fan in result.fans}


def test_the_examples_the_docs_promise_exist():
    assert {"cloud-dhcp-underlay", "two-fans", "vxlan", "small-underlay", "disabled",
            "static-underlay", "docker", "lxd", "podman"} <= set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_validates_cleanly(name, tmp_path):
    report, result, loaded = check(name, tmp_path)
    assert report.items == [], "\n".join(d.format() for d in report.items)
    assert not result.broken
    assert result.fans, f"{name}: no fan defined"
    assert sorted(f.name for f in result.fans) == sorted(loaded.data["network"]["fan"])


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_starts_with_a_comment_header(name):
    with open(EXAMPLES[name], encoding="utf-8") as fh:
        head = [next(fh) for _ in range(3)]
    assert all(line.startswith("#") for line in head), f"{name}: no comment header"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_slices_fit(name, tmp_path):
    for fan in fans_of(name, tmp_path).values():
        assert fan.slice_prefix <= MAX_SLICE_PREFIX


def _schema_keys(node: dict, path: tuple = ()) -> set[tuple]:
    """Every property of the schema as a path of names ('*' for a fan name)."""
    definitions = validate.load_schema()["definitions"]
    keys = set()
    if "$ref" in node:
        node = definitions[node["$ref"].rsplit("/", 1)[1]]
    for key, sub in node.get("properties", {}).items():
        keys.add(path + (key,))
        keys |= _schema_keys(sub, path + (key,))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        keys |= _schema_keys(extra, path + ("*",))
    return keys


def _data_keys(data, path: tuple = ()) -> set[tuple]:
    keys = set()
    if isinstance(data, dict):
        for key, value in data.items():
            shown = "*" if path == ("network", "fan") else key
            keys.add(path + (shown,))
            keys |= _data_keys(value, path + (shown,))
    return keys


def test_every_schema_key_is_used_by_some_example(tmp_path):
    schema_keys = _schema_keys(validate.load_schema()) - {("network", "fan", "*")}
    used = set()
    for name in EXAMPLES:
        _, _, loaded = check(name, tmp_path / name)
        used |= _data_keys(loaded.data)
    missing = sorted(".".join(k) for k in schema_keys - used)
    assert not missing, f"schema keys no example uses: {missing}"


def test_small_underlay_comment_is_right(tmp_path):
    rack = fans_of("small-underlay", tmp_path)["rack"]
    fmap = FanMap(rack.overlay, rack.underlay.network)
    assert fmap.slice_prefix == 18
    assert str(fmap.host_for_address("100.66.200.5")) == "10.224.220.11"
    assert str(fmap.slice_for_host("10.224.220.11")) == "100.66.192.0/18"


def test_cloud_comment_is_right(tmp_path):
    fan = fans_of("cloud-dhcp-underlay", tmp_path)["fan-250"]
    sl = fan.slice_for("172.31.3.4")
    assert str(sl.network) == "250.3.4.0/24"
    assert str(sl.gateway) == "250.3.4.1"
    assert tuple(map(str, sl.dhcp_range)) == ("250.3.4.2", "250.3.4.254")


def test_vxlan_default_vni_in_comment(tmp_path):
    text = open(EXAMPLES["vxlan"], encoding="utf-8").read()
    overlay = ipaddress.IPv4Network(fans_of("vxlan", tmp_path)["fan-vx"].overlay)
    assert str(int(overlay.network_address) >> 8) in text


def test_disabled_example_renders_nothing_for_the_disabled_fan(tmp_path):
    fans = fans_of("disabled", tmp_path)
    assert not fans["old"].enabled and fans["new"].enabled


def _only_fan(name: str, tmp_path):
    fans = fans_of(name, tmp_path)
    assert len(fans) == 1
    return next(iter(fans.values()))


DOCKER_EXAMPLES = ("docker", "docker-ipip")
SAMPLE_HOST = "172.16.3.4"
NETWORK_HEADER = """#!/bin/sh
# What "fangen docker {fan} --network {fan}" prints on the host {host} (slice
# {slice}, underlay MTU 1500): a user-defined Docker network on the fan bridge,
# for "docker run --network {fan}".  Run it on that host only: every host prints
# its own slice.
"""


def _cli(*argv: str) -> str:
    import contextlib
    import io

    from fangen import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    assert (code, err.getvalue()) == (0, ""), err.getvalue()
    return out.getvalue()


def docker_outputs(name: str, tmp_path) -> dict[str, str]:
    """What ``fangen docker`` prints on SAMPLE_HOST, as the example's host-ADDR/ files."""
    from fangen.runtime import plan, state
    from fangen.runtime.underlay import Resolved

    root = str(tmp_path / "root")
    fan = _only_fan(name, tmp_path)            # installs the fan.d file under root
    address = ipaddress.IPv4Address(SAMPLE_HOST)
    resolved = Resolved("eth0", 2, address, ipaddress.IPv4Network(
        (address, fan.underlay.prefixlen), strict=False), 1500)
    target = plan.Target(fan, resolved, "upstream")
    state.save(root, state.State(
        fan.name, type=fan.type, datapath="upstream", overlay=str(fan.overlay),
        bridge=fan.bridge, tunnel=fan.tunnel, underlay=resolved.as_dict(),
        slice=str(target.slice.network), gateway=str(target.slice.gateway), mtu=target.mtu))
    header = NETWORK_HEADER.format(fan=fan.name, host=SAMPLE_HOST, slice=target.slice.network)
    return {
        "daemon.json": _cli("docker", fan.name, "--root-dir", root),
        "network-create.sh": header + _cli("docker", fan.name, "--network", fan.name,
                                           "--root-dir", root),
    }


@pytest.mark.parametrize("name", DOCKER_EXAMPLES)
def test_docker_examples_are_what_fangen_prints(name, tmp_path):
    """examples/docker*/host-172.16.3.4/ hold exactly what ``fangen docker`` prints there
    (regenerate with FANGEN_UPDATE_GOLDEN=1, then review the diff)."""
    directory = os.path.join(examples.EXAMPLES, name, f"host-{SAMPLE_HOST}")
    for file, text in docker_outputs(name, tmp_path).items():
        path = os.path.join(directory, file)
        if os.environ.get("FANGEN_UPDATE_GOLDEN") == "1":
            os.makedirs(directory, exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(path, 0o755 if file.endswith(".sh") else 0o644)
        with open(path, encoding="utf-8") as fh:
            assert fh.read() == text, f"{path} is not what fangen docker prints"


def test_docker_examples_say_the_right_things(tmp_path):
    vxlan = json.loads(docker_outputs("docker", tmp_path / "v")["daemon.json"])
    ipip = json.loads(docker_outputs("docker-ipip", tmp_path / "i")["daemon.json"])
    assert vxlan == {"bridge": "fan-250", "fixed-cidr": "250.3.4.0/24", "mtu": 1450,
                     "icc": True, "ip-masq": False}
    assert ipip == dict(vxlan, mtu=1480)
    for name in DOCKER_EXAMPLES:
        fan = _only_fan(name, tmp_path / f"f-{name}")
        assert fan.dhcp is False and fan.nat and fan.mtu is None    # the MTU follows the NIC
    dropin = os.path.join(examples.EXAMPLES, "docker", "docker.service.d", "10-fangen.conf")
    with open(dropin, encoding="utf-8") as fh:
        lines = [line.strip() for line in fh if not line.startswith("#")]
    assert [line for line in lines if line] == [
        "[Unit]", "Wants=fangen@fan-250.service", "After=fangen@fan-250.service"]


def test_lxd_profile_matches_the_fan(tmp_path):
    """The profile itself is fangen's rendering: tests/unit/test_cni_lxd.py."""
    fan = _only_fan("lxd", tmp_path)
    assert fan.dhcp, "LXD containers take their address from fangen's dnsmasq"
    assert fan.type == "vxlan" and fan.port == 8472 and fan.vni == 240 << 16
