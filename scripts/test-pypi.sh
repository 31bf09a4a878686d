#!/bin/bash
# Run the tests that need no root against the newest PyPI releases of fangen's
# dependencies (Debian's packaged versions are covered by `make test`).  The venv is
# cached under /var/cache/fangen, keyed by pyproject.toml and the date's week, so
# new releases are picked up weekly and warm runs cost seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${CACHE:-/var/cache/fangen}
key=$( (cat pyproject.toml; date +%G-%V) | sha256sum | cut -c1-16)
venv="$cache/venv-pypi-$key"
if [ ! -x "$venv/bin/pytest" ]; then
    rm -rf "$cache"/venv-pypi-*
    mkdir -p "$cache"
    /usr/bin/python3 -m venv "$venv"
    # dbus-python is left out: it builds from source with meson and only the runtime's
    # D-Bus module uses it, which these tests do not import.
    "$venv/bin/pip" install -q --disable-pip-version-check pyyaml jsonschema netaddr pyroute2 pytest
fi
"$venv/bin/python" -c 'import importlib.metadata as m; print("PyPI versions:", ", ".join(f"{p} {m.version(p)}" for p in ("pyyaml", "jsonschema", "netaddr", "pyroute2", "pytest")))'
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit tests/golden
