"""docs/DESIGN.md is true to the repository.

* Its tree names every module of fangen/ (and schema.json), every folder of fangen/
  and tests/ and every top-level folder; every path it names exists.
* The prose names only units that ship (systemd/), commands fangen has, make targets
  that exist, and repository paths that exist.
"""

from __future__ import annotations

import glob
import os
import re

from fangen import cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DESIGN = os.path.join(REPO, "docs", "DESIGN.md")
DESCRIPTION_COLUMN = 23         # a tree line indented this far continues the entry above
TOP = ("fangen", "tests", "kernel", "udev", "systemd", "scripts", "man", "docs", "boot",
       "bench", "examples", "debian", "mk")
BUILD_LEFTOVERS = ("build", "dist", "__pycache__")


def design() -> str:
    with open(DESIGN, encoding="utf-8") as fh:
        return fh.read()


def tree_paths() -> list[str]:
    """Every path the tree names: 'fangen/', 'fangen/cli/up.py', 'tests/unit/', ..."""
    block = re.search(r"(?ms)^## Tree$.*?^```\n(.*?)^```$", design()).group(1)
    stack: list[tuple[int, str]] = []           # (indent, folder) of the open folders
    out = []
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        if not line.strip() or indent >= DESCRIPTION_COLUMN - 1:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else ""
        for name in re.split(r"\s{2,}", line.strip(), maxsplit=1)[0].split():
            out.append(parent + name)
            if name.endswith("/"):
                stack.append((indent, parent + name))
    return out


def test_the_tree_parses():
    paths = tree_paths()
    assert "fangen/cli/up.py" in paths and "tests/harness/" in paths
    assert len(paths) == len(set(paths)), "a path is named twice"


def test_every_module_of_fangen_is_in_the_tree():
    named = set(tree_paths())
    missing = []
    for directory, dirs, files in os.walk(os.path.join(REPO, "fangen")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        rel = os.path.relpath(directory, REPO)
        if rel + "/" not in named:
            missing.append(rel + "/")
        missing += [f"{rel}/{f}" for f in files
                    if f.endswith((".py", ".json")) and f"{rel}/{f}" not in named]
    assert not missing, f"docs/DESIGN.md's tree lacks: {sorted(missing)}"


def test_every_folder_is_in_the_tree():
    named = set(tree_paths())
    folders = [f"{d}/" for d in os.listdir(REPO)
               if os.path.isdir(os.path.join(REPO, d)) and not d.startswith(".")
               and d not in BUILD_LEFTOVERS and not d.endswith(".egg-info")]
    folders += [f"tests/{d}/" for d in os.listdir(os.path.join(REPO, "tests"))
                if os.path.isdir(os.path.join(REPO, "tests", d)) and d != "__pycache__"]
    missing = sorted(f for f in folders if f not in named)
    assert not missing, f"docs/DESIGN.md's tree lacks: {missing}"


def test_every_path_in_the_tree_exists():
    wrong = [p for p in tree_paths()
             if not (os.path.isdir if p.endswith("/") else os.path.isfile)(
                 os.path.join(REPO, p))]
    assert not wrong, f"docs/DESIGN.md's tree names what is not there: {wrong}"


def test_the_prose_names_units_commands_targets_and_paths_that_exist():
    text = design()
    units = set(os.listdir(os.path.join(REPO, "systemd")))
    for unit in set(re.findall(r"\bfangen[\w@.-]*\.(?:service|target|socket|timer)\b", text)):
        assert unit.replace("@NAME.", "@.") in units, f"DESIGN.md names a unit {unit}"
    for command in set(re.findall(r"`fangen ([a-z-]+)", text)):
        assert command in cli.COMMANDS, f"DESIGN.md names a command 'fangen {command}'"
    makefiles = [os.path.join(REPO, "Makefile"), *glob.glob(os.path.join(REPO, "mk", "*.mk"))]
    targets = set()
    for path in makefiles:
        with open(path, encoding="utf-8") as fh:
            targets |= set(re.findall(r"(?m)^([\w-]+):", fh.read()))
    for target in set(re.findall(r"\bmake ([\w-]+)", text)):
        assert target in targets, f"DESIGN.md names a make target '{target}'"
    paths = re.findall(rf"(?<![\w/.-])((?:{'|'.join(TOP)})/[\w./*@-]*[\w*/])", text)
    assert paths
    for path in set(paths):
        assert glob.glob(os.path.join(REPO, path)), f"DESIGN.md names {path}"


# -- layers: what a module may import ---------------------------------------------------------

def imports_of(path: str) -> set[str]:
    """Every module ``path`` imports (at any depth: lazy imports count too)."""
    import ast

    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def modules(folder: str) -> list[str]:
    return sorted(glob.glob(os.path.join(REPO, folder, "**", "*.py"), recursive=True))


def test_nothing_outside_the_cli_imports_it():
    """The CLI is the top layer: config, runtime, doctor, ... never import fangen.cli
    (only the entry point, fangen/__main__.py, runs it)."""
    wrong = []
    for path in modules("fangen"):
        rel = os.path.relpath(path, REPO)
        if rel.startswith("fangen/cli/") or rel == "fangen/__main__.py":
            continue
        if any(m == "fangen.cli" or m.startswith("fangen.cli.") for m in imports_of(path)):
            wrong.append(rel)
    assert not wrong, f"these import fangen.cli: {wrong}"


def test_the_runtime_io_adapters_and_the_actions_do_not_import_the_planner():
    wrong = []
    for name in ("netlink", "observe", "view", "actions", "execute"):
        found = imports_of(os.path.join(REPO, "fangen", "runtime", f"{name}.py"))
        if any(m == "fangen.runtime.plan" or m.startswith("fangen.runtime.plan.")
               for m in found):
            wrong.append(name)
    assert not wrong, f"these import fangen.runtime.plan: {wrong}"
