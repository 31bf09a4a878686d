"""Every hostile fan.d content of cases.py: exact diagnostics, no traceback, and generate
changes exactly what the outcome class allows (fan.d(5), SAFETY).

In process (cli.main, as the golden tests run it), so the table stays fast; the inputs
that used to crash the process itself run in a real process in test_process_hostile.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import re

import pytest

from fangen import cli
from tests.hostile.cases import BAD_DEVICE_NAMES, CASES, CLASH, FAN, FROZEN, GOOD, OK, bad

FAN_D = "etc/netplan/fan.d"
GOOD_CHANGED = GOOD + b"      host-reserve: 5\n"
# what may reach a terminal: printable text and newlines between lines
UNSAFE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def fangen(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def install(root: str, name: str, data: bytes) -> str:
    path = os.path.join(root, FAN_D, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)
    return path


def tree(root: str) -> dict[str, tuple[bytes, int]]:
    """Every file fangen writes under root/run: content and mode."""
    found = {}
    for directory, _, files in os.walk(os.path.join(root, "run")):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as fh:
                found[os.path.relpath(path, root)] = (fh.read(), os.stat(path).st_mode)
    return found


def heads(stderr: str, path: str) -> list[str]:
    """The first line of each diagnostic about ``path``, with F for the path."""
    return sorted(line.replace(path, "F") for line in stderr.splitlines()
                  if line.startswith(path + ":"))


def assert_clean(stderr: str) -> None:
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert not UNSAFE.search(stderr), repr(stderr)


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path)
    install(root, "10-good.yaml", GOOD)
    code, _, err = fangen("generate", "--root-dir", root)
    assert (code, err) == (0, "")
    return root


@pytest.mark.parametrize("name, data, outcome, expect", CASES, ids=[c[0] for c in CASES])
def test_hostile_content(root, name, data, outcome, expect):
    before = tree(root)
    path = install(root, "50-hostile.yaml", data)
    code, out, err = fangen("validate", "--root-dir", root)
    assert_clean(err)
    assert heads(err, path) == sorted(expect)
    assert code == (0 if outcome == OK else 1)
    if outcome == FROZEN:
        assert err.splitlines()[-1].startswith(f"fangen: {path}: every fan would be frozen")

    install(root, "10-good.yaml", GOOD_CHANGED)        # a change the good fan may make
    code, out, err = fangen("generate", "--root-dir", root)
    assert_clean(err)
    assert heads(err, path) == sorted(expect)
    after = tree(root)
    if outcome == FROZEN:
        assert code == 1
        assert err.splitlines()[-1] == (f"fangen: {path} cannot be used: every fan is frozen "
                                        "(nothing is started, changed or stopped) until it is "
                                        "fixed")
        assert after == before                  # nothing written, nothing removed
        return
    assert code == (0 if outcome == OK else 1)
    if outcome == CLASH:
        assert "also used by fan 'bad'" in err or "overlaps fan 'bad'" in err
        assert after == before                  # both fans frozen, each as it was
        return
    changed = {rel for rel in set(before) | set(after) if before.get(rel) != after.get(rel)}
    # the good fan's change went through (its dnsmasq range), and nothing else changed
    assert changed == {"run/fangen/good/dnsmasq.conf"}
    assert b"dhcp-range=250.3.4.6," in after["run/fangen/good/dnsmasq.conf"][0]


@pytest.mark.parametrize("key", ["bridge", "tunnel"])
@pytest.mark.parametrize("yaml_value, shown, reason", BAD_DEVICE_NAMES,
                         ids=[c[1] for c in BAD_DEVICE_NAMES])
def test_device_names_that_are_not_literal_interface_names(root, key, yaml_value, shown,
                                                           reason):
    before = tree(root)
    path = install(root, "50-hostile.yaml", bad(f"{key}: {yaml_value}"))
    code, _, err = fangen("generate", "--root-dir", root)
    assert_clean(err)
    assert code == 1
    assert heads(err, path) == [f"F:6:15: Error in fan definition: bad: invalid {key} name "
                                f"'{shown}': {reason}"]
    assert tree(root) == before


def test_every_case_has_a_unique_name():
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names))
    assert {c[2] for c in CASES} <= {FROZEN, FAN, CLASH, OK}
