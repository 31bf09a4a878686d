"""The fangen command as the namespace tests run it: this checkout, inside a namespace,
on a root directory of the test's own.

``PYTHON`` is /usr/bin/python3 (Debian's libraries: what the package runs on) unless
FANGEN_TEST_PYTHON names another interpreter; ``make test-pypi`` points it at a venv
holding the newest PyPI releases.  (:class:`tests.harness.host.Host` runs fangen next to
a real networkd over D-Bus and keeps Debian's interpreter, which has dbus-python.)
"""

from __future__ import annotations

import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = os.environ.get("FANGEN_TEST_PYTHON", "/usr/bin/python3")


def install(root: str, text: str | bytes, name: str = "fan.yaml") -> str:
    """Write ROOT/etc/netplan/fan.d/NAME (mode 0600, as netplan wants) and return its path."""
    path = os.path.join(root, "etc/netplan/fan.d", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(text, bytes) else "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
    return path


def env(**extra: str) -> dict[str, str]:
    """The caller's environment minus DBUS_SYSTEM_BUS_ADDRESS (fangen must find no bus but
    one a test gives it), with this checkout on PYTHONPATH and no bytecode files."""
    out = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
    out.update(PYTHONPATH=REPO, PYTHONDONTWRITEBYTECODE="1", **extra)
    return out


def argv(ns: str, root: str, *args: str, head: list[str] | None = None) -> list[str]:
    """``ip netns exec NS python3 -m fangen ARGS --root-dir ROOT`` (``head`` replaces
    ``python3 -m fangen``, e.g. with a ``python3 -c`` wrapper)."""
    return ["ip", "netns", "exec", ns, *(head or [PYTHON, "-m", "fangen"]), *args,
            "--root-dir", root]


def fangen(ns: str, root: str, *args: str, check: bool = True, timeout: float = 120,
           environ: dict | None = None, head: list[str] | None = None
           ) -> subprocess.CompletedProcess:
    """Run fangen in ``ns``; with ``check``, a non-zero exit fails the test with its output."""
    res = subprocess.run(argv(ns, root, *args, head=head), capture_output=True, text=True,
                         cwd=REPO, env=environ if environ is not None else env(),
                         timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"fangen {' '.join(args)} -> {res.returncode}\n"
                             f"{res.stdout}\n{res.stderr}")
    return res


def spawn(ns: str, root: str, *args: str, environ: dict | None = None) -> subprocess.Popen:
    """Start fangen in ``ns`` (stdout and stderr piped, text); the caller ends it."""
    return subprocess.Popen(argv(ns, root, *args), cwd=REPO,
                            env=environ if environ is not None else env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
