"""Whatever a fan.d file holds, loading and validating it gives diagnostics, never an
exception (a user mistake must not end in a traceback)."""

import os
import random

import yaml

from fangen.config import loader, validate
from fangen.errors import Report
from tests.unit.test_fastschema import BASE, VALUES, mutate

SHAPES = [None, 5, "text", [1, 2], {"network": 5}, {"network": []}, {"network": None},
          {"network": {"fan": None}}, {"network": {"fan": []}}, {"network": {"fan": {"f": []}}},
          {"network": {"fan": {"f": None}}}, {"network": {"fan": {1: {}}}},
          {"network": {"fan": {"f": {"overlay": None, "underlay": []}}}}]


def run(root: str, docs: list) -> Report:
    fan_d = os.path.join(root, "etc/netplan/fan.d")
    os.makedirs(fan_d, exist_ok=True)
    for name in os.listdir(fan_d):
        os.unlink(os.path.join(fan_d, name))
    for i, doc in enumerate(docs):
        path = os.path.join(fan_d, f"{i:02d}.yaml")
        with open(path, "w") as fh:
            fh.write(doc if isinstance(doc, str) else yaml.safe_dump(doc))
        os.chmod(path, 0o600)
    report = Report()
    validate.validate(loader.load(root, report), report)
    return report


def test_odd_shapes_and_mutations_never_raise(tmp_path):
    rng = random.Random(7)
    errors = 0
    for round_ in range(600):
        docs = []
        for _ in range(rng.randint(1, 3)):
            pick = rng.random()
            if pick < 0.25:
                docs.append(rng.choice(SHAPES))
            elif pick < 0.35:
                text = yaml.safe_dump(mutate(rng))
                cut = rng.randrange(len(text))          # truncated: often invalid YAML
                docs.append(text[:cut])
            else:
                docs.append(mutate(rng))
        report = run(str(tmp_path / f"r{round_ % 3}"), docs)
        errors += bool(report.errors)
        for diag in report.items:
            assert diag.file and diag.line >= 1 and diag.col >= 1, diag
    assert errors > 100                                # the inputs were mostly wrong
    assert BASE and VALUES                             # (shared with the schema fuzz test)
