"""The man pages say what the code does.

* fangen(8): its COMMANDS section has one subsection per command ``fangen --help``
  lists, in the same order, and no other; every option argparse knows is in the
  command's synopsis and subsection (or among the common OPTIONS), and no option is
  described that argparse does not know.
* fan.d(5): every key of the JSON Schema (fangen/config/schema.json) is described, with
  its type and default, and no other key.
* fangen-generator(8): the generator's options, the links it makes, every unit
  in systemd/ and the udev rule.
* mandoc -T lint is clean for every page (skipped only where mandoc is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from fangen import cli, generator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAN = os.path.join(REPO, "man")
PAGES = ("fangen.8", "fan.d.5", "fangen-generator.8")
OPTION = re.compile(r"(?:^|(?<=[\s(\[|]))(--?[a-z][a-z0-9-]*)")


def roff(page: str) -> str:
    with open(os.path.join(MAN, page), encoding="utf-8") as fh:
        return fh.read()


def plain(text: str) -> str:
    """Roff source to roughly what the reader sees: no escapes, no macro names."""
    text = "\n".join(line for line in text.splitlines() if not line.startswith('.\\"'))
    text = re.sub(r"\\f[BIRP]", "", text)
    for escape, char in (("\\-", "-"), ("\\(aq", "'"), ("\\&", ""), ("\\e", "\\")):
        text = text.replace(escape, char)
    return re.sub(r"(?m)^\.[A-Za-z]+ ?", "", text)


def sections(text: str, macro: str) -> dict[str, str]:
    """{title: body} for every .SH or .SS in the roff source."""
    parts = re.split(r"(?m)^\.(SH|SS) (.*)$", text)
    return {parts[i + 1].strip('"'): parts[i + 2] for i in range(1, len(parts), 3)
            if parts[i] == macro}


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("fangen has no subcommands")


def options_of(parser: argparse.ArgumentParser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


COMMON = {"--root-dir", "-h", "--help"}


def test_pages_exist():
    for page in PAGES:
        assert os.path.isfile(os.path.join(MAN, page)), page


@pytest.mark.parametrize("page", PAGES)
def test_mandoc_lint_is_clean(page):
    mandoc = shutil.which("mandoc")
    if mandoc is None:
        pytest.skip("mandoc is not installed (apt-get install mandoc); CI installs it")
    proc = subprocess.run([mandoc, "-T", "lint", "-W", "all", os.path.join(MAN, page)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stdout and not proc.stderr, \
        proc.stdout + proc.stderr


@pytest.mark.parametrize("page", PAGES)
def test_title_line_names_the_page(page):
    name, section = page.rsplit(".", 1)
    title = re.search(r"(?m)^\.TH (\S+) (\S+)", roff(page))
    assert title, f"{page}: no .TH line"
    assert plain(title.group(1)).lower() == name and title.group(2) == section


def help_commands() -> list[str]:
    """The commands ``fangen --help`` lists, as a user sees them."""
    res = subprocess.run([sys.executable, "-m", "fangen", "--help"], capture_output=True,
                         text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    assert res.returncode == 0, res.stderr
    block = res.stdout.split("positional arguments:\n", 1)[1]
    return re.findall(r"(?m)^    ([a-z][a-z-]*)  ", block)


def man_commands() -> list[str]:
    """The subsections of fangen(8)'s COMMANDS section, in order."""
    body = re.search(r"(?ms)^\.SH COMMANDS$(.*?)^\.SH ", roff("fangen.8")).group(1)
    return re.findall(r"(?m)^\.SS (\S+)$", body)


def test_the_commands_of_help_are_those_of_fangen_8():
    listed = help_commands()
    assert listed == list(cli.COMMANDS)
    assert man_commands() == listed, "fangen(8) COMMANDS subsections differ from --help"
    assert len(sections(roff("fangen.8"), "SS")) == len(listed), \
        "fangen(8) has subsections outside COMMANDS"


def test_every_argparse_option_is_in_fangen_8():
    text = plain(roff("fangen.8"))
    missing = []
    for name, parser in subparsers().items():
        for opt in options_of(parser):
            if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text):
                missing.append(f"{name} {opt}")
    for opt in options_of(cli.build_parser()):
        if opt not in text:
            missing.append(opt)
    assert not missing, f"options missing from fangen(8): {missing}"


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_command_subsection_matches_argparse(command):
    parsers = subparsers()
    actual = options_of(parsers[command])
    body = plain(sections(roff("fangen.8"), "SS")[command])
    common = plain(sections(roff("fangen.8"), "SH")["OPTIONS"])
    described = set(OPTION.findall(body))
    unknown = described - actual
    assert not unknown, f"fangen(8) describes options '{command}' does not have: {unknown}"
    undescribed = {o for o in actual - described - COMMON
                   if not any(s in described for s in _same_action(parsers[command], o))}
    assert not undescribed, f"'{command}' options not described in its subsection: " \
                            f"{undescribed}"
    assert COMMON & actual <= set(OPTION.findall(common))


def _same_action(parser, option: str) -> set[str]:
    for action in parser._actions:
        if option in action.option_strings:
            return set(action.option_strings)
    return set()


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_synopsis_matches_argparse(command):
    blocks = [b for b in re.split(r"(?m)^fangen\n", plain(
        sections(roff("fangen.8"), "SH")["SYNOPSIS"])) if b.strip()]
    mine = [b for b in blocks if b.split() and b.split()[0] == command]
    assert len(mine) == 1, f"fangen(8) SYNOPSIS has no single entry for '{command}'"
    parsers = subparsers()
    shown = set(OPTION.findall(mine[0]))
    actual = options_of(parsers[command])
    assert shown <= actual, f"synopsis of '{command}' shows unknown options {shown - actual}"
    for action in parsers[command]._actions:
        if action.option_strings and "-h" not in action.option_strings:
            assert shown & set(action.option_strings), \
                f"synopsis of '{command}' lacks {action.option_strings}"


def _schema_keys() -> dict[str, dict]:
    """{key name: its schema} for every property at every level of schema.json."""
    with open(os.path.join(REPO, "fangen", "config", "schema.json"), encoding="utf-8") as fh:
        schema = json.load(fh)
    found = {}

    def walk(node):
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
        for key, sub in node.get("properties", {}).items():
            found[key] = sub
            walk(sub)
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])

    walk(schema)
    return found


def _key_paragraphs() -> dict[str, str]:
    """{key: its .TP paragraph} for every \\fBkey:\\fR term in fan.d(5)."""
    text = roff("fan.d.5")
    paragraphs = {}
    for match in re.finditer(r"(?m)^\.TP\n\\fB([a-z0-9-\\]+):\\fR(.*(?:\n(?!\.TP\n|\.SH ).*)*)",
                             text):
        paragraphs[plain(match.group(1))] = plain(match.group(2))
    return paragraphs


def test_every_schema_key_is_in_fan_d_5():
    paragraphs = _key_paragraphs()
    missing = sorted(set(_schema_keys()) - set(paragraphs))
    assert not missing, f"schema keys not described in fan.d(5): {missing}"
    unknown = sorted(set(paragraphs) - set(_schema_keys()))
    assert not unknown, f"fan.d(5) describes keys the schema lacks: {unknown}"


@pytest.mark.parametrize("key", sorted(_schema_keys()))
def test_fan_d_5_gives_type_and_default(key):
    schema = _schema_keys()[key]
    paragraph = _key_paragraphs()[key]
    head = paragraph.splitlines()[0]
    kind = schema.get("type") or ("string" if "enum" in schema or "$ref" in schema
                                  else "integer")
    kind = {"object": "mapping"}.get(kind, kind)          # YAML's word for it
    assert kind in head or (key == "version" and "integer" in head), \
        f"{key}: type '{kind}' not stated: {head}"
    if "default" in schema:
        default = schema["default"]
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        assert re.search(rf"default: {re.escape(shown)}\)", head), \
            f"{key}: default {shown} not stated: {head}"
    for bound in ("minimum", "maximum"):
        if bound in schema:
            assert str(schema[bound]) in head, f"{key}: {bound} {schema[bound]} not stated"
    for choice in schema.get("enum", []):
        assert choice in head, f"{key}: choice {choice} not stated"


def test_fan_d_5_states_the_rules():
    text = plain(roff("fan.d.5"))
    for phrase in ("/etc/netplan/fan.d", "/run/netplan/fan.d", "/lib/netplan/fan.d",
                   "lexical order", "unknown key 'fan'", "/etc/netplan/*.yaml",
                   "skips the whole file", "/usr/share/doc/fangen/examples"):
        assert phrase in " ".join(text.split()), f"fan.d(5) does not say: {phrase}"


def test_generator_page_matches_the_generator():
    text = plain(roff("fangen-generator.8"))
    with open(generator.__file__, encoding="utf-8") as fh:
        source = fh.read()
    for opt in set(re.findall(r'"(--[a-z-]+)"', source)):
        assert opt in text, f"generator option {opt} not in fangen-generator(8)"
    for wants, unit in generator.LINKS:
        assert f"{wants}/{unit}" in text
    for unit in sorted(os.listdir(os.path.join(REPO, "systemd"))):
        name = unit.replace("@.", "@NAME.")
        assert unit in text or name in text, f"{unit} not in fangen-generator(8)"
    for rule in os.listdir(os.path.join(REPO, "udev")):
        assert f"/usr/lib/udev/rules.d/{rule}" in text


def test_units_point_at_pages_that_exist():
    ours = {page.rsplit(".", 1)[0] + f"({page.rsplit('.', 1)[1]})" for page in PAGES}
    for unit in os.listdir(os.path.join(REPO, "systemd")):
        with open(os.path.join(REPO, "systemd", unit), encoding="utf-8") as fh:
            for ref in re.findall(r"man:(\S+\(\d\))", fh.read()):
                if ref.startswith(("fan", "fangen")):
                    assert ref in ours, f"{unit} refers to {ref}, which does not exist"


@pytest.mark.parametrize("page", PAGES)
def test_see_also_of_our_pages_resolve(page):
    see_also = plain(sections(roff(page), "SH")["SEE ALSO"])
    for name, section in re.findall(r"(fan[\w.-]*) \((\d)\)", see_also):
        assert os.path.isfile(os.path.join(MAN, f"{name}.{section}")), f"{name}({section})"
