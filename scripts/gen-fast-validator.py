#!/usr/bin/python3
"""Generate fangen/config/_fastschema.py from fangen/config/schema.json with fastjsonschema.

The boot path (`fangen generate` before networkd starts) checks the schema with this
generated code, which imports nothing but `re`, instead of importing jsonschema
(~70 ms).  When it rejects a document, fangen runs jsonschema for the complete,
anchored diagnostics.  tests/unit/test_fastschema.py fails when this file is stale: it
compares SCHEMA_SHA256 with schema.json (always) and regenerates (with the same
fastjsonschema version).

Two changes to fastjsonschema's output, both checked by the differential test against
jsonschema (which fangen runs with the same two rules):
* integers are strict: fastjsonschema, like JSON Schema, counts 1450.0 as an integer;
  fangen does not (a float would reach dnsmasq's configuration as "1450.0");
* the exception class is defined locally, so the file imports nothing but ``re``.

    /usr/bin/python3 scripts/gen-fast-validator.py [--check]
"""

import hashlib
import json
import os
import re
import sys

import fastjsonschema

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(REPO, "fangen/config/schema.json")
TARGET = os.path.join(REPO, "fangen/config/_fastschema.py")
IMPORT = "from fastjsonschema import JsonSchemaValueException"
LOCAL = ("class JsonSchemaValueException(ValueError):\n"
         "    def __init__(self, message, value=None, name=None, definition=None, rule=None):\n"
         "        super().__init__(message)\n"
         "        self.message, self.value, self.name = message, value, name\n"
         "        self.definition, self.rule = definition, rule\n")


# fastjsonschema's integer test accepts a float with an integral value; fangen does not
WHOLE_FLOAT = re.compile(r" and not \(isinstance\((\w+), float\) and \1\.is_integer\(\)\)")


def schema_sha256() -> str:
    with open(SCHEMA, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def render() -> str:
    with open(SCHEMA, encoding="utf-8") as fh:
        code = fastjsonschema.compile_to_code(json.load(fh))
    if IMPORT not in code:
        sys.exit("unexpected fastjsonschema output: no exception import to replace")
    code = code.replace(IMPORT, LOCAL)
    code, count = WHOLE_FLOAT.subn("", code)
    if count == 0:
        sys.exit("unexpected fastjsonschema output: no integer test to make strict")
    entry = re.search(r"^def (\w+)\(", code, re.M).group(1)     # the schema's root
    code += f"\n\nvalidate = {entry}\n"
    lines = [line for line in code.splitlines() if not line.startswith("VERSION = ")]
    header = ('"""Generated from schema.json by scripts/gen-fast-validator.py with '
              f'fastjsonschema {fastjsonschema.VERSION}; do not edit."""\n'
              f'GENERATOR_VERSION = "{fastjsonschema.VERSION}"\n'
              f'SCHEMA_SHA256 = "{schema_sha256()}"\n# ruff: noqa\n# fmt: off\n')
    return header + "\n".join(lines).rstrip() + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        with open(TARGET, encoding="utf-8") as fh:
            return 0 if fh.read() == text else 1
    with open(TARGET, "w", encoding="utf-8") as fh:
        fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
