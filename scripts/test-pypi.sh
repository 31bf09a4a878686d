#!/bin/bash
# Run fangen's tests against the newest PyPI releases of its dependencies (Debian's
# packaged versions are covered by `make test`), in a venv that sees no system
# site-packages:
#   * the pure tests: tests/unit, tests/golden;
#   * as root, the tests that drive pyroute2 on real kernel objects in namespaces they
#     make: tests/netns (fangen runs there with the venv's interpreter, through
#     FANGEN_TEST_PYTHON), except test_forward_policy.py, whose hosts run networkd
#     and talk to it over D-Bus (dbus-python builds from source with meson, so it is
#     not in the venv; nothing else these tests run imports it).
# Not root: the namespace tests skip themselves, saying so.
# The venv is cached under /var/cache/fangen, keyed by pyproject.toml and the date's
# week, so new releases are picked up weekly and warm runs cost seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${CACHE:-/var/cache/fangen}
key=$( (cat pyproject.toml; date +%G-%V) | sha256sum | cut -c1-16)
venv="$cache/venv-pypi-$key"
packages=(pyyaml jsonschema pyroute2 pytest)
if [ ! -x "$venv/bin/pytest" ]; then
    mkdir -p "$cache"
    # Earlier weeks' venvs go; a recent one with another key may be another checkout's,
    # in use right now, and stays.
    find "$cache" -maxdepth 1 -name 'venv-pypi-*' -mtime +7 -exec rm -rf {} +
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "${packages[@]}"
fi
"$venv/bin/python" - "${packages[@]}" <<'EOF'
import importlib.metadata as m, sys
print("PyPI versions:", ", ".join(f"{p} {m.version(p)}" for p in sys.argv[1:]))
EOF
export FANGEN_TEST_PYTHON="$venv/bin/python"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit tests/golden tests/netns \
    --ignore=tests/netns/test_forward_policy.py
