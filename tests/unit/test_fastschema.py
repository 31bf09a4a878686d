"""The boot path's generated schema check: in sync with schema.json, and it agrees with jsonschema.

Needs python3-fastjsonschema (to regenerate) and python3-jsonschema (the reference).
"""

import copy
import json
import os
import random
import subprocess
import sys

import jsonschema
import pytest

from fangen.config import _fastschema
from fangen.config.validate import load_schema

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_generated_validator_is_in_sync_with_schema_json():
    fastjsonschema = pytest.importorskip("fastjsonschema", reason="needs python3-fastjsonschema")
    if fastjsonschema.VERSION != _fastschema.GENERATOR_VERSION:
        pytest.skip(f"_fastschema.py comes from fastjsonschema {_fastschema.GENERATOR_VERSION} "
                    f"(Debian 12); this is {fastjsonschema.VERSION}, whose code differs")
    res = subprocess.run([sys.executable, os.path.join(REPO, "scripts/gen-fast-validator.py"),
                          "--check"], capture_output=True, text=True)
    assert res.returncode == 0, "run scripts/gen-fast-validator.py: _fastschema.py is stale"


BASE = {"network": {"version": 2, "fan": {"fan-250": {
    "overlay": "250.0.0.0/8", "underlay": "172.16.0.0/16", "type": "vxlan", "dhcp": True,
    "dns": True, "host-reserve": 1, "lease-time": 3600, "bridge": "fan-250", "tunnel": "ft",
    "mtu": 1450, "nat": True, "vxlan": {"vni": 5, "port": 8472}, "datapath": "auto",
    "enabled": True}}}}
VALUES = [None, True, False, 0, 1, -1, 2, 576, 9217, 16777216, 1.5, 2.0, "", "x", "ipip",
          "vxlan", "kernel", "250.0.0.0/8", "300.0.0.0/8", "a b", "eth0/16", "x" * 16, [], {},
          {"vni": 1}, {"port": 0}, {"bogus": 1}]
PATHS = [("network",), ("network", "version"), ("network", "fan"), ("network", "bogus"),
         ("network", "fan", "bad name!"), ("network", "fan", "x" * 70)] + \
    [("network", "fan", "fan-250", key) for key in list(BASE["network"]["fan"]["fan-250"])
     + ["bogus"]] + [("network", "fan", "fan-250", "vxlan", k) for k in ("vni", "port", "x")]


def mutate(rng):
    doc = copy.deepcopy(BASE)
    for _ in range(rng.randint(0, 3)):
        path = rng.choice(PATHS)
        node = doc
        for key in path[:-1]:
            if not isinstance(node, dict):
                break
            node = node.setdefault(key, {})
        else:
            if isinstance(node, dict):
                if rng.random() < 0.2:
                    node.pop(path[-1], None)
                else:
                    node[path[-1]] = copy.deepcopy(rng.choice(VALUES))
    return doc


def test_agrees_with_jsonschema_on_mutated_documents():
    reference = jsonschema.Draft7Validator(load_schema())
    rng = random.Random(42)
    verdicts = {True: 0, False: 0}
    for _ in range(3000):
        doc = mutate(rng)
        expected = reference.is_valid(doc)
        try:
            _fastschema.validate(json.loads(json.dumps(doc)))
            fast = True
        except _fastschema.JsonSchemaValueException:
            fast = False
        assert fast == expected, doc
        verdicts[expected] += 1
    assert verdicts[True] > 100 and verdicts[False] > 100     # both outcomes were exercised
