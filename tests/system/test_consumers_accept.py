"""Whatever validation accepts renders files their consumers accept (issue 9, item 2).

Over every example and over seeded random valid stanzas (tests/hostile/stanzas.py),
everything fangen writes or loads for a fan -- generate's networkd files, the runtime's
networkd drop-ins and dnsmasq configuration, the nft script -- goes to the real
consumer:

* ``dnsmasq --test -C FILE`` for every dnsmasq configuration (no root needed);
* ``nft -c -f FILE`` inside a namespace the test made (root);
* real systemd-networkd 252 loading all networkd files at once in a harness host
  namespace: not one log line about our files, and every bridge created (root).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from fangen.config import loader, validate
from fangen.errors import Report
from tests.golden import golden_examples as examples
from tests.hostile.stanzas import accepted, random_stanzas, rendered

SEED, COUNT = 20261209, 200
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, networkd")


def example_fans(tmp_path_factory) -> list:
    """[(label, Fan)] of every example (several examples use the same fan names)."""
    fans = []
    for name, path in examples.examples().items():
        root = str(tmp_path_factory.mktemp(f"ex-{name}"))
        examples.install(path, root)
        report = Report()
        result = validate.validate(loader.load(root, report), report)
        assert not report.errors, [d.format() for d in report.errors]
        fans.extend((f"{name}/{fan.name}", fan) for fan in result.fans)
    return fans


@pytest.fixture(scope="module")
def fans(tmp_path_factory):
    random_fans, refused = accepted(random_stanzas(SEED, COUNT))
    assert refused == []                 # the generator makes valid stanzas only
    assert len(random_fans) == COUNT
    return example_fans(tmp_path_factory) + [(fan.name, fan) for fan in random_fans]


@pytest.fixture(scope="module")
def outputs(fans):
    """{label: (files, nft script)}; the dnsmasq paths left relative to '/'."""
    return {label: rendered(fan) for label, fan in fans}


def test_the_random_stanzas_cover_the_options(fans):
    fans = [fan for _, fan in fans]
    kinds = {(f.type, f.underlay.kind, f.dhcp, f.dns, f.nat) for f in fans}
    assert len(kinds) > 40
    assert any(f.mtu for f in fans) and any(f.mtu is None for f in fans)
    assert {f.datapath for f in fans} == {"auto", "kernel", "upstream"}


@pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="needs dnsmasq")
def test_every_dnsmasq_configuration_passes_dnsmasq_test(outputs, tmp_path):
    checked = 0
    for name, (files, _) in sorted(outputs.items()):
        for rel, text in sorted(files.items()):
            if not rel.endswith("dnsmasq.conf"):
                continue
            conf = tmp_path / f"{name.replace('/', '_')}.conf"
            conf.write_text(text)
            res = subprocess.run(["dnsmasq", "--test", "-C", str(conf)], capture_output=True,
                                 text=True, timeout=30)
            assert res.returncode == 0 and "syntax check OK" in res.stderr, \
                (name, res.stderr, text)
            checked += 1
    assert checked > COUNT // 2


def test_the_dnsmasq_oracle_can_fail(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("interface=fan\ndhcp-range=250.0.0.2,250.0.0.9,255.255.255.0,1450.0s\n")
    res = subprocess.run(["dnsmasq", "--test", "-C", str(conf)], capture_output=True, text=True)
    assert res.returncode != 0


@needs_root
def test_every_nft_script_passes_nft_check(outputs):
    from tests.harness import Run
    from tests.harness.ns import nsexec

    script = "".join(s for _, (_, s) in sorted(outputs.items()))
    assert script.count("table ip fangen-") >= 3 * COUNT
    with Run("nftc") as run:
        ns = run.netns("c")
        path = run.path("all.nft")
        with open(path, "w") as fh:
            fh.write(script)
        res = nsexec(ns, "nft", "-c", "-f", path, check=False)
        assert res.returncode == 0, res.stderr[:2000]
        with open(path, "w") as fh:                  # the oracle can fail
            fh.write("table ip fangen-x {\n\tchain c {\n\t\tip saddr 1.2.3.4/33 drop\n\t}\n}\n")
        assert nsexec(ns, "nft", "-c", "-f", path, check=False).returncode != 0


@needs_root
def test_networkd_loads_every_file_without_a_word(outputs):
    from tests.harness import Host, Run, Switch
    from tests.harness.host import wait
    from tests.harness.ns import ip

    with Run("nwd") as run:
        host = Host(run, Switch(run), 1, fans={})
        bridges, placed = set(), set()
        for _, (files, _) in sorted(outputs.items()):
            mine = {rel for rel in files if rel.startswith("run/systemd/network/")}
            if mine & placed:
                continue                    # two examples with the same device names
            placed |= mine
            for rel, text in files.items():
                if not rel.startswith("run/systemd/network/"):
                    continue
                path = os.path.join(host.root, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as fh:
                    fh.write(text)
                if rel.endswith(".netdev"):
                    bridges.add(re.search(r"^Name=(.*)$", text, re.M).group(1))
        host.start(generate=False)

        def created():
            import json
            links = json.loads(ip(host.ns, "-j", "-d", "link", "show", "type", "bridge").stdout)
            return bridges <= {link["ifname"] for link in links}
        wait(created, 60, f"networkd to create {len(bridges)} bridges")
        host.networkctl("reload")                    # a second full parse of every file
        with open(host.log("networkd")) as fh:
            log = fh.read()
        assert complaints(log) == []
        assert len(bridges) >= COUNT
        # the oracle can fail: a name networkd refuses (non-ASCII) is logged, and the
        # .network it was in would have matched every bridge by Kind= alone
        with open(os.path.join(host.root, "run/systemd/network/10-fangen-zz.network"),
                  "w") as fh:
            fh.write("[Match]\nName=br\u00e4\nKind=bridge\n")
        host.networkctl("reload")
        wait(lambda: complaints(open(host.log("networkd")).read()), 10, "the complaint")
        assert "Interface name is not valid" in complaints(open(host.log("networkd")).read())[0]


def complaints(log: str) -> list[str]:
    return [line for line in log.splitlines() if "10-fangen" in line and not
            re.search(r": Configuring with /run/systemd/network/10-fangen-", line)]
