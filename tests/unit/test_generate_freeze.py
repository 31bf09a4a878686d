"""generate and the broken-file rule: a fan with its own error keeps its earlier files
while the others change; without a manifest (an older fangen's output) nothing stale is
removed while any fan is broken; the manifest only ever names fangen's own paths."""

import json
import os

from fangen import generate
from tests.hostile.test_config_hostile import fangen, install, tree

A = b"""network:
  fan:
    fa:
      overlay: 250.0.0.0/8
      underlay: 10.1.0.0/16
"""
B = b"""network:
  fan:
    fb:
      overlay: 240.0.0.0/8
      underlay: 10.2.3.4/16
      mtu: 1400
"""
B_BROKEN = B.replace(b"mtu: 1400", b"mtu: 1400.0")


def files(root):
    return sorted(rel for rel in tree(root) if not rel.endswith(".generated.json"))


def test_a_broken_fan_keeps_its_files_while_a_removed_one_goes(tmp_path):
    root = str(tmp_path)
    a = install(root, "10-a.yaml", A)
    install(root, "20-b.yaml", B)
    assert fangen("generate", "--root-dir", root)[0] == 0
    b_files = {rel: data for rel, data in tree(root).items() if "fb" in rel}
    assert len(b_files) == 4
    os.unlink(a)                                       # fa removed
    install(root, "20-b.yaml", B_BROKEN)               # fb broken
    code, _, err = fangen("generate", "--root-dir", root)
    assert code == 1 and "fb: 'mtu' must be an integer, not 1400.0" in err
    assert files(root) == sorted(b_files)              # fa's files gone, fb's kept
    assert {rel: data for rel, data in tree(root).items() if "fb" in rel} == b_files
    manifest = json.loads(open(os.path.join(root, "run/fangen/.generated.json")).read())
    assert manifest["fans"] == {"fb": sorted(b_files)}
    install(root, "20-b.yaml", B_BROKEN)               # and again: still kept
    assert fangen("generate", "--root-dir", root)[0] == 1
    assert files(root) == sorted(b_files)


def test_without_a_manifest_a_broken_fan_removes_nothing(tmp_path):
    root = str(tmp_path)
    a = install(root, "10-a.yaml", A)
    install(root, "20-b.yaml", B)
    assert fangen("generate", "--root-dir", root)[0] == 0
    os.unlink(os.path.join(root, "run/fangen/.generated.json"))     # an older fangen's output
    before = files(root)
    os.unlink(a)
    install(root, "20-b.yaml", B_BROKEN)
    assert fangen("generate", "--root-dir", root)[0] == 1
    assert files(root) == before


def test_manifest_names_only_fangen_paths():
    text = json.dumps({"version": 1, "fans": {"x": [
        "run/systemd/network/10-fangen-x.netdev", "run/fangen/x/dnsmasq.conf",
        "etc/passwd", "run/systemd/network/10-netplan-eth0.network",
        "run/systemd/network/../../../etc/shadow", "/run/systemd/network/10-fangen-y.netdev"]}})
    assert generate.parse_manifest(text) == {"x": ["run/systemd/network/10-fangen-x.netdev",
                                               "run/fangen/x/dnsmasq.conf"]}
    assert generate.parse_manifest("[]") is None
    assert generate.parse_manifest('{"version": 2, "fans": {}}') is None
    assert generate.parse_manifest('{"version": 1, "fans": {"x": [1]}}') is None
