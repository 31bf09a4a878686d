#!/bin/bash
# Install the Debian packages named as arguments that are not installed yet (as root):
# one dpkg-query each when all are there; `apt-get update` only when an install fails.
# Used by every script that needs tools of its own (kernel/, boot/, deb-check), so a
# script run on its own, in any order, on a fresh machine finds what it uses.
# Usage: scripts/need-packages.sh WHO PACKAGE...   (WHO prefixes the log line)
set -euo pipefail
who=$1
shift
missing=()
for pkg in "$@"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$pkg")
done
[ ${#missing[@]} -gt 0 ] || exit 0
if [ "$(id -u)" != 0 ]; then
	echo "$who: missing packages (run as root): ${missing[*]}" >&2
	exit 1
fi
echo "$who: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
	{ apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
