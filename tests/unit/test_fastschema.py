"""The boot path's generated schema check: in sync with schema.json, and it agrees with
jsonschema (with fangen's strict integers) on every input, hostile ones included.

Needs python3-jsonschema (the reference); python3-fastjsonschema only to regenerate.
"""

import copy
import datetime
import hashlib
import os
import random
import subprocess
import sys

import pytest

from fangen.config import _fastschema, model
from fangen.config.validate import SCHEMA_PATH, load_schema, reference_validator

REFERENCE = reference_validator()
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_generated_validator_carries_the_hash_of_schema_json():
    """Never skips: an edit of schema.json without regenerating fails here."""
    with open(SCHEMA_PATH, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    assert _fastschema.SCHEMA_SHA256 == digest, \
        "schema.json changed: run scripts/gen-fast-validator.py"


def test_generated_validator_is_what_the_script_makes():
    fastjsonschema = pytest.importorskip("fastjsonschema", reason="needs python3-fastjsonschema")
    if fastjsonschema.VERSION != _fastschema.GENERATOR_VERSION:
        pytest.skip(f"_fastschema.py comes from fastjsonschema {_fastschema.GENERATOR_VERSION} "
                    f"(Debian 12); this is {fastjsonschema.VERSION}, whose code differs "
                    "(the hash test above still holds it to schema.json)")
    res = subprocess.run([sys.executable, os.path.join(REPO, "scripts/gen-fast-validator.py"),
                          "--check"], capture_output=True, text=True)
    assert res.returncode == 0, "run scripts/gen-fast-validator.py: _fastschema.py is stale"


def test_interface_name_rule_is_the_same_in_schema_and_model():
    schema = load_schema()
    assert schema["definitions"]["ifname"]["pattern"] == model.IFNAME_PATTERN


BASE = {"network": {"version": 2, "fan": {"fan-250": {
    "overlay": "250.0.0.0/8", "underlay": "172.16.0.0/16", "type": "vxlan", "dhcp": True,
    "dns": True, "host-reserve": 1, "lease-time": 3600, "bridge": "fan-250", "tunnel": "ft",
    "mtu": 1450, "nat": True, "vxlan": {"vni": 5, "port": 8472}, "datapath": "auto",
    "enabled": True}}}}
HOSTILE_STRINGS = [
    "", "x", "fan-250\n", "fan-250\r", "fan\n250", "\nfan", "fan\x00", "fan\x1b[31m", "fan\t",
    "fan\x7f", "fan\u0085", "fan\u00a0", "fan\u2028", "fan\u202e", "fan\ufeff", "fän", "ｆａｎ",
    "٢٥٠", "\ud800", "😀", "fan*", "fan?", "fan[0]", "!fan", "fan\\", "fan,x", "fan%d", "a b",
    ".", "..", "-x", ".x", "lo", "all", "default", "1234", "x" * 15, "x" * 16, "é" * 8,
    "eth0/16", "eth0:1", "250.0.0.0/8", "250.0.0.0/8\n", "250.0.0.0/08", "250.0.0.0/8 ",
    "172.16.0.0/16\n", "default/16\n", "ipip", "ipip\n", "vxlan", "kernel", "auto\n",
]
HOSTILE_NUMBERS = [0, 1, -1, 2, 2.0, 1.0, 1450.0, 1e3, 1.5, float("nan"), float("inf"),
                   float("-inf"), -0.0, 576, 9216, 9217, 120, 31536000, 16777215, 16777216,
                   65535, 65536, 10 ** 30, 2 ** 63, -(2 ** 63), 10 ** 4000]
OTHER = [None, True, False, [], {}, [1], {"vni": 1}, {"port": 0}, {"bogus": 1},
         datetime.date(2001, 12, 14), b"bytes"]
VALUES = HOSTILE_STRINGS + HOSTILE_NUMBERS + OTHER
FAN_KEYS = list(BASE["network"]["fan"]["fan-250"]) + ["bogus"]
PATHS = [("network",), ("network", "version"), ("network", "fan"), ("network", "bogus")] + \
    [("network", "fan", "fan-250", key) for key in FAN_KEYS] + \
    [("network", "fan", "fan-250", "vxlan", k) for k in ("vni", "port", "x")]


def mutate(rng):
    doc = copy.deepcopy(BASE)
    for _ in range(rng.randint(0, 3)):
        if rng.random() < 0.1:                           # a hostile fan name
            network = doc.get("network")
            fans = network.get("fan") if isinstance(network, dict) else None
            if isinstance(fans, dict) and fans:
                fans[rng.choice(HOSTILE_STRINGS)] = fans.pop(next(iter(fans)))
            continue
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


def fast_verdict(doc) -> bool:
    try:
        _fastschema.validate(doc)
        return True
    except _fastschema.JsonSchemaValueException:
        return False


def test_agrees_with_jsonschema_on_hostile_documents():
    reference = reference_validator()
    rng = random.Random(42)
    verdicts = {True: 0, False: 0}
    for _ in range(4000):
        doc = mutate(rng)
        expected = reference.is_valid(doc)
        assert fast_verdict(doc) == expected, doc
        verdicts[expected] += 1
    assert verdicts[True] > 200 and verdicts[False] > 200     # both outcomes were exercised


@pytest.mark.parametrize("key", ["bridge", "tunnel", "overlay", "underlay", "type", "datapath"])
@pytest.mark.parametrize("value", HOSTILE_STRINGS)
def test_every_hostile_string_in_every_string_key(key, value):
    doc = copy.deepcopy(BASE)
    doc["network"]["fan"]["fan-250"][key] = value
    assert fast_verdict(doc) == REFERENCE.is_valid(doc)


@pytest.mark.parametrize("value", HOSTILE_STRINGS)
def test_every_hostile_string_as_a_fan_name(value):
    doc = copy.deepcopy(BASE)
    doc["network"]["fan"] = {value: doc["network"]["fan"]["fan-250"]}
    assert fast_verdict(doc) == REFERENCE.is_valid(doc)


@pytest.mark.parametrize("key", ["host-reserve", "lease-time", "mtu", "version"])
@pytest.mark.parametrize("value", HOSTILE_NUMBERS + [True, False])
def test_every_number_in_every_integer_key(key, value):
    doc = copy.deepcopy(BASE)
    target = doc["network"] if key == "version" else doc["network"]["fan"]["fan-250"]
    target[key] = value
    verdict = REFERENCE.is_valid(doc)
    assert fast_verdict(doc) == verdict
    if isinstance(value, float) and key != "version":
        assert verdict is False                  # 1450.0 is not an integer for fangen


@pytest.mark.parametrize("value", ["eth0\n", "fan-250\n", "a" * 15 + "\n"])
def test_trailing_newline_is_refused_by_both(value):
    doc = copy.deepcopy(BASE)
    doc["network"]["fan"]["fan-250"]["bridge"] = value
    assert not REFERENCE.is_valid(doc)
    assert not fast_verdict(doc)


@pytest.mark.parametrize("name", HOSTILE_STRINGS + ["fan-250", "br_x.1", "a", "x1", "0x"])
def test_schema_and_semantic_name_rules_agree(name):
    doc = copy.deepcopy(BASE)
    doc["network"]["fan"]["fan-250"]["bridge"] = name
    assert REFERENCE.is_valid(doc) == (model.ifname_problem(name) is None)
