"""The commands as a user runs them: output, exit codes, no tracebacks, nothing destroyed."""

import json
import os
import subprocess

import pytest

GOOD = """network:
  version: 2
  fan:
    fan-250:
      overlay: 250.0.0.0/8
      underlay: 172.16.3.4/16
      mtu: 1450
"""


def fangen(*args):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    return subprocess.run(["/usr/bin/python3", "-m", "fangen", *args], capture_output=True,
                          text=True, env=env)


def test_validate_prints_ok(fanroot):
    fanroot.fan(GOOD)
    res = fangen("validate", "--root-dir", fanroot.path)
    assert (res.returncode, res.stdout, res.stderr) == \
        (0, "OK: fan-250 (ipip, 250.0.0.0/8 over 172.16.3.4/16)\n", "")


def test_validate_without_files(fanroot):
    res = fangen("validate", "--root-dir", fanroot.path)
    assert (res.returncode, res.stdout) == (0, "OK: no fans defined (no fan.d files)\n")


def test_generate_writes_then_a_broken_edit_keeps_earlier_output(fanroot):
    path = fanroot.fan(GOOD)
    assert fangen("generate", "--root-dir", fanroot.path).returncode == 0
    netdir = os.path.join(fanroot.path, "run/systemd/network")
    before = {n: open(os.path.join(netdir, n)).read() for n in os.listdir(netdir)}
    assert sorted(before) == ["10-fangen-fan-250-tun.network", "10-fangen-fan-250.netdev",
                              "10-fangen-fan-250.network"]
    assert os.path.exists(os.path.join(fanroot.path, "run/fangen/fan-250/dnsmasq.conf"))
    fanroot.fan(GOOD.replace("mtu: 1450", "mtu: 1450\n      nat: perhaps"))
    res = fangen("generate", "--root-dir", fanroot.path)
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        f"{path}:8:12: Error in fan definition: fan-250: 'nat' must be a boolean (true or "
        "false), not 'perhaps'", "      nat: perhaps", "           ^"]
    assert "Traceback" not in res.stderr
    after = {n: open(os.path.join(netdir, n)).read() for n in os.listdir(netdir)}
    assert after == before


def test_generate_is_deterministic(fanroot, tmp_path):
    fanroot.fan(GOOD)
    outputs = []
    for _ in range(2):
        assert fangen("generate", "--root-dir", fanroot.path).returncode == 0
        netdir = os.path.join(fanroot.path, "run/systemd/network")
        outputs.append({n: open(os.path.join(netdir, n), "rb").read() for n in os.listdir(netdir)})
    assert outputs[0] == outputs[1]


def test_removed_fan_files_are_removed(fanroot):
    path = fanroot.fan(GOOD)
    assert fangen("generate", "--root-dir", fanroot.path).returncode == 0
    os.unlink(path)
    assert fangen("generate", "--root-dir", fanroot.path).returncode == 0
    assert os.listdir(os.path.join(fanroot.path, "run/systemd/network")) == []


def test_disabled_fan_is_not_rendered(fanroot):
    fanroot.fan(GOOD + "      enabled: false\n")
    res = fangen("validate", "--root-dir", fanroot.path)
    assert res.stdout == "OK: fan-250 (ipip, 250.0.0.0/8 over 172.16.3.4/16, disabled)\n"
    assert fangen("generate", "--root-dir", fanroot.path).returncode == 0
    assert not os.path.exists(os.path.join(fanroot.path, "run/systemd/network")) or \
        os.listdir(os.path.join(fanroot.path, "run/systemd/network")) == []


@pytest.mark.parametrize("args, out", [
    (["--overlay", "250.0.0.0/8", "--underlay", "172.16.0.0/16", "250.6.7.8"],
     "250.6.7.8 is in slice 250.6.7.0/24 owned by underlay host 172.16.6.7\n"),
    (["--overlay", "250.0.0.0/8", "--underlay", "172.16.0.0/16", "172.16.3.4"],
     "underlay host 172.16.3.4 owns slice 250.3.4.0/24\n"),
    (["--overlay", "100.64.0.0/10", "--underlay", "10.224.220.0/24", "100.66.200.5", "--json"],
     '{"address": "100.66.200.5", "slice": "100.66.192.0/18", "underlay_host": "10.224.220.11"}\n'),
])
def test_map(args, out):
    res = fangen("map", *args)
    assert (res.returncode, res.stdout, res.stderr) == (0, out, "")


def test_map_with_fan(fanroot):
    fanroot.fan(GOOD)
    res = fangen("map", "--fan", "fan-250", "--root-dir", fanroot.path, "250.9.8.7", "--json")
    assert json.loads(res.stdout) == {"address": "250.9.8.7", "underlay_host": "172.16.9.8",
                                      "slice": "250.9.8.0/24"}


@pytest.mark.parametrize("args, err", [
    (["--overlay", "250.0.0.0/8", "--underlay", "172.16.0.0/16", "10.0.0.1"],
     "fangen: 10.0.0.1 is in neither the overlay 250.0.0.0/8 nor the underlay 172.16.0.0/16\n"),
    (["--overlay", "250.0.0.0/8", "--underlay", "172.16.0.0/16", "nonsense"],
     "fangen: 'nonsense' is not an IPv4 or IPv6 address\n"),
    (["--overlay", "250.0.0.0/16", "--underlay", "172.16.0.0/16", "250.0.0.1"],
     "fangen: slice prefix /32 (overlay /16 + 32 - underlay /16) is longer than /30\n"),
    (["250.0.0.1"], "fangen: give --overlay NET/LEN and --underlay NET/LEN (or --fan NAME)\n"),
])
def test_map_errors(args, err):
    res = fangen("map", *args)
    assert (res.returncode, res.stderr) == (1, err)


def test_missing_root_dir_is_a_usage_error():
    res = fangen("validate", "--root-dir", "/nonexistent-fangen-root")
    assert res.returncode == 2
    assert res.stderr.splitlines()[-1] == ("fangen validate: error: argument --root-dir: "
                                           "/nonexistent-fangen-root: no such directory")


def test_run_exits_ex_config_for_a_fan_that_is_not_configured(fanroot):
    """fangen@.service has RestartPreventExitStatus=78: a removed fan's unit must not loop."""
    fanroot.fan(GOOD)
    res = fangen("run", "gone", "--root-dir", fanroot.path)
    assert res.returncode == 78
    assert res.stderr.startswith("fangen: no fan named 'gone'")


def test_a_missing_command_module_is_an_error_not_silence(monkeypatch, capsys):
    """A command in COMMANDS whose module does not import is a broken installation: the
    parser does not leave it out, and fangen says so in one line (exit 70)."""
    from fangen import cli

    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, "nosuch"))
    with pytest.raises(ModuleNotFoundError):
        cli.build_parser(("validate", "nosuch"))
    for argv in (["nosuch"], ["--help"]):
        assert cli.main(argv) == cli.EXIT_INTERNAL
        assert capsys.readouterr().err == (
            "fangen: cannot load its commands (No module named 'fangen.cli.nosuch'): this "
            "installation of fangen is broken; reinstall it\n")


def test_every_command_module_ships():
    from fangen import cli

    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    assert tuple(sub.choices) == cli.COMMANDS


@pytest.mark.parametrize("command", ["up", "apply", "run"])
@pytest.mark.parametrize("value", ["nan", "-1", "-inf", "x\x1b[31m", ""])
def test_a_timeout_that_is_not_seconds_is_refused_in_one_line(command, value, capsys):
    from fangen import cli

    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args([command, f"--timeout={value}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].endswith(
        "is not a number of seconds (0 or more, or inf)"), err
    assert "\x1b" not in err and "Traceback" not in err


@pytest.mark.parametrize("value, seconds", [("0", 0.0), ("2.5", 2.5), ("inf", float("inf")),
                                            ("1e309", float("inf"))])
def test_a_timeout_in_seconds_is_taken(value, seconds):
    from fangen import cli

    assert cli.build_parser().parse_args(["up", "--timeout", value]).timeout == seconds
