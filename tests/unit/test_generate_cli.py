"""The plain `fangen generate` command lines skip argparse and mean what argparse would
make of them; everything else still goes through the parser (same errors, same help).
And the writer's fsync policy, and Diagnostic without dataclasses."""

from __future__ import annotations

import os

import pytest

from fangen import writer
from fangen.cli import build_parser, generate
from fangen.errors import Diagnostic, Report
from tests.hostile.test_config_hostile import fangen


@pytest.mark.parametrize("argv", [
    [], ["--root-dir", "R"], ["--root-dir=R"], ["--host-interfaces"], ["-v"], ["--verbose"],
    ["--root-dir", "R", "--host-interfaces", "--verbose"], ["-v", "--root-dir=R"],
])
def test_plain_command_lines_mean_what_argparse_makes_of_them(argv, tmp_path):
    argv = [str(tmp_path) if a == "R" else a.replace("=R", f"={tmp_path}") for a in argv]
    quick = generate.quick_args(argv)
    parsed = build_parser(["generate"]).parse_args(["generate", *argv])
    assert quick is not None
    for key in ("command", "root_dir", "host_interfaces", "verbose", "func"):
        assert getattr(quick, key) == getattr(parsed, key), key


@pytest.mark.parametrize("argv", [
    ["--help"], ["-h"], ["--root-dir"], ["--root-dir", "--verbose"], ["--root-dir", "/nonexistent"],
    ["--root-dir="], ["--root"], ["--root-dir", "R", "--root-dir", "R"], ["-v", "--verbose"],
    ["--verbose=1"], ["--host-interfaces=yes"], ["extra"], ["--"], ["-vv"],
])
def test_anything_else_is_left_to_argparse(argv, tmp_path):
    argv = [str(tmp_path) if a == "R" else a for a in argv]
    assert generate.quick_args(argv) is None


def test_argparse_still_reports_what_it_always_did(tmp_path):
    code, out, err = fangen("generate", "--root-dir", str(tmp_path / "missing"))
    assert code == 2 and out == ""
    assert err.endswith(f"argument --root-dir: {tmp_path}/missing: no such directory\n")
    code, out, _ = fangen("generate", "--help")
    assert code == 0 and "--host-interfaces" in out


def test_files_under_run_are_not_fsynced_others_are(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    writer.write_tree(str(tmp_path), {"run/systemd/network/10-fangen-a.network": "a\n",
                                      "run/fangen/a/dnsmasq.conf": "b\n"})
    assert synced == []
    writer.write_file(str(tmp_path / "etc-file"), "c\n")
    assert len(synced) == 1
    writer.write_file(str(tmp_path / "run-file"), "d\n", durable=False)
    assert len(synced) == 1
    assert (tmp_path / "run/fangen/a/dnsmasq.conf").read_text() == "b\n"


def test_a_diagnostic_is_an_immutable_value():
    a = Diagnostic("f", 1, 2, "m", ("network",))
    assert a == Diagnostic("f", 1, 2, "m", ("network",), "Error in fan definition", "error")
    assert a != Diagnostic("f", 1, 2, "m", ("network",), severity="warning")
    assert len({a, Diagnostic("f", 1, 2, "m", ("network",))}) == 1
    assert repr(a) == ("Diagnostic(file='f', line=1, col=2, message='m', path=('network',), "
                       "kind='Error in fan definition', severity='error')")
    with pytest.raises(AttributeError):
        a.line = 3
    with pytest.raises(AttributeError):
        del a.file
    report = Report()
    report.add(a)
    report.add(Diagnostic(None, 0, 0, "w", severity="warning"))
    assert report.errors == [a] and [w.message for w in report.warnings] == ["w"]
    assert report == Report([a, Diagnostic(None, 0, 0, "w", severity="warning")])
