"""Golden trees: `fangen generate --root-dir` on every example, byte for byte.

For each example (see golden_examples.py) the fan.d file is installed in a fresh root,
``fangen generate --root-dir ROOT`` runs, and every file it wrote is compared with
tests/golden/<example>/expected/ (same set of files, same bytes).  The root's own
path, which fangen writes into dnsmasq's configuration, is removed first, so the
expected files read as they would on the target system.

Regenerate after an intended change, then review the diff:

    FANGEN_UPDATE_GOLDEN=1 /usr/bin/python3 -m pytest -q tests/golden
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_examples as examples  # noqa: E402

from fangen import cli, fingerprint  # noqa: E402

GOLDEN = os.path.dirname(os.path.abspath(__file__))
UPDATE = os.environ.get("FANGEN_UPDATE_GOLDEN") == "1"
IGNORED = {".gitkeep"}


def run_fangen(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:          # argparse errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def output_tree(root: str) -> dict[str, bytes]:
    """{relative path: bytes} of every file under root except the fan.d input and
    generate's memo (a cache of the run, not its output)."""
    tree = {}
    prefix = root.rstrip("/").encode()
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, root)
            if rel.startswith(examples.FAN_DIR + os.sep) or rel == fingerprint.MEMO:
                continue
            with open(path, "rb") as fh:
                tree[rel] = fh.read().replace(prefix + b"/", b"/")
    return tree


def expected_tree(directory: str) -> dict[str, bytes]:
    tree = {}
    for base, _, files in os.walk(directory):
        for name in files:
            if name in IGNORED:
                continue
            path = os.path.join(base, name)
            with open(path, "rb") as fh:
                tree[os.path.relpath(path, directory)] = fh.read()
    return tree


def write_expected(directory: str, tree: dict[str, bytes]) -> None:
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    if not tree:
        open(os.path.join(directory, ".gitkeep"), "w").close()
    for rel, data in tree.items():
        path = os.path.join(directory, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)


def test_every_example_has_a_golden_tree():
    if UPDATE:
        pytest.skip("FANGEN_UPDATE_GOLDEN=1: trees are being regenerated")
    names = set(examples.examples())
    trees = {entry for entry in os.listdir(GOLDEN)
             if os.path.isdir(os.path.join(GOLDEN, entry, "expected"))}
    assert trees == names, "golden trees without an example, or examples without one"


@pytest.mark.parametrize("name", sorted(examples.examples()))
def test_generate_matches_golden(name, tmp_path):
    root = str(tmp_path / "root")
    examples.install(examples.examples()[name], root)
    code, _, err = run_fangen("generate", "--root-dir", root)
    assert code == 0, err
    assert err == "", err
    got = output_tree(root)
    expected_dir = os.path.join(GOLDEN, name, "expected")
    if UPDATE:
        write_expected(expected_dir, got)
        return
    want = expected_tree(expected_dir)
    assert sorted(got) == sorted(want), f"{name}: files differ from {expected_dir}"
    for rel in sorted(want):
        assert got[rel] == want[rel], f"{name}: {rel} differs from the golden copy"


@pytest.mark.parametrize("name", sorted(examples.examples()))
def test_generate_is_stable(name, tmp_path):
    """A second run over its own output writes nothing and removes nothing."""
    root = str(tmp_path / "root")
    examples.install(examples.examples()[name], root)
    assert run_fangen("generate", "--root-dir", root)[0] == 0
    before = output_tree(root)
    code, _, err = run_fangen("generate", "--root-dir", root, "--verbose")
    assert code == 0
    assert "written:" not in err and "removed:" not in err, err
    assert output_tree(root) == before
